"""The product in the lab: a reflector host running its own BIRD (and BIRD6)
plus ``python3 -m rr_service run`` inside its namespace."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, Optional, Sequence

from .bird import BirdProc, minimal_bird_config, start_bird
from .netns import REPO_ROOT, Host, Lab, LabError, Proc, wait_for
from tests import prereq
from tests.polling import becomes_true
from tests.tomlfile import write_settings

PYTHON = "/usr/bin/python3"
FILE_FOLLOWS_BIRD = 10  # a safety net for the rename after BIRD's `configure`: milliseconds here


def rr_service_available() -> Optional[str]:
    """None when ``python3 -m rr_service --help`` works, else the reason."""
    try:
        res = subprocess.run([PYTHON, "-m", "rr_service", "--help"], cwd=REPO_ROOT,
                             env=_env(), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"rr_service --help: {exc}"
    if res.returncode != 0:
        return f"rr_service --help failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-300:]}"
    return None


def need_rr_service() -> None:
    """Fail the test when ``python3 -m rr_service`` does not start: the product is broken,
    which is a failure, never a reason to skip."""
    reason = rr_service_available()
    if reason:
        import pytest
        pytest.fail(f"python3 -m rr_service does not start: {reason}", pytrace=False)


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Don't let the product think it runs under systemd.
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS"):
        env.pop(k, None)
    return env


class Reflector:
    """A reflector host: BIRD (+ BIRD6 when the host has IPv6) started on a
    minimal config, and the daemon started with `start()`."""

    def __init__(self, lab: Lab, host: Host, etcd_endpoints: Sequence[str],
                 prefix: str = "/calico/bgp/v1", ipv6: bool = True,
                 log_level: str = "debug", settings: Optional[dict] = None,
                 flavour: str = "bird1", bird_binary: Optional[str] = None):
        """`settings`: sections to set on top of the lab's ({"safety": {"hold_seconds": 5}}).
        `bird_binary`: the BIRD of a bird2 or bird3 reflector (one daemon for both families;
        default: the one tests/prereq.py fetches); bird1 runs Debian's bird and bird6."""
        self.lab = lab
        self.host = host
        self.dir = lab.tmp / f"{host.name}-rr"
        self.dir.mkdir(exist_ok=True)
        self.config = self.dir / "rr.toml"
        use6 = ipv6 and host.ipv6 is not None
        one_daemon = flavour != "bird1"
        if one_daemon and bird_binary is None:
            bird_binary = prereq.bird_binary_or_missing(flavour)
        self.ip6 = host.ipv6 if use6 else ""
        self.bird_conf = self.dir / "bird.conf"
        self.bird6_conf = self.dir / "bird6.conf"
        self.sock = self.dir / "bird.ctl"
        self.sock6 = self.dir / "bird6.ctl"
        self.settings = {
            "reflector": {"ip": host.ipv4, "ip6": self.ip6},
            "etcd": {"endpoints": list(etcd_endpoints), "prefix": prefix},
            "bird": {"flavour": flavour, "config": str(self.bird_conf), "config6": str(self.bird6_conf),
                     "socket": str(self.sock), "socket6": str(self.sock6),
                     "binary": bird_binary if one_daemon else "/usr/sbin/bird", "binary6": "/usr/sbin/bird6"},
            "log": {"level": log_level},
        }
        self.set(settings or {})
        self.flavour = flavour
        self.bird: BirdProc = start_bird(lab, host, minimal_bird_config(host.ipv4), 4,
                                         name=f"{host.name}-bird", config_path=self.bird_conf,
                                         socket_path=self.sock,
                                         binary=bird_binary if one_daemon else None)
        self.bird6: Optional[BirdProc] = None
        if use6 and one_daemon:
            self.bird6 = self.bird  # one BIRD 2 or 3 daemon carries both families
        elif use6:
            self.bird6 = start_bird(lab, host, minimal_bird_config(host.ipv4), 6,
                                    name=f"{host.name}-bird6", config_path=self.bird6_conf,
                                    socket_path=self.sock6)
        self.daemon: Optional[Proc] = None

    def set(self, sections: dict) -> None:
        """Change settings (section -> key -> value; None removes a key) and rewrite the file."""
        for section, values in sections.items():
            current = self.settings.setdefault(section, {})
            for key, value in values.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
        write_settings(self.config, self.settings)

    def bird_for(self, family: int) -> BirdProc:
        b = self.bird if family == 4 else self.bird6
        if b is None:
            raise LabError(f"{self.host.name} has no BIRD{family}")
        return b

    def cli(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run ``python3 -m rr_service --config FILE ARGS`` inside the namespace."""
        cmd = ["env", f"PYTHONPATH={REPO_ROOT}", PYTHON, "-m", "rr_service",
               "--config", str(self.config), *args]
        res = subprocess.run(["ip", "netns", "exec", self.host.ns, *cmd], cwd=REPO_ROOT,
                             env=_env(), capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise LabError(f"rr_service {' '.join(args)} failed ({res.returncode}):\n"
                           f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return res

    def rendered(self, only: str) -> str:
        """What `calico-rr render` computes from the datastore now, for one config file."""
        return self.cli("render", "--only", only, timeout=60).stdout

    @property
    def config_files(self) -> Dict[str, Path]:
        """The configs the daemon writes, by target: bird and bird6 (BIRD 1.6), else bird."""
        if self.flavour == "bird1":
            return {"bird": self.bird_conf, "bird6": self.bird6_conf}
        return {"bird": self.bird_conf}

    def in_sync_with_render(self, within: float = FILE_FOLLOWS_BIRD) -> bool:
        """The configs on disk are `calico-rr render`'s, now or within `within` seconds: the
        daemon renames a file into place just after BIRD took it in (and fsyncs it first), so
        a test that has just seen BIRD's change may look a few milliseconds too early."""
        for only, path in self.config_files.items():
            want = self.rendered(only).encode()
            if not becomes_true(lambda p=path, w=want: read_bytes(p) == w, within):
                return False
        return True

    def start(self) -> Proc:
        """Start the daemon (``run``) in the reflector's namespace."""
        if self.daemon is not None and self.daemon.alive():
            raise LabError("daemon already running")
        self.daemon = self.host.popen([PYTHON, "-m", "rr_service", "--config", str(self.config), "run"],
                                      name=f"{self.host.name}-rr_service", env=_env(),
                                      cwd=str(REPO_ROOT))
        return self.daemon

    def stop(self) -> Optional[int]:
        if self.daemon is None:
            return None
        return self.daemon.stop()

    def log(self) -> str:
        return self.daemon.log() if self.daemon else ""

    def assert_alive(self) -> None:
        if self.daemon is None or not self.daemon.alive():
            raise AssertionError(f"rr_service on {self.host.name} is not running "
                                 f"(rc={self.daemon and self.daemon.popen.returncode}):\n{self.log()[-4000:]}")

    def wait_established(self, names, family: int = 4, timeout: float = 60):
        """Like BirdProc.wait_established, also failing fast if the daemon died."""
        bird = self.bird_for(family)

        if callable(names):
            pred = names
        else:
            wanted = [names] if isinstance(names, str) else list(names)

            def pred(protos):
                return all(n in protos and protos[n].established for n in wanted)

        def check():
            self.assert_alive()
            protos = bird.protocols()
            return protos if pred(protos) else None
        return wait_for(check, timeout, what=f"{names} on {self.host.name} (BIRD{family})",
                        describe=lambda: bird.birdc("show protocols") + "\n--- daemon log tail ---\n"
                        + self.log()[-3000:])


def read_bytes(path) -> Optional[bytes]:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
