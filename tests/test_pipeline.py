"""The daemon's incremental pipeline (v1 rules) gives exactly what an independent full
recompute gives (tests/oracles/v1.py: the keys assembled and planned over from scratch,
rendered by Renderer.render).

Seeded random walks of puts and deletes over a small key space (so keys are overwritten,
deleted and re-added often), compared after every step with the oracle on the same keys,
for both BIRD flavours: one over every kind of key, one over node keys only (so
the state is carried change by change, never planned over). Then the edge cases of that
state one by one, and that a change of one node renders one session.
"""

import dataclasses
import ipaddress
import json
import random

import pytest

from rr_service.calico import rule_set
from rr_service.core.pipeline import Pipeline
from rr_service.core.plan import Identity
from rr_service.core.render import Renderer, RenderError

ME = Identity(ipaddress.IPv4Address("192.0.2.10"), ipaddress.IPv6Address("2001:db8::a"))
ME_V4_ONLY = Identity(ipaddress.IPv4Address("192.0.2.10"))
from tests.oracles import v1 as oracle

RULES = rule_set("v1")


class Walk:
    """A Pipeline and the keys it was given, checked against the pure pipeline."""

    def __init__(self, flavour, me=ME, raw=None):
        self.me, self.raw = me, dict(raw or {})
        # Each key's creation as etcd numbers it: a new key gets the next revision, a key
        # written again keeps its own.
        self.revision = 0
        self.created = {}
        for key in self.raw:
            self._create(key)
        # With the client filters on, so a pool change is carried too.
        self.pipeline = Pipeline(RULES, me, Renderer(flavour=flavour, client_filter="pools", import_limit=1000))
        self.pipeline.reset(dict(self.raw), dict(self.created))
        self.reference = Renderer(flavour=flavour, client_filter="pools", import_limit=1000)
        self.previous = None  # the oracle's last plan: what runs

    def _create(self, key):
        self.revision += 1
        self.created[key] = self.revision

    def put(self, key, value):
        value = value.encode() if isinstance(value, str) else value
        if value is None:
            self.raw.pop(key, None)
            self.created.pop(key, None)
        else:
            if key not in self.raw:
                self._create(key)
            self.raw[key] = value
        self.pipeline.change(key, value, self.created.get(key))

    def reset(self):
        self.pipeline.reset(dict(self.raw), dict(self.created))

    def check(self, where=""):
        got = self.pipeline.compute()
        snap = oracle.snapshot(self.raw, self.created)
        want = oracle.plan(snap, self.me, self.previous)
        want = dataclasses.replace(want, warnings=want.warnings + self.reference.notes(want))
        assert got.plan == want, where
        assert got.configs == self.reference.render(want), where
        assert got.rejected == snap.rejected, where
        self.previous = want
        return got


def random_change(rng):
    n = rng.randint(0, 12)
    choices = [
        (f"host/n{n}/ip_addr_v4", lambda: rng.choice([f"192.0.2.{rng.randint(1, 30)}", "", "192.0.2.999"])),
        (f"host/n{n}/ip_addr_v6", lambda: rng.choice([f"2001:db8::{rng.randint(1, 30):x}", ""])),
        (f"host/n{n}/as_num", lambda: rng.choice(["64512", "65002", "1.10", "0"])),
        (f"host/n{n}/peer_v4/192.0.2.10", lambda: json.dumps({"ip": "192.0.2.10", "as_num": rng.choice(["64512", "65002", None])})),
        (f"host/n{n}/peer_v6/2001:db8::a", lambda: json.dumps({"ip": "2001:db8::a"})),
        ("global/peer_v4/192.0.2.10", lambda: json.dumps({"ip": "192.0.2.10", "as_num": rng.choice(["64512", 65000])})),
        ("global/peer_v6/2001:db8::a", lambda: json.dumps({"ip": "2001:db8::a"})),
        ("global/as_num", lambda: rng.choice(["64512", "65001", "x"])),
        (f"rr_v4/192.0.2.{n + 1}", lambda: json.dumps({"ip": f"192.0.2.{n + 1}", "cluster_id": rng.choice(["", "1.2.3.4"])})),
        ("rr_v4/192.0.2.10", lambda: json.dumps({"ip": "192.0.2.10", "cluster_id": rng.choice(["", "1.2.3.4", "5.6.7.8"])})),
        (f"rr_v6/2001:db8::{n + 1:x}", lambda: json.dumps({"ip": f"2001:db8::{n + 1:x}"})),
        ("rr_v6/2001:db8::a", lambda: json.dumps({"ip": "2001:db8::a", "cluster_id": "1.2.3.4"})),
        (f"ipam/v4/pool/10.{n}.0.0-16", lambda: json.dumps({"cidr": f"10.{n}.0.0/16", "disabled": rng.random() < 0.5})),
        ("ipam/v4/pool/10.0.0.0-8", lambda: json.dumps({"cidr": rng.choice(["10.0.0.0/8", "10.0.0.0/9"])})),
        ("ipam/v6/pool/fd00::-48", lambda: json.dumps({"cidr": "fd00::/48"})),
    ]
    key, make = rng.choice(choices)
    return key, (None if rng.random() < 0.25 else make().encode())


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
@pytest.mark.parametrize("seed", range(5))
def test_incremental_equals_pure(flavour, seed):
    rng = random.Random(seed)
    walk = Walk(flavour, ME_V4_ONLY if seed == 4 else ME)
    for step in range(300):
        for _ in range(rng.choice([1, 1, 1, 3, 10])):  # sometimes several changes fold into one
            walk.put(*random_change(rng))
        if rng.random() < 0.02:
            walk.reset()
        walk.check(f"seed {seed} step {step}")


