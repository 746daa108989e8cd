"""The drop guard against real etcd, BIRD and the daemon: etcd answers with almost nothing
(data wiped, wrong prefix) → held back with STATUS= and a log line saying why, and while held
no session moves and no config file is rewritten; then applied after `hold_seconds`, or by
`calico-rr accept`; data coming back in time → nothing dropped. Both knobs come from the
settings file: `hold_seconds` short and long, `max_drop_share` at its default, at 1 (never
hold) and low (hold a drop the default lets through).

Every drop here takes several sessions: a render dropping a single session is never held."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Set

import pytest

from rr_service.loop import TICK
from tests.faults.faultlab import (EVENTUALLY, FaultWorld, established_count, etcd_python,
                                   fingerprint, session_changes)
from tests.lab import proto_name, wait_for
from tests.lab.world import NODES

pytestmark = pytest.mark.integration

CLIENT_A = proto_name("Client", NODES["a"].ipv4)
CLIENT_B = proto_name("Client", NODES["b"].ipv4)
HOLD_SHORT = 5.0
HOLD_LONG = 3600.0
SAMPLE_EVERY = 0.25  # seconds between two looks at every session and config file while held
MIN_SAMPLES = 3  # fewer and "nothing moved while held" would be a claim about no look at all
HOLD_WATCH = 3 * TICK  # a hold that stays held has been weighed again (every TICK) a few times
RELEASED = "applying the configs that were held back"


@dataclass
class HoldSamples:
    """What the sessions and config files did while the render was held."""
    count: int = 0
    span: float = 0.0  # seconds from the first to the last sample
    changed: Set[str] = field(default_factory=set)  # sessions whose state or `since` moved
    rewritten: Set[str] = field(default_factory=set)  # config files with a new inode, mtime or hash


def _sample_while_held(w: FaultWorld, before: Dict[tuple, tuple], prints: Dict, released: Callable[[], bool],
                       timeout: float, watch_for: float = 0.0) -> HoldSamples:
    """Look at every session and config file until the hold ends (or for `watch_for` s). A
    sample counts only if the daemon had not yet started to apply the held configs once it was
    complete: released() is asked after each sample, never before."""
    out = HoldSamples()
    first = None
    deadline = time.monotonic() + timeout
    while not watch_for or out.span < watch_for:
        w.rr.assert_alive()
        t = time.monotonic()
        sessions = w.sessions()
        files = {p: fingerprint(p) for p in prints}
        if released():
            break
        first = t if first is None else first
        out.count += 1
        out.span = t - first
        out.changed.update(session_changes(before, sessions))
        out.rewritten.update(str(p) for p, f in files.items() if f != prints[p])
        if time.monotonic() > deadline:
            raise TimeoutError("the hold did not end while sampling the sessions")
        time.sleep(SAMPLE_EVERY)  # sampling period, not a wait for a state
    return out


def _released(rr) -> Callable[[], bool]:
    """True once the daemon logs that it applies a held render (later than this call)."""
    seen = rr.log().count(RELEASED)
    return lambda: rr.log().count(RELEASED) > seen


def _held_figure(samples: HoldSamples) -> str:
    return (f"{samples.count} samples over {samples.span:.1f} s while held: {len(samples.changed)} "
            f"sessions changed state or uptime, {len(samples.rewritten)} config files rewritten")


def _assert_untouched(samples: HoldSamples) -> None:
    assert samples.count >= MIN_SAMPLES, f"only {samples.count} samples taken while held"
    assert not samples.changed, sorted(samples.changed)
    assert not samples.rewritten, sorted(samples.rewritten)


def _files(w: FaultWorld) -> Dict:
    return {p: fingerprint(p) for p in (w.rr.bird_conf, w.rr.bird6_conf)}


def _wait_held(w: FaultWorld, since: float, what: str = "STATUS= saying HELD BACK") -> str:
    return w.rr.notify.wait_status(lambda s: "HELD BACK" in s, EVENTUALLY, since=since, what=what)


def test_drop_guard_wrong_prefix_applied_after_hold(fault_world, figures):
    """A wrong prefix (settings reloaded with SIGHUP) would drop every session: held back for
    hold_seconds (5 s here), sessions and files untouched meanwhile, then applied."""
    w = fault_world(safety={"hold_seconds": HOLD_SHORT})
    rr = w.rr
    before, prints = w.sessions(), _files(w)
    assert rr.settings["etcd"]["prefix"] == "/calico/bgp/v1"
    rr.set({"etcd": {"prefix": "/calico/bgp/v1-wrong"}})
    released = _released(rr)
    t_hup = time.monotonic()
    rr.signal(signal.SIGHUP)
    status = _wait_held(w, t_hup)
    t_held = time.monotonic()
    held_json = json.loads((rr.state_dir / "held.json").read_text())
    samples = _sample_while_held(w, before, prints, released, EVENTUALLY)
    wait_for(lambda: CLIENT_A not in rr.bird.protocols(), EVENTUALLY, interval=0.05,
             what="the held config applied after hold_seconds")
    held_for = time.monotonic() - t_held
    log = rr.log()

    assert "would drop 4 of 4 BGP sessions" in status, status
    assert log.count("holding back the new BIRD configs") == 1, log
    assert f"{RELEASED}: held for" in log, log
    _assert_untouched(samples)
    assert HOLD_SHORT - 1.5 <= held_for, held_for  # not before the hold (1.5 s: loop tick + jitter)
    assert rr.in_sync_with_render()
    figures.add("faults", "drop_guard_hold_expires",
                fault="etcd answers with almost nothing: wrong prefix, hold expires",
                done=f"settings reloaded (SIGHUP) with a prefix holding no data; max_drop_share "
                     f"0.5 (default), hold_seconds {HOLD_SHORT:g}",
                figure=f"held back ({held_json['dropped']} of {held_json['running']} sessions would "
                       f"drop); {_held_figure(samples)}; applied {held_for:.1f} s after STATUS= said "
                       "HELD BACK",
                measured={"held_seconds": held_for, "would_drop": held_json["dropped"],
                          "running": held_json["running"], "samples": samples.count,
                          "sampled_seconds": samples.span, "sessions_changed": len(samples.changed),
                          "files_rewritten": len(samples.rewritten)})


def _restore(w, dump: dict) -> None:
    """Put every key back in one transaction (a restore, not a trickle of writes)."""
    code = (f"items = json.loads({json.dumps(json.dumps(dump))})\n"
            "client.transaction(compare=[], success=[client.transactions.put(k, v) "
            "for k, v in items.items()], failure=[])\n")
    etcd_python(w.etcd.host, w.etcd.endpoint, code)


def test_drop_guard_data_back_then_accept(fault_world, figures):
    """hold_seconds long (1 h): the data wiped and restored before the hold ends → nothing
    dropped, nothing rewritten; wiped again → held until `calico-rr accept`, then applied at
    once."""
    w = fault_world(safety={"hold_seconds": HOLD_LONG})
    rr = w.rr
    before, prints = w.sessions(), _files(w)
    dump = w.calico.dump()
    prefix = w.calico.prefix + "/"

    # 1. wiped, then restored while held.
    released = _released(rr)
    t_wipe = time.monotonic()
    w.etcd.delete(prefix, prefix=True)
    status = _wait_held(w, t_wipe)
    held_after = time.monotonic() - t_wipe
    wiped = _sample_while_held(w, before, prints, released, EVENTUALLY, watch_for=HOLD_WATCH)
    t_restore = time.monotonic()  # the daemon may see the transaction before _restore returns
    _restore(w, dump)
    rr.notify.wait_status(lambda s: "HELD BACK" not in s and "etcd ok" in s, EVENTUALLY,
                          since=t_restore, what="STATUS= without HELD BACK")
    released_seconds = time.monotonic() - t_restore
    wait_for(lambda: "the data recovered" in rr.log(), 10, what="the log saying the data recovered")
    after_restore = session_changes(before, w.sessions())
    rewritten_by_restore = [str(p) for p, f in _files(w).items() if f != prints[p]]
    in_sync = rr.in_sync_with_render()

    # 2. wiped again, accepted by the operator.
    released = _released(rr)
    t_wipe2 = time.monotonic()
    w.etcd.delete(prefix, prefix=True)
    _wait_held(w, t_wipe2, "STATUS= saying HELD BACK again")
    wiped2 = _sample_while_held(w, before, prints, released, EVENTUALLY, watch_for=HOLD_WATCH)
    out = rr.cli("accept").stdout
    t_accept = time.monotonic()
    wait_for(lambda: CLIENT_A not in rr.bird.protocols(), EVENTUALLY, interval=0.05,
             what="the held config applied after accept")
    accept_seconds = time.monotonic() - t_accept
    log = rr.log()

    assert "would drop 4 of 4 BGP sessions" in status, status
    _assert_untouched(wiped)
    assert not after_restore, after_restore
    assert not rewritten_by_restore, rewritten_by_restore  # the same data renders the same text
    assert in_sync
    _assert_untouched(wiped2)
    assert "accepted" in out, out
    assert f"{RELEASED}: accepted by the operator" in log
    assert not (rr.state_dir / "held.json").exists()
    assert "no longer runs the config" not in log  # BIRD never restarted: no false alarm
    assert rr.in_sync_with_render()
    figures.add("faults", "drop_guard_data_back",
                fault="etcd answers with almost nothing: data wiped, then restored",
                done=f"every key under the prefix deleted, then restored in one transaction while "
                     f"held (hold_seconds {HOLD_LONG:g})",
                figure=f"held back after {held_after:.2f} s; {_held_figure(wiped)}; hold released "
                       f"{released_seconds:.2f} s after the restore; {len(after_restore)} of "
                       f"{established_count(before)} sessions changed, {len(rewritten_by_restore)} "
                       "config files rewritten",
                measured={"held_after_seconds": held_after, "released_seconds": released_seconds,
                          "sessions_changed": len(after_restore), "sessions": established_count(before),
                          "files_rewritten": len(rewritten_by_restore), "samples": wiped.count})
    figures.add("faults", "drop_guard_accept", fault="etcd answers with almost nothing: operator accepts",
                done=f"every key under the prefix deleted (hold_seconds {HOLD_LONG:g}), `calico-rr accept`",
                figure=f"{_held_figure(wiped2)}; applied {accept_seconds:.2f} s after `calico-rr "
                       "accept` returned",
                measured={"accept_apply_seconds": accept_seconds, "samples": wiped2.count,
                          "sessions_changed": len(wiped2.changed), "files_rewritten": len(wiped2.rewritten)})


def test_drop_guard_share_one_never_holds(fault_world, figures):
    """max_drop_share = 1 in the settings file: the same wipe that the default holds back is
    applied at once."""
    w = fault_world(safety={"max_drop_share": 1.0, "hold_seconds": HOLD_LONG})
    rr = w.rr
    sessions = established_count(w.sessions())
    t_wipe = time.monotonic()
    w.etcd.delete(w.calico.prefix + "/", prefix=True)
    wait_for(lambda: CLIENT_A not in rr.bird.protocols() and CLIENT_B not in rr.bird.protocols(),
             EVENTUALLY, interval=0.05, what="the wiped data applied at once")
    applied = time.monotonic() - t_wipe
    statuses: List[str] = rr.notify.statuses(since=t_wipe)

    assert not any("HELD BACK" in s for s in statuses), statuses
    assert "holding back" not in rr.log()
    assert not (rr.state_dir / "held.json").exists()
    assert rr.in_sync_with_render()
    figures.add("faults", "drop_guard_share_never_hold",
                fault="drop guard off: max_drop_share 1 from the settings file",
                done=f"every key under the prefix deleted with {sessions} sessions Established "
                     f"(hold_seconds {HOLD_LONG:g})",
                figure=f"not held (no HELD BACK, no log line); applied {applied:.2f} s after the delete",
                measured={"apply_seconds": applied, "sessions": sessions})


def test_drop_guard_low_share_holds_a_smaller_drop(fault_world, figures):
    """max_drop_share = 0.25 in the settings file: removing one of two nodes (2 of 4 sessions,
    50 %: applied at once under the default 0.5) is held back, nothing moves meanwhile."""
    w = fault_world(safety={"max_drop_share": 0.25, "hold_seconds": HOLD_LONG})
    rr = w.rr
    before, prints = w.sessions(), _files(w)
    released = _released(rr)
    t_remove = time.monotonic()
    w.calico.remove_node("b")
    status = _wait_held(w, t_remove)
    samples = _sample_while_held(w, before, prints, released, EVENTUALLY, watch_for=HOLD_WATCH)
    held_json = json.loads((rr.state_dir / "held.json").read_text())

    assert "would drop 2 of 4 BGP sessions (50% > 25%)" in status, status
    _assert_untouched(samples)
    assert CLIENT_B in rr.bird.protocols()
    figures.add("faults", "drop_guard_share_low",
                fault="drop guard stricter: max_drop_share 0.25 from the settings file",
                done=f"one of two nodes removed: {held_json['dropped']} of {held_json['running']} "
                     f"sessions (50 %, within the default 0.5); hold_seconds {HOLD_LONG:g}",
                figure=f"held back; {_held_figure(samples)}",
                measured={"would_drop": held_json["dropped"], "running": held_json["running"],
                          "samples": samples.count, "sessions_changed": len(samples.changed),
                          "files_rewritten": len(samples.rewritten)})
