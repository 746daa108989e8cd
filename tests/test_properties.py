"""Property-based tests (hypothesis) of parse -> plan -> render on generated etcd data sets.

The data sets mix valid entries (reflectors, global peers, nodes with IPv4/IPv6 addresses,
AS numbers as JSON numbers, strings, asdot and padded text, node-specific peers) drawn from
small address pools, so that duplicates, self-peering and reflectors listed as nodes happen
often, with garbage keys and values (random bytes and text, random JSON, the hostile corpus).
The routing rules are checked against `oracle()`, written from README.md's table and
independent of rr_service/plan.py.

Every config any of these cases renders goes through BIRD's own parser (`bird -p`: BIRD 1.6's
bird and bird6, and BIRD 2), each distinct text once, two at a time in the background while
hypothesis goes on; the last test waits for them and fails on any refusal.

Reproducible: the `rr-properties` profile is derandomized (a fixed sequence of examples), with
no deadline and no example database. Case counts scale with RR_PROPERTY_SCALE (default 1;
0.1 for a quick look, 10 for a soak). At scale 1 the file generates > 10,000 cases in total
and prints the figure at the end of the run.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from rr_service.calico import rule_set  # noqa: E402
from rr_service.core.values import AS_MAX, DEFAULT_AS  # noqa: E402
from rr_service.calico.v1.snapshot import SnapshotParser, parse_snapshot  # noqa: E402
from rr_service.core.pipeline import Pipeline  # noqa: E402
from rr_service.core.plan import CLIENT, MESH, Identity  # noqa: E402
from rr_service.calico.v1.rules import plan  # noqa: E402
from rr_service.core.render import Renderer  # noqa: E402
from tests import prereq  # noqa: E402
from tests.hostile.corpus import CASES  # noqa: E402
from tests.hostile.grammar import (BIRD1, SYMBOL_RE, BirdChecker, assert_only_allowed_lines,  # noqa: E402
                                   bird1_available, bird2_binary, session_blocks)

V4, V6 = ipaddress.IPv4Address, ipaddress.IPv6Address
FLAVOURS = ("bird1", "bird2")
RENDERERS = {flavour: Renderer(flavour=flavour) for flavour in FLAVOURS}
LEGACY = rule_set("v1")

settings.register_profile(
    "rr-properties",
    derandomize=True,  # the same examples on every run: CI is reproducible
    deadline=None,  # a 2-core CI box has hiccups; time is bounded by max_examples instead
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SCALE = float(os.environ.get("RR_PROPERTY_SCALE", "1"))


def examples(n: int) -> settings:
    return settings(settings.get_profile("rr-properties"), max_examples=max(1, int(n * SCALE)))


CASE_COUNTS: Counter = Counter()  # test name -> examples run (every call, shrinking included)


def counted(name: str) -> None:
    CASE_COUNTS[name] += 1


PASSED: set = set()  # the tests of this module that passed, for the figure


def noted(test):
    """Outermost decorator: the test goes into PASSED once all its examples passed."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        test(*args, **kwargs)
        PASSED.add(test.__name__)
    return run


# ------------------------------------------------------------------------- strategies

V4_POOL = [f"192.0.2.{i}" for i in range(8, 20)]  # 192.0.2.10 and .11 are the usual "me"
V6_POOL = [f"2001:db8::{i}" for i in range(8, 20)]
NODE_NAMES = ["node-a", "node-b", "node-c", "node-d", "n1.example.com", "k8s_worker-3", "x"]
AS_POOL = [1, 64512, 64513, 65000, 65001, 4200000000, AS_MAX]
ME_V4 = ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
ME_V6 = [None, "2001:db8::10", "2001:db8::11"]


def spellings(text: str) -> list[str]:
    """Ways one address may be written in etcd, all meaning the same address."""
    address = ipaddress.ip_address(text)
    out = [text, f" {text}", f"{text}\n"]
    if address.version == 6:
        out += [text.upper(), address.exploded]
    return out


# Precomputed choices: one draw each instead of several keeps generation cheap (hypothesis'
# per-draw cost, not the code under test, dominates a case). Each is (address, value text,
# key text): usually canonical, sometimes another spelling of the same address.
def _spelled(pool: list) -> list:
    return [(ip, value, key) for ip in pool for value in spellings(ip)
            for key in (ip, ipaddress.ip_address(ip).exploded)]


