"""Disk full and read-only config folder: a small tmpfs mounted on the reflector's folder
(bird.conf, bird6.conf, its settings and BIRD's sockets), filled up, then remounted read-only.
No partial file ever replaces a good one; the daemon keeps running and applies once it can
write again. The mount is removed in a finalizer, also on failure."""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest

from rr_service.loop import BIRD_RETRY
from tests.faults.faultlab import EVENTUALLY, RETRY_BOUND, dropped_sessions, fingerprint, stray_files
from tests.lab import proto_name, wait_for
from tests.lab.reflector import FILE_FOLLOWS_BIRD
from tests.lab.world import NODES
from tests.polling import becomes_true

pytestmark = pytest.mark.integration

C_IP = NODES["c"].ipv4
D_IP = NODES["d"].ipv4


def _mount(args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def _fill(folder) -> str:
    """Fill the file system, then free one page: the next config (several pages) can be written
    in part only, so a partial write really happens."""
    path = os.path.join(folder, "filler")
    chunk = b"\0" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    size = os.path.getsize(path)
    os.truncate(path, max(size - 4096, 0))
    return path


def test_disk_full_and_read_only(fault_world, lab, figures, request):
    folder = lab.tmp / "rr1-rr"  # the folder the lab's Reflector uses for rr1

    def unmount():
        if os.path.ismount(folder):
            _mount(["umount", "-l", str(folder)], check=False)
    request.addfinalizer(unmount)

    def mount_tmpfs():
        folder.mkdir(exist_ok=True)
        _mount(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(folder)])

    w = fault_world(before_reflector=mount_tmpfs)
    rr = w.rr
    assert os.path.ismount(folder)
    # A bigger config (30 more clients, no BIRD behind them): the next write needs several pages.
    for i in range(30):
        w.calico.add_node(f"n{i:02d}", f"192.0.2.{100 + i}")
    wait_for(lambda: proto_name("Client", "192.0.2.129") in rr.bird.protocols(), EVENTUALLY,
             what="the 30 extra clients applied")
    before = w.sessions()
    size = rr.bird_conf.stat().st_size

    # -- disk full -------------------------------------------------------------------------
    good = fingerprint(rr.bird_conf)
    filler = _fill(folder)
    t_full = time.monotonic()
    w.calico.add_node("c", C_IP)
    wait_for(lambda: "No space left" in rr.log(), EVENTUALLY, what="the write error in the log",
             describe=lambda: rr.log()[-2000:])
    status_full = rr.notify.wait_status(lambda s: "not writable" in s, 10, since=t_full)
    kept_full = fingerprint(rr.bird_conf) == good
    strays_full = stray_files(folder)
    c_applied_while_full = proto_name("Client", C_IP) in rr.bird.protocols()
    rr.assert_alive()
    os.unlink(filler)
    t_free = time.monotonic()
    wait_for(lambda: proto_name("Client", C_IP) in rr.bird.protocols(), EVENTUALLY,
             what="the change applied once there is space")
    full_recover = time.monotonic() - t_free
    in_sync_after_full = rr.in_sync_with_render()  # and C's file in place before the remount

    # -- read-only -------------------------------------------------------------------------
    good = fingerprint(rr.bird_conf)
    _mount(["mount", "-o", "remount,ro", str(folder)])
    try:
        t_ro = time.monotonic()
        w.calico.add_node("d", D_IP)
        wait_for(lambda: "Read-only file system" in rr.log(), EVENTUALLY,
                 what="the read-only error in the log", describe=lambda: rr.log()[-2000:])
        rr.notify.wait_status(lambda s: "not writable" in s, 10, since=t_ro)
        kept_ro = fingerprint(rr.bird_conf) == good
        d_applied_while_ro = proto_name("Client", D_IP) in rr.bird.protocols()
        rr.assert_alive()
    finally:
        _mount(["mount", "-o", "remount,rw", str(folder)])
    t_rw = time.monotonic()
    wait_for(lambda: proto_name("Client", D_IP) in rr.bird.protocols(), EVENTUALLY,
             what="the change applied once writable again")
    ro_recover = time.monotonic() - t_rw
    # BIRD took D from the candidate, which takes the config's name just after.
    becomes_true(lambda: not stray_files(folder), FILE_FOLLOWS_BIRD)
    strays_end = stray_files(folder)
    drops = dropped_sessions(before, w.sessions())
    in_sync = rr.in_sync_with_render()

    assert kept_full and not strays_full and not c_applied_while_full
    assert "not writable" in status_full
    assert in_sync_after_full
    assert kept_ro and not d_applied_while_ro
    assert not strays_end, strays_end
    assert not drops, drops
    assert in_sync
    assert full_recover <= RETRY_BOUND, f"applied {full_recover:.1f} s after space was freed (bound {RETRY_BOUND:g} s)"
    assert ro_recover <= RETRY_BOUND, f"applied {ro_recover:.1f} s after the remount (bound {RETRY_BOUND:g} s)"
    rr.assert_alive()
    figures.add("faults", "disk_full", fault="disk full (config folder)",
                done=f"256 KiB tmpfs on the config folder filled up to one free page; a change "
                     f"needing a {size // 1024 + 1} KiB config; then space freed",
                figure=f"previous file kept (inode, mtime, content), {len(strays_full)} temp files left; "
                       f"daemon kept running; applied {full_recover:.1f} s after space was freed "
                       f"(bound {RETRY_BOUND:g} s: retry every {BIRD_RETRY:g} s); {len(drops)} sessions dropped",
                measured={"previous_kept": kept_full, "temp_files_left": len(strays_full),
                          "recover_seconds": full_recover, "sessions_dropped": len(drops)})
    figures.add("faults", "read_only", fault="read-only config folder",
                done="config folder remounted read-only, a change, remounted read-write",
                figure=f"previous file kept; daemon kept running; applied {ro_recover:.1f} s after "
                       f"the remount read-write (bound {RETRY_BOUND:g} s)",
                measured={"previous_kept": kept_ro, "recover_seconds": ro_recover})
