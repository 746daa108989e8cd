"""The bench's tools: etcd writer, BIRD processes, a BIRD poller, sd_notify receiver,
process statistics and the data sets: the legacy /calico/bgp/v1 keys (V1) and Calico v3
resources as calicoctl stores them (V3).

Everything here runs inside the reflector's network namespace (see run.py): BIRD, the
daemon and the baseline are started from this process and inherit the namespace, whose
route to 198.18.0.0/15 leads to a next hop that never answers (run.silent_nodes): BIRD's
connects to the bench nodes wait, and the sessions sit in Connect.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import time
import zlib
from pathlib import Path
from typing import Iterable, Optional
from tests.lab.notify import NotifySocket  # noqa: F401  (h.NotifySocket in measure.py)

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"
PREFIX = "/calico/bgp/v1"
V3_PREFIX = "/calico/resources/v3/projectcalico.org"
AS_NUM = 64512
RR_IP = "192.0.2.10"          # the reflector (lab host address)
ETCD_IP = "192.0.2.2"         # etcd's lab host
BASE_NET = ipaddress.IPv4Address("198.18.0.0")    # RFC 2544 benchmarking range: the N nodes
CHANGE_NET = ipaddress.IPv4Address("198.19.0.0")  # nodes added/removed one at a time
BURST_NET = ipaddress.IPv4Address("198.19.16.0")  # the burst's nodes
PROBE_NET = ipaddress.IPv4Address("198.19.64.0")  # in-process breakdown's nodes
TXN_OPS = 128                 # etcd 3.4's default --max-txn-ops

BIRD_BIN = {4: "/usr/sbin/bird", 6: "/usr/sbin/bird6"}


def now() -> float:
    return time.monotonic()


# -- the data set ----------------------------------------------------------------------

def addr(base: ipaddress.IPv4Address, index: int) -> str:
    return str(base + 1 + index)


def proto_of(address: str) -> str:
    return "Client_" + address.replace(".", "_")


class Layout:
    """One of Calico's data layouts in etcd, as the bench writes it: the same N nodes, every
    one of them the reflector's client (`Client_<ip>`), in either layout."""

    name = ""
    prefix = ""
    settings: dict = {}
    per_txn = TXN_OPS  # puts per etcd transaction

    def global_items(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def node_item(self, name: str, ip: str) -> tuple[str, str]:
        raise NotImplementedError

    def relative(self, key: str) -> str:
        return key[len(self.prefix) + 1:]

    def items(self, n: int) -> list[tuple[str, str]]:
        return self.global_items() + [self.node_item(name, ip) for name, ip in base_nodes(n)]

    def relative_raw(self, n: int) -> dict[str, bytes]:
        """The data set as the daemon's source hands it over (keys relative to the prefix)."""
        return {self.relative(k): v.encode() for k, v in self.items(n)}


class V1Layout(Layout):
    name = "v1"
    prefix = PREFIX
    settings = {"etcd": {"schema": "v1"}}

    def global_items(self) -> list[tuple[str, str]]:
        return [
            (f"{PREFIX}/global/as_num", str(AS_NUM)),
            (f"{PREFIX}/global/peer_v4/{RR_IP}", f'{{"ip": "{RR_IP}", "as_num": "{AS_NUM}"}}'),
        ]

    def node_item(self, name: str, ip: str) -> tuple[str, str]:
        return f"{PREFIX}/host/{name}/ip_addr_v4", ip


class V3Layout(Layout):
    """The usual Calico >= 3 set-up: the reflector is a Node with a cluster id and a label, a
    BGPPeer makes every other node peer with it (its reverse peering makes them our clients),
    no node-to-node mesh. Each Node is about 1 KB, as calico/node writes them."""

    name = "v3"
    prefix = V3_PREFIX
    settings = {"etcd": {"schema": "v3"}, "reflector": {"node_name": "bench-rr"}}

    def global_items(self) -> list[tuple[str, str]]:
        return [
            (f"{V3_PREFIX}/bgpconfigurations/default", _v3("BGPConfiguration", "default", {
                "nodeToNodeMeshEnabled": False, "asNumber": AS_NUM, "logSeverityScreen": "Info"})),
            (f"{V3_PREFIX}/bgppeers/peer-with-route-reflectors", _v3("BGPPeer", "peer-with-route-reflectors", {
                "nodeSelector": "!has(route-reflector)", "peerSelector": "has(route-reflector)"})),
            (f"{V3_PREFIX}/nodes/bench-rr", _v3_node("bench-rr", RR_IP, {"route-reflector": "true"}, "244.0.0.1")),
        ]

    def node_item(self, name: str, ip: str) -> tuple[str, str]:
        return f"{V3_PREFIX}/nodes/{name}", _v3_node(name, ip)


def _v3(kind: str, name: str, spec: dict, labels: Optional[dict] = None) -> str:
    metadata = {"name": name, "uid": f"00000000-0000-4000-8000-{zlib.crc32(name.encode()):012d}",
                "creationTimestamp": "2026-11-01T00:00:00Z"}
    if labels:
        metadata["labels"] = labels
    return json.dumps({"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": metadata, "spec": spec},
                      separators=(",", ":"))


def _v3_node(name: str, ip: str, labels: Optional[dict] = None, cluster_id: Optional[str] = None) -> str:
    bgp = {"ipv4Address": f"{ip}/15", "ipv4IPIPTunnelAddr": "10.244.0.1"}
    if cluster_id:
        bgp["routeReflectorClusterID"] = cluster_id
    spec = {"bgp": bgp, "addresses": [{"address": f"{ip}/15", "type": "CalicoNodeIP"}, {"address": ip, "type": "InternalIP"}],
            "orchRefs": [{"nodeName": name, "orchestrator": "k8s"}],
            "ipv4VXLANTunnelAddr": "", "wireguard": {}}
    node_labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                   "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                   "topology.kubernetes.io/zone": "zone-a", "node.kubernetes.io/instance-type": "bench.large",
                   **(labels or {})}
    body = json.loads(_v3("Node", name, spec, node_labels))
    body["status"] = {"podCIDRs": ["10.244.0.0/24"]}
    return json.dumps(body, separators=(",", ":"))


