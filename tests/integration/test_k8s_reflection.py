"""A reflector whose Calico data lives in the Kubernetes API ([datastore] type = "kubernetes"),
end to end: the test Kubernetes API server (tests/kubeapi, on a real etcd) inside the lab,
real BIRD nodes configured as calico/node configures itself for a global BGPPeer with the
reflector's address, the real daemon on BIRD 1.6.

    etcd + API server   192.0.2.2   (https://192.0.2.2:6443)
    rr1                 192.0.2.10  2001:db8::10   BIRD 1.6, declared by `calico-rr register`
    rr2                 192.0.2.11  2001:db8::11   BIRD 2, likewise: the two mesh (a reflector cluster)
    a, b                192.0.2.21/22 (+ IPv6)     Kubernetes Nodes with Calico's annotations
    c                   192.0.2.23                 added and removed live

Objects are written straight into the API server's etcd under kube's keys (the API server
reads and watches exactly those). Everything polls with deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from pathlib import Path

import pytest

from tests.failure_logs import failed_fixture
from tests import prereq
from tests.integration.v3data import wait_reflected
from tests.kubeapi import bgp_configuration, ip_pool, realistic_node
from tests.lab import Reflector, calico_node_bird_config, proto_name, need_rr_service, wait_for
from tests.lab.kubeapi_host import kube_key
from tests.lab.reflector import PYTHON, REPO_ROOT, _env
from tests.lab.world import ETCD_IP, NODES, Node
from tests.faults.faultlab import dropped_sessions, established_count

pytestmark = pytest.mark.integration

TIMEOUT = 60
AS_NUM = 64500
CLUSTER_ID = "244.0.0.1"
RR = ("rr1", "192.0.2.10", "2001:db8::10")
RR2 = ("rr2", "192.0.2.11", "2001:db8::11")
FAMILIES = [pytest.param(4, id="ipv4"), pytest.param(6, id="ipv6")]


def node_ip(name: str, family: int) -> str:
    return NODES[name].ipv4 if family == 4 else NODES[name].ipv6


def rr_ip(family: int) -> str:
    return RR[1] if family == 4 else RR[2]


class KubeCluster:
    def __init__(self, lab):
        self.lab = lab
        host = lab.add_host("etcd", ETCD_IP)
        self.etcd = lab.start_etcd(host)
        self.dir = lab.tmp / "kubeapi"
        self.dir.mkdir()
        self.api = host.popen([PYTHON, "-m", "tests.lab.kubeapi_host", "--etcd", self.etcd.endpoint,
                               "--host", ETCD_IP, "--port", "6443", "--workdir", str(self.dir)],
                              name="kubeapi", env=_env(), cwd=str(REPO_ROOT))
        self.wait_serving(True)
        self.kubeconfig = str(self.dir / "kubeconfig")
        self.nodes: dict = {}
        self.rr: Reflector = None
        self.rr2: Reflector = None

    def wait_serving(self, serving: bool) -> None:
        wait_for(lambda: (self.dir / "ready").exists() == serving, 30,
                 what=f"the API server {'serving' if serving else 'stopped'}")

    def put(self, plural: str, obj: dict) -> None:
        self.etcd.put(kube_key(plural, obj["metadata"]["name"]), obj)

    def get(self, plural: str, name: str):
        raw = self.etcd.get(kube_key(plural, name))
        return json.loads(raw) if raw else None

    def delete(self, plural: str, name: str) -> None:
        self.etcd.delete(kube_key(plural, name))

    def put_node(self, name: str, ipv6: bool = True) -> None:
        spec = NODES[name]
        self.put("nodes", realistic_node(name, ipv4=f"{spec.ipv4}/24",
                                         ipv6=f"{spec.ipv6}/64" if ipv6 and spec.ipv6 else None))

    def start_node(self, name: str, ipv6: bool = True) -> Node:
        spec = NODES[name]
        use6 = ipv6 and spec.ipv6 is not None
        node = Node(spec, self.lab.add_host(name, spec.ipv4, spec.ipv6 if use6 else None))
        node.bird = self.lab.start_bird(node.host, calico_node_bird_config(
            spec.ipv4, AS_NUM, [RR[1], RR2[1]], spec.block4), family=4)
        if use6:
            node.bird6 = self.lab.start_bird(node.host, calico_node_bird_config(
                spec.ipv6, AS_NUM, [RR[2], RR2[2]], spec.block6, router_id=spec.ipv4, family=6), family=6)
        self.nodes[name] = node
        return node

    def api_signal(self, sig) -> None:
        self.api.popen.send_signal(sig)

    def control(self, spec: dict) -> None:
        """Ask the running API server for tokens, revocations or RBAC rules (kubeapi_host)."""
        done = self.dir / "control-done"
        count = int(done.read_text()) if done.exists() else 0
        (self.dir / "control.json").write_text(json.dumps(spec))
        self.api_signal(signal.SIGHUP)
        wait_for(lambda: done.exists() and int(done.read_text() or 0) > count, 30,
                 what="the API server applying control.json")

    def sessions(self) -> dict:
        """Every BGP session of rr1 and of the nodes: (where, family, name) -> (state, since,
        info); one that went down and up again has another `since`."""
        out = {}
        birds = [("rr1", 4, self.rr.bird), ("rr1", 6, self.rr.bird6)]
        birds += [(n, f, node.bird_for(f)) for n, node in self.nodes.items() for f in (4, 6)
                  if (node.bird if f == 4 else node.bird6) is not None]
        for where, family, bird in birds:
            for name, p in bird.bgp_protocols().items():
                out[(where, family, name)] = (p.state, p.since, p.info)
        return out



@pytest.fixture(scope="module")
def flavour():
    return "bird1"


@pytest.fixture(scope="module")
def cluster(lab):
    need_rr_service()
    c = KubeCluster(lab)
    c.put("bgpconfigurations", bgp_configuration("default", nodeToNodeMeshEnabled=False, asNumber=AS_NUM))
    c.put("ippools", ip_pool("pool4", "198.51.100.0/24"))
    c.put("ippools", ip_pool("pool6", "2001:db8::/32"))
    for name in ("a", "b"):
        c.put_node(name)
    bird2 = prereq.bird2_or_missing()

    def reflector(spec, flavour):
        name, ip4, ip6 = spec
        return Reflector(lab, lab.add_host(name, ip4, ip6), ["http://192.0.2.2:2379"], ipv6=True,
                         flavour=flavour, bird_binary=str(bird2) if flavour == "bird2" else None, settings={
                             "datastore": {"type": "kubernetes"},
                             # rr1 as a service account is: its token read from a file
                             "kubernetes": {"kubeconfig": c.kubeconfig + ("-rr" if name == "rr1" else "")},
                             "reflector": {"node_name": name},
                             "safety": {"state_dir": str(lab.tmp / f"{name}-rr" / "state")}})
    c.rr, c.rr2 = reflector(RR, "bird1"), reflector(RR2, "bird2")
    c.register_out = c.rr.cli("register", "--cluster-id", CLUSTER_ID).stdout
    c.rr2.cli("register", "--cluster-id", CLUSTER_ID)
    for n in ("a", "b"):
        c.start_node(n)
    try:
        c.rr.start()
        c.rr2.start()
        yield c
    finally:
        c.rr.stop()
        c.rr2.stop()
        c.api.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    yield
    c = failed_fixture(request, "cluster")
    if c is None:
        return
    print(f"===== rr_service log (tail) =====\n{c.rr.log()[-6000:]}")
    print(f"===== rr2's rr_service log (tail) =====\n{c.rr2.log()[-3000:]}")
    print(f"===== API server log (tail) =====\n{c.api.log()[-3000:]}")
    for b in {id(x): x for x in (c.rr.bird, c.rr.bird6) if x is not None}.values():
        try:
            print(b.birdc("show protocols"))
        except Exception as exc:  # diagnostics only
            print(f"(failed: {exc})")


def test_register_created_the_reflectors_bgppeers_through_the_api(cluster):
    assert "created /apis/crd.projectcalico.org/v1/bgppeers/calico-rr-rr1-ipv4" in cluster.register_out
    stored = cluster.get("bgppeers", "calico-rr-rr1-ipv6")
    assert stored["apiVersion"] == "crd.projectcalico.org/v1" and stored["kind"] == "BGPPeer"
    assert stored["spec"] == {"peerIP": "2001:db8::10", "asNumber": AS_NUM}
    assert stored["metadata"]["labels"] == {"calico-rr/reflector": "rr1", "calico-rr/cluster-id": CLUSTER_ID}


@pytest.mark.parametrize("family", FAMILIES)
def test_nodes_from_the_kubernetes_api_are_established_clients_of_both_meshed_reflectors(cluster, family):
    clients = [proto_name("Client", node_ip(n, family)) for n in ("a", "b")]
    other = {4: 1, 6: 2}[family]
    cluster.rr.wait_established(clients + [proto_name("Mesh", RR2[other])], family, TIMEOUT)
    cluster.rr2.wait_established(clients + [proto_name("Mesh", RR[other])], family, TIMEOUT)
    for n in ("a", "b"):
        cluster.nodes[n].bird_for(family).wait_established(
            [proto_name("Node", RR[other]), proto_name("Node", RR2[other])], TIMEOUT)


def block(name: str, family: int) -> str:
    return NODES[name].block4 if family == 4 else NODES[name].block6


@pytest.mark.parametrize("family", FAMILIES)
def test_routes_reflected_through_both_reflectors(cluster, family):
    other = {4: 1, 6: 2}[family]
    rr_ips = {RR[other], RR2[other]}
    for src, dst in (("a", "b"), ("b", "a")):
        wait_reflected(cluster.nodes[dst].bird_for(family), block(src, family), rr_ips, NODES[src].ipv4,
                       node_ip(src, family), CLUSTER_ID, TIMEOUT)


def test_status_and_render_work_in_kubernetes_mode(cluster):
    cluster.rr.wait_established([proto_name("Client", node_ip("a", 4))], 4, TIMEOUT)
    out = cluster.rr.cli("status").stdout
    assert "declared by bgppeer calico-rr-rr1-ipv4" in out and "Established" in out, out
    rendered = cluster.rr.cli("render").stdout
    assert node_ip("a", 4) in rendered and node_ip("b", 4) in rendered


def test_a_node_added_and_removed_live(cluster):
    rr = cluster.rr
    client_c = proto_name("Client", node_ip("c", 4))
    cluster.put_node("c", ipv6=False)
    cluster.start_node("c", ipv6=False)
    rr.wait_established([client_c], 4, TIMEOUT)
    cluster.delete("nodes", "c")
    wait_for(lambda: client_c not in rr.bird.protocols(), TIMEOUT, what="node c's session removed")
    rr.wait_established([proto_name("Client", node_ip(n, 4)) for n in ("a", "b")], 4, TIMEOUT)


ESTABLISHED = [(4, n) for n in ("a", "b")] + [(6, n) for n in ("a", "b")]
OUTAGE = 60.0  # seconds the API server stays down in test_api_server_down_for_a_minute


def established_before(cluster) -> dict:
    for family in (4, 6):
        cluster.rr.wait_established([proto_name("Client", node_ip(n, family)) for n in ("a", "b")], family, TIMEOUT)
    return cluster.sessions()


def node_c_applied(cluster) -> float:
    """Node c added, then removed again: seconds until rr1's BIRD had its session."""
    client_c = proto_name("Client", node_ip("c", 4))
    t0 = time.monotonic()
    cluster.put_node("c", ipv6=False)
    if "c" not in cluster.nodes:
        cluster.start_node("c", ipv6=False)
    wait_for(lambda: client_c in cluster.rr.bird.protocols(), 2 * TIMEOUT, interval=0.05,
             what="node c's session after the fault")
    applied = time.monotonic() - t0
    cluster.delete("nodes", "c")
    wait_for(lambda: client_c not in cluster.rr.bird.protocols(), TIMEOUT, what="node c's session removed")
    return applied


