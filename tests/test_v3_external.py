"""A reflector outside the cluster (rr_service/v3/external.py): BGPPeers whose peerIP is our
address make us peer with the Nodes they apply to, and reflectors declared by labelled BGPPeers
mesh with each other. Table-driven, both families; with and without a Node of our own."""

import ipaddress

import pytest

from rr_service.core.plan import CLIENT, MESH, Identity
from rr_service.core.render import Renderer
from rr_service.calico.v3.planner import plan_v3
from rr_service.core.plan import PEER
from rr_service.calico.v3.external import reflector_peer_name
from rr_service.calico.v3.resources import parse_resources
from test_v3_plan import config, node, peer

V4, V6 = ipaddress.IPv4Address, ipaddress.IPv6Address
ME = Identity(V4("192.0.2.10"), V6("2001:db8::10"))
NO_MESH = config("default", nodeToNodeMeshEnabled=False)
A = node("a", "192.0.2.21/24", "2001:db8::21/64", {"rack": "a"})
B = node("b", "192.0.2.22/24", "2001:db8::22/64", {"rack": "b"})
E = node("e", "192.0.2.23/24", None, {"rack": "b"}, asn=65002)  # another AS, IPv4 only
RR_LABELS = {"calico-rr/reflector": "rr1", "calico-rr/cluster-id": "244.0.0.1"}


def rr_peer(name, peer_ip, labels, asn=64512, **spec):
    """A BGPPeer that declares a reflector, as `calico-rr register` writes it."""
    raw = peer(name, peerIP=peer_ip, asNumber=asn, **spec)
    key = f"bgppeers/{name}"
    import json

    body = json.loads(raw[key])
    body["metadata"]["labels"] = labels
    return {key: json.dumps(body).encode()}


OURS4 = rr_peer("calico-rr-rr1-ipv4", "192.0.2.10", RR_LABELS)
OURS6 = rr_peer("calico-rr-rr1-ipv6", "2001:db8::10", RR_LABELS)
RR2_4 = rr_peer("calico-rr-rr2-ipv4", "192.0.2.11", {"calico-rr/reflector": "rr2", "calico-rr/cluster-id": "244.0.0.1"})
RR2_6 = rr_peer("calico-rr-rr2-ipv6", "2001:db8::11", {"calico-rr/reflector": "rr2"})
GLOBAL4 = peer("rr1", peerIP="192.0.2.10", asNumber=64512)
GLOBAL6 = peer("rr1-v6", peerIP="2001:db8::10", asNumber=64512)


def sessions(raw, family=4, name="rr1", me=ME):
    plan = plan_v3(parse_resources(raw), name, me)
    return {
        (str(s.neighbor), s.port): (s.role, s.neighbor_as, s.local_as, s.rr_client, s.cluster_id)
        for s in plan.family(family).sessions
    }, plan


def c(cid=None, asn=64512, local=64512):  # an rr client
    return (CLIENT, asn, local, True, cid)


def p(asn=64512, local=64512):  # a plain (non-client) peer
    return (PEER, asn, local, False, None)


def m(asn=64512, local=64512):  # a reflector mesh member
    return (MESH, asn, local, False, None)


