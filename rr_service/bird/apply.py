"""Put a rendered config in front of BIRD: the only code that writes BIRD config files.

The file on disk is either the last good config, or one that BIRD itself accepted (it loads
the candidate before the rename), or, while BIRD is down, one that `bird -p` accepted and
BIRD reads when it starts. We remember what BIRD *accepted*, not what we wrote: a reload that failed or
never happened is retried on the next apply() instead of being mistaken for "in sync".
"""
from __future__ import annotations

import enum
import hashlib
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass

from rr_service.bird.control import BirdClient, BirdCommandError, BirdSocketError
from rr_service.core.safety import session_names

log = logging.getLogger("calico-rr")

_CHECK_TIMEOUT = 120.0  # `bird -p` of 10,000 peers takes ~25 ms; this only guards a hang
# How long an apply waits for BIRD to finish a reconfiguration it answered "in progress"
# (BirdClient.settle): 25-50 ms at 10,000 sessions; this only guards a hang, well inside
# the unit's WatchdogSec.
_SETTLE_TIMEOUT = 10.0


class ConfigRejected(Exception):
    """BIRD refused the config (offline check or at reload); the message is BIRD's own."""


class ApplyStatus(enum.Enum):
    UNCHANGED = "unchanged"  # BIRD already runs exactly this text
    APPLIED = "applied"  # written and BIRD accepted it
    WRITTEN_BIRD_DOWN = "written-bird-down"  # on disk, BIRD unreachable or busy; retry later
    TAKEN_OVER = "taken-over"  # BIRD runs exactly this text, accepted from our previous run


@dataclass(frozen=True)
class BirdTarget:
    config_path: str  # /etc/bird/bird.conf
    binary: str  # /usr/sbin/bird
    socket_path: str  # /run/bird/bird.ctl