def hold(cluster, before: dict, seconds: float, drops: set) -> None:
    """Watch every session for `seconds` while a fault lasts (a flap shows a new `since`)."""
    end = time.monotonic() + seconds
    while True:
        cluster.rr.assert_alive()
        drops.update(dropped_sessions(before, cluster.sessions()))
        if time.monotonic() >= end:
            return
        time.sleep(1.0)  # sampling period while the fault lasts


def finish(cluster, figures, key: str, before: dict, drops: set, fault: str, done: str, figure: str,
           measured: dict) -> None:
    applied = node_c_applied(cluster)
    drops.update(dropped_sessions(before, cluster.sessions()))
    assert not drops, f"sessions dropped: {sorted(drops)}"
    assert cluster.rr.in_sync_with_render(), "rr1's configs differ from `calico-rr render`"
    figures.add("kubernetes", key, fault=fault, done=done,
                figure=f"{len(drops)} sessions dropped of {established_count(before)} Established; {figure}; "
                       f"a node added afterwards applied in {applied:.1f} s; final configs = `calico-rr render`",
                measured={"sessions": established_count(before), "sessions_dropped": len(drops),
                          "node_applied_s": round(applied, 2), **measured})


def test_api_server_down_for_a_minute_keeps_every_session(cluster, figures):
    before, drops = established_before(cluster), set()
    t0 = time.monotonic()
    cluster.api_signal(signal.SIGUSR1)
    cluster.wait_serving(False)
    hold(cluster, before, OUTAGE, drops)
    outage = time.monotonic() - t0
    cluster.api_signal(signal.SIGUSR2)
    cluster.wait_serving(True)
    finish(cluster, figures, "k8s_api_down", before, drops, "API server down",
           f"the API server stopped for {outage:.0f} s (connections refused, watches cut), then started",
           "BIRD kept its configs meanwhile", {"outage_s": round(outage, 1)})


