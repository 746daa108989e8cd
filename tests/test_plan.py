"""The routing rules: who this reflector peers with, per address family."""

import ipaddress

from rr_service.calico.v1.snapshot import SnapshotParser, parse_snapshot
from rr_service.core.plan import CLIENT, MESH, Identity, protocol_name
from rr_service.calico.v1.rules import plan
from rr_service.core.render import Renderer
from tests.v1data import j

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
ME = Identity(V4("192.0.2.10"), V6("2001:db8::10"))



def sessions(raw, me=ME, family=4):
    return {str(s.neighbor): s for s in plan(parse_snapshot(raw), me).family(family).sessions}


BASE = {
    "rr_v4/192.0.2.10": j(ip="192.0.2.10", cluster_id="1.2.3.4"),
    "rr_v4/192.0.2.11": j(ip="192.0.2.11", cluster_id="1.2.3.4"),
    "rr_v6/2001:db8::10": j(ip="2001:db8::10", cluster_id="1.2.3.4"),
    "rr_v6/2001:db8::11": j(ip="2001:db8::11"),
    "global/as_num": b"64512",
    "host/a/ip_addr_v4": b"192.0.2.21",
    "host/a/ip_addr_v6": b"2001:db8::21",
    "host/b/ip_addr_v4": b"192.0.2.22",
    "host/b/ip_addr_v6": b"2001:db8::22",
}
GLOBAL_PEER = {
    "global/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="64512"),
    "global/peer_v6/2001:db8::10": j(ip="2001:db8::10", as_num="64512"),
}


def test_router_id_is_ipv4_in_both_families():
    p = plan(parse_snapshot(BASE), ME)
    assert p.router_id == V4("192.0.2.10")


def test_mesh_with_every_other_reflector_not_self():
    s = sessions(BASE)
    assert set(s) == {"192.0.2.11"}
    mesh = s["192.0.2.11"]
    assert (mesh.role, mesh.name, mesh.local_as, mesh.neighbor_as, mesh.rr_client, mesh.cluster_id) == (
        MESH, "Mesh_192_0_2_11", 64512, 64512, False, None)


def test_global_peer_makes_every_node_a_client_with_cluster_id():
    s = sessions({**BASE, **GLOBAL_PEER})
    assert set(s) == {"192.0.2.11", "192.0.2.21", "192.0.2.22"}
    client = s["192.0.2.21"]
    assert (client.role, client.name, client.rr_client, client.cluster_id) == (CLIENT, "Client_192_0_2_21", True, "1.2.3.4")


def test_global_peer_for_another_reflector_is_not_ours():
    s = sessions({**BASE, "global/peer_v4/192.0.2.11": j(ip="192.0.2.11", as_num="64512")})
    assert set(s) == {"192.0.2.11"}