SPELLED = {4: _spelled(V4_POOL), 6: _spelled(V6_POOL)}
SPELLED_STRATEGY = {family: st.sampled_from(SPELLED[family]) for family in (4, 6)}
PEER_POOL = {4: V4_POOL[:5] + ME_V4, 6: V6_POOL[:5] + ME_V6[1:]}
SPELLED_ALL = {4: _spelled(sorted(set(V4_POOL + ME_V4))), 6: _spelled(sorted(set(V6_POOL + ME_V6[1:])))}


def _as_forms(number: int) -> list:
    """(JSON value, number): number, string, asdot string, padded string."""
    return [(number, number), (str(number), number), (f"{number >> 16}.{number & 0xFFFF}", number), (f" {number} ", number)]


# AS numbers: the interesting ones and a fixed sample across the whole range, in every form
AS_SAMPLE = AS_POOL + random.Random(5).sample(range(1, AS_MAX + 1), 24)
as_json = st.sampled_from([form for number in AS_SAMPLE for form in _as_forms(number)])


def _as_text(form) -> tuple:
    """An AS as a plain etcd value (global/as_num, host/<n>/as_num): text, or a JSON string."""
    (value, number), quoted = form
    return (json.dumps(value) if quoted and isinstance(value, str) else str(value)).encode(), number


as_text = st.tuples(as_json, st.booleans()).map(_as_text)
# (field present, value, what it parses to)
CLUSTER_CHOICES = [(False, None, None), (False, None, None), (True, None, None), (True, "", None),
                   (True, "1.0.0.1", "1.0.0.1"), (True, "244.0.0.1", "244.0.0.1"), (True, " 1.0.0.1 ", "1.0.0.1")]
NODE_ADDRESS = ["address", "address", "empty", "absent"]
EMPTY_VALUES = [b"", b" ", b"\n"]


class _Subset:
    """Up to `most` distinct items of pool from one draw (a bit mask; shrinks to none)."""

    def __init__(self, pool: list, most: int):
        self.pool, self.most = pool, most

    def __call__(self, mask: int) -> list:
        return [x for i, x in enumerate(self.pool) if mask >> i & 1][:self.most]


_SUBSETS: dict = {}
# one strategy object per address, built once: strategies made per draw cost hypothesis far more
_SPELLING = {ip: st.sampled_from([s for s in SPELLED_ALL[family] if s[0] == ip])
             for family in (4, 6) for ip in {s[0] for s in SPELLED_ALL[family]}}


def subset(pool: list, most: int):
    key = (tuple(pool), most)
    if key not in _SUBSETS:
        _SUBSETS[key] = st.integers(0, 2 ** len(pool) - 1).map(_Subset(pool, most))
    return _SUBSETS[key]


def draw_spelled(draw, pool: list, most: int) -> list:
    """Up to `most` distinct addresses of pool, each as (address, value text, key text)."""
    return [draw(_SPELLING[ip]) for ip in draw(subset(sorted(set(pool)), most))]


