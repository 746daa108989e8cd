"""The loop's decisions (rr_service/loop.py), driven event by event: no root, no etcd, no BIRD,
no clock. Each test plays the daemon's part: it answers every action the program yields and
checks what the program does next — READY only with a current config (or HELD / BLOCKED),
backoff while the datastore is down, BIRD drift checks, retries, bursts, reloads."""

from __future__ import annotations

import ipaddress
import random

import pytest

from rr_service import loop
from rr_service.core.plan import CLIENT, FamilyPlan, Plan, Session

V4 = ipaddress.IPv4Address
ME = V4("192.0.2.10")


def session(n: int) -> Session:
    address = V4(f"192.0.2.{100 + n}")
    return Session(f"Client_192_0_2_{100 + n}", CLIENT, address, 64512, 64512, True, None, f"n{n}")


def a_plan(clients: int = 3, error=None) -> Plan:
    sessions = tuple(session(n) for n in range(clients))
    return Plan(ME, FamilyPlan(4, ME, True, None, sessions), FamilyPlan(6, None, False, None, ()), error=error)


def computed(now: float, the_plan: Plan, text: str = "config", disk=frozenset(), accepted=False) -> loop.Computed:
    names = {"bird": frozenset(s.name for s in the_plan.v4.sessions)}
    return loop.Computed(now, the_plan, {"bird": text}, names, {"bird": disk}, accepted)


class Daemon:
    """Plays the daemon: records every action, answers the ones that need an answer."""

    def __init__(self, settings: loop.Settings = loop.Settings()):
        self.program = loop.program(settings, rng=random.Random(1))
        self.actions: list = []
        self.pending = next(self.program)

    def until(self, kind):
        """Answer nothing-needed actions until one of `kind` comes; return it."""
        while not isinstance(self.pending, kind):
            self.actions.append(self.pending)
            if isinstance(self.pending, (loop.Log, loop.Notify, loop.PublishHeld, loop.ClearHeld, loop.Sleep)):
                self.pending = self.program.send(None)
            else:
                raise AssertionError(f"waiting for {kind.__name__}, the program asks for {self.pending!r}")
        return self.pending

    def answer(self, kind, event):
        self.until(kind)
        self.actions.append(self.pending)
        self.pending = self.program.send(event)

    def logs(self, level=None) -> list:
        """The log lines so far, also the one waiting to be performed."""
        return [a.text for a in (*self.actions, self.pending) if isinstance(a, loop.Log) and level in (None, a.level)]

    def notifies(self) -> list:
        return [a for a in self.actions if isinstance(a, loop.Notify)]

    # a pass with a healthy datastore, in its usual shape
    def start(self, now=0.0, plan=None, outcome=loop.APPLIED, disk=frozenset()):
        self.answer(loop.Pass, loop.PassStarted(now))
        self.answer(loop.ReadSnapshot, loop.SnapshotRead(now, "revision 7", 3))
        self.answer(loop.Compute, computed(now, plan or a_plan(), disk=disk))
        self.answer(loop.Apply, loop.Applied(now, 1_700_000_000, {"bird": loop.Outcome(outcome, "BIRD says no")}))
        return self.until(loop.Notify)


def test_ready_once_bird_accepted_the_first_config():
    d = Daemon()
    notify = d.start()
    assert notify.ready and "etcd ok at revision 7" in notify.status and "bird applied" in notify.status
    assert "IPv4: 0 reflector peers, 3 clients" in notify.status
    assert isinstance(d.program.send(None), loop.Wait)


def test_no_ready_while_bird_refuses_and_the_refused_text_is_not_sent_again():
    d = Daemon()
    notify = d.start(outcome=loop.REJECTED)
    assert not notify.ready and "rejected by BIRD" in notify.status
    assert any("BIRD refused the new bird" in line for line in d.logs("error"))
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Changes(1.0, 1))
    d.answer(loop.Pass, loop.PassStarted(1.0))
    # the same text again: not sent to BIRD
    d.answer(loop.Compute, computed(1.0, a_plan()))
    apply = d.until(loop.Apply)
    assert apply.configs == {}
    d.answer(loop.Apply, loop.Applied(1.0, 1_700_000_001, {}))
    notify = d.until(loop.Notify)
    assert not notify.ready and "rejected by BIRD (see log)" in notify.status
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Changes(2.0, 1))
    d.answer(loop.Pass, loop.PassStarted(2.0))
    d.answer(loop.Compute, computed(2.0, a_plan(), text="fixed"))
    assert d.until(loop.Apply).configs == {"bird": "fixed"}
    d.answer(loop.Apply, loop.Applied(2.0, 1_700_000_002, {"bird": loop.Outcome(loop.APPLIED)}))
    assert d.until(loop.Notify).ready