def test_node_specific_peer():
    raw = {**BASE, "host/a/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="64512")}
    s = sessions(raw)
    assert set(s) == {"192.0.2.11", "192.0.2.21"}
    assert s["192.0.2.21"].rr_client


def test_ipv6_clients_compare_against_ipv6_address():
    # The seed compared IPv6 node peers with the IPv4 address: never matched.
    raw = {**BASE, "host/a/peer_v6/2001:db8::10": j(ip="2001:db8::10", as_num="64512")}
    s = sessions(raw, family=6)
    assert set(s) == {"2001:db8::11", "2001:db8::21"}
    assert s["2001:db8::21"].name == "Client_2001_db8__21"
    assert s["2001:db8::11"].name == "Mesh_2001_db8__11"
    assert sessions(raw, family=4).keys() == {"192.0.2.11"}


def test_standalone_without_own_entry_serves_clients_only():
    raw = {k: v for k, v in {**BASE, **GLOBAL_PEER}.items() if k != "rr_v4/192.0.2.10"}
    p = plan(parse_snapshot(raw), ME)
    assert not p.v4.registered
    assert {str(s.neighbor) for s in p.v4.sessions} == {"192.0.2.21", "192.0.2.22"}
    assert all(s.cluster_id is None and s.rr_client for s in p.v4.sessions)


def test_as_numbers_peer_entry_then_node_then_global():
    raw = {
        **BASE,
        "global/as_num": b"64600",
        "host/a/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="64700"),
        "host/a/as_num": b"64700",
        "host/b/peer_v4/192.0.2.10": j(ip="192.0.2.10"),
        "host/b/as_num": b"64800",
        "host/c/ip_addr_v4": b"192.0.2.23",
        "host/c/peer_v4/192.0.2.10": j(ip="192.0.2.10"),
    }
    s = sessions(raw)
    assert (s["192.0.2.21"].local_as, s["192.0.2.21"].neighbor_as) == (64700, 64700)
    assert (s["192.0.2.22"].local_as, s["192.0.2.22"].neighbor_as) == (64800, 64800)
    assert (s["192.0.2.23"].local_as, s["192.0.2.23"].neighbor_as) == (64600, 64600)
    assert (s["192.0.2.11"].local_as, s["192.0.2.11"].neighbor_as) == (64600, 64600)


def test_ebgp_node_is_a_plain_peer_not_an_rr_client():
    raw = {**BASE, "host/a/as_num": b"65001", "host/a/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="64512")}
    client = sessions(raw)["192.0.2.21"]
    assert (client.local_as, client.neighbor_as, client.rr_client, client.cluster_id) == (64512, 65001, False, None)


def test_one_session_per_neighbour():
    raw = {
        **BASE,
        **GLOBAL_PEER,
        "host/a/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="64512"),  # global and specific
        "host/rr2/ip_addr_v4": b"192.0.2.11",  # a reflector listed as a node: mesh wins
        "host/me/ip_addr_v4": b"192.0.2.10",  # this reflector listed as a node: no session
        "host/twin/ip_addr_v4": b"192.0.2.22",  # two nodes, one address
    }
    p = plan(parse_snapshot(raw), ME)
    names = [s.name for s in p.v4.sessions]
    assert len(names) == len(set(names))
    s = {str(x.neighbor): x for x in p.v4.sessions}
    assert set(s) == {"192.0.2.11", "192.0.2.21", "192.0.2.22"}
    assert s["192.0.2.11"].role == MESH
    assert any(w.startswith("2 nodes claim the address 192.0.2.22: ") for w in p.warnings)
    assert any("own address 192.0.2.10" in w for w in p.warnings)


def test_no_ipv6_address_means_no_ipv6_sessions():
    p = plan(parse_snapshot({**BASE, **GLOBAL_PEER}), Identity(V4("192.0.2.10")))
    assert p.v6.local_address is None and p.v6.sessions == ()


def test_names_are_stable_and_valid_symbols():
    for address in (V4("192.0.2.1"), V6("2001:db8::1"), V6("2001:db8:0:0:1::1"), V6("::ffff:192.0.2.1")):
        name = protocol_name(CLIENT, address)
        assert name == protocol_name(CLIENT, ipaddress.ip_address(str(address)))
        assert name.replace("_", "a").isalnum() and not name[0].isdigit()


def test_order_is_deterministic():
    raw = {**BASE, **GLOBAL_PEER}
    assert plan(parse_snapshot(raw), ME) == plan(parse_snapshot(dict(reversed(list(raw.items())))), ME)


def test_many_nodes_sharing_one_address_block_no_other_peer():
    # 400 nodes that autodetected docker0's 172.17.0.1: one session, the earliest claim's,
    # and a bounded warning naming the others.
    raw = {**BASE, **GLOBAL_PEER}
    created = {}
    for i in range(400):
        key = f"host/worker-{i:03d}.cluster.example.net/ip_addr_v4"
        raw[key], created[key] = b"172.17.0.1", 1000 - i  # the last name was created first
    the_plan = plan(SnapshotParser(created).reset(raw), ME)
    configs = {flavour: Renderer(flavour=flavour).render(the_plan) for flavour in ("bird1", "bird2")}
    for texts in configs.values():
        text = texts["bird"]
        for name in ("Client_172_17_0_1", "Client_192_0_2_21", "Client_192_0_2_22", "Mesh_192_0_2_11"):
            assert f"protocol bgp {name} from" in text
        assert text.count("protocol bgp Client_172_17_0_1 ") == 1
        assert "# client: worker-399.cluster.example.net\n" in text
    [warning] = [w for w in the_plan.warnings if "172.17.0.1" in w]
    assert warning.startswith("400 nodes claim the address 172.17.0.1: node worker-399.cluster.example.net keeps "
                              "its session (the running session, else the earliest claim); ignored: "
                              "worker-398.cluster.example.net, ")
    assert "worker-389.cluster.example.net, and 389 more" in warning and len(warning) < 1000


def plan_error(raw, me=ME):
    return plan(parse_snapshot(raw), me).error


def test_valid_data_has_no_plan_error():
    assert plan_error({**BASE, **GLOBAL_PEER}) is None
    assert plan_error({}) is None  # absent global/as_num: Calico's default, not an error


def test_invalid_global_as_makes_the_plan_unusable():
    # Falling back to 64512 would restart every session in the wrong AS.
    error = plan_error({**BASE, **GLOBAL_PEER, "global/as_num": b"65000;"})
    assert error.startswith("etcd key global/as_num is invalid (AS number '65000;' is not a number)")
    assert "every session's AS" in error


def test_invalid_entries_of_our_own_make_the_plan_unusable():
    bad_own = {**BASE, **GLOBAL_PEER, "rr_v4/192.0.2.10": j(ip="192.0.2.10", cluster_id="1.2.3")}
    assert "rr_v4/192.0.2.10 is invalid (cluster_id '1.2.3'" in plan_error(bad_own)
    assert plan_error(bad_own, Identity(V4("192.0.2.11"))) is None  # someone else's entry
    bad_peer = {**BASE, **GLOBAL_PEER, "global/peer_v6/2001:db8::10": j(ip="2001:db8::10", as_num="64512;")}
    assert "global/peer_v6/2001:db8::10 is invalid" in plan_error(bad_peer)
    assert "IPv6 clients" in plan_error(bad_peer)
    assert plan_error(bad_peer, Identity(V4("192.0.2.10"))) is None  # no IPv6 here
    # a key that is not an address cannot name us
    assert plan_error({**BASE, "global/peer_v4/192.0.2.010": j(ip="192.0.2.10")}) is None
    # a key whose control characters pad our address: named repr'd
    error = plan_error({**BASE, "rr_v4/192.0.2.10\n": j(ip="192.0.2.10", cluster_id="x")})
    assert "'rr_v4/192.0.2.10\\n'" in error and "\n" not in error


def test_an_invalid_key_of_one_node_costs_only_that_node():
    raw = {**BASE, **GLOBAL_PEER, "host/a/as_num": b"65000;", "host/b/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="x")}
    the_plan = plan(parse_snapshot(raw), ME)
    assert the_plan.error is None
    assert {str(s.neighbor) for s in the_plan.v4.sessions} == {"192.0.2.11", "192.0.2.21", "192.0.2.22"}