@st.composite
def valid_data(draw):
    """A valid data set: raw etcd keys and what each is expected to parse into."""
    raw: dict = {}
    expect: dict = {"reflectors": {4: {}, 6: {}}, "global_peers": {4: {}, 6: {}}, "nodes": {}, "global_as": DEFAULT_AS}
    for family in (4, 6):
        for ip, value, key in draw_spelled(draw, V4_POOL if family == 4 else V6_POOL, 4):
            if ip in expect["reflectors"][family]:
                continue
            present, cluster, parsed = draw(CLUSTER_STRATEGY)
            fields = {"ip": value, "cluster_id": cluster} if present else {"ip": value}
            raw[f"rr_v{family}/{key}"] = json.dumps(fields).encode()
            expect["reflectors"][family][ip] = parsed
        for ip, value, key in draw_spelled(draw, PEER_POOL[family], 2):
            if ip in expect["global_peers"][family]:
                continue
            fields, number = {"ip": value}, None
            if draw(BOOLEANS):
                fields["as_num"], number = draw(as_json)
            raw[f"global/peer_v{family}/{key}"] = json.dumps(fields).encode()
            expect["global_peers"][family][ip] = number
    if draw(BOOLEANS):
        raw["global/as_num"], expect["global_as"] = draw(as_text)
    for name in draw(subset(NODE_NAMES, 6)):
        node = {"v4": None, "v6": None, "as": None, "peers": {4: {}, 6: {}}}
        for family in (4, 6):
            choice = draw(NODE_ADDRESS_STRATEGY)
            if choice == "address":
                ip, value, _key = draw(SPELLED_STRATEGY[family])
                raw[f"host/{name}/ip_addr_v{family}"] = value.encode()
                node[f"v{family}"] = ip
            elif choice == "empty":
                raw[f"host/{name}/ip_addr_v{family}"] = draw(EMPTY_STRATEGY)
            for ip, value, key in draw_spelled(draw, PEER_POOL[family], 2):
                if ip in node["peers"][family]:
                    continue
                fields, number = {"ip": value}, None
                if draw(BOOLEANS):
                    fields["as_num"], number = draw(as_json)
                raw[f"host/{name}/peer_v{family}/{key}"] = json.dumps(fields).encode()
                node["peers"][family][ip] = number
        if draw(BOOLEANS):
            raw[f"host/{name}/as_num"], node["as"] = draw(as_text)
        if any(key.startswith(f"host/{name}/") for key in raw):  # a node is its keys
            expect["nodes"][name] = node
    return raw, expect