def test_no_ready_after_a_render_failure():
    d = Daemon()
    d.answer(loop.Pass, loop.PassStarted(0.0))
    d.answer(loop.ReadSnapshot, loop.SnapshotRead(0.0, "revision 1"))
    d.answer(loop.Compute, loop.RenderFailed("template broken"))
    notify = d.until(loop.Notify)
    assert not notify.ready and "render failed: template broken" in notify.status


def test_datastore_down_at_start_ready_anyway_with_backoff_from_a_quarter_second_to_one():
    d = Daemon()
    sleeps = []
    for n in range(5):
        d.answer(loop.Pass, loop.PassStarted(float(n)))
        d.answer(loop.ReadSnapshot, loop.Failed(float(n), 1_700_000_000, "etcd http://192.0.2.2:2379: connection refused"))
        notify = d.until(loop.Notify)
        assert notify.ready and "etcd unreachable since" in notify.status
        d.answer(loop.Notify, None)
        sleeps.append(d.until(loop.Sleep).seconds)
        d.answer(loop.Sleep, None)
    assert [round(s / base, 1) for s, base in zip(sleeps, (0.25, 0.5, 1, 1, 1))] == [pytest.approx(1, abs=0.2)] * 5
    assert len(d.logs("warning")) == 1  # the same reason is logged once
    # back: logged, backoff reset
    d.answer(loop.Pass, loop.PassStarted(10.0))
    d.answer(loop.ReadSnapshot, loop.SnapshotRead(10.0, "revision 9", describe="etcd http://192.0.2.2:2379"))
    assert "etcd is reachable again (etcd http://192.0.2.2:2379)" in d.logs("info")


def test_a_plan_resting_on_invalid_data_is_blocked_ready_and_logged_once():
    d = Daemon()
    d.answer(loop.Pass, loop.PassStarted(0.0))
    d.answer(loop.ReadSnapshot, loop.SnapshotRead(0.0, "revision 1"))
    d.answer(loop.Compute, computed(0.0, a_plan(error="etcd key global/as_num is invalid")))
    notify = d.until(loop.Notify)
    assert notify.ready and "NOT APPLIED: etcd key global/as_num is invalid" in notify.status
    assert not any(isinstance(a, loop.Apply) for a in d.actions)
    for now in (1.0, 2.0):
        d.answer(loop.Notify, None)
        d.answer(loop.Wait, loop.Changes(now, 1))
        d.answer(loop.Pass, loop.PassStarted(now))
        d.answer(loop.Compute, computed(now, a_plan(error="etcd key global/as_num is invalid")))
    assert len([line for line in d.logs("error") if "not applying" in line]) == 1
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Changes(3.0, 1))
    d.answer(loop.Pass, loop.PassStarted(3.0))
    d.answer(loop.Compute, computed(3.0, a_plan()))
    assert d.until(loop.Apply)
    assert any("the data is usable again" in line for line in d.logs("warning"))


def test_the_drop_guard_holds_a_render_that_drops_most_sessions_until_accepted():
    d = Daemon()
    on_disk = frozenset(session(n).name for n in range(4))
    d.answer(loop.Pass, loop.PassStarted(0.0))
    d.answer(loop.ReadSnapshot, loop.SnapshotRead(0.0, "revision 1"))
    d.answer(loop.Compute, computed(0.0, a_plan(clients=0), disk=on_disk))
    held = d.until(loop.PublishHeld)
    assert not held.verdict.apply and held.verdict.dropped == 4
    notify = d.until(loop.Notify)
    assert notify.ready and "HELD BACK: the new data would drop 4 of 4 BGP sessions" in notify.status
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Changes(0.5, 0))
    d.answer(loop.Pass, loop.PassStarted(0.5))
    assert isinstance(d.until(loop.Notify), loop.Notify)  # too early to look again
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Changes(1.2, 0))
    d.answer(loop.Pass, loop.PassStarted(1.2))
    d.answer(loop.Compute, computed(1.2, a_plan(clients=0), disk=on_disk, accepted=True))
    assert isinstance(d.until(loop.ClearHeld), loop.ClearHeld)
    assert any("accepted by the operator" in line for line in d.logs("warning"))
    assert d.until(loop.Apply)


def test_one_dropped_session_is_never_held():
    d = Daemon()
    notify = d.start(plan=a_plan(clients=0), disk=frozenset({session(0).name}))
    assert notify.ready and "HELD" not in notify.status


def test_bird_down_config_written_ready_and_configure_retried_every_five_seconds():
    d = Daemon()
    notify = d.start(outcome=loop.WRITTEN_BIRD_DOWN)
    assert notify.ready and "bird not running, config written" in notify.status
    computes = []
    for now in (1.0, 2.0, 4.9, 5.1):
        d.answer(loop.Notify, None)
        d.answer(loop.Wait, loop.Changes(now, 0))
        d.answer(loop.Pass, loop.PassStarted(now))
        if isinstance(d.pending, loop.Compute):
            computes.append(now)
            d.answer(loop.Compute, computed(now, a_plan()))
            d.answer(loop.Apply, loop.Applied(now, 1_700_000_000, {"bird": loop.Outcome(loop.APPLIED)}))
        d.until(loop.Notify)
    assert computes == [5.1]