def test_api_server_restarted_keeps_every_session(cluster, figures):
    before, drops = established_before(cluster), set()
    cluster.api_signal(signal.SIGUSR1)
    cluster.wait_serving(False)
    cluster.api_signal(signal.SIGUSR2)
    cluster.wait_serving(True)
    hold(cluster, before, 5, drops)
    finish(cluster, figures, "k8s_api_restarted", before, drops, "API server restarted",
           "the API server stopped and started again at once (every watch cut)",
           "the watches opened again", {})


def test_api_server_down_keeps_sessions_and_a_restart_after_compaction_resyncs(cluster, figures):
    rr = cluster.rr
    before, drops = established_before(cluster), set()
    cluster.api_signal(signal.SIGUSR1)
    cluster.wait_serving(False)
    # While it is down: node c appears and history is compacted, so nothing can be replayed.
    cluster.put_node("c", ipv6=False)
    cluster.start_node("c", ipv6=False) if "c" not in cluster.nodes else None
    revision = json.loads(cluster.etcd.ctl("endpoint", "status", "-w", "json"))[0]["Status"]["header"]["revision"]
    cluster.etcd.ctl("compaction", str(revision))
    hold(cluster, before, 5, drops)  # BIRD keeps its config while the API is away
    cluster.api_signal(signal.SIGUSR2)
    cluster.wait_serving(True)
    rr.wait_established([proto_name("Client", node_ip(n, 4)) for n in ("a", "b", "c")], 4, TIMEOUT)
    cluster.delete("nodes", "c")
    wait_for(lambda: proto_name("Client", node_ip("c", 4)) not in rr.bird.protocols(), TIMEOUT,
             what="node c's session removed after the resync")
    finish(cluster, figures, "k8s_watch_410", before, drops, "watch history compacted (410 Gone)",
           "API server stopped, a node added and etcd compacted past the watches' resourceVersion, "
           "API server started: the watches get 410 Gone",
           "relisted: the node added meanwhile got its session", {"revision_compacted": revision})


