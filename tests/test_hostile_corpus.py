"""The hostile-input corpus (tests/hostile/corpus.py) against parse, plan, render and BIRD.

Every case is one hostile or broken etcd key/value placed into a realistic data set (two
reflectors per family, three good nodes, the global peer entries). For each: no exception;
every line of every rendered config (BIRD 1.6 pair and BIRD 2) passes the allowed-line
grammar; the good sessions are all there with identical lines; the key is rejected with a
reason (or accepted/ignored, as the corpus entry says and why); `ProblemLog` logs it once;
the incremental parser (the daemon's path) agrees with a full parse. Then BIRD's own parser
reads every distinct rendered config.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from rr_service import loop  # noqa: E402
from tests import prereq  # noqa: E402
from rr_service.calico.v1.snapshot import SnapshotParser, parse_snapshot  # noqa: E402
from rr_service.calico.v1.rules import plan  # noqa: E402
from rr_service.core.render import Renderer  # noqa: E402
from rr_service.core.values import SHOWN_KEY_CHARS  # noqa: E402
from tests.hostile.corpus import ACCEPT, BASE, CASES, GOOD_SESSIONS, IGNORE, ME, REJECT  # noqa: E402
from tests.hostile.grammar import (BIRD1, BirdChecker, assert_only_allowed_lines,  # noqa: E402
                                   bird1_available, bird2_binary, session_blocks)

FLAVOURS = ("bird1", "bird2")
LOGGER = "calico-rr"  # rr_service.daemon's logger
RENDERED: dict = {}  # case id -> {flavour: {target: text}}, for the BIRD parser test
PASSED: set = set()


# One renderer per flavour and path, reused like the daemon's (each compiles its templates once).
RENDERERS = {flavour: Renderer(flavour=flavour) for flavour in FLAVOURS}
INCREMENTAL_RENDERERS = {flavour: Renderer(flavour=flavour) for flavour in FLAVOURS}


def render_all(raw):
    snap = parse_snapshot(raw)
    the_plan = plan(snap, ME)
    return snap, the_plan, {flavour: RENDERERS[flavour].render(the_plan) for flavour in FLAVOURS}


BASE_SNAP, BASE_PLAN, BASE_CONFIGS = render_all(BASE)


def names_in(configs) -> set:
    return {name for text in configs.values() for name in session_blocks(text)}


def test_base_data_set_is_what_the_corpus_assumes():
    assert BASE_SNAP.rejected == () and BASE_PLAN.warnings == ()
    for flavour in FLAVOURS:
        assert names_in(BASE_CONFIGS[flavour]) == GOOD_SESSIONS
        for text in BASE_CONFIGS[flavour].values():
            assert_only_allowed_lines(text, flavour)


def test_corpus_size_and_documentation():
    assert len(CASES) >= 200
    assert len({case.id for case in CASES}) == len(CASES)
    for case in CASES:
        assert case.expect in (REJECT, ACCEPT, IGNORE)
        if case.expect != REJECT:
            assert len(case.why) > 5, f"{case.id}: say why this is acceptable"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_case(case, caplog):
    raw = case.data()
    snap, the_plan, configs = render_all(raw)  # no exception: the first property

    # 0 injected lines, in every file of every flavour
    for flavour in FLAVOURS:
        for text in configs[flavour].values():
            assert_only_allowed_lines(text, flavour)

    # the good sessions are all there, line for line; nothing but `adds` is new
    for flavour in FLAVOURS:
        base_blocks = {name: block for text in BASE_CONFIGS[flavour].values() for name, block in session_blocks(text).items()}
        blocks = {name: block for text in configs[flavour].values() for name, block in session_blocks(text).items()}
        assert set(blocks) == GOOD_SESSIONS | case.adds, flavour
        for name in GOOD_SESSIONS:
            assert blocks[name] == base_blocks[name], f"{flavour}: session {name} changed"
        if not case.adds:  # nothing new: the very same files
            assert configs[flavour] == BASE_CONFIGS[flavour], flavour

    # rejected with a reason, or accepted / ignored as the corpus says
    if case.expect == REJECT:
        assert [r.key for r in snap.rejected] == [case.key]
        reason = snap.rejected[0].reason
        assert reason and reason.isprintable() and len(reason) < 300, repr(reason)
        assert case.reason in reason
    else:
        assert snap.rejected == (), case.why

    # a rejected global/as_num makes the plan unusable (every session rests on it), and
    # nothing else in the corpus does: one node's or another peer's bad key never does
    if case.expect == REJECT and case.key == "global/as_num":
        assert the_plan.error and the_plan.error.startswith("etcd key global/as_num is invalid")
        assert the_plan.error.isprintable(), repr(the_plan.error)
    else:
        assert the_plan.error is None, the_plan.error

    # one warning naming the key per rejected key, and none when the same is reported again
    state = loop.State()
    first = loop.report_problems(state, snap.rejected, the_plan.warnings)
    second = loop.report_problems(state, snap.rejected, the_plan.warnings)
    key_lines = [line for line in first if line.text.startswith("ignoring etcd key")]
    assert len(key_lines) == len(snap.rejected) == (1 if case.expect == REJECT else 0)
    assert len(first) == len(key_lines) + len(the_plan.warnings)
    for line in key_lines:
        assert line.level == "warning"
        shown = case.key if case.key.isprintable() else repr(case.key)  # never raw control chars
        if len(shown) > SHOWN_KEY_CHARS:  # a long key is cut short: its start and its length
            shown = f"{shown[:SHOWN_KEY_CHARS - 40]}... ({len(case.key)} characters)"
        assert shown in line.text and snap.rejected[0].reason in line.text
        assert "\n" not in line.text and line.text.isprintable()
    assert second == []

    # the daemon's incremental path: the key arriving as a change, then deleted again
    parser, memo = SnapshotParser(), {}
    renderers = INCREMENTAL_RENDERERS
    parser.reset(BASE)
    for flavour in FLAVOURS:
        renderers[flavour].render(plan(parser.update({}), ME, memo))
    changes = dict(case.extra)
    changes[case.key] = case.value
    incremental = parser.update(changes)
    assert incremental == snap and incremental.rejected == snap.rejected
    incremental_plan = plan(incremental, ME, memo)
    for flavour in FLAVOURS:
        assert renderers[flavour].render(incremental_plan) == configs[flavour]
    after = parser.update({key: None for key in changes})
    assert after.rejected == () and after == BASE_SNAP
    for flavour in FLAVOURS:
        assert renderers[flavour].render(plan(after, ME, memo)) == BASE_CONFIGS[flavour]

    RENDERED[case.id] = configs
    PASSED.add(case.id)


def test_log_line_of_a_key_with_control_characters_is_one_line():
    cases = [c for c in CASES if c.expect == REJECT and not c.key.isprintable()]
    assert cases
    for case in cases:
        for line in loop.report_problems(loop.State(), parse_snapshot(case.data()).rejected, ()):
            assert line.text.isprintable(), repr(line.text)


@pytest.mark.integration  # runs the BIRD binary
def test_bird_parses_every_rendered_config():
    """BIRD 1.6 (bird, bird6), BIRD 2 and BIRD 3 on every distinct config the corpus rendered
    (BIRD 3's flavour renders BIRD 2's text: test_bird2.test_bird3_config_is_bird2s)."""
    if len(RENDERED) < len(CASES):  # run alone: render them here
        for case in CASES:
            RENDERED.setdefault(case.id, render_all(case.data())[2])
    jobs: dict = {}  # (binary, text) -> case ids
    if bird1_available():
        for case_id, configs in RENDERED.items():
            for target, text in configs["bird1"].items():
                jobs.setdefault((BIRD1[target], text), []).append(case_id)
    bird2, bird3 = bird2_binary(), prereq.bird3_binary()
    for binary in filter(None, (bird2, bird3)):
        for case_id, configs in RENDERED.items():
            jobs.setdefault((binary, configs["bird2"]["bird"]), []).append(case_id)
    prereq.partly(bird1_available(), "BIRD 1.6 (bird, bird6) is not installed")
    prereq.partly(bird2 is not None, "BIRD 2 could not be unpacked (tools/fetch-bird2)")
    prereq.partly(bird3 is not None, "BIRD 3 could not be fetched (tools/fetch-bird3)")
    if not jobs:
        prereq.missing("neither BIRD 1.6 nor BIRD 2 is available")
    checker = BirdChecker(workers=2)
    try:
        refused = checker.check(jobs)
    finally:
        checker.close()
    assert not refused, "\n".join(f"{jobs[job][:3]} {job[0]}: {error}" for job, error in refused.items())
    _record_figures(len(jobs), checker.runs, bird2 is not None, bird3 is not None)


def _record_figures(configs: int, runs: int, with_bird2: bool, with_bird3: bool) -> None:
    """The corpus' row of docs/reliability.md: only once every case and the BIRD check passed."""
    if len(PASSED) != len(CASES):
        return  # a partial run (-k, a failure): no figure
    from tests.faults.figures import record
    counts = {kind: sum(1 for c in CASES if c.expect == kind) for kind in (REJECT, ACCEPT, IGNORE)}
    record(
        "hostile", "hostile_corpus",
        fault="hostile etcd keys and values",
        done=(f"{len(CASES)} hostile or broken keys/values (bad JSON, wrong types and families, "
              "out-of-range AS, BIRD/template injection, control characters, unicode, 1 MiB "
              "values, duplicate fields, odd key paths), each in a data set of 2 reflectors, "
              "3 nodes and the global peers; BIRD 1.6 pair and BIRD 2 rendered, BIRD 3 parsed BIRD 2's"),
        figure=(f"0 crashes, 0 injected lines, 0 good sessions changed; {counts[REJECT]} rejected "
                f"with one log line each, {counts[ACCEPT]} accepted and {counts[IGNORE]} ignored "
                f"(each documented); {configs} distinct configs passed bird -p"),
        measured={"cases": len(CASES), **counts, "bird_configs": configs, "bird_runs": runs,
                  "bird2": with_bird2, "bird3": with_bird3},
        test="tests/test_hostile_corpus.py",
    )