def test_bird_is_checked_every_five_seconds_and_a_restarted_one_configured_again():
    d = Daemon()
    d.start()
    checks = []
    for now, drifted in ((1.0, ()), (3.0, ()), (6.0, ("bird",)), (7.0, ()), (11.0, ())):
        d.answer(loop.Notify, None)
        d.answer(loop.Wait, loop.Changes(now, 0))
        d.answer(loop.Pass, loop.PassStarted(now))
        if isinstance(d.pending, loop.CheckBird):
            checks.append(now)
            d.answer(loop.CheckBird, loop.BirdChecked(drifted))
            if drifted:
                d.answer(loop.Compute, computed(now, a_plan()))
                d.answer(loop.Apply, loop.Applied(now, 1_700_000_000, {"bird": loop.Outcome(loop.APPLIED)}))
        d.until(loop.Notify)
    assert checks == [1.0, 6.0, 11.0]  # the first pass that has nothing else to do, then every 5 s
    assert any("bird no longer runs the config it accepted" in line for line in d.logs("warning"))


def test_a_burst_is_gathered_until_it_pauses():
    settings = loop.Settings(burst_settle_seconds=0.1, burst_max_delay_seconds=0.5)
    d = Daemon(settings)
    d.start()
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Changes(10.0, 150))
    waits = []
    now = 10.0
    for count in (200, 200, 0):
        wait = d.until(loop.Wait)
        waits.append(wait.timeout)
        now += 0.05
        d.answer(loop.Wait, loop.Changes(now, count))
    assert waits == [0.1, 0.1, 0.1]
    assert isinstance(d.until(loop.Pass), loop.Pass)
    assert "burst of changes: gathered 400 more before reloading" in d.logs("debug")


def test_a_burst_stops_gathering_at_its_deadline():
    d = Daemon(loop.Settings(burst_settle_seconds=0.1, burst_max_delay_seconds=0.5))
    d.start()
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Changes(10.0, 150))
    now, waits = 10.0, 0
    while not isinstance(d.pending, loop.Pass) and not isinstance(d.pending, loop.Log):
        waits += 1
        now += 0.09
        d.answer(loop.Wait, loop.Changes(now, 50))
    assert waits == 6  # 0.5 s of changes every 0.09 s


def test_a_single_change_is_not_gathered():
    d = Daemon()
    d.start()
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Changes(10.0, 1))
    assert isinstance(d.until(loop.Pass), loop.Pass)


def test_a_broken_stream_resyncs_and_an_unreachable_datastore_says_so():
    d = Daemon()
    d.start()
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Failed(1.0, 1_700_000_000, "etcd watch revision compacted", resync=True))
    d.answer(loop.Pass, loop.PassStarted(1.0))
    assert isinstance(d.until(loop.ReadSnapshot), loop.ReadSnapshot)
    assert "resyncing from a fresh snapshot: etcd watch revision compacted" in d.logs("info")
    d.answer(loop.ReadSnapshot, loop.Failed(1.1, 1_700_000_000, "connection refused"))
    # the datastore is down but a plan is in place: BIRD is checked (and reconfigured if it
    # restarted meanwhile) while the reflector waits for the datastore
    d.answer(loop.CheckBird, loop.BirdChecked(("bird",)))
    d.answer(loop.Compute, computed(1.1, a_plan(), text="again"))
    assert d.until(loop.Apply).configs == {"bird": "again"}


def test_reload_takes_a_new_snapshot_and_waits_for_the_new_configs_before_ready():
    d = Daemon()
    d.start()
    d.answer(loop.Notify, None)
    d.answer(loop.Wait, loop.Changes(1.0, 0))
    d.answer(loop.Pass, loop.PassStarted(1.0, reloaded=True))
    d.answer(loop.ReadSnapshot, loop.SnapshotRead(1.0, "revision 8"))
    d.answer(loop.Compute, loop.RenderFailed("a template of the new flavour is broken"))
    assert not d.until(loop.Notify).ready


def test_each_rejected_key_and_warning_is_logged_once_while_it_lasts():
    from rr_service.core.values import Rejected

    state = loop.State()
    first = loop.report_problems(state, (Rejected("host/a/as_num", "not a number"),), ("two nodes share 10.0.0.1",))
    assert [line.text for line in first] == ["ignoring etcd key host/a/as_num: not a number",
                                             "two nodes share 10.0.0.1"]
    assert loop.report_problems(state, (Rejected("host/a/as_num", "not a number"),), ("two nodes share 10.0.0.1",)) == []
    assert loop.report_problems(state, (), ()) == []
    assert len(loop.report_problems(state, (Rejected("host/a/as_num", "not a number"),), ())) == 1  # back again
