"""A throw-away etcd server for tests: loopback only, random ports, temp data dir.

Used as a context manager or with start()/close(); close() kills the server and
removes its folder even when the test failed. Never sleeps blindly: every wait
polls with a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests import prereq
from tests.polling import wait_for as _wait_for

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
LOOPBACK = "127.0.0.1"


def etcd_installed() -> bool:
    return os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)


def need_etcd() -> None:
    if not etcd_installed():
        prereq.missing("etcd and etcdctl are not installed (apt install etcd-server etcd-client)")


@contextmanager
def throwaway_etcd() -> Iterator["EtcdProc"]:
    """A running EtcdProc (for a module-scoped fixture); no etcd is a missing prerequisite."""
    need_etcd()
    with EtcdProc() as server:
        yield server


@contextmanager
def hanging_endpoints(count: int) -> Iterator[list[str]]:
    """etcd URLs that accept TCP connections and never answer (a black-holed etcd): every
    call to one waits out its whole timeout."""
    listeners = []
    try:
        for _ in range(count):
            listener = socket.socket()
            listener.bind((LOOPBACK, 0))
            listener.listen(8)
            listeners.append(listener)
        yield [f"http://{LOOPBACK}:{listener.getsockname()[1]}" for listener in listeners]
    finally:
        for listener in listeners:
            listener.close()


def free_port() -> int:
    # The kernel picks a free port; the tiny race until etcd binds it is
    # acceptable for tests (start() fails loudly, not silently, if lost).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


wait_until = _wait_for  # the name the etcd tests know it by


class TLSFiles:
    """A CA, a server cert for 127.0.0.1 and a client cert, made with openssl."""

    def __init__(self, folder: Path, name: str = "ca"):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_cert = str(folder / f"{name}.crt")
        self.ca_key = str(folder / f"{name}.key")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert,
                      "-subj", f"/CN=throw-away test {name}", "-days", "2")
        self.server_cert, self.server_key = self._issue("server", "IP:127.0.0.1",
                                                        "serverAuth,clientAuth")
        self.client_cert, self.client_key = self._issue("client", "DNS:client", "clientAuth")

    def _issue(self, cn: str, san: str, usage: str) -> tuple[str, str]:
        key, csr, crt = (str(self.folder / f"{cn}.{ext}") for ext in ("key", "csr", "crt"))
        ext = self.folder / f"{cn}.ext"
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                      "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", str(ext))
        return crt, key

    @staticmethod
    def _openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


class EtcdProc:
    """One single-member etcd on 127.0.0.1. Restartable on the same data dir and ports."""

    def __init__(self, tls: TLSFiles | None = None, extra_args: tuple[str, ...] = ()):
        self.folder = Path(tempfile.mkdtemp(prefix="rr-test-etcd-"))
        self.data_dir = self.folder / "data"
        self.tls = tls
        self.extra_args = extra_args
        self.client_port = free_port()
        self.peer_port = free_port()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{LOOPBACK}:{self.client_port}"
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._starts = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> "EtcdProc":
        assert self.proc is None, "already running"
        peer = f"http://{LOOPBACK}:{self.peer_port}"
        args = [ETCD, "--name", "test", "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"test={peer}", *self.extra_args]
        if self.tls:
            args += ["--cert-file", self.tls.server_cert, "--key-file", self.tls.server_key,
                     "--trusted-ca-file", self.tls.ca_cert, "--client-cert-auth"]
        self._starts += 1
        log_path = self.folder / f"etcd.{self._starts}.log"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{log_path.read_text()}")
            return b"client requests on" in log_path.read_bytes()

        try:
            wait_until(ready, timeout, "etcd to serve clients")
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop etcd (SIGKILL: tests want an abrupt outage), keep its data."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGCONT)  # in case a test paused it
                self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> "EtcdProc":
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: etcd keeps its sockets open but never answers (a hung server)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "EtcdProc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- etcdctl ---------------------------------------------------------------
    def ctl(self, *args: str, user: str = "", stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        cmd = [ETCDCTL, "--endpoints", self.url, "--dial-timeout", "3s",
               "--command-timeout", "5s"]
        if self.tls:
            cmd += ["--cacert", self.tls.ca_cert, "--cert", self.tls.client_cert,
                    "--key", self.tls.client_key]
        if user:
            cmd += ["--user", user]
        env = dict(os.environ, ETCDCTL_API="3")
        result = subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True,
                                env=env, timeout=30)
        if check and result.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def revision(self) -> int:
        import json
        out = self.ctl("endpoint", "status", "-w", "json").stdout
        return int(json.loads(out)[0]["Status"]["header"]["revision"])


def etcd_for_kubeapi():
    """A module's etcd under the test Kubernetes API server (a generator for a fixture):
    progress notifications every second let watch BOOKMARKs advance while nothing changes."""
    need_etcd()
    server = EtcdProc(extra_args=("--experimental-watch-progress-notify-interval=1s",))
    try:
        yield server.start()
    finally:
        server.close()