class KubeLayout(Layout):
    """The Kubernetes API datastore as the test API server (tests/kubeapi, a facade over this
    etcd) keeps it: every node a core v1 Node of about 15 KB as kubelet and calico-node leave
    it (status.images, conditions; the BGP address in calico-node's annotation), and one
    BGPPeer custom resource with peerIP = the reflector and nodeSelector all(): an external
    reflector, whose clients are every node. Written straight into etcd under kube's keys,
    which is where the API server reads and watches them."""

    name = "k8s"
    prefix = "/registry"
    per_txn = 64  # 64 Nodes of 15 KB: within etcd's 1.5 MiB request limit
    kubeconfig = ""  # set by the bench: the test API server's

    @property
    def settings(self) -> dict:
        return {"datastore": {"type": "kubernetes"}, "kubernetes": {"kubeconfig": self.kubeconfig}}

    def global_items(self) -> list[tuple[str, str]]:
        from tests.kubeapi import bgp_configuration, bgp_peer
        from tests.lab.kubeapi_host import kube_key
        return [
            (kube_key("bgpconfigurations", "default"), json.dumps(bgp_configuration(
                "default", nodeToNodeMeshEnabled=False, asNumber=AS_NUM))),
            (kube_key("bgppeers", "to-the-reflector"), json.dumps(bgp_peer(
                "to-the-reflector", RR_IP, AS_NUM, nodeSelector="all()"))),
        ]

    def node_item(self, name: str, ip: str) -> tuple[str, str]:
        from tests.kubeapi import realistic_node
        from tests.lab.kubeapi_host import kube_key
        return kube_key("nodes", name), json.dumps(realistic_node(name, ipv4=f"{ip}/15"), separators=(",", ":"))


V1 = V1Layout()
V3 = V3Layout()
K8S = KubeLayout()
LAYOUTS = {"v1": V1, "v3": V3, "k8s": K8S}


def base_nodes(n: int) -> list[tuple[str, str]]:
    return [(f"bench-node-{i:05d}", addr(BASE_NET, i)) for i in range(n)]