class ConfigApplier:
    def __init__(self, target: BirdTarget, socket_timeout: float = 10.0):
        self.target = target
        self.client = BirdClient(target.socket_path, socket_timeout)
        # None at start: we cannot know whether BIRD runs the file it finds on disk (someone
        # may have edited it, or a reload failed before we started), so the first apply()
        # sends `configure` -- unless our own previous run handed it over (take_over()).
        # Kept as bytes only (1.5 MB at 10,000 sessions; a str copy beside it doubled that).
        self._accepted_bytes: bytes | None = None
        # How BIRD looked right after it accepted them: still_accepted() compares.
        self._bird_stamp: tuple | None = None
        # The file's (inode, size, mtime) once it was seen to hold the accepted bytes: the
        # periodic check stats the file and reads it only when that changed.
        self._file_stamp: tuple | None = None
        # What goes back on disk if BIRD refuses the file in place: the text it last accepted,
        # or the file our write replaced while BIRD was down. None: nothing known, so a
        # refused file that was there before stays (never removed: BIRD may need it to start).
        self._fallback: bytes | None = None
        self._disk_names: tuple | None = None  # (file stamp, names): see names_on_disk()
        self._handed_over: dict | None = None  # see take_over(); only until the first apply()
        # Our temp files left behind are removed before the next one is made: at the first
        # write (a run killed mid-apply leaves one) and after a temp could not be removed (the
        # folder went read-only between BIRD's read and the rename).
        self._sweep_due = True

    def hand_over(self) -> dict | None:
        """At a clean stop: what the next run needs to know that this BIRD runs the file in
        place (see take_over), or None when that is not known for sure now."""
        if self._accepted_bytes is None or not self.still_accepted():
            return None
        return {"config": self.target.config_path, "sha256": hashlib.sha256(self._accepted_bytes).hexdigest(),
                "bird_socket": list(self._bird_stamp)}

    def take_over(self, record: object) -> None:
        """Before the first apply(): the previous run's hand_over() record. If the file on disk
        is still the one it names and BIRD is still the process that accepted it (same control
        socket), that BIRD runs the file: the first apply() of the same text then reloads
        nothing. The same evidence still_accepted() goes by while we run; anything else (BIRD
        restarted, the file changed, a record of another file) and the first apply()
        configures BIRD as without a record."""
        self._handed_over = record if isinstance(record, dict) else None

    def names_on_disk(self) -> frozenset[str]:
        """The BGP protocol names in the file on disk: what a BIRD we have not configured yet
        runs, or reads at its start. Parsed again only when the file moved (a held render asks
        every second, and the file is 1.5 MB at 10,000 sessions)."""
        stamp = _file_stamp(self.target.config_path)
        if stamp is None or self._disk_names is None or self._disk_names[0] != stamp:
            try:
                data = _read(self.target.config_path) or b""
            except OSError:
                data = b""  # unreadable: counts as no sessions, as a missing file does
            self._disk_names = (stamp, session_names([data.decode("utf-8", "replace")]))
        return self._disk_names[1]

    @property
    def accepted_text(self) -> str | None:
        """The config BIRD last accepted from us; None until it accepted one (or restarted)."""
        return None if self._accepted_bytes is None else self._accepted_bytes.decode()

    def still_accepted(self) -> bool:
        """False when BIRD may no longer run what it accepted from us: the file was changed
        behind our back, or BIRD was restarted since (on whatever file it found then). The next
        apply() then configures BIRD again. Cheap: two stats, a read only if the file moved."""
        if self._accepted_bytes is None:
            return True  # nothing accepted yet: the daemon's own retry covers it
        file_stamp = _file_stamp(self.target.config_path)
        if file_stamp is None or file_stamp != self._file_stamp:
            if _read(self.target.config_path) != self._accepted_bytes:
                return False
            self._file_stamp = file_stamp
        stamp = self._stamp()
        if stamp is None or stamp == self._bird_stamp:
            return True
        self._accepted_bytes = None  # BIRD may run anything now: configure it again
        return False

    def _stamp(self) -> tuple | None:
        """What changes when BIRD restarts: it creates its control socket anew. (Not `show
        status`: BIRD 1.6 shows its times through a monotonic-to-wall-clock offset in whole
        seconds, so "Last reboot" moves by a second between two calls.)"""
        try:
            st = os.stat(self.target.socket_path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_ctime_ns)

    def apply(self, text: str) -> ApplyStatus:
        path = self.target.config_path
        wanted = text.encode()
        if self._accepted_bytes is not None and self._file_stamp is not None and _file_stamp(path) == self._file_stamp:
            on_disk = self._accepted_bytes  # not read again: 2 MB at 10,000 sessions, a millisecond
        else:
            on_disk = _read(path)
        handed_over, self._handed_over = self._handed_over, None
        if self._accepted_bytes is None and on_disk == wanted and self._runs_handed_over(handed_over, wanted):
            self._accepted(wanted)
            return ApplyStatus.TAKEN_OVER
        if wanted == self._accepted_bytes and on_disk == wanted:
            return ApplyStatus.UNCHANGED

        if on_disk == wanted:
            return self._configure_in_place(wanted)
        return self._configure_candidate(wanted, on_disk)

    def _runs_handed_over(self, record: dict | None, data: bytes) -> bool:
        if not record or record.get("config") != self.target.config_path:
            return False
        stamp = self._stamp()
        return (stamp is not None and record.get("bird_socket") == list(stamp)
                and record.get("sha256") == hashlib.sha256(data).hexdigest())

    def _configure_candidate(self, wanted: bytes, on_disk: bytes | None) -> ApplyStatus:
        """BIRD running: it loads the candidate itself, which also checks it. One parse, not
        two (`bird -p` costs as much as the parse inside `configure`), and a file BIRD refused
        never reaches the target path. BIRD does not remember the candidate's name: a later
        plain `configure` (Debian's reload) reads the target again, which by then holds it."""
        path = self.target.config_path
        # BIRD reads it from the page cache; its fsync waits for _rename, so it does not
        # delay BIRD (2-3 ms of a change at 10,000 sessions).
        tmp = self._write_temp(wanted)
        try:
            try:
                reply = self.client.configure(tmp)
            except BirdCommandError as e:
                raise ConfigRejected(f"BIRD refused the new {path}: {_untemp(e.message, tmp, path)}") from e
            except BirdSocketError:
                # Not running (or busy): check offline so that BIRD starts on a good file.
                self._check(tmp)
                self._rename(tmp)
                tmp = None
                if self._fallback is None:
                    self._fallback = on_disk
                return ApplyStatus.WRITTEN_BIRD_DOWN
            self._accepted(wanted)
            self._rename(tmp)
            tmp = None
            self._file_stamp = _file_stamp(path)  # the file holds what BIRD accepted: we just put it there
            self._settle(reply)
            return ApplyStatus.APPLIED
        finally:
            self._discard(tmp)

    def _configure_in_place(self, wanted: bytes) -> ApplyStatus:
        """The file already holds the text (we wrote it while BIRD was down, or it was there
        when we started): reload it. If BIRD now refuses it, put back what BIRD last accepted
        or what our write replaced; knowing neither, leave the file: it was there before this
        apply, and only a file an apply created may be removed."""
        path = self.target.config_path
        try:
            # Absolute: a daemonized BIRD has cwd /.
            reply = self.client.configure(os.path.abspath(path))
        except BirdCommandError as e:
            msg = f"BIRD refused {path} at reconfigure: {e.message}"
            if self._fallback is None:
                msg += "; the file stays as it was (no earlier version is known)"
            else:
                try:
                    self._replace(self._fallback)
                    msg += "; the previous file is restored"
                except OSError as restore_err:
                    msg += f"; restoring the previous file also failed: {restore_err}"
            raise ConfigRejected(msg) from e
        except BirdSocketError:
            return ApplyStatus.WRITTEN_BIRD_DOWN
        self._accepted(wanted)
        self._settle(reply)
        return ApplyStatus.APPLIED

    def _settle(self, reply) -> None:
        """Return only once BIRD has finished taking the config in, so that the next
        `configure` is never queued behind it (see BirdClient.settle). BIRD accepted the
        config either way: a BIRD that stops answering now is still_accepted()'s business."""
        try:
            if not self.client.settle(reply, _SETTLE_TIMEOUT):
                log.warning("BIRD at %s accepted %s but was still reconfiguring %.0f s later; "
                            "going on", self.target.socket_path, self.target.config_path, _SETTLE_TIMEOUT)
        except BirdSocketError as exc:
            log.warning("BIRD at %s accepted %s, then stopped answering: %s",
                        self.target.socket_path, self.target.config_path, exc)

    def _accepted(self, data: bytes) -> None:
        """BIRD said yes to data: remember it, and the BIRD that said it (still_accepted)."""
        self._accepted_bytes = data
        self._file_stamp = None
        self._fallback = self._accepted_bytes
        self._bird_stamp = self._stamp()

    # -- files -----------------------------------------------------------------------

    def _replace(self, data: bytes) -> None:
        """Atomically put data at the target path: temp file beside it, fsync, rename."""
        tmp = self._write_temp(data)
        try:
            self._rename(tmp)
            tmp = None
        finally:
            self._discard(tmp)

    def _write_temp(self, data: bytes) -> str:
        """A copy of data beside the target, with the target's owner and mode 0640. Not
        fsynced: _rename does that before the copy takes the target's name."""
        path = os.path.abspath(self.target.config_path)
        folder, name = os.path.split(path)
        if self._sweep_due:
            self._sweep_due = not _sweep(folder, _temp_prefix(name))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(name), dir=folder)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o640)
                _match_owner(f.fileno(), path, folder)
                f.write(data)
            return tmp
        except OSError as e:
            self._discard(tmp)
            raise _named(e, path) from e

    def _discard(self, tmp: str | None) -> None:
        """Remove a temp file we made; one that cannot be (a folder gone read-only) is swept
        before the next write, and never hides the error that got us here."""
        if tmp is None:
            return
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove the temp file %s now (%s); it is removed before the "
                        "next write", tmp, e.strerror or e)
            self._sweep_due = True

    def _rename(self, tmp: str) -> None:
        path = os.path.abspath(self.target.config_path)
        try:
            _fsync(tmp)
            os.rename(tmp, path)
            # Without this the rename may not survive a power cut: the directory entry is the data.
            _fsync(os.path.dirname(path), os.O_DIRECTORY)
        except OSError as e:
            raise _named(e, path) from e

    def _check(self, candidate: str) -> None:
        try:
            res = subprocess.run(
                [self.target.binary, "-p", "-c", candidate],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                timeout=_CHECK_TIMEOUT,
            )
        except subprocess.TimeoutExpired as e:
            raise ConfigRejected(f"`{self.target.binary} -p` did not finish within "
                                 f"{_CHECK_TIMEOUT:.0f}s checking {candidate}") from e
        if res.returncode != 0:
            out = (res.stderr or res.stdout).decode(errors="replace").strip()
            raise ConfigRejected(f"`{self.target.binary} -p` rejected the new "
                                 f"{self.target.config_path} (checked as {candidate}): "
                                 f"{out or f'exit status {res.returncode}'}")