# ------------------------------------------------------------------ regressions found by the corpus

@pytest.mark.parametrize("value", [b"fe80::1%eth0", b"2001:db8::30%eth0", b"2001:db8::30%x; protocol bgp evil {"])
def test_regression_scoped_ipv6_is_rejected(value):
    """Was accepted (Python's ipaddress parses a zone index), then the render guard raised
    RenderError on the protocol name: one bad node stopped every config update."""
    snap, _plan, configs = render_all({**BASE, "host/h/ip_addr_v6": value})
    assert [(r.key, "zone index" in r.reason) for r in snap.rejected] == [("host/h/ip_addr_v6", True)]
    assert configs == BASE_CONFIGS


@pytest.mark.parametrize("key, value", [("host/h/ip_addr_v6", b"fe80::30"),
                                        ("rr_v6/fe80::12", b'{"ip": "fe80::12"}')])
def test_regression_link_local_ipv6_is_rejected(key, value):
    """Was accepted, and BIRD refused the whole config: "Link-local neighbor address requires
    specified interface" (BIRD 1.6) / "Link-local addresses require defined interface" (2)."""
    snap, _plan, configs = render_all({**BASE, key: value})
    assert [(r.key, "link-local" in r.reason) for r in snap.rejected] == [(key, True)]
    assert configs == BASE_CONFIGS


