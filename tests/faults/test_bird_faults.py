"""BIRD faults: a config BIRD refuses, BIRD restarted on an old config, BIRD killed, its
control socket missing. Real etcd, real BIRD, the real daemon, real node BIRDs (conftest)."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from rr_service.loop import BIRD_CHECK, BIRD_RETRY
from tests.faults.faultlab import (CHECK_BOUND, EVENTUALLY, RETRY_BOUND, SESSION_TIMEOUT,
                                   dropped_sessions, etcd_revision, fingerprint, stray_files)
from tests.lab import REPO_ROOT, proto_name, wait_for
from tests.lab.reflector import read_bytes
from tests.lab.world import NODES

pytestmark = pytest.mark.integration

C_IP = NODES["c"].ipv4
D_IP = NODES["d"].ipv4
CLIENT_C = proto_name("Client", C_IP)
CLIENT_D = proto_name("Client", D_IP)


def _has(bird, name: str) -> bool:
    return name in bird.protocols()


def _wait_revision(rr, etcd, timeout: float = EVENTUALLY) -> None:
    """Wait until the daemon's STATUS= says it has seen etcd's current revision."""
    revision = etcd_revision(etcd)

    def seen(text: str) -> bool:
        words = text.split()
        if "revision" not in words:
            return False
        return int(words[words.index("revision") + 1]) >= revision
    rr.notify.wait_status(seen, timeout, what=f"the daemon at etcd revision {revision}")


def _broken_templates(folder, trigger_ip: str):
    """templates/ with a session template that writes a line BIRD cannot parse, only for the
    session to `trigger_ip`: every value passed validation, the text is still wrong."""
    dst = folder / "templates-broken"
    shutil.copytree(REPO_ROOT / "templates", dst)
    session = dst / "session.j2"
    text = session.read_text()
    anchor = "protocol bgp {{ session.name }}"
    assert anchor in text, "session.j2 changed shape: adapt the test's breakage"
    session.write_text(text.replace(
        anchor, "{% if session.neighbor | string == '" + trigger_ip + "' %}\n"
                "this is not BIRD syntax;\n{% endif %}\n" + anchor, 1))
    return dst


@pytest.mark.parametrize("flavour", ["bird1", "bird3"])
def test_bird_refuses_config(fault_world, lab, figures, flavour):
    """BIRD refuses a config (a template override breaks it for one node): the previous file
    stays, the error is logged once with BIRD's message, and the next good change applies.
    On the BIRD 1.6 pair and on BIRD 3."""
    w = fault_world(env={"CALICO_RR_TEMPLATES": str(_broken_templates(lab.tmp, C_IP))}, flavour=flavour)
    rr = w.rr
    before = w.sessions()
    good = {path: fingerprint(path) for path in rr.config_files.values()}

    t_put = time.monotonic()
    w.calico.add_node("c", C_IP)  # renders the broken line
    wait_for(lambda: rr.log_count("BIRD refused") >= 1, EVENTUALLY, what="the refusal in the log",
             describe=lambda: rr.log()[-2000:])
    refused_after = time.monotonic() - t_put
    status = rr.notify.wait_status(lambda s: "rejected by BIRD" in s, 10, what="STATUS= naming the refusal")
    # The same data again (two writes of the same value), and an unrelated key: the daemon
    # sees them, renders the same refused text, and does not log again.
    w.calico.add_node("c", C_IP)
    w.etcd.put(w.calico.key("host", "c", "workload", "x"), "unrelated")
    _wait_revision(rr, w.etcd)
    refusal_lines = [line for line in rr.log().splitlines() if "BIRD refused" in line]
    kept = all(fingerprint(path) == print_ for path, print_ in good.items())
    strays = stray_files(rr.dir)
    c_in_bird = _has(rr.bird, CLIENT_C)

    # The next good change: c goes, d comes.
    t_fix = time.monotonic()
    w.calico.remove_node("c")
    w.calico.add_node("d", D_IP)
    wait_for(lambda: _has(rr.bird, CLIENT_D), EVENTUALLY, interval=0.02, what=f"{CLIENT_D} in BIRD")
    next_seconds = time.monotonic() - t_fix
    in_sync = rr.in_sync_with_render()
    drops = dropped_sessions(before, w.sessions())

    assert kept, "the config file changed although BIRD refused the new one"
    assert not strays, strays
    assert not c_in_bird
    assert len(refusal_lines) == 1, refusal_lines
    assert "syntax error" in refusal_lines[0], refusal_lines[0]  # BIRD's own message
    assert "rejected by BIRD" in status
    assert in_sync
    assert not drops, drops
    rr.assert_alive()
    figures.add("faults", "bird_refuses" if flavour == "bird1" else f"bird_refuses_{flavour}",
                fault="BIRD refuses a config" if flavour == "bird1" else "BIRD 3 refuses a config",
                done="template override that writes a line BIRD cannot parse for one node; that node "
                     "added, written again twice, then removed and another node added",
                figure=f"previous file kept (inode, mtime, content); {len(refusal_lines)} log line "
                       f"with BIRD's message (after {refused_after:.2f} s); next good change applied in "
                       f"{next_seconds:.2f} s; {len(drops)} sessions dropped",
                measured={"refusal_log_lines": len(refusal_lines), "refused_after_seconds": refused_after,
                          "next_change_seconds": next_seconds, "sessions_dropped": len(drops),
                          "previous_file_kept": kept})


@pytest.mark.parametrize("flavour", ["bird1", "bird3"])
def test_bird_restarted_with_old_config(fault_world, figures, flavour):
    """BIRD restarted on an old config file (e.g. a package upgrade put one back): the daemon
    notices without any change in etcd and puts the current config back. On the BIRD 1.6 pair
    (BIRD6's sessions must not notice) and on BIRD 3 (one daemon: both families restart)."""
    w = fault_world(flavour=flavour)
    rr = w.rr
    old_text = rr.bird_conf.read_text()
    w.calico.add_node("c", C_IP)
    # BIRD loads the candidate before the daemon renames it into place: wait for both.
    current = wait_for(lambda: _has(rr.bird, CLIENT_C) and C_IP.encode() in (read_bytes(rr.bird_conf) or b"")
                       and read_bytes(rr.bird_conf), EVENTUALLY, what=f"{CLIENT_C} in BIRD and in its file")
    before6 = {k: v for k, v in w.sessions().items() if k[1] == 6} if flavour == "bird1" else {}

    rr.bird.stop()
    rr.restart_bird(4, config_text=old_text)  # BIRD runs the old config, without c
    t_back = time.monotonic()
    assert not _has(rr.bird, CLIENT_C)
    wait_for(lambda: _has(rr.bird, CLIENT_C) and read_bytes(rr.bird_conf) == current, EVENTUALLY,
             interval=0.05, what="the daemon putting the current config back",
             describe=lambda: rr.log()[-2000:])
    recovered = time.monotonic() - t_back
    w.wait_all_established(SESSION_TIMEOUT)
    reestablished = time.monotonic() - t_back
    drops6 = dropped_sessions(before6, w.sessions())

    assert not drops6, drops6
    assert recovered <= CHECK_BOUND, f"caught up {recovered:.1f} s after BIRD's start (bound {CHECK_BOUND:g} s)"
    rr.assert_alive()
    figures.add("faults", "bird_restarted_old_config" + ("" if flavour == "bird1" else f"_{flavour}"),
                fault="BIRD restarted on an old config file" + ("" if flavour == "bird1" else " (BIRD 3)"),
                done="BIRD (IPv4) stopped and started on the config of before the last change; "
                     "nothing changed in etcd",
                figure=f"current config back in BIRD {recovered:.1f} s after BIRD's start (bound "
                       f"{CHECK_BOUND:g} s: the daemon's check every {BIRD_CHECK:g} s + a loop pass + "
                       f"the reconfigure); IPv4 "
                       f"sessions Established again after {reestablished:.1f} s; {len(drops6)} IPv6 "
                       "sessions dropped",
                measured={"recover_seconds": recovered, "reestablished_seconds": reestablished,
                          "ipv6_sessions_dropped": len(drops6)})


def test_bird_killed(fault_world, figures):
    """BIRD killed, a change arrives while it is dead: the daemon does not crash, puts a checked
    file in place for BIRD's start, and configures BIRD once it is back."""
    w = fault_world()
    rr = w.rr
    before6 = {k: v for k, v in w.sessions().items() if k[1] == 6}
    os.killpg(rr.bird.proc.pid, signal.SIGKILL)
    rr.bird.proc.popen.wait(10)
    t_kill = time.monotonic()

    w.calico.add_node("c", C_IP)
    status = rr.notify.wait_status(lambda s: "bird not running" in s, EVENTUALLY, since=t_kill,
                                   what="STATUS= saying BIRD is not running")
    wait_for(lambda: b"192.0.2.23" in (read_bytes(rr.bird_conf) or b""), EVENTUALLY,
             what="the checked config in place for BIRD's start")
    warnings = rr.log_count("bird is not running")
    rr.restart_bird(4)  # reads the file as the daemon left it
    t_back = time.monotonic()
    wait_for(lambda: _has(rr.bird, CLIENT_C), EVENTUALLY, what=f"{CLIENT_C} in BIRD")
    rr.notify.wait_status(lambda s: "bird applied" in s, EVENTUALLY, since=t_back,
                          what="STATUS= saying BIRD accepted the config")
    configured = time.monotonic() - t_back
    w.wait_all_established(SESSION_TIMEOUT)
    reestablished = time.monotonic() - t_back
    drops6 = dropped_sessions(before6, w.sessions())
    in_sync = rr.in_sync_with_render()

    assert "config written" in status, status
    assert warnings == 1, warnings
    assert in_sync
    assert not drops6, drops6
    assert configured <= RETRY_BOUND, f"configured {configured:.1f} s after BIRD's start (bound {RETRY_BOUND:g} s)"
    rr.assert_alive()
    figures.add("faults", "bird_killed", fault="BIRD killed",
                done="SIGKILL to BIRD (IPv4), a node added while it was dead, BIRD started again",
                figure=f"daemon kept running; checked file in place for BIRD's start; BIRD configured "
                       f"{configured:.1f} s after its start (bound {RETRY_BOUND:g} s: retry every "
                       f"{BIRD_RETRY:g} s), sessions back after {reestablished:.1f} s; "
                       f"{len(drops6)} IPv6 sessions dropped",
                measured={"configured_seconds": configured, "reestablished_seconds": reestablished,
                          "ipv6_sessions_dropped": len(drops6), "not_running_warnings": warnings})


def test_bird_socket_missing(fault_world, figures):
    """BIRD's control socket disappears (moved away) while BIRD keeps routing: the daemon
    retries, never crashes, and applies once the socket is back; no session drops."""
    w = fault_world()
    rr = w.rr
    before = w.sessions()
    away = rr.sock.with_name(rr.sock.name + ".away")
    os.rename(rr.sock, away)
    try:
        t_gone = time.monotonic()
        w.calico.add_node("c", C_IP)
        rr.notify.wait_status(lambda s: "bird not running" in s, EVENTUALLY, since=t_gone,
                              what="STATUS= saying BIRD does not answer")
        written = wait_for(lambda: b"192.0.2.23" in (read_bytes(rr.bird_conf) or b""), EVENTUALLY,
                           what="the checked config in place")
        rr.assert_alive()
    finally:
        os.rename(away, rr.sock)
    t_back = time.monotonic()
    wait_for(lambda: _has(rr.bird, CLIENT_C), EVENTUALLY, interval=0.05, what=f"{CLIENT_C} in BIRD")
    applied = time.monotonic() - t_back
    drops = dropped_sessions(before, w.sessions())

    assert not drops, drops
    assert applied <= RETRY_BOUND, f"applied {applied:.1f} s after the socket was back (bound {RETRY_BOUND:g} s)"
    assert rr.in_sync_with_render()
    rr.assert_alive()
    figures.add("faults", "bird_socket_missing", fault="BIRD control socket missing",
                done="BIRD's control socket moved away, a node added, the socket moved back",
                figure=f"daemon kept running, retried; applied {applied:.1f} s after the socket was back "
                       f"(bound {RETRY_BOUND:g} s: retry every {BIRD_RETRY:g} s); {len(drops)} sessions dropped",
                measured={"apply_seconds": applied, "sessions_dropped": len(drops), "written": bool(written)})
