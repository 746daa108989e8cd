"""The reflector end to end: real etcd, real BIRD 1.6, the real daemon, and
Calico-like nodes, each a network namespace of its own (see conftest.py).

Everything polls with deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import json

import pytest

from tests import prereq
from tests.lab import (Lab, calico_node_bird_config, handwritten_rr_config, proto_name,
                       requirements_missing, wait_for)
from tests.lab.world import AS_NUM, CLUSTER_ID, NODES, RR1, RR2, World

pytestmark = pytest.mark.integration

SESSION_TIMEOUT = 60
FAMILIES = [pytest.param(4, id="ipv4"), pytest.param(6, id="ipv6")]


def _rr_ip(rr, family: int) -> str:
    return rr[1] if family == 4 else rr[2]


def _node_ip(name: str, family: int) -> str:
    spec = NODES[name]
    return spec.ipv4 if family == 4 else spec.ipv6


def _block(name: str, family: int) -> str:
    spec = NODES[name]
    return spec.block4 if family == 4 else spec.block6


def _client(name: str, family: int) -> str:
    return proto_name("Client", _node_ip(name, family))


def _assert_reflected(route, origin: str, rr_ip: str) -> None:
    """A route at a node that the reflector reflected from node `origin`."""
    assert route is not None
    assert route.originator_id == NODES[origin].ipv4, route.excerpt()  # router id: IPv4
    assert CLUSTER_ID in route.cluster_list, route.excerpt()
    assert route.from_ == rr_ip, route.excerpt()
    assert route.protocol == proto_name("Node", rr_ip), route.excerpt()


# -- Step 1: the routing design, without the product --------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_design_handwritten_rr_reflects(family):
    """A reflector config in the style of the original calico/routereflector
    image (router id, `protocol device`, the bgp_template, `rr client` +
    `rr cluster id`) is all BIRD 1.6 needs: the reflector has no route to the
    nodes' next hops (no `protocol direct`/kernel), shows the routes as
    `unreachable`, and still reflects them unchanged."""
    prereq.need(requirements_missing(need_etcd=False))
    rr_ip = _rr_ip(RR1, family)
    with Lab() as lab:
        rr = lab.add_host("rr", RR1[1], RR1[2])
        hosts = {n: lab.add_host(n, NODES[n].ipv4, NODES[n].ipv6) for n in ("a", "b")}
        rr_bird = lab.start_bird(rr, handwritten_rr_config(
            rr_ip, [_node_ip(n, family) for n in hosts], as_num=AS_NUM,
            cluster_id=CLUSTER_ID, router_id=RR1[1]), family=family)
        birds = {n: lab.start_bird(h, calico_node_bird_config(
            _node_ip(n, family), AS_NUM, rr_ip, _block(n, family),
            router_id=NODES[n].ipv4, family=family), family=family)
            for n, h in hosts.items()}
        rr_bird.wait_established([_client(n, family) for n in hosts], SESSION_TIMEOUT)
        for n, b in birds.items():
            b.wait_established(proto_name("Node", rr_ip), SESSION_TIMEOUT)

        at_b = birds["b"].wait_route(_block("a", family), SESSION_TIMEOUT,
                                     pred=lambda r: r.protocol != "static1")
        _assert_reflected(at_b, "a", rr_ip)
        assert at_b.next_hop == _node_ip("a", family), at_b.excerpt()
        at_a = birds["a"].wait_route(_block("b", family), SESSION_TIMEOUT,
                                     pred=lambda r: r.protocol != "static1")
        _assert_reflected(at_a, "b", rr_ip)
        # The design point: at the reflector the next hop does not resolve.
        at_rr = rr_bird.route(_block("a", family))
        assert at_rr is not None and "unreachable" in at_rr.line, at_rr


# -- Step 2: the product ------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_sessions_established_and_routes_reflected(world: World, family):
    rr1 = world.rr1
    rr_ip = _rr_ip(RR1, family)
    rr1.wait_established([_client("a", family), _client("b", family)], family, SESSION_TIMEOUT)
    for n in ("a", "b"):
        world.nodes[n].bird_for(family).wait_established(proto_name("Node", rr_ip), SESSION_TIMEOUT)

    at_b = world.nodes["b"].bird_for(family).wait_route(
        _block("a", family), SESSION_TIMEOUT, pred=lambda r: r.protocol != "static1")
    _assert_reflected(at_b, "a", rr_ip)
    assert at_b.next_hop == _node_ip("a", family), at_b.excerpt()
    at_a = world.nodes["a"].bird_for(family).wait_route(
        _block("b", family), SESSION_TIMEOUT, pred=lambda r: r.protocol != "static1")
    _assert_reflected(at_a, "b", rr_ip)
    # No session towards the reflector itself, nor for the other family.
    protos = rr1.bird_for(family).bgp_protocols()
    assert proto_name("Client", rr_ip) not in protos
    assert proto_name("Mesh", rr_ip) not in protos
    if rr1.flavour == "bird1":  # BIRD 1.6 runs one daemon per family; BIRD 2 and 3 one for both
        other = 6 if family == 4 else 4
        assert not [p for p in protos if p == _client("a", other)]


def test_status_counts_each_clients_routes(world: World):
    """`calico-rr status --json` reads each client session's routes from BIRD's own `show
    protocols all` (its wording differs between BIRD 1.6, 2 and 3): one block each."""
    rr1 = world.rr1
    clients = {family: [_client(n, family) for n in ("a", "b")] for family in (4, 6)}
    for family, names in clients.items():
        rr1.wait_established(names, family, SESSION_TIMEOUT)

    def counted():
        rows = json.loads(rr1.cli("status", "--json").stdout)["sessions"]
        routes = {row["protocol"]: row.get("routes") for row in rows if row["role"] == "client"}
        wanted = {"imported": 1, "filtered": 0, "limit_hit": False}
        return routes if all(routes.get(n) == wanted for names in clients.values() for n in names) else None
    wait_for(counted, SESSION_TIMEOUT, what="one route counted per client session",
             describe=lambda: rr1.cli("status").stdout)


def test_node_added_and_removed_without_disturbing_others(world: World):
    """Node c joins and leaves with an IPv4 and an IPv6 address (bird and bird6 on the node):
    its sessions come up and go down in both families, and no other session restarts, on the
    reflector or on the nodes. Both families in one scenario, on one world."""
    rr1 = world.rr1
    families = (4, 6)
    old = {f: [_client("a", f), _client("b", f)] for f in families}
    before = {f: rr1.wait_established(old[f], f, SESSION_TIMEOUT) for f in families}
    node_side_before = {f: world.nodes["a"].bird_for(f).protocols()[proto_name("Node", _rr_ip(RR1, f))]
                        for f in families}

    c = world.add_node("c", [RR1[1]], [RR1[2]])
    try:
        world.calico.add_node("c", NODES["c"].ipv4, NODES["c"].ipv6)  # peers via the global peer entries
        for f in families:
            after = rr1.wait_established(old[f] + [_client("c", f)], f, SESSION_TIMEOUT)
            c.bird_for(f).wait_established(proto_name("Node", _rr_ip(RR1, f)), SESSION_TIMEOUT)
            for name in old[f]:
                assert after[name].same_run_as(before[f][name]), (
                    f"{name} restarted when node c was added: {before[f][name]} -> {after[name]}")
            # Node c sees the others' routes through the reflector.
            _assert_reflected(c.bird_for(f).wait_route(_block("a", f), SESSION_TIMEOUT,
                                                       pred=lambda r: r.protocol != "static1"),
                              "a", _rr_ip(RR1, f))

        world.calico.remove_node("c")
        for f in families:
            rr_bird = rr1.bird_for(f)
            wait_for(lambda: (rr1.assert_alive(), _client("c", f) not in rr_bird.protocols())[1],
                     SESSION_TIMEOUT, what=f"{_client('c', f)} removed on rr1",
                     describe=lambda: rr_bird.birdc("show protocols"))
            final = rr_bird.protocols()
            for name in old[f]:
                assert final[name].same_run_as(before[f][name]), (
                    f"{name} restarted when node c was removed: {before[f][name]} -> {final[name]}")
            node_side_after = world.nodes["a"].bird_for(f).protocols()[proto_name("Node", _rr_ip(RR1, f))]
            assert node_side_after.same_run_as(node_side_before[f]), (node_side_before[f], node_side_after)
            # Its route is withdrawn at the other nodes.
            wait_for(lambda: world.nodes["a"].bird_for(f).route(_block("c", f)) is None, SESSION_TIMEOUT,
                     what=f"node c's IPv{f} block withdrawn at node a")
    finally:
        world.calico.remove_node("c")
        for bird in (c.bird, c.bird6):
            if bird is not None:
                bird.stop()


def test_second_reflector_forms_mesh(world: World, rr2):
    rr1 = world.rr1
    clients = [_client("a", 4), _client("b", 4)]
    before = rr1.wait_established(clients, 4, SESSION_TIMEOUT)
    for family in (4, 6):
        m1 = proto_name("Mesh", _rr_ip(RR2, family))
        m2 = proto_name("Mesh", _rr_ip(RR1, family))
        rr1.wait_established(m1, family, SESSION_TIMEOUT)
        rr2.wait_established(m2, family, SESSION_TIMEOUT)
        # rr2 is named by no node: it has no clients ...
        protos2 = rr2.bird_for(family).bgp_protocols()
        assert [n for n in protos2 if n.startswith("Client_")] == [], protos2
        # ... but learns the nodes' routes from rr1 over the mesh.
        r = rr2.bird_for(family).wait_route(_block("a", family), SESSION_TIMEOUT)
        assert r.protocol == m2, r.excerpt()
        assert r.originator_id == NODES["a"].ipv4, r.excerpt()
    after = rr1.bird_for(4).protocols()
    for name in clients:
        assert after[name].same_run_as(before[name]), (
            f"{name} restarted when the second reflector joined: {before[name]} -> {after[name]}")


def test_node_specific_peering(world: World, rr2):
    """Node d names rr2 in its own host/d/peer_v4 entry: rr2 serves it.
    Node e names only rr1: rr2 has no session for it.  (Both also peer with
    rr1 through the global entry.)"""
    rr1 = world.rr1
    e = world.add_node("e", [RR1[1]])
    d = world.add_node("d", [RR1[1], RR2[1]])
    try:
        # e first: once rr2 has caught up with d, it has seen e too.
        world.calico.add_node("e", NODES["e"].ipv4)
        world.calico.add_node_peer("e", RR1[1], AS_NUM)
        world.calico.add_node("d", NODES["d"].ipv4)
        world.calico.add_node_peer("d", RR2[1], AS_NUM)

        rr2.wait_established(_client("d", 4), 4, SESSION_TIMEOUT)
        d.bird.wait_established([proto_name("Node", RR1[1]), proto_name("Node", RR2[1])],
                                SESSION_TIMEOUT)
        rr1.wait_established([_client("d", 4), _client("e", 4)], 4, SESSION_TIMEOUT)
        protos2 = rr2.bird_for(4).bgp_protocols()
        assert _client("e", 4) not in protos2, protos2
        assert sorted(n for n in protos2 if n.startswith("Client_")) == [_client("d", 4)], protos2
        # d gets a's route from both reflectors.
        routes = wait_for(lambda: {r.from_ for r in d.bird.routes(_block("a", 4))}
                          >= {RR1[1], RR2[1]} and d.bird.routes(_block("a", 4)),
                          SESSION_TIMEOUT, what="a's block at d from both reflectors",
                          describe=lambda: d.bird.birdc("show route all"))
        for r in routes:
            assert r.originator_id == NODES["a"].ipv4, r.excerpt()
    finally:
        world.calico.remove_node("d")
        world.calico.remove_node("e")
        d.bird.stop()
        e.bird.stop()