def percentile(values: list[float], q: float) -> Optional[float]:
    """Nearest-rank percentile (q in 0..100): p99 of 200 samples is the 2nd largest."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def summary(values: list[float]) -> dict:
    """ms statistics of a list of seconds."""
    if not values:
        return {"n": 0}
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90),
            "p99": percentile(ms, 99), "mean": statistics.fmean(ms), "min": min(ms), "max": max(ms)}


# -- etcd --------------------------------------------------------------------------------

class EtcdWriter:
    """The bench's own etcd client (python3-etcd3), used to write the data and the changes."""

    def __init__(self, endpoint: str):
        import etcd3  # Debian's python3-etcd3
        host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
        self.client = etcd3.client(host=host, port=int(port), timeout=30, grpc_options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024)])

    def put(self, key: str, value: str) -> None:
        self.client.put(key, value)

    def delete(self, key: str) -> None:
        self.client.delete(key)

    def put_many(self, items: Iterable[tuple[str, str]], per_txn: int = TXN_OPS) -> None:
        batch = []
        for key, value in items:
            batch.append(self.client.transactions.put(key, value))
            if len(batch) == per_txn:
                self._txn(batch)
                batch = []
        if batch:
            self._txn(batch)

    def txn_put(self, items: list[tuple[str, str]]) -> None:
        self._txn([self.client.transactions.put(k, v) for k, v in items])

    def txn_delete(self, keys: list[str]) -> None:
        self._txn([self.client.transactions.delete(k) for k in keys])

    def _txn(self, ops: list) -> None:
        assert len(ops) <= TXN_OPS
        ok, _ = self.client.transaction(compare=[], success=ops, failure=[])
        if not ok:
            raise RuntimeError("etcd transaction failed")

    def reset(self, n: int, layout: "Layout" = None) -> None:
        """Exactly the bench's data set of n nodes in one layout (v1 by default), nothing of
        the other; history compacted."""
        layout = layout or V1
        for prefix in (PREFIX, V3_PREFIX, "/bench", "/registry/minions", "/registry/crd.projectcalico.org"):
            self.client.delete_prefix(prefix + "/")
        self.put_many(layout.items(n), layout.per_txn)
        # The revision from a put's header: reading the Kubernetes layout's prefix would return
        # more than a gRPC message may hold, and python3-etcd3 0.12 never sets a range request's
        # limit or count_only.
        revision = self.client.put("/bench/loaded", str(n)).header.revision
        self.client.compact(revision, physical=True)

    def close(self) -> None:
        self.client.close()


# -- BIRD ----------------------------------------------------------------------------------

def minimal_config() -> str:
    return f"router id {RR_IP};\nprotocol device {{ scan time 2; }}\n"


class SyslogSink:
    """What journald is on a real reflector host: a reader of /dev/log that keeps up.

    BIRD logs through syslog(3) (a line per added or removed protocol on each `configure`,
    among others). With no reader on /dev/log, glibc falls back to /dev/console (BIRD opens
    the log with LOG_CONS), and on this machine kind that is a serial port: about 0.8 ms per
    line, 2.5 s of a 3,000-session `configure` that takes 25 ms with a reader (perf showed
    BIRD in uart_write). The bench binds this socket onto /dev/log in BIRD's own mount
    namespace (see `Bird.start`) and counts what arrives, without touching the machine's /dev.
    """

    def __init__(self, path: Path):
        import threading
        self.path = path
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(str(path))
        self.lines = 0
        self.last = b""
        self._closed = False
        threading.Thread(target=self._drain, name="syslog-sink", daemon=True).start()

    def _drain(self) -> None:
        while not self._closed:
            try:
                self.last = self.sock.recv(65536)
            except OSError:
                return
            self.lines += 1

    def close(self) -> None:
        self._closed = True
        self.sock.close()


# Run inside `unshare --mount`: a private /dev holding null, zero, the random devices and the
# sink as /dev/log. The mounts live and die with BIRD's mount namespace.
_PRIVATE_DEV = """set -e
olddev=$1; sink=$2; shift 2
mkdir -p "$olddev"
mount --make-rprivate /
mount --rbind /dev "$olddev"
mount -t tmpfs -o size=1m,mode=755 bench-dev /dev
for d in null zero random urandom; do : > /dev/$d; mount --bind "$olddev/$d" /dev/$d; done
: > /dev/log; mount --bind "$sink" /dev/log
umount -l "$olddev"
exec "$@"
"""


def _all_the_descriptors() -> None:
    """BIRD holds a socket per waiting session (N + the burst's 5,000): let it use as many
    descriptors as the hard limit allows, as a bird.service with LimitNOFILE= would."""
    import resource
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Bird:
    """A BIRD 1.6 daemon (family 4: bird, 6: bird6) owned by the bench, in the foreground,
    logging to a `SyslogSink` as it would to journald on a real host."""

    def __init__(self, workdir: Path, family: int, syslog: Optional[SyslogSink] = None):
        self.family = family
        self.workdir = workdir
        self.syslog = syslog
        suffix = "" if family == 4 else "6"
        self.config = workdir / f"bird{suffix}.conf"
        self.socket = workdir / f"bird{suffix}.ctl"
        self.pidfile = workdir / f"bird{suffix}.pid"
        self.logfile = workdir / f"bird{suffix}.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self, text: Optional[str] = None) -> None:
        self.config.write_text(minimal_config() if text is None else text)
        with open(self.logfile, "ab") as log:
            argv = [BIRD_BIN[self.family], "-f", "-c", str(self.config), "-s", str(self.socket),
                    "-P", str(self.pidfile)]
            if self.syslog is not None:
                argv = ["unshare", "--mount", "--", "sh", "-c", _PRIVATE_DEV, "sh",
                        str(self.workdir / f"olddev{self.family}"), str(self.syslog.path)] + argv
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_all_the_descriptors)
        deadline = now() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bird{self.family} exited: {self.logfile.read_text()[-2000:]}")
            try:
                poller = BirdPoller(str(self.socket))
                poller.close()
                return
            except OSError:
                if now() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        try:
            self.socket.unlink()
        except FileNotFoundError:
            pass

    def restart(self, text: Optional[str] = None) -> None:
        self.stop()
        self.start(text)

    def rss_kb(self) -> int:
        return proc_status(self.proc.pid).get("VmRSS", 0) if self.proc else 0


