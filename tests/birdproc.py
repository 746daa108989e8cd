"""Throw-away BIRD in a throw-away network namespace, for integration tests.

BIRD runs in the foreground (-f) as our own child, so we can always reap it; the namespace
keeps its BGP sockets away from the host's interfaces. Paths stay short on purpose: a unix
socket path must fit in 108 bytes, and pytest's tmp_path often does not.
"""
from __future__ import annotations

import functools

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator


from rr_service.bird.control import BirdClient

from tests import prereq
from tests.polling import wait_for as _wait_for

BIRD = "/usr/sbin/bird"
BIRD6 = "/usr/sbin/bird6"
START_DEADLINE = 10.0


def missing_requirements(binary: str = BIRD, netns: bool = True) -> str | None:
    """Why integration tests cannot run here, or None."""
    if netns and os.geteuid() != 0:
        return "needs root for network namespaces"
    if netns and shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    if not os.access(binary, os.X_OK):
        return f"needs {binary}"
    return None


def skip_unless_possible(binary: str = BIRD, netns: bool = True) -> None:
    prereq.need(missing_requirements(binary, netns))


@contextmanager
def short_tmpdir() -> Iterator[str]:
    """A world-traversable folder under /tmp, removed afterwards."""
    path = tempfile.mkdtemp(prefix="rr-", dir="/tmp")
    os.chmod(path, 0o755)  # so a BIRD started with -u nobody can reach its files
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


wait_for = functools.partial(_wait_for, interval=0.02)


class BirdNetns:
    """A network namespace in which BIRD can be started and stopped (more than once)."""

    def __init__(self, workdir: str, binary: str = BIRD):
        self.workdir = workdir
        self.binary = binary
        self.name = f"rrtest-{secrets.token_hex(4)}"
        self.socket_path = os.path.join(workdir, "bird.ctl")
        self.pid_path = os.path.join(workdir, "bird.pid")
        self.log_path = os.path.join(workdir, "bird.log")
        self.proc: subprocess.Popen | None = None
        self._created = False

    def __enter__(self) -> "BirdNetns":
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self._created = True
        try:
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"],
                           check=True, capture_output=True)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            if self._created:
                subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
                self._created = False

    def client(self, timeout: float = 5.0) -> BirdClient:
        return BirdClient(self.socket_path, timeout)

    def start(self, config_path: str, user: str | None = None,
              group: str | None = None) -> BirdClient:
        assert self.proc is None, "BIRD already running"
        if user:
            # BIRD drops privileges before it creates its socket and pid file.
            run = os.path.join(self.workdir, "run")
            os.makedirs(run, exist_ok=True)
            shutil.chown(run, user, group)
            self.socket_path = os.path.join(run, "bird.ctl")
            self.pid_path = os.path.join(run, "bird.pid")
        cmd = ["ip", "netns", "exec", self.name, self.binary, "-f",
               "-c", config_path, "-s", self.socket_path, "-P", self.pid_path]
        if user:
            cmd += ["-u", user]
        if group:
            cmd += ["-g", group]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        client = self.client(timeout=1.0)
        deadline = time.monotonic() + START_DEADLINE
        while not client.is_running():
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"BIRD exited at start: {self._log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"BIRD socket did not answer in {START_DEADLINE}s: "
                                   f"{self._log()}")
            time.sleep(0.02)
        return self.client()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        # BIRD leaves its socket behind when killed; a stale one must look like "down".
        for p in (self.socket_path, self.pid_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def _log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read().strip()
        except OSError:
            return "(no log)"


@contextmanager
def running_bird(config_text: str, binary: str = BIRD, **start_kw) -> Iterator[BirdNetns]:
    """A folder with `bird.conf` holding config_text, and BIRD running it in a namespace."""
    with short_tmpdir() as d:
        conf = os.path.join(d, "bird.conf")
        with open(conf, "w") as f:
            f.write(config_text)
        with BirdNetns(d, binary) as ns:
            ns.start(conf, **start_kw)
            yield ns