def test_an_expired_token_is_named_and_a_new_one_picked_up(cluster, figures):
    before, drops = established_before(cluster), set()
    token_file = Path(cluster.kubeconfig + "-rr.token")
    t0 = time.monotonic()
    cluster.control({"revoke": [token_file.read_text().strip()]})
    wait_for(lambda: "401 Unauthorized" in cluster.rr.log(), TIMEOUT, what="the daemon naming the 401")
    named = time.monotonic() - t0
    hold(cluster, before, 5, drops)
    errors = cluster.rr.log().count("401 Unauthorized")
    new_token = "rr-" + secrets.token_hex(16)
    cluster.control({"tokens": {new_token: "calico-rr"}})
    token_file.write_text(new_token)  # as the kubelet rotates a service account's token
    line = next(line for line in cluster.rr.log().splitlines() if "401 Unauthorized" in line)
    assert "Kubernetes API unreachable (list " in line, line  # names the datastore and the verb
    finish(cluster, figures, "k8s_token_expired", before, drops, "token expired",
           "the reflector's token revoked (401 from then on, its watches cut), then a new token "
           "written to its token file",
           f"the daemon's log named the refusal {named:.1f} s after ({errors} such lines while it lasted)",
           {"named_after_s": round(named, 1), "log_lines": errors, "log_line": line[-200:]})


