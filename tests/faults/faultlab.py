"""The fault lab: the integration lab (tests/lab) plus what faults need (helpers; the
fixtures are in conftest.py).

Each test builds its own world (`fault_world(...)`), so a fault never leaks into the next
test:

    etcd   192.0.2.2                  (or etcd1..3 192.0.2.2-4 for the cluster test)
    rr1    192.0.2.10  2001:db8::10   BIRD + BIRD6 + `python3 -m rr_service run`
    a      192.0.2.21  2001:db8::21   Calico-like node BIRD + BIRD6, peering with rr1
    b      192.0.2.22  2001:db8::22   idem

The daemon runs with NOTIFY_SOCKET pointing at a datagram socket the test binds (a path on
the file system works across network namespaces), so the test reads every STATUS= it sends.
Its runtime folder ([safety] state_dir) is private to the test.

Everything polls with deadlines. The only fixed waits hold an outage for the time the
guarantee names (see the tests and docs/reliability.md). Everything started is stopped, every mount unmounted, every namespace
deleted, also on failure (the Lab's close(), plus finalizers here).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from rr_service.loop import BIRD_CHECK, BIRD_RETRY, TICK  # noqa: E402
from tests.lab import (CalicoData, Lab, LabError, Reflector, proto_name,  # noqa: E402
                       start_bird, wait_for)
from tests.lab.bird import BirdProc, same_since  # noqa: E402
from tests.lab.etcd import ETCD, Etcd, start_etcd  # noqa: E402
from tests.lab.netns import Host, Proc  # noqa: E402
from tests.lab.reflector import PYTHON, _env  # noqa: E402
from tests.lab.world import NODES, RR1  # noqa: E402
from tests.lab.notify import NotifySocket  # noqa: F401  (re-exported for the fault tests)

SESSION_TIMEOUT = 90  # BGP sessions coming up on a busy shared machine
EVENTUALLY = 60  # "it happens eventually": generous, the figure is what we measure
# What the daemon's periods promise: a retry (BIRD_RETRY) or check (BIRD_CHECK) falls due, the
# loop reaches it within one TICK, then one reconfigure of a small config and our polling
# (CONFIGURE_ALLOWANCE, for a loaded shared machine).
CONFIGURE_ALLOWANCE = 2.0
RETRY_BOUND = BIRD_RETRY + TICK + CONFIGURE_ALLOWANCE
CHECK_BOUND = BIRD_CHECK + TICK + CONFIGURE_ALLOWANCE


# -- the reflector, with NOTIFY_SOCKET and extra environment --------------------------------

class FaultReflector(Reflector):
    """The lab's Reflector, started with our NOTIFY_SOCKET and optional extra environment
    (e.g. CALICO_RR_TEMPLATES); its [safety] state_dir is private to the test."""

    def __init__(self, lab: Lab, host: Host, etcd_endpoints: Sequence[str],
                 safety: Optional[dict] = None, env: Optional[dict] = None,
                 prefix: str = "/calico/bgp/v1", flavour: str = "bird1"):
        self.state_dir = lab.tmp / f"{host.name}-state"
        safety = {"state_dir": str(self.state_dir), **(safety or {})}
        super().__init__(lab, host, etcd_endpoints, prefix=prefix, settings={"safety": safety}, flavour=flavour)
        self.notify = NotifySocket(lab.tmp / f"{host.name}-notify.sock")
        self.extra_env = dict(env or {})

    def start(self) -> Proc:
        if self.daemon is not None and self.daemon.alive():
            raise LabError("daemon already running")
        env = _env()
        env.update(self.extra_env)
        env["NOTIFY_SOCKET"] = self.notify.path
        self.daemon = self.host.popen([PYTHON, "-m", "rr_service", "--config", str(self.config), "run"],
                                      name=f"{self.host.name}-rr_service", env=env, cwd=str(REPO_ROOT))
        return self.daemon

    def cli(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        if not self.extra_env:
            return super().cli(*args, check=check, timeout=timeout)
        cmd = ["env", f"PYTHONPATH={REPO_ROOT}",
               *[f"{k}={v}" for k, v in self.extra_env.items()],
               PYTHON, "-m", "rr_service", "--config", str(self.config), *args]
        res = subprocess.run(["ip", "netns", "exec", self.host.ns, *cmd], cwd=REPO_ROOT,
                             env=_env(), capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise LabError(f"rr_service {' '.join(args)} failed ({res.returncode}):\n"
                           f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return res

    def signal(self, sig: int) -> None:
        """Signal the daemon's process group (`ip netns exec` execs: the group is python)."""
        assert self.daemon is not None
        os.killpg(self.daemon.pid, sig)

    def cpu_seconds(self) -> float:
        """user + system CPU time the daemon has used so far."""
        assert self.daemon is not None
        fields = Path(f"/proc/{self.daemon.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def restart_bird(self, family: int, config_text: Optional[str] = None) -> BirdProc:
        """Start this reflector's BIRD{family} again (after it was stopped or killed).

        With config_text, that text is written to the config file first (BIRD starting on an
        old config); without, BIRD reads the file as it is."""
        old = self.bird_for(family)
        if old.proc.alive():
            raise LabError(f"BIRD{family} on {self.host.name} still runs")
        path = Path(old.config_path)
        text = config_text if config_text is not None else path.read_text()
        suffix = "" if family == 4 else "6"
        bird = start_bird(self.lab, self.host, text, family, name=f"{self.host.name}-bird{suffix}",
                          config_path=path, socket_path=Path(old.socket_path),
                          binary=self.settings["bird"]["binary"] if self.flavour != "bird1" else None)
        if family == 4:
            self.bird = bird
        else:
            self.bird6 = bird
        if self.flavour != "bird1":
            self.bird = self.bird6 = bird  # one daemon for both families
        return bird

    def log_count(self, needle: str) -> int:
        return self.log().count(needle)


# -- the world ------------------------------------------------------------------------------

@dataclass
class FaultNode:
    name: str
    host: Host
    bird: BirdProc
    bird6: Optional[BirdProc]


@dataclass
class FaultWorld:
    lab: Lab
    etcd: Etcd
    calico: CalicoData
    rr: FaultReflector
    nodes: Dict[str, FaultNode] = field(default_factory=dict)
    etcd_hosts: List[Host] = field(default_factory=list)
    members: List[Etcd] = field(default_factory=list)
    setup_seconds: float = 0.0

    # sessions ------------------------------------------------------------------------------
    def clients(self, family: int) -> List[str]:
        return [proto_name("Client", NODES[n].ipv4 if family == 4 else NODES[n].ipv6)
                for n in self.nodes if family == 4 or NODES[n].ipv6]

    def sessions(self) -> Dict[tuple, tuple]:
        """Every BGP session of the reflector and of the nodes: (where, family, name) ->
        (state, since, info). A session that went down and up again has another `since`."""
        out = {}
        for family in (4, 6):
            bird = self.rr.bird_for(family)
            for name, p in bird.bgp_protocols().items():
                out[("rr1", family, name)] = (p.state, p.since, p.info)
        for node in self.nodes.values():
            for family, bird in ((4, node.bird), (6, node.bird6)):
                if bird is None:
                    continue
                for name, p in bird.bgp_protocols().items():
                    out[(node.name, family, name)] = (p.state, p.since, p.info)
        return out

    def wait_all_established(self, timeout: float = SESSION_TIMEOUT) -> Dict[tuple, tuple]:
        """Wait until the reflector's clients and the nodes' sessions are all Established."""
        for family in (4, 6):
            self.rr.wait_established(self.clients(family), family, timeout)
        for node in self.nodes.values():
            node.bird.wait_established(proto_name("Node", RR1[1]), timeout)
            if node.bird6 is not None:
                node.bird6.wait_established(proto_name("Node", RR1[2]), timeout)
        return self.sessions()

    def add_client_data(self, name: str, ipv4: str) -> None:
        """A node in etcd only (no BIRD): the reflector gets a Client session for it."""
        self.calico.add_node(name, ipv4)


def dropped_sessions(before: Dict[tuple, tuple], after: Dict[tuple, tuple]) -> List[str]:
    """Sessions Established before that are gone, not Established, or restarted since."""
    out = []
    for key, (state, since, info) in before.items():
        if not (state == "up" and info.startswith("Established")):
            continue
        now = after.get(key)
        if now is None:
            out.append(f"{key}: gone")
        elif not (now[0] == "up" and now[2].startswith("Established")):
            out.append(f"{key}: {now[0]} {now[2]}")
        elif not same_since(now[1], since):
            out.append(f"{key}: restarted ({since} -> {now[1]})")
    return out


def session_changes(before: Dict[tuple, tuple], after: Dict[tuple, tuple]) -> List[str]:
    """Sessions of `before` (whatever their state) that are gone, or whose state, info or
    `since` differ in `after`: stricter than dropped_sessions, for "nothing moved"."""
    out = []
    for key, (state, since, info) in before.items():
        now = after.get(key)
        if now is None:
            out.append(f"{key}: gone")
        elif (now[0], now[2]) != (state, info) or not same_since(now[1], since):
            out.append(f"{key}: {state} {since} {info} -> {now[0]} {now[1]} {now[2]}")
    return out


def established_count(sessions: Dict[tuple, tuple]) -> int:
    return sum(1 for state, _, info in sessions.values() if state == "up" and info.startswith("Established"))


def fingerprint(path) -> tuple:
    """(inode, mtime_ns, sha256) of a file: any rewrite changes at least one."""
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, hashlib.sha256(Path(path).read_bytes()).hexdigest())