GLOBALS = {
    "global/as_num": b"64512",
    "rr_v4/192.0.2.10": json.dumps({"ip": "192.0.2.10", "cluster_id": "1.2.3.4"}).encode(),
    "rr_v4/192.0.2.5": json.dumps({"ip": "192.0.2.5"}).encode(),  # a reflector some nodes claim too
    "rr_v6/2001:db8::a": json.dumps({"ip": "2001:db8::a", "cluster_id": "1.2.3.4"}).encode(),
    "global/peer_v6/2001:db8::a": json.dumps({"ip": "2001:db8::a"}).encode(),
}


def random_node_change(rng):
    """A change to one of 40 nodes over 12 addresses: our own (.10), a reflector's (.5),
    shared ones, addresses moving, nodes coming and going, their own peer entry and AS."""
    n = rng.randint(0, 39)
    choices = [
        (f"host/n{n:02d}/ip_addr_v4", lambda: rng.choice([f"192.0.2.{rng.randint(1, 12)}", "", "192.0.2.999"])),
        (f"host/n{n:02d}/ip_addr_v6", lambda: rng.choice([f"2001:db8::{rng.randint(1, 12):x}", ""])),
        (f"host/n{n:02d}/as_num", lambda: rng.choice(["64512", "65002", "x"])),
        (f"host/n{n:02d}/peer_v4/192.0.2.10", lambda: json.dumps({"ip": "192.0.2.10", "as_num": rng.choice([None, 65002])})),
        (f"host/n{n:02d}/peer_v4/192.0.2.77", lambda: json.dumps({"ip": "192.0.2.77"})),  # not us
        (f"host/n{n:02d}/workload", lambda: "ignored"),
    ]
    key, make = rng.choice(choices)
    return key, (None if rng.random() < 0.3 else make().encode())


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
@pytest.mark.parametrize("seed", range(3))
def test_node_changes_carried_in_place_equal_pure(flavour, seed):
    rng = random.Random(seed)
    walk = Walk(flavour, raw=GLOBALS)
    walk.check("snapshot")
    for step in range(400):
        for _ in range(rng.choice([1, 1, 2, 6])):
            walk.put(*random_node_change(rng))
        walk.check(f"seed {seed} step {step}")