def test_missing_rbac_is_named_and_restored_rbac_picked_up(cluster, figures):
    before, drops = established_before(cluster), set()
    t0 = time.monotonic()
    # nodes only: listing the BGPPeers is refused (403)
    cluster.control({"rules": {"calico-rr": [["get", "nodes"], ["list", "nodes"], ["watch", "nodes"]]}})
    wait_for(lambda: "403 Forbidden" in cluster.rr.log(), TIMEOUT, what="the daemon naming the 403")
    named = time.monotonic() - t0
    hold(cluster, before, 5, drops)
    line = next(line for line in cluster.rr.log().splitlines() if "403 Forbidden" in line)
    assert "bgppeers" in line or "bgpconfigurations" in line or "ippools" in line, line
    cluster.control({"rules": {"calico-rr": None}})
    finish(cluster, figures, "k8s_rbac_missing", before, drops, "RBAC missing",
           "the reflector's user allowed only nodes (its watches cut, so it lists again), then "
           "allowed everything again",
           f"the daemon's log named the refused verb and resource {named:.1f} s after",
           {"named_after_s": round(named, 1), "log_line": line[-200:]})


def test_expiring_continue_tokens_are_named_and_the_list_done_once_they_last(cluster, figures):
    cluster.control({"filler_nodes": 600})  # more Nodes than one page of the reflector's lists
    before, drops = established_before(cluster), set()
    t0 = time.monotonic()
    cluster.control({"expire_continue": True})
    wait_for(lambda: "continue tokens keep expiring" in cluster.rr.log(), TIMEOUT,
             what="the daemon naming the expiring continue tokens")
    named = time.monotonic() - t0
    hold(cluster, before, 5, drops)
    cluster.control({"expire_continue": False})
    line = next(line for line in cluster.rr.log().splitlines() if "continue tokens keep expiring" in line)
    finish(cluster, figures, "k8s_continue_410", before, drops, "continue token expired (410 Expired)",
           "600 more Nodes (lists of two pages), then every continued list answered 410 Expired "
           "(the reflector's watches cut, so it lists again), then lists served again",
           f"each list started over from its first page; after 5 tries the daemon's log said so "
           f"{named:.1f} s after", {"named_after_s": round(named, 1), "log_line": line[-200:]})


def test_unregister_removes_the_bgppeers(cluster):
    out = cluster.rr.cli("unregister").stdout
    assert "removed /apis/crd.projectcalico.org/v1/bgppeers/calico-rr-rr1-ipv4" in out, out
    assert cluster.get("bgppeers", "calico-rr-rr1-ipv4") is None
    cluster.rr.cli("register", "--cluster-id", CLUSTER_ID)  # leave the cluster as it was
    assert Path(cluster.kubeconfig).exists()