class BirdError(Exception):
    pass


class BirdPoller:
    """One persistent connection to BIRD's control socket, for tight polling."""

    _FINAL = re.compile(rb"^(\d{4}) ", re.M)

    def __init__(self, path: str, timeout: float = 60.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        code, _ = self._reply()
        if code != 1:
            raise BirdError(f"unexpected greeting {code}")

    def close(self) -> None:
        self.sock.close()

    def _reply(self) -> tuple[int, list[bytes]]:
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise BirdError("BIRD closed the control connection")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            if line.startswith(b"+"):
                continue
            lines.append(line)
            if len(line) >= 5 and line[:4].isdigit() and line[4:5] == b" ":
                return int(line[:4]), lines
            if len(line) == 4 and line.isdigit():
                return int(line), lines

    def command(self, text: str) -> tuple[int, list[bytes]]:
        self.sock.sendall(text.encode() + b"\n")
        return self._reply()

    def present(self, proto: str) -> bool:
        code, lines = self.command(f"show protocols {proto}")
        if any(line.startswith(b"1002") for line in lines):
            return True
        if code in (8003, 9002):
            return False
        if code == 9001 and b"CF_SYM_UNDEFINED" in lines[-1]:  # BIRD 1.6: a name its config never had
            return False
        raise BirdError(f"show protocols {proto}: {code} {lines[-1:]}")

    def wait(self, proto: str, present: bool, timeout: float, interval: float) -> float:
        """Poll until `proto` is (not) shown; the monotonic time it was first seen so."""
        deadline = now() + timeout
        while True:
            if self.present(proto) == present:
                return now()
            if now() > deadline:
                raise TimeoutError(f"{proto} {'present' if present else 'absent'} not seen in {timeout} s")
            if interval:
                time.sleep(interval)

    def names(self) -> list[str]:
        code, lines = self.command("show protocols")
        out = []
        for line in lines:
            if line.startswith(b"1002"):
                out.append(line[5:].split(None, 1)[0].decode())
            elif line.startswith(b" ") and line[1:].strip():
                # continuation rows of a multi-line reply
                out.append(line[1:].split(None, 1)[0].decode())
        return out

    def configure(self, path: str) -> int:
        code, lines = self.command(f'configure "{path}"')
        if code not in (3, 4, 5, 19):
            raise BirdError(f"configure {path}: {code} {b' '.join(lines)[-500:]!r}")
        return code


# -- sd_notify ------------------------------------------------------------------------------

# -- processes ----------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict:
    """VmRSS, VmHWM, ... in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds_exact(pid: int) -> float:
    """CPU time of the process's live threads in nanoseconds (/proc/PID/task/*/schedstat):
    an idle daemon uses a few ms in 10 s, and utime + stime count in 10 ms ticks."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class LogWatcher:
    """Counts the lines of a growing log file that match a pattern (one reload each)."""

    def __init__(self, path: Path, pattern: str):
        self.path = path
        self.pattern = re.compile(pattern)
        self.offset = 0
        self.count = 0
        self.rest = b""

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.count
        self.offset += len(data)
        data = self.rest + data
        lines = data.split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            if self.pattern.search(line.decode(errors="replace")):
                self.count += 1
        return self.count

    def wait_above(self, count: int, timeout: float) -> int:
        deadline = now() + timeout
        while self.poll() <= count:
            if now() > deadline:
                raise TimeoutError(f"no new line matching {self.pattern.pattern!r} in {self.path}")
            time.sleep(0.002)
        return self.count

    def wait_quiet(self, quiet: float, timeout: float) -> int:
        """Wait until no new matching line for `quiet` seconds."""
        deadline = now() + timeout
        last, since = self.poll(), now()
        while now() - since < quiet and now() < deadline:
            time.sleep(0.05)
            if self.poll() != last:
                last, since = self.count, now()
        return self.count


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> Optional[int]:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def product_env(notify: Optional[Path] = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k not in (
               "VIRTUAL_ENV", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
               "JOURNAL_STREAM")}
    env["PYTHONPATH"] = str(REPO)
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
    return env
