"""The loop's program: the daemon's decisions, as a pure state machine. Pure.

`program()` is a generator: it yields an action, the daemon (app/daemon.py) performs it and
sends back what happened, and the program decides what comes next. It never touches a
socket, a file or a clock of its own: every event carries the time it happened, so the unit
tests drive every decision in milliseconds.

One pass of the loop:
1. `Pass` — the daemon answers with the time and whether a SIGHUP reload happened (the new
   settings are then in place: a new snapshot follows, READY waits for the new configs).
2. Snapshot, when one is needed (start, reload, a broken change stream, the datastore
   back): `ReadSnapshot`. If it fails, BIRD keeps its configs: the status says why, READY
   is sent anyway (BIRD serves on its last good config), a BIRD restarted meanwhile is given
   the last plan again, and the next try waits with backoff (0.25 s doubling to 1 s, ±20 %).
3. Apply, when the data changed, a retry is due, or a BIRD no longer runs what it accepted
   (checked every BIRD_CHECK s with `CheckBird`): `Compute`, then
   - the plan rests on invalid data (`Plan.error`): BLOCKED, nothing applied;
   - the drop guard holds it: HELD, published for `calico-rr accept`, looked at again every
     second;
   - else `Apply` of every config except one BIRD already refused in this very text.
4. `Notify` the status line, and READY once a current config is in place (or HELD or
   BLOCKED: deliberate states in which BIRD keeps its config and the status says why).
5. `Wait` for changes. More than 100 keys within a second is a burst: keep gathering until
   they pause for `settle` s or `max_delay` s have passed, so a burst costs a few reloads.
"""

from __future__ import annotations

import random
import time
from typing import Generator, Optional

from rr_service.core.coalesce import BurstDetector
from rr_service.core.safety import DropGuard
from rr_service.core.values import Rejected, rejection_message
from rr_service.loop.events import (APPLIED, BACKOFF_CAP, BACKOFF_FIRST, BIRD_CHECK, BIRD_RETRY, BLOCKED, FAILED,
                                    HELD, IN_PLACE, REJECTED, TAKEN_OVER, TICK, WRITE_ERROR, WRITTEN_BIRD_DOWN, Apply,
                                    Applied, BirdChecked, CheckBird, ClearHeld, Compute, Failed, Log, Notify, Outcome,
                                    Pass, PublishHeld, ReadSnapshot, RenderFailed, Sleep, SnapshotRead, Wait)
from rr_service.loop.status import Settings, State, modes, plan_summary, status_line, union

def program(settings: Settings, rng: Optional[random.Random] = None,
            state: Optional[State] = None) -> Generator[object, object, None]:
    """The loop. Drive it with `action = gen.send(answer)` (first `next(gen)`)."""
    rng = rng or random.Random()
    state = state if state is not None else State()
    guard = DropGuard(settings.max_drop_share, settings.hold_seconds)
    bursts = BurstDetector()
    while True:
        started = yield Pass()
        now = started.now
        if started.reloaded:
            state.need_snapshot, state.last_apply = True, None
            state.rejected_text.clear()
            state.running_names.clear()  # a new flavour may have new targets
        if state.need_snapshot:
            answer = yield ReadSnapshot()
            if isinstance(answer, Failed):
                yield from _datastore_failed(state, settings, answer)
                if state.plan is not None and state.retry_apply_at is None and _check_due(state, answer.now):
                    drifted = yield CheckBird()
                    if (yield from _drifted(state, drifted)):
                        yield from _apply(state, guard, answer.now)
                yield Notify(status_line(state, settings), True)
                yield Sleep(_next_backoff(state, rng))
                continue
            yield from _snapshot_read(state, settings, answer)
            now = answer.now
        if state.dirty or (state.retry_apply_at is not None and now >= state.retry_apply_at):
            yield from _apply(state, guard, now)
        elif state.retry_apply_at is None and _check_due(state, now):
            drifted = yield CheckBird()
            if (yield from _drifted(state, drifted)):
                yield from _apply(state, guard, now)
        yield Notify(status_line(state, settings), state.last_apply in (IN_PLACE, HELD, BLOCKED))
        answer = yield Wait(TICK)
        yield from _take_changes(state, settings, bursts, answer)


