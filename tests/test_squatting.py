"""One writer of one Node cannot take over another node's session by claiming its address
(found by adversarial testing). The earlier claim keeps it: the session that runs, else the
oldest by the datastore's own creation order, never by name; an operator's BGPPeer (peerIP)
wins over any Node. Every layout warns naming both."""

import ipaddress
import json

import pytest

from rr_service.calico import rule_set
from rr_service.core.pipeline import Pipeline
from rr_service.core.plan import CLIENT, PEER, Identity
from rr_service.core.render import Renderer
from tests.v1data import j

V4 = ipaddress.IPv4Address
ME = Identity(V4("192.0.2.10"), node_name="rr")


def v3_node(name, address, asn=None, cid=None, labels=None):
    bgp = {"ipv4Address": address, **({"asNumber": asn} if asn else {}),
           **({"routeReflectorClusterID": cid} if cid else {})}
    return f"nodes/{name}", json.dumps({"kind": "Node", "apiVersion": "projectcalico.org/v3",
                                        "metadata": {"name": name, "labels": labels or {}},
                                        "spec": {"bgp": bgp}}).encode()


def v3_peer(name, **spec):
    return f"bgppeers/{name}", json.dumps({"kind": "BGPPeer", "apiVersion": "projectcalico.org/v3",
                                           "metadata": {"name": name}, "spec": spec}).encode()


V3_BASE = dict([v3_node("rr", "192.0.2.10/24", cid="1.0.0.1", labels={"rr": "true"}),
                v3_peer("clients", nodeSelector="!has(rr)", peerSelector="has(rr)")])
V1_BASE = {"global/as_num": b"64512", "global/peer_v4/192.0.2.10": j(ip="192.0.2.10"),
           "rr_v4/192.0.2.10": j(ip="192.0.2.10", cluster_id="1.0.0.1")}


class Store:
    """Keys with etcd's creation order, fed to the daemon's pipeline."""

    def __init__(self, rules, base, flavour="bird2"):
        self.revision, self.created = 0, {}
        self.pipeline = Pipeline(rule_set(rules), ME, Renderer(flavour=flavour))
        items = {}
        for key, value in base.items():
            items[key] = value
            self._create(key)
        self.pipeline.reset(items, dict(self.created))

    def _create(self, key):
        self.revision += 1
        self.created[key] = self.revision

    def put(self, key, value):
        if key not in self.created:
            self._create(key)
        self.pipeline.change(key, value, self.created[key])

    def sessions(self):
        computed = self.pipeline.compute()
        return {str(s.neighbor): s for s in computed.plan.v4.sessions}, computed.plan.warnings


def test_v3_a_node_claiming_anothers_address_and_as_does_not_take_its_session():
    store = Store("v3", V3_BASE)
    store.put(*v3_node("good1", "192.0.2.21/24"))
    before, _ = store.sessions()
    assert (before["192.0.2.21"].role, before["192.0.2.21"].node) == (CLIENT, "good1")
    store.put(*v3_node("aaa", "192.0.2.21/24", asn=65000))  # sorts first, another AS
    after, warnings = store.sessions()
    assert after["192.0.2.21"] == before["192.0.2.21"], "the running session changed"
    assert "IPv4 192.0.2.21: 2 nodes claim it; node good1 keeps its session (the running session, else the " \
           "earliest claim); ignored: aaa" in warnings


def test_v3_a_restart_keeps_the_earliest_claim_not_the_first_name():
    """A fresh start (no running session): the Node created first wins, whatever the names."""
    store = Store("v3", dict([*V3_BASE.items(), v3_node("zzz-good", "192.0.2.21/24"),
                              v3_node("aaa-squatter", "192.0.2.21/24", asn=65000)]))
    sessions, _ = store.sessions()
    assert (sessions["192.0.2.21"].node, sessions["192.0.2.21"].neighbor_as) == ("zzz-good", 64512)


def test_v3_a_thousand_nodes_on_one_address_one_session_one_bounded_warning():
    store = Store("v3", V3_BASE)
    store.put(*v3_node("good1", "192.0.2.21/24"))
    store.sessions()
    for i in range(1000):
        store.put(*v3_node(f"squat-{i:04d}", "192.0.2.21/24", asn=65000 + i % 7))
    sessions, warnings = store.sessions()
    assert sessions["192.0.2.21"].node == "good1" and sessions["192.0.2.21"].neighbor_as == 64512
    [warning] = [w for w in warnings if "192.0.2.21" in w]
    assert "1001 nodes claim it; node good1 keeps" in warning and "and 990 more" in warning and len(warning) < 600


