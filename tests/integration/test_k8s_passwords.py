"""BGP passwords from a Kubernetes Secret, end to end with real BIRD (TCP MD5 inside the
lab's network namespaces): a BGPPeer with peerIP = the reflector and
`password.secretKeyRef`, the Secret in kube-system of the test API server (real etcd).

    etcd + API server   192.0.2.2
    rr1                 192.0.2.10   the reflector (BIRD 1.6 or BIRD 2), IPv4 only here
    a, b                192.0.2.21/22  BIRD 1.6 nodes with the Secret's password
    c                   192.0.2.23     a BIRD 1.6 node with another password

The same with the Calico data in etcd (v3 resources) and only the Secret in Kubernetes, as
Calico reads BGP passwords in etcd mode when it has a kubeconfig.

a and b establish and c does not; rotating the Secret to c's password moves the sessions:
c establishes, a and b no longer do. The password never shows in the daemon's (debug) log,
in `render` (masked) or in `status`. Everything waits with deadlines.
"""

from __future__ import annotations

import base64

import pytest

from tests.failure_logs import failed_fixture
from tests import prereq
from tests.integration.test_k8s_reflection import AS_NUM, KubeCluster
from tests.integration.v3data import V3Data
from tests.kubeapi import bgp_configuration, bgp_peer, ip_pool, secret
from tests.lab import Reflector, calico_node_bird_config, proto_name, need_rr_service, wait_for
from tests.lab.world import NODES, Node

pytestmark = pytest.mark.integration

TIMEOUT = 60
RR_IP = "192.0.2.10"
RIGHT = "Right-pw.4-the#rr"
WRONG = "wrong-password-c"
SECRET_KEY = "/registry/secrets/kube-system/bgp-secrets"


PASSWORD = {"secretKeyRef": {"name": "bgp-secrets", "key": "rr"}}


@pytest.fixture(scope="module", params=[("kubernetes", "bird1"), ("kubernetes", "bird2"), ("etcdv3", "bird1")],
                ids=lambda p: "-".join(p))
def mode(request):
    prereq.bird_binary_or_missing(request.param[1])
    return request.param


@pytest.fixture(scope="module")
def flavour(mode):
    return mode[1]


def node_config(name: str, password: str) -> str:
    spec = NODES[name]
    text = calico_node_bird_config(spec.ipv4, AS_NUM, [RR_IP], spec.block4)
    line = f"  neighbor {RR_IP} as {AS_NUM};\n"
    assert line in text
    return text.replace(line, f'{line}  password "{password}";\n')


def put_secret(cluster: KubeCluster, password: str) -> None:
    cluster.etcd.put(SECRET_KEY, secret("bgp-secrets", {"rr": password}))


@pytest.fixture(scope="module")
def cluster(lab, mode):
    datastore, flavour = mode
    need_rr_service()
    c = KubeCluster(lab)
    put_secret(c, RIGHT)
    if datastore == "kubernetes":
        c.put("bgpconfigurations", bgp_configuration("default", nodeToNodeMeshEnabled=False, asNumber=AS_NUM))
        c.put("ippools", ip_pool("pool4", "198.51.100.0/24"))
        c.put("bgppeers", bgp_peer("to-rr", RR_IP, AS_NUM, password=PASSWORD))
        settings = {"datastore": {"type": "kubernetes"}, "kubernetes": {"kubeconfig": c.kubeconfig}}
    else:
        v3 = V3Data(c.etcd)
        v3.bgp_configuration("default", nodeToNodeMeshEnabled=False, asNumber=AS_NUM)
        v3.ip_pool("pool4", cidr="198.51.100.0/24", nodeSelector="all()")
        v3.bgp_peer("to-rr", peerIP=RR_IP, asNumber=AS_NUM, password=PASSWORD)
        settings = {"etcd": {"schema": "v3"}, "kubernetes": {"kubeconfig": c.kubeconfig}}
    for name, password in (("a", RIGHT), ("b", RIGHT), ("c", WRONG)):
        spec = NODES[name]
        if datastore == "kubernetes":
            c.put_node(name, ipv6=False)
        else:
            v3.node(name, ipv4=f"{spec.ipv4}/24")
        node = Node(spec, lab.add_host(name, spec.ipv4, None))
        node.bird = lab.start_bird(node.host, node_config(name, password), family=4)
        c.nodes[name] = node
    binary = prereq.bird_binary_or_missing(flavour)
    c.rr = Reflector(lab, lab.add_host("rr1", RR_IP, None), ["http://192.0.2.2:2379"], ipv6=False,
                     flavour=flavour, bird_binary=str(binary) if binary else None, settings={
                         **settings, "reflector": {"node_name": "rr1"},
                         "safety": {"state_dir": str(lab.tmp / "rr1-rr" / "state")}})
    try:
        c.rr.start()
        yield c
    finally:
        c.rr.stop()
        c.api.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    yield
    c = failed_fixture(request, "cluster")
    if c is None:
        return
    print(f"===== rr_service log (tail) =====\n{c.rr.log()[-6000:]}")
    try:
        print(c.rr.bird.birdc("show protocols all"))
    except Exception as exc:  # diagnostics only
        print(f"(failed: {exc})")