def _named(e: OSError, path: str) -> OSError:
    # OSError(errno, msg) builds the matching subclass (PermissionError, ...), so callers can
    # still tell ENOSPC from EACCES, and the message names the target, not the temp file.
    return OSError(e.errno, f"cannot write BIRD config {path}: {e.strerror or e}")


def _temp_prefix(name: str) -> str:
    return f".{name}.tmp-"


def _sweep(folder: str, prefix: str) -> bool:
    """Remove the temp files named with our prefix in folder; whether none is left. Only
    the daemon writes BIRD's config, one per host (its systemd unit), so such a file is one
    an earlier write of ours left, never one in use."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)]
    except OSError:
        return False
    left = False
    for n in names:
        try:
            os.unlink(os.path.join(folder, n))
            log.info("removed %s, a temp file an earlier write left behind", os.path.join(folder, n))
        except FileNotFoundError:
            pass
        except OSError:
            left = True
    return not left


def _untemp(message: str, tmp: str, path: str) -> str:
    """BIRD names the file it parsed: say which file that stands for."""
    return message.replace(tmp, f"{path} (candidate)")


def _file_stamp(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _match_owner(fd: int, like: str, folder: str) -> None:
    # Debian's BIRD runs as user bird and /etc/bird/bird.conf is bird:bird 0640: a file we
    # create as root:root 0640 would pass `bird -p` (run as root) and then be unreadable to
    # BIRD itself. So take the old file's owner, or the folder's group for a new file.
    try:
        st = os.stat(like)
        uid, gid = st.st_uid, st.st_gid
    except FileNotFoundError:
        uid, gid = -1, os.stat(folder).st_gid
    try:
        os.fchown(fd, uid, gid)
    except PermissionError:
        try:  # not root: a group we belong to is still allowed
            os.fchown(fd, -1, gid)
        except PermissionError:
            pass


def _fsync(path: str, flags: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
