"""Simulated hosts: one network namespace per host, all joined to one bridge.

Everything a `Lab` creates lives in namespaces it creates itself:

* one bridge namespace (``<prefix>br``) holding the Linux bridge ``br0``;
* one namespace per host (``<prefix><name>``) with ``eth0``, the far end of a
  veth pair created *inside* the bridge namespace (its peer is created straight
  into the host namespace, so nothing ever exists in the root namespace).

Addresses come only from 192.0.2.0/24 and 2001:db8::/64 (IPv6 with ``nodad``).
The prefix is ``rrlab-<6 random hex>-`` so parallel or aborted runs never
collide.  `Lab.close()` (also run by ``with``, by atexit, and by `sweep()` for
labs whose owner process died) kills every process it started or that still
runs inside one of its namespaces, deletes the namespaces and the tmp dir.
"""

from __future__ import annotations

import atexit
import glob
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from tests.polling import wait_for as _wait_for

LAB_V4_NET = ipaddress.ip_network("192.0.2.0/24")
LAB_V6_NET = ipaddress.ip_network("2001:db8::/64")
NS_PREFIX = "rrlab-"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")

REPO_ROOT = Path(__file__).resolve().parents[2]


class LabError(RuntimeError):
    pass


def _run(cmd: Sequence[str], check: bool = True, timeout: float = 30,
         input: Optional[str] = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), capture_output=True, text=True,
                          timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
                       f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}")
    return proc


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.2,
             what: str = "condition", describe: Optional[Callable[[], str]] = None):
    """tests.polling.wait_for, where a failing lab command counts as "not yet"."""
    return _wait_for(predicate, timeout, what, interval, describe,
                     retry_on=(LabError, OSError, subprocess.SubprocessError, ValueError, KeyError))


class Proc:
    """A process the lab started (inside a namespace), with its log file."""

    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path):
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM the process group, then SIGKILL after `timeout`."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        return self.popen.returncode

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} alive={self.alive()}>"


