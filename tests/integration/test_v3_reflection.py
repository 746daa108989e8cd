"""The reflector end to end with Calico v3 data: real etcd holding the resources the way
calicoctl stores them, two reflector hosts each running real BIRD 1.6 and the real daemon,
and Calico nodes running real BIRD configured the way calico/node configures itself for
this data (each node peers with both reflectors).

Topology (a lab of its own, see tests/lab):

    etcd   192.0.2.2
    rr1    192.0.2.10  2001:db8::10   Node rr1, route-reflector=true, cluster id 244.0.0.1, schema "v3"
    rr2    192.0.2.11  2001:db8::11   Node rr2, route-reflector=true, cluster id 244.0.0.1, schema "auto"
    a      192.0.2.21  2001:db8::21   Node a, exports 198.51.100.0/26, 2001:db8:1::/64
    b      192.0.2.22  2001:db8::22   Node b, exports 198.51.100.64/26, 2001:db8:2::/64
    c      192.0.2.23                 added and removed live (IPv4 only)

and, for our own listenPort, a second cluster (its own etcd) of node-to-node mesh members:

    etcd-mesh 192.0.2.3
    rr3    192.0.2.12   reflector on BIRD 1.6, no cluster id
    rr4    192.0.2.13   reflector on BIRD 2, no cluster id
    rr5    192.0.2.14   reflector on BIRD 3, no cluster id
    d      192.0.2.24   Calico node; every node listens on 1790 (BGPConfiguration listenPort)

Data: BGPConfiguration default {nodeToNodeMeshEnabled: false, asNumber: 64500};
BGPPeer peer-with-route-reflectors {nodeSelector: "!has(route-reflector)",
peerSelector: "has(route-reflector)"}; BGPPeer rr-mesh {nodeSelector/peerSelector:
"has(route-reflector)"}.

The cluster id is 244.0.0.1, the value Calico's own route-reflector docs use ("typically an
unused IPv4 address": 240.0.0.0/4 is reserved, so it can never be mistaken for a host).
Both reflectors share it, as Calico recommends for redundant reflectors: they peer as
non-clients (`Peer_...`), and a route one reflects carries 244.0.0.1 in its cluster list.
(Each reflector also keeps the other's reflected copy as a backup path: BIRD's
`rr cluster id` is per session and, like calico/node, the reflector sets it on client
sessions only, so the peer session's loop check uses the router id. The client's own
path wins, so the nodes see every route reflected exactly once.)
The AS is 64500 (RFC 5398 documentation range), not Calico's default 64512, so sessions only
come up if the reflector really takes the AS from the BGPConfiguration.

Everything polls with deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict

import pytest

from tests.failure_logs import failed_fixture
from tests.integration.v3data import V3Data, v3_reflector
from tests import prereq
from tests.lab import (Etcd, Lab, Reflector, calico_node_bird_config, proto_name,
                       need_rr_service, wait_for)
from tests.lab.world import ETCD_IP, NODES, Node

pytestmark = pytest.mark.integration

SESSION_TIMEOUT = 60
AS_NUM = 64500
CLUSTER_ID = "244.0.0.1"
RR_LABEL = {"route-reflector": "true"}
# name -> (IPv4, IPv6, [etcd] schema)
REFLECTORS = {"rr1": ("192.0.2.10", "2001:db8::10", "v3"),
              "rr2": ("192.0.2.11", "2001:db8::11", "auto")}
FAMILIES = [pytest.param(4, id="ipv4"), pytest.param(6, id="ipv6")]


def _rr_ip(name: str, family: int) -> str:
    return REFLECTORS[name][0 if family == 4 else 1]


def _node_ip(name: str, family: int) -> str:
    return NODES[name].ipv4 if family == 4 else NODES[name].ipv6


def _block(name: str, family: int) -> str:
    return NODES[name].block4 if family == 4 else NODES[name].block6


def _client(name: str, family: int) -> str:
    return proto_name("Client", _node_ip(name, family))


def _to_rr(name: str, family: int) -> str:
    """A Calico node's session towards reflector `name`."""
    return proto_name("Node", _rr_ip(name, family))