def client_names(computed, family=4):
    return [(s.name, s.description) for s in computed.plan.family(family).sessions if s.role == "client"]


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_edge_cases_of_the_kept_state(flavour):
    walk = Walk(flavour, raw={**GLOBALS, "global/peer_v4/192.0.2.10": b'{"ip": "192.0.2.10"}'})
    walk.check("snapshot")
    def shared(winner, other):
        return (f"2 nodes claim the address 192.0.2.22: node {winner} keeps its session (the running session, "
                f"else the earliest claim); ignored: {other}")
    own = "node a has this reflector's own address"
    steps = [
        ("a node", [("host/a/ip_addr_v4", "192.0.2.21")], [("Client_192_0_2_21", "a")], []),
        ("a node changes its address", [("host/a/ip_addr_v4", "192.0.2.22")], [("Client_192_0_2_22", "a")], []),
        ("a second node on that address", [("host/b/ip_addr_v4", "192.0.2.22")], [("Client_192_0_2_22", "a")],
         [shared("a", "b")]),
        ("the first of the two leaves", [("host/a/ip_addr_v4", None)], [("Client_192_0_2_22", "b")], []),
        ("it comes back: b's session runs, b keeps it", [("host/a/ip_addr_v4", "192.0.2.22")],
         [("Client_192_0_2_22", "b")], [shared("b", "a")]),
        ("the second leaves", [("host/b/ip_addr_v4", None)], [("Client_192_0_2_22", "a")], []),
        ("a node takes this reflector's own address", [("host/a/ip_addr_v4", "192.0.2.10")], [], [own]),
        ("a node takes another reflector's address", [("host/a/ip_addr_v4", "192.0.2.5")], [], []),
        ("and leaves it", [("host/a/ip_addr_v4", "192.0.2.23")], [("Client_192_0_2_23", "a")], []),
        ("its own AS: an eBGP peer", [("host/a/as_num", "65002")], [("Client_192_0_2_23", "a")], []),
        ("a change that changes no session", [("host/a/ip_addr_v6", "2001:db8::23")], [("Client_192_0_2_23", "a")], []),
        ("a bad key of the node", [("host/a/as_num", "x")], [("Client_192_0_2_23", "a")], []),
        ("the node's keys all go", [("host/a/ip_addr_v4", None), ("host/a/ip_addr_v6", None),
                                    ("host/a/as_num", None)], [], []),
    ]
    for what, changes, clients, warnings in steps:
        for key, value in changes:
            walk.put(key, value)
        computed = walk.check(what)
        assert client_names(computed) == clients, what
        said = [w for w in computed.plan.warnings if not w.startswith("[filters]")]  # no pool in this data
        assert [w[:len(want)] for w, want in zip(said, warnings)] == warnings, what
        assert len(said) == len(warnings), what


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_changes_every_session_rests_on(flavour):
    raw = {**GLOBALS, "global/peer_v4/192.0.2.10": b'{"ip": "192.0.2.10"}'}
    raw.update({f"host/n{i}/ip_addr_v4": f"192.0.2.{20 + i}".encode() for i in range(5)})
    walk = Walk(flavour, raw=raw)
    walk.check("snapshot")
    for what, key, value in [
        ("global AS", "global/as_num", "65000"),
        ("a bad global AS", "global/as_num", "x"),
        ("global AS gone: the default", "global/as_num", None),
        ("our cluster id", "rr_v4/192.0.2.10", '{"ip": "192.0.2.10", "cluster_id": "5.6.7.8"}'),
        ("our entry gone: standalone", "rr_v4/192.0.2.10", None),
        ("our entry back", "rr_v4/192.0.2.10", '{"ip": "192.0.2.10"}'),
        ("another reflector", "rr_v4/192.0.2.30", '{"ip": "192.0.2.30"}'),
        ("the global peer entry naming us gains an AS", "global/peer_v4/192.0.2.10", '{"ip": "192.0.2.10", "as_num": 65001}'),
        ("the same value written again", "global/peer_v4/192.0.2.10", '{"ip": "192.0.2.10", "as_num": 65001}'),
        ("the global peer entry naming us goes", "global/peer_v4/192.0.2.10", None),
        ("a node's own peer entry while no global one", "host/n1/peer_v4/192.0.2.10", '{"ip": "192.0.2.10"}'),
    ]:
        walk.put(key, value)
        walk.check(what)


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_a_change_renders_only_its_own_sessions(flavour, monkeypatch):
    """At 2,000 nodes, one node added, changed or removed renders at most its own session
    blocks: the daemon's cost of a change does not grow with the cluster."""
    raw = {**GLOBALS, "global/peer_v4/192.0.2.10": b'{"ip": "192.0.2.10"}'}
    raw.update({f"host/n{i:04d}/ip_addr_v4": str(ipaddress.IPv4Address(0xC6120000 + i)).encode() for i in range(2000)})
    walk = Walk(flavour, raw=raw)
    assert len(walk.check("snapshot").plan.v4.sessions) == 2001  # 2,000 clients and the mesh
    rendered = []
    original = Renderer._render_session

    def counted(self, session, family):
        rendered.append(session.name)
        return original(self, session, family)

    monkeypatch.setattr(Renderer, "_render_session", counted)
    for key, value, want in [
        ("host/new/ip_addr_v4", "198.51.100.1", ["Client_198_51_100_1"]),
        ("host/new/as_num", "65002", ["Client_198_51_100_1"]),
        ("host/new/ip_addr_v6", "2001:db8::99", ["Client_2001_db8__99"]),  # global_peer_v6: IPv6 too
        ("host/new/workload", "x", []),  # not a BGP key: nothing to render
        ("host/n0007/ip_addr_v4", "198.51.100.2", ["Client_198_51_100_2"]),  # moved: old one just goes
        ("host/new/ip_addr_v4", None, []),
    ]:
        rendered.clear()
        walk.put(key, value)
        walk.pipeline.compute()
        assert rendered == want, key
    monkeypatch.undo()
    walk.check("after the changes")
    for i in range(300):  # a burst: more nodes than SnapshotParser moves one by one
        walk.put(f"host/n{i:04d}/ip_addr_v4", None)
        walk.put(f"host/burst{i:03d}/ip_addr_v4", f"198.51.101.{i % 250}")
    walk.check("a burst of 600 changes")
    walk.put("host/burst000/ip_addr_v4", None)
    walk.check("one more change after the burst")


def test_after_a_failed_render_the_next_change_renders_everything(monkeypatch):
    raw = {**GLOBALS, "global/peer_v4/192.0.2.10": b'{"ip": "192.0.2.10"}', "host/a/ip_addr_v4": b"192.0.2.21"}
    walk = Walk("bird1", raw=raw)
    walk.check("snapshot")
    original = Renderer._render_session

    def failing(self, session, family):
        if session.description == "b":
            raise RenderError("a template broke")
        return original(self, session, family)

    monkeypatch.setattr(Renderer, "_render_session", failing)
    walk.put("host/a/as_num", "65002")
    walk.put("host/b/ip_addr_v4", "192.0.2.22")
    with pytest.raises(RenderError):
        walk.pipeline.compute()
    monkeypatch.undo()
    walk.put("host/c/ip_addr_v4", "192.0.2.23")
    assert [name for name, _ in client_names(walk.check("the next change"))] == [
        "Client_192_0_2_21", "Client_192_0_2_22", "Client_192_0_2_23"]