def _take_changes(state: State, settings: Settings, bursts: BurstDetector, answer) -> Generator:
    if not (yield from _changes(state, settings, answer)):
        return
    if not bursts.note(answer.count, answer.now) or settings.burst_settle_seconds <= 0:
        return
    deadline = answer.now + settings.burst_max_delay_seconds
    gathered = 0
    now = answer.now
    while now < deadline:
        answer = yield Wait(min(settings.burst_settle_seconds, deadline - now))
        if not (yield from _changes(state, settings, answer)) or not answer.count:
            break  # a pause, or the datastore failed (then the resync covers everything)
        now = answer.now
        bursts.note(answer.count, now)
        gathered += answer.count
    yield Log("debug", f"burst of changes: gathered {gathered} more before reloading")


def _changes(state: State, settings: Settings, answer) -> Generator:
    """Take in a Wait's answer; False when the stream failed."""
    if isinstance(answer, Failed):
        if answer.resync:
            yield Log("info", f"resyncing from a fresh snapshot: {answer.reason}")
            state.need_snapshot = True
        else:
            yield from _datastore_failed(state, settings, answer)
        return False
    if answer.position:
        state.position = answer.position
    if answer.count:
        state.dirty = True
    return True


def _datastore_failed(state: State, settings: Settings, failed: Failed) -> Generator:
    if state.problem != failed.reason:
        yield Log("warning", f"{settings.source} unreachable ({failed.reason}); BIRD keeps its current config")
    state.problem = failed.reason
    if state.down_since is None:
        state.down_since = failed.wall
    state.need_snapshot = True


def _snapshot_read(state: State, settings: Settings, read: SnapshotRead) -> Generator:
    if state.problem:
        yield Log("info", f"{settings.source} is reachable again ({read.describe})")
    state.need_snapshot = False
    state.dirty = True
    state.problem = state.down_since = None
    state.position = read.position
    state.backoff = BACKOFF_FIRST
    yield Log("debug", f"snapshot at {read.position}: {read.keys} keys")


def _next_backoff(state: State, rng: random.Random) -> float:
    delay = state.backoff * rng.uniform(0.8, 1.2)
    state.backoff = min(state.backoff * 2, BACKOFF_CAP)
    return delay


def _check_due(state: State, now: float) -> bool:
    if now < state.next_bird_check:
        return False
    state.next_bird_check = now + BIRD_CHECK
    return True


def _drifted(state: State, checked: BirdChecked) -> Generator:
    """True when some BIRD must be configured again (restarted, reloaded by hand)."""
    for target in checked.drifted:
        state.running_names.pop(target, None)  # it runs whatever its file says now
    if checked.drifted:
        yield Log("warning", f"{', '.join(checked.drifted)} no longer runs the config it accepted (restarted, "
                             "reloaded or its file changed): configuring it again")
    return bool(checked.drifted)