def stray_files(folder) -> List[str]:
    """Leftover temp files beside the configs (a partial write would show here)."""
    return sorted(p.name for p in Path(folder).iterdir() if ".tmp-" in p.name)


# -- etcd ---------------------------------------------------------------------------------

def stop_etcd(etcd: Etcd) -> None:
    etcd.proc.stop()


def restart_etcd(world: FaultWorld) -> Etcd:
    """Start the one-member etcd again on its data dir (it keeps its data); rebinds world."""
    etcd = start_etcd(world.lab, world.etcd.host, timeout=60)
    world.etcd = etcd
    world.calico = CalicoData(etcd)
    return etcd


def relaunch_etcd(world: FaultWorld) -> Etcd:
    """Start the one-member etcd again on its data dir, without waiting for it: the caller
    writes as soon as it answers (the earliest "change made after etcd returns")."""
    old = world.etcd
    host, ip = old.host, old.host.ipv4
    client, peer = f"http://{ip}:2379", f"http://{ip}:2380"
    proc = host.popen([ETCD, "--name", host.name, "--data-dir", str(world.lab.tmp / f"{host.name}-etcd.data"),
                       "--listen-client-urls", client, "--advertise-client-urls", client,
                       "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                       "--initial-cluster", f"{host.name}={peer}",
                       "--initial-cluster-state", "new", "--log-level", "warn"],
                      name=f"{host.name}-etcd")
    world.etcd = Etcd(world.lab, host, proc, client)
    world.calico = CalicoData(world.etcd)
    return world.etcd