CASES = {
    "a global BGPPeer with our peerIP: every Node is our client, no cluster id": (
        {**NO_MESH, **A, **B, **GLOBAL4}, 4,
        {("192.0.2.21", None): c(), ("192.0.2.22", None): c()},
    ),
    "the same over IPv6: only the IPv6 BGPPeer counts, only Nodes with IPv6": (
        {**NO_MESH, **A, **B, **E, **GLOBAL4, **GLOBAL6}, 6,
        {("2001:db8::21", None): c(), ("2001:db8::22", None): c()},
    ),
    "an IPv4 BGPPeer gives no IPv6 sessions": (
        {**NO_MESH, **A, **B, **GLOBAL4}, 6, {},
    ),
    "nodeSelector scopes it": (
        {**NO_MESH, **A, **B, **peer("rr1", peerIP="192.0.2.10", asNumber=64512, nodeSelector="rack == 'b'")}, 4,
        {("192.0.2.22", None): c()},
    ),
    "node scopes it": (
        {**NO_MESH, **A, **B, **peer("rr1", peerIP="192.0.2.10", asNumber=64512, node="a")}, 4,
        {("192.0.2.21", None): c()},
    ),
    "a Node in another AS is a plain eBGP peer; local AS is the BGPPeer's": (
        {**NO_MESH, **A, **E, **GLOBAL4}, 4,
        {("192.0.2.21", None): c(), ("192.0.2.23", None): p(asn=65002)},
    ),
    "the BGPPeer's asNumber is our AS on those sessions: a node in that AS is iBGP": (
        {**NO_MESH, **A, **E, **peer("rr1", peerIP="192.0.2.10", asNumber=65002)}, 4,
        {("192.0.2.21", None): p(asn=64512, local=65002), ("192.0.2.23", None): c(asn=65002, local=65002)},
    ),
    "the global AS from BGPConfiguration is the Nodes' AS": (
        {**config("default", nodeToNodeMeshEnabled=False, asNumber=64500), **A,
         **peer("rr1", peerIP="192.0.2.10", asNumber=64500)}, 4,
        {("192.0.2.21", None): c(asn=64500, local=64500)},
    ),
    "a BGPPeer for another peerIP is not ours": (
        {**NO_MESH, **A, **B, **peer("tor", peerIP="192.0.2.1", asNumber=65000)}, 4, {},
    ),
    "we reach each Node on its listen port": (
        {**config("default", nodeToNodeMeshEnabled=False, listenPort=1790), **config("node.a", listenPort=500),
         **A, **B, **GLOBAL4}, 4,
        {("192.0.2.21", 500): c(), ("192.0.2.22", 1790): c()},
    ),
    "registered: our cluster id from our BGPPeer's label, on client sessions": (
        {**NO_MESH, **A, **OURS4}, 4, {("192.0.2.21", None): c(cid="244.0.0.1")},
    ),
    "reflectors mesh with every other declared reflector, non-client, whatever its scope": (
        {**NO_MESH, **A, **OURS4, **rr_peer("calico-rr-rr2-ipv4", "192.0.2.11", {"calico-rr/reflector": "rr2"},
                                            nodeSelector="rack == 'b'")}, 4,
        {("192.0.2.11", None): m(), ("192.0.2.21", None): c(cid="244.0.0.1")},
    ),
    "the mesh over IPv6 with the reflectors' IPv6 BGPPeers": (
        {**NO_MESH, **A, **OURS4, **OURS6, **RR2_4, **RR2_6}, 6,
        {("2001:db8::11", None): m(), ("2001:db8::21", None): c(cid="244.0.0.1")},
    ),
    "another reflector's port in peerIP is where we dial it": (
        {**NO_MESH, **OURS4, **rr_peer("calico-rr-rr2-ipv4", "192.0.2.11:1790", {"calico-rr/reflector": "rr2"})}, 4,
        {("192.0.2.11", 1790): m()},
    ),
    "not registered (no labelled BGPPeer of ours): no mesh, like a standalone v1 reflector": (
        {**NO_MESH, **A, **GLOBAL4, **RR2_4}, 4, {("192.0.2.21", None): c()},
    ),
    "a Node that is a reflector of our cluster is a plain peer, of another cluster a client": (
        {**NO_MESH, **OURS4, **node("r5", "192.0.2.15/24", cid="244.0.0.1"), **node("r6", "192.0.2.16/24", cid="244.0.0.9")},
        4, {("192.0.2.15", None): p(), ("192.0.2.16", None): c(cid="244.0.0.1")},
    ),
    "the mesh wins over the reverse peering of the same address": (
        {**NO_MESH, **OURS4, **RR2_4, **node("rr2", "192.0.2.11/24")}, 4, {("192.0.2.11", None): m()},
    ),
    "sessions in order: mesh, then peers, then clients": (
        {**NO_MESH, **OURS4, **RR2_4, **A, **E}, 4,
        {("192.0.2.11", None): m(), ("192.0.2.23", None): p(asn=65002), ("192.0.2.21", None): c(cid="244.0.0.1")},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rules(case):
    raw, family, expected = CASES[case]
    got, plan = sessions(raw, family)
    assert got == expected
    assert plan.error is None
    # the missing-Node warning only when nothing names us at all
    assert any("no Calico Node" in w for w in plan.warnings) == (case == "a BGPPeer for another peerIP is not ours")


def test_sessions_are_ordered_mesh_peers_clients():
    _, plan = sessions(CASES["sessions in order: mesh, then peers, then clients"][0])
    assert [s.name for s in plan.v4.sessions] == ["Mesh_192_0_2_11", "Peer_192_0_2_23", "Client_192_0_2_21"]


def test_options_of_the_bgppeer_apply_to_its_reverse_sessions():
    raw = {**NO_MESH, **A, **peer("rr1", peerIP="192.0.2.10", asNumber=64512, keepOriginalNextHop=True,
                                  sourceAddress="None", maxRestartTime="90s")}
    _, plan = sessions(raw)
    (session,) = plan.v4.sessions
    assert (session.next_hop_keep, session.no_source_address, session.graceful_restart_time) == (True, True, 90)
    assert session.origin == "bgppeer rr1 (peerIP names us)"
    assert session.description == "node a"


def test_mesh_sessions_take_none_of_the_other_reflectors_bgppeer_options():
    raw = {**NO_MESH, **OURS4, **rr_peer("calico-rr-rr2-ipv4", "192.0.2.11", {"calico-rr/reflector": "rr2"},
                                         keepOriginalNextHop=True, sourceAddress="None")}
    _, plan = sessions(raw)
    (session,) = plan.v4.sessions
    assert (session.next_hop_keep, session.no_source_address) == (False, False)
    assert session.description == "reflector rr2"
    assert session.origin == "reflector mesh (bgppeer calico-rr-rr2-ipv4)"


def test_no_node_warning_goes_once_a_bgppeer_names_us_and_mode_says_so():
    _, plan = sessions({**NO_MESH, **A, **B, **GLOBAL4, **peer("rr1-b", peerIP="192.0.2.10", asNumber=64512, node="b")})
    assert not any("no Calico Node" in w for w in plan.warnings)
    assert plan.v4.mode == "external reflector: 2 BGPPeers name 192.0.2.10"
    # IPv6 is configured but nothing names 2001:db8::10: that family has no sessions, and says why
    assert plan.v6.local_address is None
    assert "no BGPPeer with peerIP 2001:db8::10" in plan.v6.unconfigured_reason
    _, plan = sessions({**NO_MESH, **A, **OURS4})
    assert plan.v4.mode == "external reflector: 1 BGPPeer names 192.0.2.10, declared by bgppeer calico-rr-rr1-ipv4"


def test_nothing_names_us_and_no_node_warns_once():
    _, plan = sessions({**NO_MESH, **A, **peer("tor", peerIP="192.0.2.1", asNumber=65000)})
    assert plan.v4.local_address is None and plan.v6.local_address is None
    assert [w for w in plan.warnings if "no BGP sessions" in w] == [
        "no Calico Node resource named 'rr1' (nodes/rr1) and no BGPPeer with peerIP 192.0.2.10 or 2001:db8::10: no BGP "
        "sessions are configured until one exists (calico-rr register creates this reflector's BGPPeer)"]


# ---------------------------------------------------------------- with a Node of our own

OUR_NODE = node("rr1", "192.0.2.10/24", "2001:db8::10/64", {"route-reflector": "true"}, cid="244.0.0.1")
CLIENTS = peer("clients", nodeSelector="!has(route-reflector)", peerSelector="has(route-reflector)")


def test_node_and_bgppeer_rules_combine_one_session_per_neighbour():
    """Node a is our client by Calico's reverse peering and by the global BGPPeer naming us:
    one session, Calico's rule wins and status says so; node b only by the BGPPeer."""
    raw = {**NO_MESH, **OUR_NODE, **A, **B, **peer("clients", nodeSelector="rack == 'a'", peerSelector="has(route-reflector)"),
           **GLOBAL4}
    got, plan = sessions(raw)
    assert got == {("192.0.2.21", None): c(cid="244.0.0.1"), ("192.0.2.22", None): c(cid="244.0.0.1")}
    origins = {str(s.neighbor): s.origin for s in plan.v4.sessions}
    assert origins == {"192.0.2.21": "bgppeer clients (reverse)", "192.0.2.22": "bgppeer rr1 (peerIP names us)"}
    assert plan.v4.mode == "Calico Node rr1 at 192.0.2.10, and 1 BGPPeer names it"
    assert plan.warnings == ()  # same settings: nothing to warn about


def test_node_and_bgppeer_disagreeing_on_a_neighbour_warn():
    raw = {**NO_MESH, **OUR_NODE, **A, **CLIENTS, **peer("rr1", peerIP="192.0.2.10", asNumber=65009)}
    got, plan = sessions(raw)
    assert got == {("192.0.2.21", None): c(cid="244.0.0.1")}
    assert ("IPv4 192.0.2.21: bgppeer rr1 (peerIP names us) ignored, bgppeer clients (reverse) already peers there"
            in plan.warnings)


def test_a_node_reflector_meshes_with_external_reflectors():
    """A Calico Node with a cluster id is a reflector: it meshes with the declared ones too,
    non-client, even where their BGPPeer's scope leaves it out (it applies to rack b only)."""
    raw = {**NO_MESH, **OUR_NODE, **A, **CLIENTS,
           **rr_peer("calico-rr-rr2-ipv4", "192.0.2.11", {"calico-rr/reflector": "rr2"}, nodeSelector="rack == 'b'")}
    got, plan = sessions(raw)
    assert got == {("192.0.2.11", None): m(), ("192.0.2.21", None): c(cid="244.0.0.1")}
    # a global one would be a Calico peerIP peer of ours (a client, by Calico's rule): the mesh wins
    got, _ = sessions({**NO_MESH, **OUR_NODE, **A, **CLIENTS, **RR2_4})
    assert got[("192.0.2.11", None)] == m()


def test_node_cluster_id_wins_over_our_bgppeer_label_with_a_warning():
    raw = {**NO_MESH, **OUR_NODE, **A, **CLIENTS,
           **rr_peer("calico-rr-rr1-ipv4", "192.0.2.10", {"calico-rr/reflector": "rr1", "calico-rr/cluster-id": "1.1.1.1"})}
    _, plan = sessions(raw)
    assert plan.v4.cluster_id == "244.0.0.1"
    assert any("says cluster id 1.1.1.1" in w for w in plan.warnings)


# ---------------------------------------------------------------- ports

def test_a_port_in_our_peerip_is_where_bird_listens():
    raw = {**NO_MESH, **A, **peer("rr1", peerIP="192.0.2.10:1790", asNumber=64512)}
    _, plan = sessions(raw)
    assert plan.listen_port == 1790 and plan.warnings == ()
    # without a port, where the nodes dial: the default listenPort
    _, plan = sessions({**config("default", nodeToNodeMeshEnabled=False, listenPort=1800), **A, **GLOBAL4})
    assert plan.listen_port == 1800
    _, plan = sessions({**NO_MESH, **A, **GLOBAL4})
    assert plan.listen_port is None


def test_two_ports_asked_of_us_warn_and_the_first_by_name_wins():
    raw = {**NO_MESH, **A, **B, **peer("a-rr", peerIP="192.0.2.10:1790", asNumber=64512, node="a"),
           **peer("b-rr", peerIP="192.0.2.10", asNumber=64512, node="b")}
    got, plan = sessions(raw)
    assert plan.listen_port == 1790
    assert plan.warnings == ("bgppeer b-rr: the nodes dial this reflector on port 179, but BIRD listens on port "
                             "1790 (as bgppeer a-rr asks); its sessions cannot come up",)
    assert set(got) == {("192.0.2.21", None), ("192.0.2.22", None)}  # we still dial both


def test_with_our_node_its_listen_port_rule_wins():
    raw = {**config("default", nodeToNodeMeshEnabled=False, listenPort=1790), **OUR_NODE, **A,
           **peer("rr1", peerIP="192.0.2.10:2000", asNumber=64512)}
    _, plan = sessions(raw)
    assert plan.listen_port == 1790
    assert any("bgppeer rr1: the nodes dial this reflector on port 2000" in w for w in plan.warnings)


# ---------------------------------------------------------------- bad and hostile data

@pytest.mark.parametrize("labels, words", [
    ({"calico-rr/reflector": "rr2", "calico-rr/cluster-id": "not-an-ip"}, "label calico-rr/cluster-id"),
    ({"calico-rr/reflector": "x; protocol bgp evil { }"}, "is not a valid reflector name"),
    ({"calico-rr/reflector": "a\nb"}, "is not a valid reflector name"),
    ({"calico-rr/reflector": 7}, "is not a valid reflector name"),
    ({"calico-rr/cluster-id": "1.1.1.1"}, "without label calico-rr/reflector"),
])
def test_hostile_reflector_labels_reject_that_bgppeer_only(labels, words):
    raw = {**NO_MESH, **A, **OURS4, **rr_peer("calico-rr-rr2-ipv4", "192.0.2.11", labels)}
    data = parse_resources(raw)
    assert [r.key for r in data.rejected] == ["bgppeers/calico-rr-rr2-ipv4"]
    assert words in data.rejected[0].reason
    got, plan = sessions(raw)
    assert got == {("192.0.2.21", None): c(cid="244.0.0.1")} and plan.error is None
    for text in Renderer().render(plan).values():
        assert "evil" not in text


def test_other_labels_of_a_bgppeer_never_cost_it_its_sessions():
    raw = {**NO_MESH, **A, **rr_peer("rr1", "192.0.2.10", {"odd key!": "\x00", "x": 5})}
    got, _ = sessions(raw)
    assert got == {("192.0.2.21", None): c()}


def test_a_reflector_label_without_peerip_is_rejected():
    import json

    raw = peer("r", peerSelector="all()")
    body = json.loads(raw["bgppeers/r"])
    body["metadata"]["labels"] = {"calico-rr/reflector": "r"}
    data = parse_resources({"bgppeers/r": json.dumps(body).encode()})
    assert "needs a peerIP" in data.rejected[0].reason


def test_our_own_reflector_bgppeer_invalid_stops_the_plan():
    """It decides our AS, mesh and cluster id: planned without it we would turn standalone."""
    bad = rr_peer(reflector_peer_name("rr1", 4), "192.0.2.10", {"calico-rr/reflector": "rr1", "calico-rr/cluster-id": "x"})
    _, plan = sessions({**NO_MESH, **A, **GLOBAL4, **bad})
    assert plan.error is not None and "bgppeers/calico-rr-rr1-ipv4 is invalid" in plan.error
    # another reflector's broken BGPPeer costs only its own mesh session
    other = rr_peer(reflector_peer_name("rr2", 4), "192.0.2.11", {"calico-rr/reflector": "rr2", "calico-rr/cluster-id": "x"})
    _, plan = sessions({**NO_MESH, **A, **OURS4, **other})
    assert plan.error is None


def test_reflector_in_another_as_is_named():
    raw = {**NO_MESH, **OURS4, **rr_peer("calico-rr-rr2-ipv4", "192.0.2.11", {"calico-rr/reflector": "rr2"}, asn=65001)}
    got, plan = sessions(raw)
    assert got == {("192.0.2.11", None): m(asn=65001)}
    assert any("reflector rr2 is in AS 65001" in w for w in plan.warnings)


def test_reflector_peer_name():
    assert reflector_peer_name("RR1", 6) == "calico-rr-rr1-ipv6"


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_rendered_sessions(flavour):
    raw = {**NO_MESH, **A, **E, **OURS4, **RR2_4}
    text = Renderer(flavour=flavour).render(plan_v3(parse_resources(raw), "rr1", ME))["bird"]
    suffix = "_v4" if flavour == "bird2" else ""
    assert (f"protocol bgp Client_192_0_2_21 from bgp_template{suffix} {{\n  description \"role=client node=a\";\n  local as 64512;\n"
            "  neighbor 192.0.2.21 as 64512;\n  rr client;\n  rr cluster id 244.0.0.1;\n}\n") in text
    assert (f"protocol bgp Peer_192_0_2_23 from bgp_template{suffix} {{\n  description \"role=peer node=e\";\n  local as 64512;\n"
            "  neighbor 192.0.2.23 as 65002;\n}\n") in text
    assert (f"protocol bgp Mesh_192_0_2_11 from bgp_template{suffix} {{\n  description \"role=mesh node=rr2\";\n  local as 64512;\n"
            "  neighbor 192.0.2.11 as 64512;\n}\n") in text
    assert "router id 192.0.2.10;" in text