HOSTILE_VALUES = sorted({case.value for case in CASES if len(case.value) <= 8192}, key=lambda v: (len(v), v))
HOSTILE_KEYS = sorted({case.key for case in CASES if len(case.key) <= 1024})
HOSTILE_SEGMENTS = ["", " ", "..", "/", "a/b", "192.0.2.10 ", "fe80::1%eth0", "192.0.2.010", "1.2.3.4/32",
                    "2001:db8::10", "\u202e", "\x00", "\n", "}", "{", ";", "#", "a" * 600, "\udcff"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


BOOLEANS = st.booleans()
BINARY64 = st.binary(max_size=64)
TEXT16 = st.text(max_size=16)
CLUSTER_STRATEGY = st.sampled_from(CLUSTER_CHOICES)
NODE_ADDRESS_STRATEGY = st.sampled_from(NODE_ADDRESS)
EMPTY_STRATEGY = st.sampled_from(EMPTY_VALUES)
GARBAGE_VALUE_KINDS = st.sampled_from(["binary", "text", "hostile", "json", "entry"])
GARBAGE_KEY_KINDS = st.sampled_from(["text", "hostile", "slot"])
HOSTILE_VALUE_STRATEGY = st.sampled_from(HOSTILE_VALUES)
HOSTILE_KEY_STRATEGY = st.sampled_from(HOSTILE_KEYS)
ENTRY_FIELDS = st.dictionaries(st.sampled_from(["ip", "as_num", "cluster_id", "IP", "extra"]),
                               st.one_of(json_values, st.sampled_from(V4_POOL + V6_POOL)), max_size=4)
SLOTS = st.sampled_from(["rr_v4/{}", "rr_v6/{}", "global/peer_v4/{}", "global/peer_v6/{}", "host/{}/ip_addr_v4",
                         "host/{}/ip_addr_v6", "host/{}/as_num", "host/g/peer_v4/{}", "host/g/peer_v6/{}", "{}/as_num",
                         "global/{}", "host/{}"])
SEGMENTS = st.one_of(st.text(max_size=12), st.sampled_from(HOSTILE_SEGMENTS))
ME_V4_STRATEGY, ME_V6_STRATEGY = st.sampled_from(ME_V4), st.sampled_from(ME_V6)


@st.composite
def garbage_value(draw):
    kind = draw(GARBAGE_VALUE_KINDS)
    if kind == "binary":
        return draw(BINARY64)
    if kind == "text":
        return draw(TEXT16).encode("utf-8", "surrogatepass")
    if kind == "hostile":
        return draw(HOSTILE_VALUE_STRATEGY)
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    # an entry-shaped object with hostile fields
    fields = draw(ENTRY_FIELDS)
    return json.dumps(fields).encode()


@st.composite
def garbage_key(draw):
    kind = draw(GARBAGE_KEY_KINDS)
    if kind == "text":
        return draw(TEXT16)
    if kind == "hostile":
        return draw(HOSTILE_KEY_STRATEGY)
    slot = draw(SLOTS)
    return slot.format(draw(SEGMENTS))


garbage = st.dictionaries(garbage_key(), garbage_value(), max_size=3)  # per valid data set


@st.composite
def identities(draw):
    v6 = draw(ME_V6_STRATEGY)
    return Identity(V4(draw(ME_V4_STRATEGY)), V6(v6) if v6 else None)


@st.composite
def data_sets(draw):
    """(raw, expect, me): valid entries with garbage mixed in; a valid key is never overwritten."""
    raw, expect = draw(valid_data())
    junk = draw(garbage)
    return {**junk, **raw}, expect, set(raw), draw(identities())


# ------------------------------------------------------------------------- the oracle

def oracle(snap, me: Identity) -> dict:
    """README's rules, written apart from plan.py: {(family, neighbour): (role, allowed settings)}.

    Where the data has two equal claims (two nodes with one address, two entries for one
    address in different spellings), every claim's settings are allowed: the rules say
    "exactly one session", not which claimant's settings win.
    """
    expected: dict = {}
    for family in (4, 6):
        mine = me.ipv4 if family == 4 else me.ipv6
        if mine is None:
            continue
        reflectors = snap.reflectors_v4 if family == 4 else snap.reflectors_v6
        own = [r for r in reflectors if r.ip == mine]
        cluster_ids = {r.cluster_id for r in own} or {None}
        if own:  # mesh member: every other reflector, global AS both ways, not an rr client
            for reflector in reflectors:
                if reflector.ip != mine:
                    expected[(family, reflector.ip)] = (MESH, {(snap.global_as, snap.global_as, False, None)}, set())
        global_peers = [p for p in (snap.global_peers_v4 if family == 4 else snap.global_peers_v6) if p.ip == mine]
        for node in snap.nodes:
            address = node.ipv4 if family == 4 else node.ipv6
            if address is None or address == mine or (family, address) in expected and expected[(family, address)][0] == MESH:
                continue
            own_peers = [p for p in (node.peers_v4 if family == 4 else node.peers_v6) if p.ip == mine]
            entries = own_peers or global_peers  # the node's own entry is the more specific one
            if not entries:
                continue
            neighbor_as = node.as_num if node.as_num is not None else snap.global_as
            allowed = set()
            for entry in entries:
                local_as = entry.as_num if entry.as_num is not None else neighbor_as
                ibgp = local_as == neighbor_as
                for cluster_id in cluster_ids:
                    allowed.add((local_as, neighbor_as, ibgp, cluster_id if ibgp else None))
            role, before, names = expected.get((family, address), (CLIENT, set(), set()))
            expected[(family, address)] = (CLIENT, before | allowed, names | {node.name})
    return expected


def by_address(pairs) -> dict:
    out: dict = {}
    for address, value in pairs:
        out.setdefault(str(address), set()).add(value)
    return out


def session_name(role: str, address) -> str:
    return ("Mesh_" if role == MESH else "Client_") + re.sub(r"[.:]", "_", str(address))


def render_both(the_plan, origin: tuple) -> dict:
    """Both flavours' configs; each goes to `bird -p` (origin says which case rendered it)."""
    configs = {flavour: RENDERERS[flavour].render(the_plan) for flavour in FLAVOURS}
    FOR_BIRD.submit(configs, origin)
    return configs


def check_rendered(configs: dict, the_plan) -> None:
    for flavour, files in configs.items():
        names: list = []
        for text in files.values():
            assert_only_allowed_lines(text, flavour)
            blocks = session_blocks(text)
            names += list(blocks)
        assert len(names) == len(set(names)), f"{flavour}: a protocol name twice"
        assert all(SYMBOL_RE.fullmatch(name) for name in names)
        assert set(names) == {s.name for s in the_plan.v4.sessions + the_plan.v6.sessions}


# ------------------------------------------------------------------------- properties

@noted
@examples(3400)
@given(raw=st.dictionaries(st.one_of(TEXT16, garbage_key()), st.one_of(BINARY64, garbage_value()), max_size=8),
       me=identities())
def test_arbitrary_data_never_raises_and_renders_only_allowed_lines(raw, me):
    counted("arbitrary data: parse, plan, render")
    snap = parse_snapshot(raw)
    assert {r.key for r in snap.rejected} <= set(raw)
    assert all(r.reason and r.reason.isprintable() for r in snap.rejected)
    the_plan = plan(snap, me)
    check_rendered(render_both(the_plan, ("arbitrary data", raw, me)), the_plan)


@noted
@examples(4400)
@given(data=data_sets())
def test_sessions_follow_the_rules(data):
    """The oracle's sessions, exactly; valid entries parse as intended; names are stable."""
    counted("mixed data: rules (oracle), names, grammar")
    raw, expect, valid_keys, me = data
    snap = parse_snapshot(raw)
    rejected = {r.key for r in snap.rejected}
    assert not rejected & valid_keys, "a valid entry was rejected"

    # the valid entries are in the snapshot as generated
    # (garbage may add a second entry for an address in another spelling: hence sets)
    for family in (4, 6):
        reflectors = by_address((r.ip, r.cluster_id) for r in snap.reflectors(family))
        for ip, cluster in expect["reflectors"][family].items():
            assert cluster in reflectors[ip]
        peers = by_address((p.ip, p.as_num) for p in snap.global_peers(family))
        for ip, number in expect["global_peers"][family].items():
            assert number in peers[ip]
    if "global/as_num" in valid_keys:
        assert snap.global_as == expect["global_as"]
    nodes = {n.name: n for n in snap.nodes}
    for name, node in expect["nodes"].items():
        got = nodes[name]
        assert (str(got.ipv4) if got.ipv4 else None, str(got.ipv6) if got.ipv6 else None, got.as_num) == \
            (node["v4"], node["v6"], node["as"])
        for family in (4, 6):
            peers = by_address((p.ip, p.as_num) for p in got.peers(family))
            for ip, number in node["peers"][family].items():
                assert number in peers[ip]

    the_plan = plan(snap, me)
    expected = oracle(snap, me)
    got = {}
    for family_plan in (the_plan.v4, the_plan.v6):
        for session in family_plan.sessions:
            key = (family_plan.family, session.neighbor)
            assert key not in got, f"two sessions to {session.neighbor}"
            got[key] = session
    assert set(got) == set(expected)
    for key, session in got.items():
        role, allowed, names = expected[key]
        assert session.role == role
        assert (session.local_as, session.neighbor_as, session.rr_client, session.cluster_id) in allowed
        assert session.name == session_name(role, session.neighbor)
        assert ":" not in session.name and SYMBOL_RE.fullmatch(session.name)
        if role == CLIENT:  # one of the claimants keeps the address (which: test_pipeline.py)
            assert session.node in names and session.description == session.node
    # standalone vs mesh
    for family_plan in (the_plan.v4, the_plan.v6):
        mine = family_plan.local_address
        registered = mine is not None and any(r.ip == mine for r in snap.reflectors(family_plan.family))
        assert family_plan.registered == registered
        if not registered:
            assert family_plan.count(MESH) == 0 and family_plan.cluster_id is None
            assert all(s.cluster_id is None for s in family_plan.sessions)
    configs = render_both(the_plan, ("mixed data: rules", raw, me))
    check_rendered(configs, the_plan)
    for flavour in FLAVOURS:
        text = "".join(configs[flavour].values())
        if not the_plan.v4.registered and not the_plan.v6.registered:
            assert "rr cluster id" not in text and "Mesh_" not in text


@noted
@examples(2400)
@given(data=data_sets(), split=st.integers(0, 100), seed=st.integers(0, 2**32 - 1))
def test_same_output_in_any_key_order_and_change_by_change(data, split, seed):
    """Names and text are stable: the data in another key order renders the same; the
    daemon's path (SnapshotParser.update, change by change, with junk put and deleted on the
    way; and the daemon's Pipeline, changes folded in groups) gives the full parse's result;
    and a rejected key contributes nothing."""
    counted("mixed data: key order, incremental parse, rejected keys inert")
    raw, _expect, _valid, me = data
    items = list(raw.items())
    random.Random(seed).shuffle(items)
    # Each key created in the order the daemon's path below receives it, as etcd would number
    # them: a node sharing an address with a node that came first never takes it over, so
    # the order of arrival and the creation order give the same winner.
    created = {key: i for i, (key, _) in enumerate(items)}
    full = SnapshotParser(created).reset(raw)
    full_plan = plan(full, me)
    configs = render_both(full_plan, ("mixed data: key order", raw, me))
    # Nodes sharing an address: which one keeps it depends on which session ran first (a
    # later claim never takes over), so a path of changes may end with another winner than a
    # fresh start; test_pipeline.py holds that history to the oracle. Here: the same sessions.
    shared = any(" nodes claim the address " in warning for warning in full_plan.warnings)

    def same(got_files: dict, want_files: dict) -> bool:
        """One flavour's config files (bird, bird6 -> text)."""
        if not shared:
            return got_files == want_files
        return {name for text in got_files.values() for name in session_blocks(text)} == \
            {name for text in want_files.values() for name in session_blocks(text)}

    shuffled = SnapshotParser(created).reset(dict(items))
    assert shuffled.rejected == full.rejected
    assert render_both(plan(shuffled, me), ("mixed data: key order, shuffled", raw, me)) == configs

    without = SnapshotParser(created).reset({k: v for k, v in raw.items() if k not in {r.key for r in full.rejected}})
    assert without == full and without.rejected == ()

    cut = len(items) * split // 100
    parser, memo = SnapshotParser(created), {}
    renderers = {flavour: Renderer(flavour=flavour) for flavour in FLAVOURS} if split % 25 == 0 else RENDERERS
    parser.reset(dict(items[:cut]))
    for flavour in FLAVOURS:
        renderers[flavour].render(plan(parser.update({}), me, memo))
    junk = {key: b"{junk" for key, _ in items[cut:][::3]}
    parser.update(junk)
    parser.update({key: None for key in junk})
    step = parser.update(dict(items[:cut]))  # the same values again: nothing changes
    for key, value in items[cut:]:
        step = parser.update({key: value})
    assert step == full and step.rejected == full.rejected
    step_plan = plan(step, me, memo)
    assert all(same(renderers[flavour].render(step_plan), configs[flavour]) for flavour in FLAVOURS)

    # The daemon's own objects (Pipeline: SnapshotParser.apply, Planner, IncrementalRenderer):
    # the same start, junk put and deleted, the rest folded in groups of 1 to 4 keys. One
    # flavour per case, in turn: what is incremental there does not depend on it.
    rng, flavour = random.Random(seed), FLAVOURS[seed % 2]
    pipeline = Pipeline(LEGACY, me, renderers[flavour])
    pipeline.reset(dict(items[:cut]), created)
    batches = [junk, dict.fromkeys(junk)]
    rest = items[cut:]
    while rest:
        size = rng.randint(1, 4)
        batches.append(dict(rest[:size]))
        rest = rest[size:]
    computed = pipeline.compute()
    for batch in batches:
        for key, value in batch.items():
            pipeline.change(key, value, created.get(key))
        computed = pipeline.compute()
    assert same(computed.configs, configs[flavour]) and computed.rejected == full.rejected
    assert shared or computed.plan == full_plan


# ------------------------------------------------------------------------- BIRD's own parser

class _ForBird:
    """Where render_both() sends every config: a BirdChecker over the BIRDs there are."""

    def __init__(self) -> None:
        self.checker = None
        self.bird1, self.bird2 = False, None

    def start(self) -> None:
        self.bird1, self.bird2 = bird1_available(), bird2_binary()
        self.checker = BirdChecker(workers=2)  # the machine's two cores

    def submit(self, configs: dict, origin: tuple) -> None:
        if self.checker is None:
            return
        if self.bird1:
            for target, text in configs["bird1"].items():
                self.checker.submit(BIRD1[target], text, origin)
        if self.bird2:
            self.checker.submit(self.bird2, configs["bird2"]["bird"], origin)

    def close(self) -> None:
        if self.checker is not None:
            self.checker.close()
            self.checker = None


FOR_BIRD = _ForBird()


@pytest.fixture(scope="module", autouse=True)
def bird_checks(request):
    """BIRD checks what the property tests render only when its test runs too (it is an
    integration test: `make test-unit` runs no BIRD)."""
    if any(item.name == "test_bird_parses_every_rendered_config" and item.path == request.path
           for item in request.session.items):
        FOR_BIRD.start()
    yield FOR_BIRD
    FOR_BIRD.close()


@pytest.mark.integration  # runs the BIRD binary
def test_bird_parses_every_rendered_config():
    """Every config the tests above rendered, through `bird -p`: BIRD 1.6's bird and bird6 for
    the bird1 flavour, BIRD 2 for bird2. Distinct texts are checked once, two at a time, while
    the tests run; this waits for the rest."""
    prereq.partly(FOR_BIRD.bird1, "BIRD 1.6 (bird, bird6) is not installed")
    prereq.partly(FOR_BIRD.bird2 is not None, "BIRD 2 could not be unpacked (tools/fetch-bird2)")
    if not FOR_BIRD.bird1 and not FOR_BIRD.bird2:
        prereq.missing("neither BIRD 1.6 nor BIRD 2 is available")
    checker = FOR_BIRD.checker
    if not checker.submitted:
        pytest.skip("nothing rendered: run it with the property tests, it checks their configs")
    t_wait = time.monotonic()
    refused = checker.wait()
    CASE_COUNTS["bird -p: configs rendered"] = checker.submitted
    CASE_COUNTS["bird -p: runs (distinct configs)"] = checker.runs
    BIRD_WAIT["seconds"] = time.monotonic() - t_wait
    assert not refused, "\n\n".join(f"{binary}: {error}\nrendered by: {origin[0]}\ndata: {origin[1]!r}\nme: {origin[2]}"
                                    for (binary, _digest), (error, origin) in list(refused.items())[:3])
    PASSED.add("test_bird_parses_every_rendered_config")


# ------------------------------------------------------------------------- the figure

BIRD_WAIT: dict = {"seconds": 0.0}  # how long the last test waited for bird -p after the others
PROPERTY_TESTS = ("test_arbitrary_data_never_raises_and_renders_only_allowed_lines",
                  "test_sessions_follow_the_rules",
                  "test_same_output_in_any_key_order_and_change_by_change",
                  "test_bird_parses_every_rendered_config")


@pytest.fixture(scope="module", autouse=True)
def report_case_counts(request):
    started = time.monotonic()  # the module's first test, not its import (collection comes first)
    yield
    cases = sum(n for name, n in CASE_COUNTS.items() if not name.startswith("bird -p"))
    seconds = time.monotonic() - started
    lines = [f"hypothesis: {cases} generated cases in {seconds:.1f} s (RR_PROPERTY_SCALE={SCALE:g}); "
             f"waited {BIRD_WAIT['seconds']:.1f} s for bird -p at the end"]
    lines += [f"  {n:6d}  {name}" for name, n in sorted(CASE_COUNTS.items())]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    with capture.global_and_fixture_disabled():
        for line in lines:
            (reporter.write_line if reporter else print)(line)
    if cases < 10000 or not PASSED.issuperset(PROPERTY_TESTS):
        return  # a partial run (-k, a smaller scale, a failure or a skip): no figure
    from tests.faults.figures import record
    record(
        "hostile", "properties",
        fault="generated etcd data sets (hypothesis)",
        done=("valid reflectors, global peers, nodes (IPv4/IPv6, AS as number, string, asdot), "
              "node-specific peers, mixed with random bytes, text, JSON and corpus values; "
              "parse, plan, render (BIRD 1.6 and 2), checked against an independent oracle "
              "of the rules; derandomized"),
        figure=(f"{cases} cases, 0 failures: no exception, only allowed lines, one session per "
                f"neighbour, stable valid names; all {CASE_COUNTS['bird -p: configs rendered']} "
                f"configs rendered passed bird -p ({CASE_COUNTS['bird -p: runs (distinct configs)']} "
                f"distinct texts); {seconds:.0f} s"),
        measured={"cases": cases, "seconds": seconds, "bird_wait_seconds": BIRD_WAIT["seconds"],
                  **dict(CASE_COUNTS)},
        test="tests/test_properties.py",
    )