def _apply(state: State, guard: DropGuard, now: float) -> Generator:
    state.dirty = False
    state.retry_apply_at = None
    computed = yield Compute()
    if isinstance(computed, RenderFailed):
        yield Log("error", f"cannot render the BIRD configs: {computed.message}")
        state.bird_summary = f"render failed: {computed.message}"
        state.last_apply = FAILED
        return
    now = computed.now
    the_plan = computed.plan
    yield from _report(state, computed.rejected, the_plan.warnings)
    if the_plan.error is not None:
        if state.blocked != the_plan.error:
            yield Log("error", f"not applying the new BIRD configs, BIRD keeps the running ones: {the_plan.error}")
        state.blocked = the_plan.error
        state.last_apply = BLOCKED
        return
    if state.blocked is not None:
        yield Log("warning", f"the data is usable again, applying it (was: {state.blocked})")
        state.blocked = None
    running = union(state.running_names[t] if t in state.running_names else computed.disk_names.get(t, frozenset())
                     for t in computed.configs)
    verdict = guard.check(running, union(computed.names.values()), now, computed.accepted)
    if not verdict.apply:
        if state.held is None:
            yield Log("warning", f"holding back the new BIRD configs: {verdict.reason}")
        state.held = verdict.reason
        yield PublishHeld(verdict)
        state.retry_apply_at = now + TICK  # look for an accept and the timeout
        state.last_apply = HELD
        return
    if state.held is not None:
        yield Log("warning", f"applying the configs that were held back: {verdict.reason}")
        state.held = None
        yield ClearHeld()
    if state.plan is None or modes(state.plan) != modes(the_plan):
        for family, mode in modes(the_plan):
            yield Log("info", f"IPv{family}: {mode}")
    state.plan = the_plan
    state.plan_summary = plan_summary(the_plan)
    to_apply = {t: text for t, text in computed.configs.items() if state.rejected_text.get(t) != text}
    applied = yield Apply(to_apply)
    summaries, all_in_place = [], True
    for target in computed.configs:
        if target not in to_apply:
            summaries.append(f"{target} config rejected by BIRD (see log)")
            all_in_place = False
            continue
        outcome = applied.outcomes[target]
        summary, in_place = yield from _outcome(state, target, outcome, to_apply[target], applied)
        if in_place:
            state.running_names[target] = computed.names[target]
        summaries.append(summary)
        all_in_place = all_in_place and in_place
    state.bird_summary = "; ".join(summaries)
    state.last_apply = IN_PLACE if all_in_place else FAILED


def report_problems(state: State, rejected: tuple, warnings: tuple) -> list:
    """The log lines for each rejected key or plan warning: once while it lasts, and again
    if it returns."""
    current = {("key", r.key, r.reason) for r in rejected} | {("plan", w, "") for w in warnings}
    lines = [Log("warning", rejection_message(Rejected(what, reason)) if kind == "key" else what)
             for kind, what, reason in sorted(current - state.seen_problems)]
    state.seen_problems = current
    return lines


def _report(state: State, rejected: tuple, warnings: tuple) -> Generator:
    for line in report_problems(state, rejected, warnings):
        yield line


def _outcome(state: State, target: str, outcome: Outcome, text: str, applied: Applied) -> Generator:
    """(the STATUS= part, whether this render is now in place for this BIRD)."""
    path = outcome.path or target
    if outcome.kind == REJECTED:
        state.rejected_text[target] = text
        yield Log("error", f"BIRD refused the new {path}, the previous one stays: {outcome.detail}")
        return f"{path} rejected by BIRD", False
    if outcome.kind == WRITE_ERROR:
        yield Log("error", f"cannot write {path}, the previous one stays: {outcome.detail}")
        state.retry_apply_at = applied.now + BIRD_RETRY
        return f"{path} not writable", False
    state.rejected_text.pop(target, None)
    if outcome.kind == APPLIED:
        yield Log("info", f"{target} accepted {path}")
        state.accepted_at[target] = time.strftime("%H:%M:%S", time.localtime(applied.wall))
        return f"{target} applied {state.accepted_at[target]}", True
    if outcome.kind == TAKEN_OVER:
        yield Log("info", f"{target} runs {path} as the previous calico-rr left it (same file, same BIRD "
                          "process): no reload")
        return f"{target} applied before this start", True
    if outcome.kind == WRITTEN_BIRD_DOWN:
        if f"{target} not running" not in state.bird_summary:
            yield Log("warning", f"{target} is not running (no answer on its control socket); {path} is in place "
                                 "for its start")
        state.retry_apply_at = applied.now + BIRD_RETRY
        return f"{target} not running, config written", True
    return f"{target} applied {state.accepted_at.get(target, 'before this start')}", True