class Host:
    """One simulated host: a network namespace with eth0 on the lab bridge."""

    def __init__(self, lab: "Lab", name: str, ns: str, ipv4: str,
                 ipv6: Optional[str]):
        self.lab = lab
        self.name = name
        self.ns = ns
        self.ipv4 = ipv4
        self.ipv6 = ipv6

    def _wrap(self, cmd: Sequence[str]) -> list:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def run(self, cmd: Sequence[str], check: bool = True, timeout: float = 30,
            input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run `cmd` inside this host's namespace and wait for it."""
        return _run(self._wrap(cmd), check=check, timeout=timeout, input=input)

    def popen(self, cmd: Sequence[str], name: Optional[str] = None,
              env: Optional[dict] = None, cwd: Optional[str] = None) -> Proc:
        """Start `cmd` in this host's namespace, output to a log file in the
        lab tmp dir.  The lab stops it on close."""
        name = name or f"{self.name}-{Path(cmd[0]).name}"
        log_path = self.lab.tmp / f"{name}.log"
        n = 1
        while log_path.exists():
            n += 1
            log_path = self.lab.tmp / f"{name}.{n}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(self._wrap(cmd), stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env, cwd=cwd)
        proc = Proc(name, popen, log_path)
        self.lab._procs.append(proc)
        return proc

    def __repr__(self) -> str:
        return f"<Host {self.name} ns={self.ns} {self.ipv4} {self.ipv6 or ''}>"


class Lab:
    """A throw-away network of simulated hosts.  Use as a context manager."""

    def __init__(self, tmp_parent: Optional[str] = None, keep_tmp: bool = False):
        token = secrets.token_hex(3)
        self.prefix = f"{NS_PREFIX}{token}-"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{NS_PREFIX}{token}.", dir=tmp_parent))
        self.keep_tmp = keep_tmp
        (self.tmp / "owner.pid").write_text(f"{os.getpid()}\n")
        self.hosts: dict = {}
        self._procs: list = []
        self._namespaces: list = []
        self._closed = False
        self.bridge_ns = self.prefix + "br"
        self._ifindex = 0
        atexit.register(self.close)
        try:
            self._add_ns(self.bridge_ns)
            self._ip(self.bridge_ns, "link", "set", "lo", "up")
            self._ip(self.bridge_ns, "link", "add", "br0", "type", "bridge")
            # A bridge that forwards at once (no STP, no learning delay).
            self._ip(self.bridge_ns, "link", "set", "br0", "type", "bridge",
                     "stp_state", "0", "forward_delay", "0")
            self._ip(self.bridge_ns, "link", "set", "br0", "addrgenmode", "none")
            self._ip(self.bridge_ns, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------
    def _record(self) -> None:
        (self.tmp / "namespaces").write_text("".join(n + "\n" for n in self._namespaces))

    def _add_ns(self, ns: str) -> None:
        _run(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        self._record()

    @staticmethod
    def _ip(ns: str, *args: str) -> subprocess.CompletedProcess:
        return _run(["ip", "-n", ns, *args])

    # -- hosts --------------------------------------------------------------
    def add_host(self, name: str, ipv4: str, ipv6: Optional[str] = None) -> Host:
        """Create host `name` with `ipv4`/24 (and `ipv6`/64) on eth0."""
        if not _NAME_RE.match(name) or name == "br":
            raise ValueError(f"bad host name {name!r}")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        if ipaddress.ip_address(ipv4) not in LAB_V4_NET:
            raise ValueError(f"{ipv4} is outside {LAB_V4_NET}")
        if ipv6 is not None:
            ipv6 = str(ipaddress.ip_address(ipv6))
            if ipaddress.ip_address(ipv6) not in LAB_V6_NET:
                raise ValueError(f"{ipv6} is outside {LAB_V6_NET}")
        ns = self.prefix + name
        self._add_ns(ns)
        self._ifindex += 1
        port = f"p{self._ifindex}"
        # Both veth ends are born outside the root namespace: the port in the
        # bridge namespace, its peer straight into the host namespace.
        self._ip(self.bridge_ns, "link", "add", port, "type", "veth",
                 "peer", "name", "eth0", "netns", ns)
        self._ip(self.bridge_ns, "link", "set", port, "addrgenmode", "none")
        self._ip(self.bridge_ns, "link", "set", port, "master", "br0")
        self._ip(self.bridge_ns, "link", "set", port, "up")
        self._ip(ns, "link", "set", "lo", "up")
        # No automatic link-local address: every address is one we chose.
        self._ip(ns, "link", "set", "eth0", "addrgenmode", "none")
        self._ip(ns, "addr", "add", f"{ipv4}/24", "dev", "eth0")
        if ipv6 is not None:
            self._ip(ns, "-6", "addr", "add", f"{ipv6}/64", "dev", "eth0", "nodad")
        self._ip(ns, "link", "set", "eth0", "up")
        host = Host(self, name, ns, ipv4, ipv6)
        self.hosts[name] = host
        return host

    def host(self, name: str) -> Host:
        return self.hosts[name]

    # -- services (thin wrappers, so tests only need the lab object) ---------
    def start_etcd(self, host: Host, timeout: float = 30.0):
        from .etcd import start_etcd
        return start_etcd(self, host, timeout=timeout)

    def start_bird(self, host: Host, config_text: str, family: int = 4,
                   name: Optional[str] = None, config_path: Optional[Path] = None,
                   socket_path: Optional[Path] = None):
        from .bird import start_bird
        return start_bird(self, host, config_text, family=family, name=name,
                          config_path=config_path, socket_path=socket_path)

    # -- teardown -----------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        for proc in reversed(self._procs):
            try:
                proc.stop(timeout=5)
            except Exception:
                pass
        for ns in reversed(self._namespaces):
            _kill_ns_pids(ns)
            _run(["ip", "netns", "del", ns], check=False)
        if not self.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _kill_ns_pids(ns: str) -> None:
    """Kill whatever still runs in namespace `ns` (only ever one of ours)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except (ProcessLookupError, ValueError):
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if not _run(["ip", "netns", "pids", ns], check=False).stdout.split():
                return
            time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def sweep(tmp_parent: Optional[str] = None, verbose: bool = False) -> list:
    """Remove labs left behind by runs that died (owner process gone).

    Only labs recorded under `tmp_parent` (default: the system tmp dir) whose
    ``owner.pid`` is no longer alive are touched; live labs of parallel runs
    are left alone.  Returns the namespaces removed.
    """
    parent = tmp_parent or tempfile.gettempdir()
    removed = []
    for d in glob.glob(os.path.join(parent, f"{NS_PREFIX}*.*")):
        try:
            owner = int(Path(d, "owner.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        try:
            namespaces = Path(d, "namespaces").read_text().split()
        except OSError:
            namespaces = []
        for ns in reversed(namespaces):
            if not ns.startswith(NS_PREFIX):
                continue
            _kill_ns_pids(ns)
            if _run(["ip", "netns", "del", ns], check=False).returncode == 0:
                removed.append(ns)
        shutil.rmtree(d, ignore_errors=True)
        if verbose:
            print(f"swept {d}: {' '.join(namespaces)}")
    return removed