def _other(rr: str) -> str:
    return "rr2" if rr == "rr1" else "rr1"


@dataclass
class V3Cluster:
    lab: Lab
    etcd: Etcd
    data: V3Data
    rrs: Dict[str, Reflector] = field(default_factory=dict)
    nodes: Dict[str, Node] = field(default_factory=dict)

    def start_node(self, name: str, ipv6: bool = True) -> Node:
        """Host + BIRD (and BIRD6) for Calico node `name`, peering with both reflectors as
        calico/node does for this data. Writes nothing to etcd."""
        spec = NODES[name]
        use6 = ipv6 and spec.ipv6 is not None
        host = self.lab.add_host(name, spec.ipv4, spec.ipv6 if use6 else None)
        node = Node(spec, host)
        node.bird = self.lab.start_bird(host, calico_node_bird_config(
            spec.ipv4, AS_NUM, [_rr_ip(r, 4) for r in REFLECTORS], spec.block4))
        if use6:
            node.bird6 = self.lab.start_bird(host, calico_node_bird_config(
                spec.ipv6, AS_NUM, [_rr_ip(r, 6) for r in REFLECTORS], spec.block6,
                router_id=spec.ipv4, family=6), family=6)
        self.nodes[name] = node
        return node

    def put_node(self, name: str, ipv6: bool = True) -> None:
        """Node resource of a Calico node: addresses in CIDR notation, no labels."""
        spec = NODES[name]
        self.data.node(name, ipv4=f"{spec.ipv4}/24",
                       ipv6=f"{spec.ipv6}/64" if ipv6 and spec.ipv6 else None)


@pytest.fixture(scope="module")
def flavour():
    """The v3 data path does not depend on the BIRD flavour (tests/integration/conftest.py
    runs the core scenarios on both): one lab, BIRD 1.6."""
    return "bird1"

@pytest.fixture(scope="module")
def cluster(lab):
    need_rr_service()
    etcd = lab.start_etcd(lab.add_host("etcd", ETCD_IP))
    data = V3Data(etcd)
    c = V3Cluster(lab, etcd, data)

    data.bgp_configuration("default", logSeverityScreen="Info",
                           nodeToNodeMeshEnabled=False, asNumber=AS_NUM)
    data.bgp_peer("peer-with-route-reflectors",
                  nodeSelector="!has(route-reflector)", peerSelector="has(route-reflector)")
    data.bgp_peer("rr-mesh", nodeSelector="has(route-reflector)",
                  peerSelector="has(route-reflector)")
    for name, (ip4, ip6, _) in REFLECTORS.items():
        data.node(name, ipv4=f"{ip4}/24", ipv6=f"{ip6}/64", labels=RR_LABEL,
                  cluster_id=CLUSTER_ID)
    for name in ("a", "b"):
        c.put_node(name)

    for name, (ip4, ip6, schema) in REFLECTORS.items():
        c.rrs[name] = v3_reflector(lab, name, etcd, ip4, ip6, schema)
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
def _v3_logs_on_failure(request):
    yield
    c: V3Cluster = failed_fixture(request, "cluster")
    if c is None:
        return
    for rr in c.rrs.values():
        print(f"===== rr_service log on {rr.host.name} (tail) =====")
        print(rr.log()[-6000:])
        for b in (rr.bird, rr.bird6):
            try:
                print(f"===== {b.config_path} =====")
                print(b.config_path.read_text()[-4000:])
                print(f"===== BIRD{b.family} on {rr.host.name}: show protocols =====")
                print(b.birdc("show protocols"))
            except Exception as exc:  # diagnostics only
                print(f"(failed: {exc})")


def _expected(rr: str, family: int, nodes=("a", "b")) -> list:
    return [_client(n, family) for n in nodes] + [proto_name("Peer", _rr_ip(_other(rr), family))]


def _bgp_sessions(rr: Reflector, family: int) -> Dict[str, object]:
    return {n: p for n, p in rr.bird_for(family).protocols().items() if p.proto == "BGP"}