def etcd_revision(etcd: Etcd) -> int:
    import json
    out = etcd.ctl("endpoint", "status", "-w", "json")
    return int(json.loads(out)[0]["Status"]["header"]["revision"])


def etcd_python(host: Host, endpoint: str, code: str, timeout: float = 120) -> str:
    """Run a python-etcd3 script in `host`'s namespace; `client` is connected to endpoint."""
    ip, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    prologue = (f"import etcd3, json, sys\n"
                f"client = etcd3.client(host={ip!r}, port={int(port)}, timeout=30)\n")
    return host.run([PYTHON, "-c", prologue + code], timeout=timeout).stdout


def start_etcd_cluster(lab: Lab, hosts: Sequence[Host], timeout: float = 60) -> List[Etcd]:
    """Three (or n) etcd members, one per lab host, forming one cluster."""
    initial = ",".join(f"{h.name}=http://{h.ipv4}:2380" for h in hosts)
    members = []
    for h in hosts:
        data_dir = lab.tmp / f"{h.name}-etcd.data"
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        client, peer = f"http://{h.ipv4}:2379", f"http://{h.ipv4}:2380"
        proc = h.popen([ETCD, "--name", h.name, "--data-dir", str(data_dir),
                        "--listen-client-urls", client, "--advertise-client-urls", client,
                        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", initial, "--initial-cluster-token", lab.prefix,
                        "--initial-cluster-state", "new", "--log-level", "warn"],
                       name=f"{h.name}-etcd")
        members.append(Etcd(lab, h, proc, client))

    def healthy():
        for m in members:
            if not m.proc.alive():
                raise LabError(f"etcd on {m.host.name} exited:\n{m.proc.log()}")
        return all(m.healthy() for m in members)
    wait_for(healthy, timeout, interval=0.3, what="a 3-member etcd cluster",
             describe=lambda: "\n".join(m.proc.log()[-1500:] for m in members))
    return members