def client(name: str) -> str:
    return proto_name("Client", NODES[name].ipv4)


def states(cluster) -> dict:
    return {n: p.state for n, p in cluster.rr.bird.protocols().items()}


def test_right_password_establishes_and_a_wrong_one_does_not(cluster):
    rr = cluster.rr
    rr.wait_established([client("a"), client("b")], 4, TIMEOUT)
    for n in ("a", "b"):
        cluster.nodes[n].bird.wait_established([proto_name("Node", RR_IP)], TIMEOUT)
    # c's session is configured (with the Secret's password) but its MD5 signatures do not
    # match: the kernel drops its segments, it never gets past connecting. Watched over a
    # deadline in which a and b, started with it, have long established.
    assert client("c") in states(cluster)
    wait_for(lambda: "Established" not in cluster.nodes["c"].bird.protocols()[proto_name("Node", RR_IP)].info
             and rr.bird.protocols()[client("c")].info.startswith(("Active", "Connect")), TIMEOUT,
             what="node c's session trying and failing")
    assert not rr.bird.protocols()[client("c")].info.startswith("Established")


def test_password_never_shown_in_log_render_or_status(cluster):
    cluster.rr.wait_established([client("a")], 4, TIMEOUT)
    rendered = cluster.rr.cli("render").stdout
    assert 'password "<redacted>";' in rendered and RIGHT not in rendered
    status = cluster.rr.cli("status", check=False)
    assert RIGHT not in status.stdout + status.stderr
    encoded = base64.b64encode(RIGHT.encode()).decode()
    log = cluster.rr.log()
    assert RIGHT not in log and encoded not in log


def test_a_rotated_secret_updates_the_sessions(cluster):
    rr = cluster.rr
    rr.wait_established([client("a"), client("b")], 4, TIMEOUT)
    put_secret(cluster, WRONG)  # now c's password is the right one
    try:
        rr.wait_established([client("c")], 4, TIMEOUT)
        wait_for(lambda: not any(rr.bird.protocols()[client(n)].info.startswith("Established") for n in ("a", "b")),
                 TIMEOUT, what="a and b dropped after the password changed")
    finally:
        put_secret(cluster, RIGHT)
    rr.wait_established([client("a"), client("b")], 4, TIMEOUT)


def test_a_deleted_secret_leaves_the_sessions_out(cluster):
    rr = cluster.rr
    rr.wait_established([client("a")], 4, TIMEOUT)
    cluster.etcd.delete(SECRET_KEY)
    try:
        wait_for(lambda: "bgppeer to-rr: password from Secret 'bgp-secrets' key 'rr': no key" in rr.log(),
                 TIMEOUT, what="the warning naming the BGPPeer and the Secret")
        # Every session of this reflector rests on that one BGPPeer: the safety hold keeps
        # them (a drop of 100%) until an operator accepts, as for any such change.
        wait_for(lambda: "holding back the new BIRD configs" in rr.log(), TIMEOUT, what="the safety hold")
        rr.cli("accept")
        wait_for(lambda: client("a") not in rr.bird.protocols(), TIMEOUT, what="a's session left out")
    finally:
        put_secret(cluster, RIGHT)
    rr.wait_established([client("a"), client("b")], 4, TIMEOUT)