# -----------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_sessions_established(cluster: V3Cluster, family):
    """Both reflectors serve every Calico node (reverse peering of
    peer-with-route-reflectors) and peer with each other (rr-mesh) as non-clients;
    no node-to-node mesh, no session to themselves."""
    for name, rr in cluster.rrs.items():
        want = _expected(name, family)
        rr.wait_established(want, family, SESSION_TIMEOUT)
        assert sorted(_bgp_sessions(rr, family)) == sorted(want)
        # Clients are rr clients in cluster 244.0.0.1; the other reflector is not.
        conf = rr.bird_for(family).config_path.read_text()
        assert f"rr cluster id {CLUSTER_ID};" in conf, conf
        details = rr.bird_for(family).birdc(
            f"show protocols all {proto_name('Peer', _rr_ip(_other(name), family))}")
        assert "reflector" not in details.split("Session:", 1)[1].splitlines()[0], details
        details = rr.bird_for(family).birdc(f"show protocols all {_client('a', family)}")
        assert "reflector" in details.split("Session:", 1)[1].splitlines()[0], details
    for n in ("a", "b"):
        cluster.nodes[n].bird_for(family).wait_established(
            [_to_rr(r, family) for r in REFLECTORS], SESSION_TIMEOUT)
    # rr2 runs with [etcd] schema = "auto" and must have picked the v3 data.
    assert "schema = auto: using the Calico v3 data" in cluster.rrs["rr2"].log()


@pytest.mark.parametrize("family", FAMILIES)
def test_routes_reflected(cluster: V3Cluster, family):
    """A node's route reaches the other node through both reflectors, unchanged:
    originator the source node, cluster list with 244.0.0.1, next hop the source node."""
    rr_ips = {_rr_ip(r, family) for r in REFLECTORS}
    for src, dst in (("a", "b"), ("b", "a")):
        bird = cluster.nodes[dst].bird_for(family)
        block = _block(src, family)

        def learned():
            routes = [r for r in bird.routes(block) if r.protocol != "static1"]
            return routes if {r.from_ for r in routes} == rr_ips else None
        routes = wait_for(learned, SESSION_TIMEOUT,
                          what=f"{src}'s {block} at {dst} from both reflectors",
                          describe=lambda: bird.birdc("show route all") + bird.birdc("show protocols"))
        for r in routes:
            assert r.originator_id == NODES[src].ipv4, r.excerpt()  # router id: the IPv4 address
            assert r.cluster_list == [CLUSTER_ID], r.excerpt()  # reflected once
            assert r.next_hop == _node_ip(src, family), r.excerpt()
            assert r.protocol == proto_name("Node", r.from_), r.excerpt()
            assert r.as_path == "", r.excerpt()  # iBGP all the way


