"""Two reflectors outside a Calico v3 cluster, end to end: no Node for either, each declared by
`calico-rr register` (one global BGPPeer per family with its address as peerIP), real BIRD
nodes configured the way calico/node configures itself for a `peerIP` peer, real etcd.

Topology (a lab of its own, see tests/lab):

    etcd   192.0.2.2
    rr1    192.0.2.10  2001:db8::10   reflector on BIRD 1.6 (bird + bird6)
    rr2    192.0.2.11  2001:db8::11   reflector on BIRD 2
    a      192.0.2.21  2001:db8::21   Node a, exports 198.51.100.0/26, 2001:db8:1::/64
    b      192.0.2.22  2001:db8::22   Node b, exports 198.51.100.64/26, 2001:db8:2::/64
    c      192.0.2.23                 added and removed live (IPv4 only)

Data: BGPConfiguration default {nodeToNodeMeshEnabled: false, asNumber: 64500}, the Nodes of
a and b, and what `register --cluster-id 244.0.0.1` writes on each reflector. Nothing else is
typed on either reflector. The AS is 64500, not Calico's default, so sessions only come up if
the reflectors take it from the BGPConfiguration (register's default for asNumber).

Everything polls with deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import json
from typing import Dict

import pytest

from tests.failure_logs import failed_fixture
from tests import prereq
from tests.integration.v3data import V3_PREFIX, V3Data, v3_reflector, wait_reflected
from tests.lab import Reflector, calico_node_bird_config, proto_name, need_rr_service, wait_for
from tests.lab.world import ETCD_IP, NODES, Node

pytestmark = pytest.mark.integration

TIMEOUT = 60
AS_NUM = 64500
CLUSTER_ID = "244.0.0.1"
REFLECTORS = {"rr1": ("192.0.2.10", "2001:db8::10", "bird1"), "rr2": ("192.0.2.11", "2001:db8::11", "bird2")}
FAMILIES = [pytest.param(4, id="ipv4"), pytest.param(6, id="ipv6")]


def rr_ip(name: str, family: int) -> str:
    return REFLECTORS[name][0 if family == 4 else 1]


def node_ip(name: str, family: int) -> str:
    return NODES[name].ipv4 if family == 4 else NODES[name].ipv6


def block(name: str, family: int) -> str:
    return NODES[name].block4 if family == 4 else NODES[name].block6


def other(rr: str) -> str:
    return "rr2" if rr == "rr1" else "rr1"


def expected(rr: str, family: int, nodes=("a", "b"), mesh=True) -> list:
    names = [proto_name("Client", node_ip(n, family)) for n in nodes]
    return names + ([proto_name("Mesh", rr_ip(other(rr), family))] if mesh else [])


def bgp_sessions(rr: Reflector, family: int) -> Dict[str, object]:
    """The BGP protocols of `family` (BIRD 2 runs both families in one daemon)."""
    return {n: p for n, p in rr.bird_for(family).protocols().items()
            if p.proto == "BGP" and ("_2001_db8_" in n) == (family == 6)}


class Cluster:
    def __init__(self, lab, etcd):
        self.lab, self.etcd = lab, etcd
        self.data = V3Data(etcd)
        self.rrs: Dict[str, Reflector] = {}
        self.nodes: Dict[str, Node] = {}

    def start_node(self, name: str, reflectors=tuple(REFLECTORS), ipv6: bool = True) -> Node:
        """Host + BIRD (+ BIRD6) for node `name`, with one session per reflector, as
        calico/node renders a global BGPPeer with peerIP: neighbor <peerIP> as <asNumber>."""
        spec = NODES[name]
        use6 = ipv6 and spec.ipv6 is not None
        node = self.nodes.get(name) or Node(spec, self.lab.add_host(name, spec.ipv4, spec.ipv6 if use6 else None))
        node.bird = self._bird(node.bird, node, calico_node_bird_config(
            spec.ipv4, AS_NUM, [rr_ip(r, 4) for r in reflectors], spec.block4), 4)
        if use6:
            node.bird6 = self._bird(node.bird6, node, calico_node_bird_config(
                spec.ipv6, AS_NUM, [rr_ip(r, 6) for r in reflectors], spec.block6,
                router_id=spec.ipv4, family=6), 6)
        self.nodes[name] = node
        return node

    def _bird(self, running, node: Node, text: str, family: int):
        if running is None:
            return self.lab.start_bird(node.host, text, family=family)
        running.reconfigure(text)  # as calico/node does when its BGPPeers change
        return running

    def put_node(self, name: str, ipv6: bool = True) -> None:
        spec = NODES[name]
        self.data.node(name, ipv4=f"{spec.ipv4}/24", ipv6=f"{spec.ipv6}/64" if ipv6 and spec.ipv6 else None)


@pytest.fixture(scope="module")
def flavour():
    """Each reflector picks its own BIRD below (rr1 BIRD 1.6, rr2 BIRD 2): one lab."""
    return "bird1"


@pytest.fixture(scope="module")
def cluster(lab):
    need_rr_service()
    bird2 = prereq.bird2_or_missing()
    c = Cluster(lab, lab.start_etcd(lab.add_host("etcd", ETCD_IP)))
    c.data.bgp_configuration("default", nodeToNodeMeshEnabled=False, asNumber=AS_NUM)
    for name in ("a", "b"):
        c.put_node(name)
    for name, (ip4, ip6, flavour) in REFLECTORS.items():
        rr = v3_reflector(lab, name, c.etcd, ip4, ip6, "auto", flavour=flavour, bird_binary=str(bird2))
        out = rr.cli("register", "--cluster-id", CLUSTER_ID).stdout
        assert f"created {V3_PREFIX}/bgppeers/calico-rr-{name}-ipv4" in out, out
        c.rrs[name] = rr
    for name in ("a", "b"):
        c.start_node(name)
    try:
        for rr in c.rrs.values():
            rr.start()
        yield c
    finally:
        for rr in c.rrs.values():
            rr.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    yield
    c = failed_fixture(request, "cluster")
    if c is None:
        return
    for name, rr in c.rrs.items():
        print(f"===== rr_service log on {name} (tail) =====\n{rr.log()[-5000:]}")
        for b in {id(x): x for x in (rr.bird, rr.bird6) if x is not None}.values():
            try:
                print(f"===== {b.config_path} =====\n{b.config_path.read_text()[-3000:]}")
                print(b.birdc("show protocols"))
            except Exception as exc:  # diagnostics only
                print(f"(failed: {exc})")


def test_register_wrote_one_global_bgppeer_per_family(cluster: Cluster):
    stored = json.loads(cluster.etcd.get(f"{V3_PREFIX}/bgppeers/calico-rr-rr2-ipv6"))
    assert stored["spec"] == {"peerIP": "2001:db8::11", "asNumber": AS_NUM}
    assert stored["metadata"]["labels"] == {"calico-rr/reflector": "rr2", "calico-rr/cluster-id": CLUSTER_ID}
    assert cluster.etcd.get(f"{V3_PREFIX}/nodes/rr1") is None and cluster.etcd.get(f"{V3_PREFIX}/nodes/rr2") is None


@pytest.mark.parametrize("family", FAMILIES)
def test_nodes_are_clients_and_the_reflectors_meshed(cluster: Cluster, family):
    for name, rr in cluster.rrs.items():
        want = expected(name, family)
        rr.wait_established(want, family, TIMEOUT)
        assert sorted(bgp_sessions(rr, family)) == sorted(want)
        bird = rr.bird_for(family)
        client = bird.birdc(f"show protocols all {proto_name('Client', node_ip('a', family))}")
        assert "reflector" in client.split("Session:", 1)[1].splitlines()[0], client
        mesh = bird.birdc(f"show protocols all {proto_name('Mesh', rr_ip(other(name), family))}")
        assert "reflector" not in mesh.split("Session:", 1)[1].splitlines()[0], mesh
    for n in ("a", "b"):
        cluster.nodes[n].bird_for(family).wait_established(
            [proto_name("Node", rr_ip(r, family)) for r in REFLECTORS], TIMEOUT)


def test_status_says_external_reflector_and_which_rule(cluster: Cluster):
    out = cluster.rrs["rr1"].cli("status").stdout
    assert ("IPv4: external reflector: 1 BGPPeer names 192.0.2.10, declared by bgppeer calico-rr-rr1-ipv4, "
            f"cluster id {CLUSTER_ID}") in out, out
    client = next(line for line in out.splitlines() if " Client_192_0_2_21 " in line)
    assert client.endswith("bgppeer calico-rr-rr1-ipv4 (peerIP names us)"), out
    mesh = next(line for line in out.splitlines() if " Mesh_192_0_2_11 " in line)
    assert mesh.split()[:2] == ["IPv4", "mesh"] and mesh.endswith("reflector mesh (bgppeer calico-rr-rr2-ipv4)"), out
    assert "no Calico Node" not in cluster.rrs["rr1"].log()


@pytest.mark.parametrize("family", FAMILIES)
def test_routes_reflected_through_both(cluster: Cluster, family):
    rr_ips = {rr_ip(r, family) for r in REFLECTORS}
    for src, dst in (("a", "b"), ("b", "a")):
        wait_reflected(cluster.nodes[dst].bird_for(family), block(src, family), rr_ips, NODES[src].ipv4,
                       node_ip(src, family), CLUSTER_ID, TIMEOUT)


def test_node_added_and_removed_live(cluster: Cluster):
    before = {(name, family): rr.wait_established(expected(name, family), family, TIMEOUT)
              for name, rr in cluster.rrs.items() for family in (4, 6)}

    def assert_undisturbed(when: str) -> None:
        for (name, family), protos in before.items():
            now = bgp_sessions(cluster.rrs[name], family)
            for proto in expected(name, family):
                assert now[proto].same_run_as(protos[proto]), f"{proto} on {name} restarted when {when}"

    c = cluster.start_node("c", ipv6=False)
    try:
        cluster.put_node("c", ipv6=False)
        for name, rr in cluster.rrs.items():
            rr.wait_established(expected(name, 4, ("a", "b", "c")), 4, TIMEOUT)
        c.bird.wait_established([proto_name("Node", rr_ip(r, 4)) for r in REFLECTORS], TIMEOUT)
        assert_undisturbed("node c was added")
        r = cluster.nodes["a"].bird.wait_route(block("c", 4), TIMEOUT, pred=lambda r: r.protocol != "static1")
        assert r.originator_id == NODES["c"].ipv4 and r.cluster_list == [CLUSTER_ID], r.excerpt()

        cluster.data.delete("Node", "c")
        for name, rr in cluster.rrs.items():
            bird = rr.bird_for(4)
            wait_for(lambda: (rr.assert_alive(), proto_name("Client", NODES["c"].ipv4) not in bird.protocols())[1],
                     TIMEOUT, what=f"node c's session removed on {name}", describe=lambda: bird.birdc("show protocols"))
        assert_undisturbed("node c was removed")
        wait_for(lambda: cluster.nodes["a"].bird.route(block("c", 4)) is None, TIMEOUT,
                 what="node c's block withdrawn at node a")
    finally:
        cluster.data.delete("Node", "c")
        c.bird.stop()


def test_one_reflector_unregistered_the_other_keeps_reflecting(cluster: Cluster):
    """rr2 leaves: its BGPPeers go, rr1 drops its mesh session to it (and nothing else), the
    nodes drop theirs (as calico/node does once the BGPPeer is gone), and routes flow through
    rr1 alone. rr2's own daemon holds back dropping all its sessions until `accept`."""
    rr1, rr2 = cluster.rrs["rr1"], cluster.rrs["rr2"]
    kept = {family: rr1.wait_established(expected("rr1", family), family, TIMEOUT) for family in (4, 6)}
    out = rr2.cli("unregister").stdout
    assert f"removed {V3_PREFIX}/bgppeers/calico-rr-rr2-ipv4" in out and "calico-rr accept" in out, out
    for family in (4, 6):
        mesh = proto_name("Mesh", rr_ip("rr2", family))
        bird = rr1.bird_for(family)
        wait_for(lambda: mesh not in bird.protocols(), TIMEOUT, what=f"{mesh} gone on rr1",
                 describe=lambda: bird.birdc("show protocols"))
        now = bgp_sessions(rr1, family)
        assert sorted(now) == sorted(expected("rr1", family, mesh=False))
        for proto in now:
            assert now[proto].same_run_as(kept[family][proto]), f"{proto} on rr1 restarted"
    for n in ("a", "b"):
        cluster.start_node(n, reflectors=("rr1",))
    # rr2 holds its sessions back (drop guard) until told: then it runs none
    wait_for(lambda: "HELD BACK" in rr2.cli("status").stdout, TIMEOUT, what="rr2 holding back")
    assert "held back" in rr2.cli("accept").stdout
    wait_for(lambda: not bgp_sessions(rr2, 4) and not bgp_sessions(rr2, 6), TIMEOUT, what="rr2 without sessions",
             describe=lambda: rr2.bird.birdc("show protocols") + rr2.log()[-2000:])
    for family in (4, 6):
        bird = cluster.nodes["b"].bird_for(family)
        wait_for(lambda: [r.from_ for r in bird.routes(block("a", family)) if r.protocol != "static1"]
                 == [rr_ip("rr1", family)], TIMEOUT, what=f"a's block at b from rr1 alone (IPv{family})",
                 describe=lambda: bird.birdc("show route all"))
