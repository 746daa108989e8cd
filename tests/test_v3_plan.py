"""The v3 planner (rr_service/v3/calico_plan.py): Calico's peering rules, table-driven."""

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rr_service.core.plan import CLIENT, MESH, Identity
from rr_service.core.render import Renderer
from rr_service.calico.v3.planner import plan_v3
from rr_service.core.plan import PEER
from rr_service.calico.v3.resources import parse_resources

V4, V6 = ipaddress.IPv4Address, ipaddress.IPv6Address
ME = Identity(V4("10.0.0.1"), V6("fd00::1"))


def node(name, v4=None, v6=None, labels=None, asn=None, cid=None):
    bgp = {k: v for k, v in (("ipv4Address", v4), ("ipv6Address", v6), ("asNumber", asn),
                             ("routeReflectorClusterID", cid)) if v is not None}
    body = {"kind": "Node", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": name, "labels": labels or {}}, "spec": {"bgp": bgp}}
    return {f"nodes/{name}": json.dumps(body).encode()}


def peer(name, **spec):
    body = {"kind": "BGPPeer", "apiVersion": "projectcalico.org/v3", "metadata": {"name": name}, "spec": spec}
    return {f"bgppeers/{name}": json.dumps(body).encode()}


def config(name, **spec):
    body = {"kind": "BGPConfiguration", "apiVersion": "projectcalico.org/v3", "metadata": {"name": name}, "spec": spec}
    return {f"bgpconfigurations/{name}": json.dumps(body).encode()}


NO_MESH = config("default", nodeToNodeMeshEnabled=False)
RR = node("rr", "10.0.0.1/24", "fd00::1/64", {"rr": "true"}, cid="1.0.0.1")
RR2 = node("rr2", "10.0.0.2/24", "fd00::2/64", {"rr": "true"}, cid="1.0.0.1")
RR_OTHER = node("rr3", "10.0.0.3/24", None, {"rr": "true"}, cid="1.0.0.9")
A = node("a", "10.0.1.1/24", "fd00::a/64")
B = node("b", "10.0.1.2/24", None, {"zone": "b"}, asn=65002)
CLIENTS = peer("clients", nodeSelector="!has(rr)", peerSelector="has(rr)")
REFLECTORS = peer("reflectors", nodeSelector="has(rr)", peerSelector="has(rr)")


def sessions(raw, family=4, name="rr", me=ME):
    plan = plan_v3(parse_resources(raw), name, me)
    return {
        (str(s.neighbor), s.port): (s.role, s.neighbor_as, s.local_as, s.cluster_id, s.next_hop_keep,
                                    s.no_source_address, s.passive, s.graceful_restart_time)
        for s in plan.family(family).sessions
    }, plan


def c(asn=64512, cid="1.0.0.1"):  # an rr client
    return (CLIENT, asn, 64512, cid, False, False, False, None)


def p(asn=64512, local=64512, keep=False, nosrc=False, grt=None):  # a plain peer
    return (PEER, asn, local, None, keep, nosrc, False, grt)


def m(asn=64512, passive=False):  # node-to-node mesh
    return (MESH, asn, 64512, None, False, False, passive, None)


CASES = {
    "reverse peering makes the non-reflectors our clients": (
        {**NO_MESH, **RR, **A, **B, **CLIENTS}, 4,
        # b (another AS) gets a session too, but eBGP is never an rr client
        {("10.0.1.1", None): c(), ("10.0.1.2", None): p(asn=65002)},
    ),
    "ebgp node by selector is a plain peer": (
        {**NO_MESH, **RR, **B, **CLIENTS}, 4, {("10.0.1.2", None): p(asn=65002)},
    ),
    "reflectors sharing a cluster id are non-clients; another cluster id is a client": (
        {**NO_MESH, **RR, **RR2, **RR_OTHER, **REFLECTORS}, 4,
        {("10.0.0.2", None): p(), ("10.0.0.3", None): c()},
    ),
    "ipv6 uses the nodes' ipv6 addresses only": (
        {**NO_MESH, **RR, **A, **B, **CLIENTS}, 6, {("fd00::a", None): c()},
    ),
    "peerIP global peer, port from global listenPort": (
        {**config("default", nodeToNodeMeshEnabled=False, listenPort=1790), **RR,
         **peer("tor", peerIP="10.9.9.9", asNumber=65000), **peer("tor2", peerIP="10.9.9.8:2000", asNumber=64512)}, 4,
        {("10.9.9.9", 1790): p(asn=65000), ("10.9.9.8", 2000): c(cid="1.0.0.1")},
    ),
    "node-specific peer for another node does not apply": (
        {**NO_MESH, **RR, **peer("x", peerIP="10.9.9.9", asNumber=65000, node="a")}, 4, {},
    ),
    "nodeSelector that does not match": (
        {**NO_MESH, **RR, **peer("x", peerIP="10.9.9.9", asNumber=65000, nodeSelector="zone == 'b'")}, 4, {},
    ),
    "peer options": (
        {**NO_MESH, **RR, **peer("x", peerIP="[fd00::99]:50", asNumber=65000, node="rr", keepOriginalNextHop=True,
                                  sourceAddress="None", maxRestartTime="90s")}, 6,
        {("fd00::99", 50): p(asn=65000, keep=True, nosrc=True, grt=90)},
    ),
    "selected node's own listen port": (
        {**NO_MESH, **RR, **A, **CLIENTS, **config("node.a", listenPort=500)}, 4, {("10.0.1.1", 500): c()},
    ),
    "reversePeering Manual: no reverse session": (
        {**NO_MESH, **RR, **A, **peer("clients", nodeSelector="!has(rr)", peerSelector="has(rr)", reversePeering="Manual")}, 4, {},
    ),
    "never a session to our own address": (
        {**NO_MESH, **RR, **peer("all", peerSelector="all()")}, 4, {},
    ),
    "mesh is ignored by a reflector with a cluster id": (
        {**RR, **A}, 4, {},
    ),
    "BGPPeer wins over the mesh for the same neighbour": (
        {**node("rr", "10.0.0.1/24"), **A, **node("z", "10.0.0.0/24"), **peer("a", peerIP="10.0.1.1", asNumber=64512)}, 4,
        # mesh is one-way: we are passive where the peer's address sorts after ours, as text
        {("10.0.1.1", None): p(), ("10.0.0.0", None): m()},
    ),
    "mesh, passive by text order like Calico": (
        {**node("rr", "10.0.0.1/24"), **node("n9", "10.0.0.9/24"), **node("n10", "10.0.0.10/24"), **node("n0", "10.0.0.0/24")}, 4,
        {("10.0.0.9", None): m(passive=True), ("10.0.0.10", None): m(passive=True), ("10.0.0.0", None): m()},
    ),
    "mesh disabled, no peers": ({**NO_MESH, **node("rr", "10.0.0.1/24"), **A}, 4, {}),
    "Calico's one-word `notin` selects (calicoctl accepts it, so must we)": (
        {**NO_MESH, **RR, **A, **B, **peer("p", nodeSelector="has(rr)", peerSelector="zone notin {'b'}")}, 4,
        {("10.0.1.1", None): c()},
    ),
    "Calico's one-word `startswith` selects": (
        {**NO_MESH, **RR, **A, **B, **peer("p", nodeSelector="has(rr)", peerSelector="zone startswith 'b'")}, 4,
        {("10.0.1.2", None): p(asn=65002)},
    ),
    "asNumber on node.<name> is ignored, as Calico ignores it (only default sets the AS)": (
        {**NO_MESH, **RR, **A, **CLIENTS, **config("node.rr", asNumber=65300), **config("node.a", asNumber=65301)}, 4,
        {("10.0.1.1", None): c()},
    ),
    "global AS and node AS": (
        {**config("default", nodeToNodeMeshEnabled=False, asNumber=65100), **node("rr", "10.0.0.1/24", cid="1.0.0.1", labels={"rr": ""}),
         **A, **B, **CLIENTS}, 4,
        {("10.0.1.1", None): (CLIENT, 65100, 65100, "1.0.0.1", False, False, False, None),
         ("10.0.1.2", None): (PEER, 65002, 65100, None, False, False, False, None)},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rules(case):
    raw, family, expected = CASES[case]
    got, plan = sessions(raw, family)
    assert got == expected
    # (most of these nodes have no IPv6 address while ME has one: that warning is expected)
    assert [w for w in plan.warnings if "no IPv6 address" not in w] == []


def test_session_names_are_symbols_and_stable():
    _, plan = sessions({**NO_MESH, **RR, **A, **CLIENTS, **peer("x", peerIP="[fd00::99]:50", asNumber=65000)}, 6)
    assert [s.name for s in plan.v6.sessions] == ["Peer_fd00__99_port_50", "Client_fd00__a"]
    _, plan = sessions({**NO_MESH, **RR, **A, **CLIENTS})
    assert [s.name for s in plan.v4.sessions] == ["Client_10_0_1_1"]


def test_missing_own_node_configures_nothing_and_says_so():
    got, plan = sessions({**NO_MESH, **A, **CLIENTS})
    assert got == {} and plan.v4.local_address is None and plan.v6.local_address is None
    assert any("no Calico Node resource named 'rr'" in w for w in plan.warnings)


@pytest.mark.parametrize("me, family, words", [
    (Identity(V4("10.0.0.5"), V6("fd00::1")), 4, "says IPv4 10.0.0.1 but this reflector is configured as 10.0.0.5"),
    (Identity(V4("10.0.0.1"), V6("fd00::5")), 6, "says IPv6 fd00::1"),
    (Identity(V4("10.0.0.1")), 6, "reflector.ip6 is empty"),
])
def test_address_disagreement_configures_nothing_for_that_family(me, family, words):
    got, plan = sessions({**NO_MESH, **RR, **A, **CLIENTS}, family, me=me)
    assert got == {} and plan.family(family).local_address is None
    assert any(words in w for w in plan.warnings), plan.warnings
    # the other family still works: our Node agrees with the settings there
    other = 6 if family == 4 else 4
    assert [(s.name, s.role) for s in plan.family(other).sessions] == (
        [("Client_10_0_1_1", CLIENT)] if other == 4 else [("Client_fd00__a", CLIENT)])


def test_node_without_ipv6_gives_no_ipv6_sessions():
    _, plan = sessions({**NO_MESH, **node("rr", "10.0.0.1/24", cid="1.0.0.1"), **A}, 6)
    assert plan.v6.local_address is None and any("no IPv6 address" in w for w in plan.warnings)


def test_conflicting_peers_warn_and_first_by_name_wins():
    got, plan = sessions({**NO_MESH, **RR, **peer("a1", peerIP="10.9.9.9", asNumber=65000),
                          **peer("b1", peerIP="10.9.9.9", asNumber=65001)})
    assert got == {("10.9.9.9", None): p(asn=65000)}
    assert plan.warnings == ("IPv4 10.9.9.9: bgppeer b1 ignored, bgppeer a1 already peers there",)


def test_unsupported_field_warns():
    _, plan = sessions({**NO_MESH, **RR, **peer("x", peerIP="10.9.9.9", asNumber=65000, filters=["f"], ttlSecurity=1)})
    assert plan.warnings == ("bgppeer x: ttlSecurity, filters not supported by the reflector; ignored",)


def test_router_id_stays_the_setting():
    _, plan = sessions({**NO_MESH, **RR})
    assert plan.router_id == V4("10.0.0.1")


def test_bad_selector_rejects_only_that_peer():
    raw = {**NO_MESH, **RR, **A, **CLIENTS, **peer("broken", peerSelector="has(rr", nodeSelector="all()")}
    data = parse_resources(raw)
    assert [r.key for r in data.rejected] == ["bgppeers/broken"] and "peerSelector" in data.rejected[0].reason
    got, _ = sessions(raw)
    assert got == {("10.0.1.1", None): c()}


@pytest.mark.parametrize("raw, words", [
    ({**config("default", asNumber="65000;"), **RR, **A, **CLIENTS},
     "etcd key bgpconfigurations/default is invalid"),
    ({**NO_MESH, **config("node.rr", listenPort=70000), **RR, **A, **CLIENTS},
     "etcd key bgpconfigurations/node.rr is invalid"),
    ({**NO_MESH, **node("rr", "10.0.0.1/24", asn="64512x"), **A, **CLIENTS},
     "etcd key nodes/rr is invalid"),
])
def test_bad_resource_every_session_rests_on_stops_the_plan(raw, words):
    """Planned without it, a bad `default` would put every session in AS 64512 and switch the
    mesh on, a bad Node of ours would drop every session: the daemon must not apply that."""
    _, plan = sessions(raw)
    assert plan.error is not None and words in plan.error, plan.error


def test_bad_resource_of_another_node_or_peer_does_not_stop_the_plan():
    raw = {**NO_MESH, **RR, **A, **CLIENTS, **node("b", "10.0.1.2/24", asn="x"),
           **config("node.b", listenPort=70000), **peer("broken", peerSelector="has(rr")}
    got, plan = sessions(raw)
    assert plan.error is None
    assert got == {("10.0.1.1", None): c()}


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_render_of_v3_options(flavour):
    raw = {**NO_MESH, **RR, **A, **CLIENTS,
           **peer("x", peerIP="10.9.9.9:50", asNumber=65000, keepOriginalNextHop=True, sourceAddress="None", maxRestartTime="2m")}
    plan = plan_v3(parse_resources(raw), "rr", ME)
    text = Renderer(flavour=flavour).render(plan)["bird"]
    suffix = "_v4" if flavour == "bird2" else ""
    keep = "  ipv4 { next hop keep; };\n" if flavour == "bird2" else "  next hop keep;\n"
    assert (f"protocol bgp Peer_10_9_9_9_port_50 from bgp_template_any_source{suffix} {{\n"
            "  description \"role=peer\";\n  local as 64512;\n  neighbor 10.9.9.9 port 50 as 65000;\n  graceful restart time 120;\n"
            f"{keep}}}\n") in text
    assert f"template bgp bgp_template_any_source{suffix} {{" in text
    assert f"protocol bgp Client_10_0_1_1 from bgp_template{suffix} {{" in text
    # without such a peer, no second template
    plan = plan_v3(parse_resources({**NO_MESH, **RR, **A, **CLIENTS}), "rr", ME)
    assert "any_source" not in Renderer(flavour=flavour).render(plan)["bird"]


@pytest.mark.parametrize("configs, expected", [
    ({}, None),
    (config("default", listenPort=150), 150),
    ({**config("default", listenPort=150), **config("node.rr", listenPort=1790)}, 1790),  # ours wins
    ({**config("default", listenPort=150), **config("node.a", listenPort=1790)}, 150),  # not ours
    (config("node.rr", listenPort=1790), 1790),
])
def test_our_listen_port_is_calicos_rule(configs, expected):
    """node.<our name> listenPort over the default's, as calico/node picks its own."""
    assert plan_v3(parse_resources({**NO_MESH, **RR, **A, **CLIENTS, **configs}), "rr", ME).listen_port == expected
    # calico/node renders it from the BGPConfiguration alone: also before our Node exists
    assert plan_v3(parse_resources({**A, **configs}), "rr", ME).listen_port == expected


def test_listen_port_rendered_for_both_flavours():
    raw = {**config("default", nodeToNodeMeshEnabled=False, listenPort=1790), **RR, **A, **CLIENTS,
           **peer("x", peerIP="10.9.9.9", asNumber=65000, sourceAddress="None")}
    plan = plan_v3(parse_resources(raw), "rr", ME)
    bird1 = Renderer(flavour="bird1").render(plan)
    for target in ("bird", "bird6"):  # both BIRD 1.6 daemons listen where the nodes connect
        head = bird1[target].split("\n\n", 1)[0]
        assert head.endswith("router id 10.0.0.1;\n"
                             "# Session times with date and seconds (show protocols, prometheus-bird-exporter uptime).\n"
                             "timeformat protocol iso long;\n"
                             "# The other Calico nodes connect to us on this port (BGPConfiguration listenPort).\n"
                             "listen bgp port 1790;"), head
    # BIRD 2 has no global `listen bgp`: every template says where to listen
    bird2 = Renderer(flavour="bird2").render(plan)["bird"]
    templates = [block for block in bird2.split("\ntemplate bgp ")[1:]]
    assert len(templates) == 3  # v4, v4 without source address, v6
    assert all("\n  local port 1790;\n" in block.split("\n}\n", 1)[0] for block in templates), bird2
    # without a listenPort nothing changes: the templates stay byte-stable
    plain = plan_v3(parse_resources({**NO_MESH, **RR, **A, **CLIENTS}), "rr", ME)
    assert plain.listen_port is None
    for text in (*Renderer(flavour="bird1").render(plain).values(), Renderer(flavour="bird2").render(plain)["bird"]):
        assert "listen bgp" not in text and "local port" not in text


@pytest.mark.parametrize("bad", [0, 65536, True, "179", 179.0])
def test_renderer_refuses_a_listen_port_out_of_range(bad):
    import dataclasses

    from rr_service.core.render import RenderError

    plan = dataclasses.replace(plan_v3(parse_resources({**NO_MESH, **RR}), "rr", ME), listen_port=bad)
    for flavour in ("bird1", "bird2"):
        with pytest.raises(RenderError, match="listen port"):
            Renderer(flavour=flavour).render(plan)


HOSTILE_NAMES = ['x; protocol bgp evil { neighbor 1.2.3.4 as 1; }', "a\nb", "}", '"', "a" * 300]


@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_hostile_values_never_reach_the_config(hostile):
    from tests.hostile.grammar import assert_only_allowed_lines

    text = json.dumps(hostile)
    raw = {**NO_MESH, **RR, **A, **CLIENTS,
           f"nodes/{hostile}": node("zz", "10.0.1.9/24")["nodes/zz"],
           "nodes/h1": node("h1", hostile, labels={"rr": "true"}, cid=hostile)["nodes/h1"],
           "nodes/h2": node("h2", "10.0.1.8/24", labels={hostile: "x"})["nodes/h2"],
           "bgppeers/h3": peer("h3", peerIP=hostile, asNumber=hostile)["bgppeers/h3"],
           "bgppeers/h4": peer("h4", peerSelector=hostile)["bgppeers/h4"],
           "bgpconfigurations/node.a": f'{{"spec": {{"listenPort": {text}}}}}'.encode(),
           "bgpconfigurations/node.rr": f'{{"spec": {{"listenPort": {text}}}}}'.encode()}
    data = parse_resources(raw)
    assert len(data.rejected) >= 6 and "bgpconfigurations/node.rr" in {r.key for r in data.rejected}
    configs = Renderer().render(plan_v3(data, "rr", ME))
    for config_text in configs.values():
        assert_only_allowed_lines(config_text)
        assert "evil" not in config_text
    assert "protocol bgp Client_10_0_1_1 " in configs["bird"]


BIRD1 = {"bird": shutil.which("bird") or "/usr/sbin/bird", "bird6": shutil.which("bird6") or "/usr/sbin/bird6"}
BIRD2 = Path(__file__).resolve().parent.parent / ".cache" / "bird2" / "usr" / "sbin" / "bird"


@pytest.mark.integration  # runs the BIRD binary
@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_bird_parses_every_v3_option(tmp_path, flavour):
    binaries = {"bird": str(BIRD2)} if flavour == "bird2" else BIRD1
    if not all(Path(b).exists() for b in binaries.values()):
        pytest.skip(f"no {flavour} binary here")
    raw = {**config("default", listenPort=1790), **node("rr", "10.0.0.1/24", "fd00::1/64", {"rr": "true"}),
           **A, **B, **CLIENTS, **RR2,
           **peer("x", peerIP="10.9.9.9:50", asNumber=65000, keepOriginalNextHop=True, sourceAddress="None", maxRestartTime="2m"),
           **peer("y", peerIP="[fd00::99]:50", asNumber=64512, keepOriginalNextHop=True, sourceAddress="None")}
    plan = plan_v3(parse_resources(raw), "rr", ME)
    assert any(s.passive for s in plan.v4.sessions)  # the mesh is on: one-way sessions too
    assert plan.listen_port == 1790  # `listen bgp port` (BIRD 1.6) / `local port` (BIRD 2)
    for target, text in Renderer(flavour=flavour).render(plan).items():
        path = tmp_path / f"{target}.conf"
        path.write_text(text)
        result = subprocess.run([binaries[target], "-p", "-c", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr + text


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_a_restart_time_bgp_cannot_carry_is_capped_and_said(flavour):
    """maxRestartTime 2h: BIRD would advertise 7200 s as 3104 s (12 bits); the config says
    4095 s, the most BGP carries, and a warning names the BGPPeer."""
    raw = {**NO_MESH, **RR, **A, **CLIENTS, **peer("tor", peerIP="10.9.9.9", asNumber=65000, maxRestartTime="2h")}
    plan = plan_v3(parse_resources(raw), "rr", ME)
    assert "bgppeer tor: maxRestartTime '2h' (7200 s) is more than the 4095 s BGP can carry (a 12-bit field): " \
           "4095 s is used" in plan.warnings
    text = Renderer(flavour=flavour).render(plan)["bird"]
    assert "  graceful restart time 4095;\n" in text and "7200" not in text