def test_node_added_and_removed_live(cluster: V3Cluster):
    """A new Node resource brings its sessions up on both reflectors without restarting
    anybody else's; deleting it takes them away, again without disturbing the others."""
    before = {}
    for name, rr in cluster.rrs.items():
        for family in (4, 6):
            before[name, family] = rr.wait_established(_expected(name, family), family, SESSION_TIMEOUT)
    node_side = {n: cluster.nodes[n].bird.wait_established(
        [_to_rr(r, 4) for r in REFLECTORS], SESSION_TIMEOUT) for n in ("a", "b")}

    def assert_undisturbed(when: str) -> None:
        for (name, family), protos in before.items():
            now = _bgp_sessions(cluster.rrs[name], family)
            for proto in _expected(name, family):
                assert now[proto].same_run_as(protos[proto]), (
                    f"{proto} on {name} restarted when {when}: {protos[proto]} -> {now[proto]}")
        for n, protos in node_side.items():
            now = cluster.nodes[n].bird.protocols()
            for r in REFLECTORS:
                assert now[_to_rr(r, 4)].same_run_as(protos[_to_rr(r, 4)]), (
                    f"node {n}'s session to {r} restarted when {when}")

    c = cluster.start_node("c", ipv6=False)
    try:
        cluster.put_node("c", ipv6=False)
        for name, rr in cluster.rrs.items():
            rr.wait_established(_expected(name, 4, ("a", "b", "c")), 4, SESSION_TIMEOUT)
        c.bird.wait_established([_to_rr(r, 4) for r in REFLECTORS], SESSION_TIMEOUT)
        assert_undisturbed("node c was added")
        # c's route reaches a, and a's reaches c, reflected.
        for dst, src in (("a", "c"), ("c", "a")):
            r = cluster.nodes[dst].bird.wait_route(_block(src, 4), SESSION_TIMEOUT,
                                                   pred=lambda r: r.protocol != "static1")
            assert r.originator_id == NODES[src].ipv4 and CLUSTER_ID in r.cluster_list, r.excerpt()

        cluster.data.delete("Node", "c")
        for name, rr in cluster.rrs.items():
            bird = rr.bird_for(4)
            wait_for(lambda: (rr.assert_alive(), _client("c", 4) not in bird.protocols())[1],
                     SESSION_TIMEOUT, what=f"{_client('c', 4)} removed on {name}",
                     describe=lambda: bird.birdc("show protocols"))
        assert_undisturbed("node c was removed")
        for name, rr in cluster.rrs.items():
            assert sorted(_bgp_sessions(rr, 4)) == sorted(_expected(name, 4))
        # Its route is withdrawn at the other nodes.
        wait_for(lambda: cluster.nodes["a"].bird.route(_block("c", 4)) is None, SESSION_TIMEOUT,
                 what="node c's block withdrawn at node a",
                 describe=lambda: cluster.nodes["a"].bird.birdc("show route all"))
    finally:
        cluster.data.delete("Node", "c")
        c.bird.stop()


# ----------------------------------------------------- our own listenPort, over real BGP

LISTEN_PORT = 1790
MESH_ETCD_IP = "192.0.2.3"
# Both without a cluster id: node-to-node mesh members, like any Calico node.
MESH_RRS = {"rr3": ("192.0.2.12", "bird1"), "rr4": ("192.0.2.13", "bird2"), "rr5": ("192.0.2.14", "bird3")}


def test_peers_reach_us_on_our_listen_port(lab):
    """BGPConfiguration default listenPort 1790: every Calico node listens there and connects
    to the others there. The mesh is one-way (the side whose address sorts lower, as text,
    connects; the other is `passive`), so rr3 (BIRD 1.6, .12) only waits for rr4, rr5 and node
    d, rr4 (BIRD 2, .13) for rr5 and d, and rr5 (BIRD 3, .14) for d: those sessions come up only
    if each reflector's BIRD listens on 1790 (BIRD 1.6 `listen bgp port`, BIRD 2 and 3 `local
    port`)."""
    need_rr_service()
    for _, flavour in MESH_RRS.values():
        prereq.bird_binary_or_missing(flavour)
    etcd = lab.start_etcd(lab.add_host("etcd-mesh", MESH_ETCD_IP))  # a cluster of its own
    data = V3Data(etcd)
    data.bgp_configuration("default", asNumber=AS_NUM, listenPort=LISTEN_PORT)  # mesh: Calico's default
    d = NODES["d"]
    data.node("d", ipv4=f"{d.ipv4}/24")
    for name, (ip4, _) in MESH_RRS.items():
        data.node(name, ipv4=f"{ip4}/24")

    # node d as calico/node configures it: a mesh peer per other node, on that node's listen
    # port; d sorts after both reflectors, so it connects and they listen.
    text = calico_node_bird_config(d.ipv4, AS_NUM, [ip4 for ip4, _ in MESH_RRS.values()], d.block4)
    for ip4, _ in MESH_RRS.values():
        text = text.replace(f"neighbor {ip4} as {AS_NUM};", f"neighbor {ip4} port {LISTEN_PORT} as {AS_NUM};")
    assert text.count(f" port {LISTEN_PORT} as ") == len(MESH_RRS), text
    node_bird = lab.start_bird(lab.add_host("d", d.ipv4), text)

    rrs = {name: v3_reflector(lab, name, etcd, ip4, None, "v3", flavour=flavour)
           for name, (ip4, flavour) in MESH_RRS.items()}
    try:
        for rr in rrs.values():
            rr.start()
        mesh = lambda ip4: proto_name("Mesh", ip4) + f"_port_{LISTEN_PORT}"  # noqa: E731
        want = {name: [mesh(d.ipv4)] + [mesh(ip4) for other, (ip4, _) in MESH_RRS.items() if other != name]
                for name in MESH_RRS}
        for name, rr in rrs.items():
            rr.wait_established(want[name], 4, SESSION_TIMEOUT)
        # passive on their side, so they came in on 1790: rr4, rr5 and d to rr3, rr5 and d to
        # rr4, d to rr5
        for name, passive in (("rr3", 3), ("rr4", 2), ("rr5", 1)):
            assert rrs[name].bird.config_path.read_text().count("passive on;") == passive, name
        for name, rr in rrs.items():
            listening = rr.host.run(["ss", "-ltnH"]).stdout
            assert f":{LISTEN_PORT} " in listening and ":179 " not in listening, f"{name}: {listening}"
        node_bird.wait_established([proto_name("Node", ip4) for ip4, _ in MESH_RRS.values()], SESSION_TIMEOUT)
    except BaseException:
        for name, rr in rrs.items():
            print(f"===== {name} ({rr.flavour}) =====\n{rr.bird.config_path.read_text()}\n{rr.log()[-3000:]}")
        raise
    finally:
        for rr in rrs.values():
            rr.stop()
        node_bird.stop()