@pytest.mark.parametrize("extra", [
    {"global/peer_v4/192.0.2.10 ": b'{"ip": "192.0.2.10", "as_num": 1}'},
    {"rr_v6/2001:DB8::11": b'{"ip": "2001:db8::11"}'},  # BASE's has a cluster id, this one none
    {"host/node-c/peer_v4/ 192.0.2.10": b'{"ip": "192.0.2.10"}'},  # BASE's has an AS, this one none
])
def test_regression_one_address_in_two_spellings_does_not_crash(extra):
    """Two keys for one address, one entry with an AS (or cluster id) and one without, raised
    TypeError ('<' between int and None) when the parser sorted them."""
    snap, _plan, configs = render_all({**BASE, **extra})
    assert snap.rejected == ()
    assert configs == BASE_CONFIGS  # the same entry wins whatever etcd's key order
    assert render_all(dict(reversed(list({**BASE, **extra}.items()))))[2] == configs


def test_regression_deeply_nested_json_is_rejected():
    """json.loads raised RecursionError (not a ValueError) and the whole parse failed."""
    snap, _plan, configs = render_all({**BASE, "rr_v4/192.0.2.12": b"[" * 2000 + b"]" * 2000})
    assert [r.key for r in snap.rejected] == ["rr_v4/192.0.2.12"] and "nested" in snap.rejected[0].reason
    assert configs == BASE_CONFIGS


@pytest.mark.parametrize("key", ["host/a/b/ip_addr_v4", "host/a//as_num", "/rr_v4/192.0.2.12", "global/as_num/x"])
def test_regression_misplaced_bgp_keys_are_rejected_not_ignored(key):
    """Were ignored without a word: a node name with '/' or an extra segment lost a node silently."""
    snap = parse_snapshot({**BASE, key: b"192.0.2.40"})
    assert [r.key for r in snap.rejected] == [key] and "unexpected key layout" in snap.rejected[0].reason


def test_regression_reasons_stay_short_and_printable():
    """A 4000-digit AS gave a 4 KB reason (and log line); a key's raw text reached a reason."""
    snap = parse_snapshot({"host/node-a/peer_v4/192.0.2.10": b'{"ip": "192.0.2.10", "as_num": ' + b"9" * 4000 + b"}",
                           "rr_v4/\t192.0.2.12\n": b'{"ip": "192.0.2.13"}'})
    reasons = [r.reason for r in snap.rejected]
    assert len(reasons) == 2 and all(len(reason) < 200 and reason.isprintable() for reason in reasons), reasons


@pytest.mark.parametrize("rules, key", [
    ("v1", "host/" + "n" * 100_000 + "/ip_addr_v4"),
    ("v1", "host/\n" + "x" * 100_000 + "/ip_addr_v4"),
    ("v3", "nodes/" + "n" * 100_000),
])
def test_regression_a_huge_key_is_logged_cut_short(rules, key):
    """A 100 KB key is refused, and its log line stays short: the start of the key and its
    length, not 100 KB of it."""
    from rr_service.calico import rule_set
    from rr_service.core.pipeline import compute_once
    from rr_service.core.render import Renderer
    from rr_service.core.values import rejection_message

    value = b"192.0.2.30" if rules == "v1" else b'{"kind": "Node", "spec": {}}'
    computed = compute_once(rule_set(rules), {key: value}, ME, Renderer(flavour="bird1"))
    [rejected] = computed.rejected
    line = rejection_message(rejected)
    assert len(line) < 400 and line.isprintable(), line[:500]
    assert f"({len(key)} characters)" in line