def test_v3_an_operators_bgppeer_wins_over_a_node_with_its_address():
    """BGPPeer tor (peerIP 192.0.2.1, AS 65001) keeps its session although Node evil, selected
    by a BGPPeer whose name sorts first, claims 192.0.2.1."""
    store = Store("v3", dict([*V3_BASE.items(), v3_peer("tor", peerIP="192.0.2.1", asNumber=65001)]))
    before, _ = store.sessions()
    assert (before["192.0.2.1"].role, before["192.0.2.1"].neighbor_as) == (PEER, 65001)
    store.put(*v3_peer("a-all", nodeSelector="has(rr)", peerSelector="all()"))
    store.put(*v3_node("evil", "192.0.2.1/24", asn=65009))
    after, warnings = store.sessions()
    assert after["192.0.2.1"] == before["192.0.2.1"]
    assert "IPv4 192.0.2.1: node evil has the address bgppeer tor peers with; its claim is ignored" in warnings


def test_v1_a_node_claiming_anothers_address_does_not_take_its_session():
    store = Store("v1", V1_BASE)
    store.put("host/good1/ip_addr_v4", b"192.0.2.21")
    before, _ = store.sessions()
    store.put("host/aaa/ip_addr_v4", b"192.0.2.21")
    store.put("host/aaa/as_num", b"65000")
    after, warnings = store.sessions()
    assert after["192.0.2.21"] == before["192.0.2.21"] and after["192.0.2.21"].node == "good1"
    assert "2 nodes claim the address 192.0.2.21: node good1 keeps its session (the running session, else the " \
           "earliest claim); ignored: aaa" in warnings


def test_v1_a_restart_keeps_the_earliest_claim_not_the_first_name():
    store = Store("v1", {**V1_BASE, "host/zzz-good/ip_addr_v4": b"192.0.2.21",
                         "host/aaa/ip_addr_v4": b"192.0.2.21", "host/aaa/as_num": b"65000"})
    sessions, _ = store.sessions()
    assert (sessions["192.0.2.21"].node, sessions["192.0.2.21"].neighbor_as) == ("zzz-good", 64512)


@pytest.mark.parametrize("rules", ["v1", "v3"])
def test_status_names_both_claimants(rules, capsys):
    """`calico-rr status` shows the warning with both names (status prints plan.warnings)."""
    from rr_service.core.status import status_report

    store = Store(rules, V1_BASE if rules == "v1" else V3_BASE)
    if rules == "v1":
        store.put("host/good1/ip_addr_v4", b"192.0.2.21")
        store.put("host/aaa/ip_addr_v4", b"192.0.2.21")
    else:
        store.put(*v3_node("good1", "192.0.2.21/24"))
        store.put(*v3_node("aaa", "192.0.2.21/24", asn=65000))
    plan = store.pipeline.compute().plan
    report = status_report(plan, {4: "bird", 6: "bird"}, {"bird": []}, {})
    [warning] = [w for w in report["warnings"] if "192.0.2.21" in w]
    assert "good1" in warning and "aaa" in warning


@pytest.mark.parametrize("rules", ["v1", "v3"])
@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_a_restart_gives_the_address_to_the_node_whose_session_runs(rules, flavour):
    """aaa, created first, moves its address onto good1's: good1 keeps its session. A new
    pipeline (a restarted daemon, `calico-rr render`) reads who holds what from the configs
    BIRD runs and keeps it with good1 too; from the data alone, aaa (the older Node) would win."""
    from rr_service.core.pipeline import compute_once
    from rr_service.core.running import running_claims

    if rules == "v1":
        base = {**V1_BASE, "host/aaa/ip_addr_v4": b"192.0.2.30", "host/good1/ip_addr_v4": b"192.0.2.21"}
        move = ("host/aaa/ip_addr_v4", b"192.0.2.21")
    else:
        base = dict([*V3_BASE.items(), v3_node("aaa", "192.0.2.30/24"), v3_node("good1", "192.0.2.21/24")])
        move = v3_node("aaa", "192.0.2.21/24")
    store = Store(rules, base, flavour)
    store.pipeline.compute()  # good1's session runs
    store.put(*move)
    computed = store.pipeline.compute()
    assert {str(s.neighbor): s.node for s in computed.plan.v4.sessions}["192.0.2.21"] == "good1"
    configs = Renderer(flavour=flavour).render(computed.plan)

    items = dict(base)
    items[move[0]] = move[1]
    claims = running_claims(configs.values())
    assert claims[4][(int(V4("192.0.2.21")), 0)] == "good1"
    restarted = compute_once(rule_set(rules), dict(items), ME, Renderer(flavour=flavour), store.created, claims)
    assert {str(s.neighbor): s.node for s in restarted.plan.v4.sessions}["192.0.2.21"] == "good1"
    assert restarted.configs == configs
    fresh = compute_once(rule_set(rules), dict(items), ME, Renderer(flavour=flavour), store.created)
    assert {str(s.neighbor): s.node for s in fresh.plan.v4.sessions}["192.0.2.21"] == "aaa"