def test_clients_announce_only_what_calico_would(cluster: V3Cluster):
    """Node a announces its block, a borrowed /32 in its pool, a default route, a prefix in no
    pool and a block of a pool with disableBGPExport: node b gets the first two, through both
    reflectors; the reflectors count the other three as filtered."""
    borrowed, default, foreign, unexported = "198.51.100.77/32", "0.0.0.0/0", "203.0.113.0/24", "10.77.1.0/26"
    a = NODES["a"]
    cluster.data.ip_pool("pods", cidr="198.51.100.0/24", blockSize=26, disabled=True)  # disabled: still announced
    cluster.data.ip_pool("no-export", cidr="10.77.0.0/16", disableBGPExport=True)
    rr_ips = {_rr_ip(r, 4) for r in REFLECTORS}
    try:
        for rr in cluster.rrs.values():
            wait_for(lambda: "198.51.100.0/24+" in rr.bird_conf.read_text(), SESSION_TIMEOUT,
                     what=f"{rr.host.name}'s filter naming the pool")
        cluster.nodes["a"].bird.reconfigure(calico_node_bird_config(
            a.ipv4, AS_NUM, [_rr_ip(r, 4) for r in REFLECTORS], [a.block4, borrowed, default, foreign, unexported]))
        at_b = cluster.nodes["b"].bird

        def reflected(prefix):
            return {r.from_ for r in at_b.routes(prefix) if r.prefix == prefix and r.protocol != "static1"}
        wait_for(lambda: reflected(borrowed) == rr_ips, SESSION_TIMEOUT, what=f"{borrowed} at b from both reflectors")
        for rr in cluster.rrs.values():
            def filtered():
                report = json.loads(rr.cli("status", "--json", check=False, timeout=60).stdout)
                row = next(s for s in report["sessions"] if s["protocol"] == _client("a", 4))
                return (row.get("routes") or {}).get("filtered", 0) >= 3
            wait_for(filtered, SESSION_TIMEOUT, what=f"{rr.host.name} counting a's 3 refused routes",
                     describe=lambda: rr.cli("status", check=False).stdout)
        assert reflected(a.block4) == rr_ips
        for prefix in (default, foreign, unexported):
            assert not reflected(prefix), f"{prefix} from node a reached node b"
    finally:
        cluster.nodes["a"].bird.reconfigure(calico_node_bird_config(
            a.ipv4, AS_NUM, [_rr_ip(r, 4) for r in REFLECTORS], a.block4))
        cluster.data.delete("IPPool", "pods")
        cluster.data.delete("IPPool", "no-export")
