"""The drop guard against real etcd, BIRD and the daemon: etcd answers with almost nothing
(data wiped, wrong prefix) → held back with STATUS= and a log line saying why, sessions stay;
then applied after `hold_seconds`, or by `calico-rr accept`; data coming back in time → nothing
dropped."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.faults.faultlab import (EVENTUALLY, dropped_sessions, established_count, etcd_python,
                                   node_id)
from tests.faults.figures import record
from tests.lab import proto_name, wait_for
from tests.lab.world import NODES

pytestmark = pytest.mark.integration

CLIENT_A = proto_name("Client", NODES["a"].ipv4)
HOLD_SHORT = 5.0


def _sample_until(w, before, done, timeout: float):
    """Check the sessions every second until done() is true; returns the drops seen."""
    drops = set()
    deadline = time.monotonic() + timeout
    while not done():
        w.rr.assert_alive()
        drops.update(dropped_sessions(before, w.sessions()))
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting while sampling the sessions")
        time.sleep(0.5)  # sampling period
    return drops


def test_drop_guard_wrong_prefix_applied_after_hold(fault_world, request):
    """A wrong prefix (settings reloaded with SIGHUP) would drop every session: held back for
    hold_seconds (5 s here), sessions untouched meanwhile, then applied."""
    w = fault_world(safety={"hold_seconds": HOLD_SHORT})
    rr = w.rr
    before = w.sessions()
    text = rr.config.read_text()
    assert 'prefix = "/calico/bgp/v1"' in text
    rr.config.write_text(text.replace('prefix = "/calico/bgp/v1"', 'prefix = "/calico/bgp/v1-wrong"'))
    t_hup = time.monotonic()
    rr.signal(signal.SIGHUP)
    status = rr.notify.wait_status(lambda s: "HELD BACK" in s, EVENTUALLY, since=t_hup,
                                   what="STATUS= saying HELD BACK")
    t_held = time.monotonic()
    held_json = json.loads((rr.state_dir / "held.json").read_text())
    drops = _sample_until(w, before, lambda: CLIENT_A not in rr.bird.protocols(), EVENTUALLY)
    t_applied = time.monotonic()
    held_for = t_applied - t_held
    log = rr.log()

    record("09_drop_guard_hold", fault="etcd answers with almost nothing: wrong prefix, hold expires",
           done=f"settings reloaded (SIGHUP) with a prefix holding no data, max_drop_share 0.5, "
                f"hold_seconds {HOLD_SHORT:g}",
           figure=f"held back ({held_json['dropped']} of {held_json['running']} sessions would drop), "
                  f"0 sessions dropped while held; applied {held_for:.1f} s after STATUS= said HELD BACK",
           measured={"held_seconds": held_for, "would_drop": held_json["dropped"],
                     "running": held_json["running"],
                     "dropped_while_held": len(drops - {d for d in drops if "gone" in d})},
           test=node_id(request))
    assert "would drop 4 of 4 BGP sessions" in status, status
    assert log.count("holding back the new BIRD configs") == 1, log
    assert "applying the configs that were held back: held for" in log
    assert HOLD_SHORT - 1.5 <= held_for, held_for  # not before the hold (1.5 s: loop tick + jitter)
    # Until the hold ended, nothing dropped: whatever dropped went with the applied config.
    assert all("gone" in d or "Node_" in d or "down" in d or "Active" in d or "Connect" in d
               or "Idle" in d for d in drops), drops


def _restore(w, dump: dict) -> None:
    """Put every key back in one transaction (a restore, not a trickle of writes)."""
    code = (f"items = json.loads({json.dumps(json.dumps(dump))})\n"
            "client.transaction(compare=[], success=[client.transactions.put(k, v) "
            "for k, v in items.items()], failure=[])\n")
    etcd_python(w.etcd.host, w.etcd.endpoint, code)


def test_drop_guard_data_back_then_accept(fault_world, request):
    """hold_seconds long (1 h): the data wiped and restored before the hold ends → nothing
    dropped; wiped again → held until `calico-rr accept`, then applied at once."""
    w = fault_world(safety={"hold_seconds": 3600.0})
    rr = w.rr
    before = w.sessions()
    dump = w.calico.dump()
    prefix = w.calico.prefix + "/"

    # 1. wiped, then restored while held.
    t_wipe = time.monotonic()
    w.etcd.delete(prefix, prefix=True)
    status = rr.notify.wait_status(lambda s: "HELD BACK" in s, EVENTUALLY, since=t_wipe,
                                   what="STATUS= saying HELD BACK")
    held_after = time.monotonic() - t_wipe
    t_restore = time.monotonic()  # the daemon may see the transaction before _restore returns
    _restore(w, dump)
    rr.notify.wait_status(lambda s: "HELD BACK" not in s and "etcd ok" in s, EVENTUALLY,
                          since=t_restore, what="STATUS= without HELD BACK")
    released = time.monotonic() - t_restore
    wait_for(lambda: "the data recovered" in rr.log(), 10, what="the log saying the data recovered")
    drops_recovered = dropped_sessions(before, w.sessions())
    in_sync = rr.in_sync_with_render()

    # 2. wiped again, accepted by the operator.
    t_wipe2 = time.monotonic()
    w.etcd.delete(prefix, prefix=True)
    rr.notify.wait_status(lambda s: "HELD BACK" in s, EVENTUALLY, since=t_wipe2,
                          what="STATUS= saying HELD BACK again")
    still = dropped_sessions(before, w.sessions())
    out = rr.cli("accept").stdout
    t_accept = time.monotonic()
    wait_for(lambda: CLIENT_A not in rr.bird.protocols(), EVENTUALLY, interval=0.05,
             what="the held config applied after accept")
    accept_seconds = time.monotonic() - t_accept
    log = rr.log()

    record("10_drop_guard_data_back", fault="etcd answers with almost nothing: data wiped, then restored",
           done="every key under the prefix deleted, then restored in one transaction while held "
                "(hold_seconds 3600)",
           figure=f"held back after {held_after:.2f} s; hold released {released:.2f} s after the "
                  f"restore; {len(drops_recovered)} of {established_count(before)} sessions dropped",
           measured={"held_after_seconds": held_after, "released_seconds": released,
                     "sessions_dropped": len(drops_recovered), "sessions": established_count(before)},
           test=node_id(request))
    record("11_drop_guard_accept", fault="etcd answers with almost nothing: operator accepts",
           done="every key under the prefix deleted (hold_seconds 3600), `calico-rr accept`",
           figure=f"0 sessions dropped while held; applied {accept_seconds:.2f} s after `calico-rr "
                  "accept` returned",
           measured={"accept_apply_seconds": accept_seconds, "dropped_while_held": len(still)},
           test=node_id(request))
    assert "would drop 4 of 4 BGP sessions" in status, status
    assert not drops_recovered, drops_recovered
    assert in_sync
    assert not still, still
    assert "accepted" in out, out
    assert "applying the configs that were held back: accepted by the operator" in log
    assert not (rr.state_dir / "held.json").exists()
    assert "no longer runs the config" not in log  # BIRD never restarted: no false alarm
