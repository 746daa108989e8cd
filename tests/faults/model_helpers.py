"""Helpers of the model-based randomized test (tests/faults/test_model_based.py).

* `OpGenerator`: seeded random puts and deletes over a small key space of the legacy Calico
  layout (so keys collide, get overwritten and deleted often), with hostile values and keys
  mixed in. It keeps the model: the key -> value dict etcd must hold afterwards.
* `EtcdDriver`: a tiny etcd client process inside a lab namespace (the test process lives in
  the root namespace and cannot reach the lab's addresses), fed one JSON line per operation.
  Every operation is idempotent and retried until etcd answers, so an etcd restart between
  two operations never makes the model and etcd disagree.
* The daemon's STATUS= lines come over tests.lab.notify.NotifySocket, as systemd would read them.
* `bird_sessions`: what BIRD runs per BGP protocol, from `show protocols all`.

Run as `python3 -m tests.faults.model_helpers ENDPOINT PREFIX` it is the driver's far end.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"

# -- the key space -------------------------------------------------------------------------

ME4, ME6 = "192.0.2.10", "2001:db8::10"  # the reflector under test (rr1 in the lab)
RR4 = [ME4, "192.0.2.11", "192.0.2.12", "192.0.2.13"]
RR6 = [ME6, "2001:db8::11", "2001:db8::12", "2001:db8::13"]
NODE_COUNT = 16
NODES = [f"node-{i}" for i in range(NODE_COUNT)]


def node_ip4(i: int) -> str:
    return f"192.0.2.{100 + i}"


def node_ip6(i: int) -> str:
    return f"2001:db8::{0x100 + i:x}"


INJECTION = "; }\nprotocol bgp Evil { neighbor 192.0.2.99 as 1; }\n#"

# Values that are wrong for every kind of key.
HOSTILE_VALUES: List[bytes] = [
    b"", b"{", b"}", b"not json", b"[]", b"null", b"42", b"true", b'"192.0.2.10"',
    b"\xff\xfe\x00garbage", b"\x00\x01\x02\x1b[31m", b"x" * 5000, "１９２.０.２.１".encode(),
    "ip\u202e01.2.0.291".encode(), b"192.0.2.300", b"192.0.2.10/24", b"0.0.0.0", b"224.0.0.1",
    b"::", b"ff02::1", b"4294967296", b"0", b"-1", b"1.65536", b"65536.1", b"0x10",
    ("192.0.2.50" + INJECTION).encode(), ("64512" + INJECTION).encode(),
    b'{"ip": "192.0.2.11", "ip": "192.0.2.12"}', b'{"ip": "192.0.2.11"; protocol bgp Evil {}',
    b'"; include "/etc/passwd"; "', b'{"ip": "192.0.2.11", "as_num": true}',
    b'{"ip": "192.0.2.11", "as_num": [64512]}', b'{"ip": null}', b'{"ip": ["192.0.2.11"]}',
    json.dumps({"ip": "192.0.2.11", "cluster_id": "1.2.3.4" + INJECTION}).encode(),
    json.dumps({"ip": "192.0.2.11", "as_num": "64512" + INJECTION}).encode(),
    b'[' * 5000,  # deep nesting
]

# Keys that are wrong, odd, or not ours (ignored); values for them are random.
HOSTILE_KEYS: List[str] = [
    "host/bad name/ip_addr_v4", "host/-x-/ip_addr_v4", "host/ünï/ip_addr_v4",
    "host/node-1/peer_v4/192.0.2.10/extra", "rr_v4/192.0.2.11/x", "global/peer_v4/not-an-ip",
    "global/peer_v4/2001:db8::11", "rr_v6/192.0.2.11", "rr_v4/2001:db8::11",
    "host/node-2/ip_addr_v5", "host/node-3/workload/k8s/pod", "unknown/thing",
    "host/" + "a" * 600 + "/ip_addr_v4", "global/as_num/x", "host/node-4/peer_v4/192.0.2.11; x",
    "host/node\n5/ip_addr_v4", 'host/x"y/as_num', "host/node-6/peer_v6/192.0.2.11",
    "host//ip_addr_v4", "rr_v4/", "global/peer_v6/", "host/node-7/as_num/extra",
]


@dataclass
class Op:
    kind: str  # put | del | delprefix
    key: str
    value: Optional[bytes] = None
    hostile: bool = False

    def describe(self) -> str:
        if self.kind == "put":
            return f"put {self.key!r} = {self.value[:80]!r}{'...' if len(self.value) > 80 else ''}"
        return f"{self.kind} {self.key!r}"


@dataclass
class OpGenerator:
    """Random operations and the model they lead to. Same seed, same operations."""

    seed: int
    hostile_share: float = 0.2
    model: Dict[str, bytes] = field(default_factory=dict)
    counts: Dict[str, int] = field(default_factory=lambda: {"put": 0, "del": 0, "delprefix": 0, "hostile": 0})

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # -- values -------------------------------------------------------------------------
    def _as(self):
        r = self.rng
        return r.choice([64512, "64512", 64512, "65001", 65001, "1.10", 4200000000, "", None])

    def _json(self, **fields) -> bytes:
        return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()

    def _node_address(self, family: int, i: int) -> str:
        r = self.rng
        roll = r.random()
        own = node_ip4(i) if family == 4 else node_ip6(i)
        if roll < 0.8:
            return own
        if roll < 0.9:  # the address of another node: a duplicate neighbour
            j = r.randrange(NODE_COUNT)
            return node_ip4(j) if family == 4 else node_ip6(j)
        return r.choice(RR4 if family == 4 else RR6)  # a reflector's (or my own) address

    def _valid(self, key: str) -> bytes:
        r = self.rng
        parts = key.split("/")
        if parts[0] in ("rr_v4", "rr_v6"):
            return self._json(ip=parts[1], cluster_id=r.choice(["", "1.2.3.4", "244.0.0.1", None]))
        if key == "global/as_num":
            return str(r.choice([64512, 64512, 65001, "1.10"])).encode()
        if parts[0] == "global":
            return self._json(ip=parts[2], as_num=self._as())
        name, rest = parts[1], parts[2:]
        i = int(name.split("-")[1])
        if rest == ["ip_addr_v4"]:
            return self._node_address(4, i).encode() if r.random() < 0.95 else b""
        if rest == ["ip_addr_v6"]:
            return self._node_address(6, i).encode() if r.random() < 0.9 else b""
        if rest == ["as_num"]:
            return str(r.choice([64512, 64512, 65001, "1.10", " 64512 ", '"64512"'])).encode()
        return self._json(ip=rest[1], as_num=self._as())

    def _hostile_value(self, key: str) -> bytes:
        r = self.rng
        parts = key.split("/")
        roll = r.random()
        if roll < 0.6 or len(parts) < 2:
            return r.choice(HOSTILE_VALUES)
        # Near misses: well-formed JSON that is wrong in one field.
        ip = parts[-1]
        wrong_family = RR6[1] if ":" not in ip else RR4[1]
        return r.choice([
            self._json(ip=wrong_family),
            self._json(ip=RR4[2] if ip != RR4[2] else RR4[3]),  # the key names another address
            self._json(ip=ip, cluster_id="1.2.3"),
            self._json(ip=ip, cluster_id=7),
            self._json(ip=ip, as_num="64512 } protocol bgp Evil {"),
            self._json(ip=ip, as_num=0),
            self._json(ip=ip, as_num=4294967296),
            self._json(ip=ip + INJECTION),
            wrong_family.encode(),
        ])

    # -- keys ---------------------------------------------------------------------------
    def _key(self) -> str:
        r = self.rng
        roll = r.random()
        n = r.choice(NODES)
        choices = [
            (6, lambda: f"rr_v4/{r.choice(RR4)}"),
            (4, lambda: f"rr_v6/{r.choice(RR6)}"),
            (2, lambda: "global/as_num"),
            (3, lambda: f"global/peer_v4/{r.choice(RR4[:2])}"),
            (2, lambda: f"global/peer_v6/{r.choice(RR6[:2])}"),
            (20, lambda: f"host/{n}/ip_addr_v4"),
            (10, lambda: f"host/{n}/ip_addr_v6"),
            (5, lambda: f"host/{n}/as_num"),
            (10, lambda: f"host/{n}/peer_v4/{r.choice(RR4)}"),
            (5, lambda: f"host/{n}/peer_v6/{r.choice(RR6)}"),
        ]
        total = sum(w for w, _ in choices)
        pick = roll * total
        for weight, make in choices:
            if pick < weight:
                return make()
            pick -= weight
        return choices[-1][1]()

    # -- operations ---------------------------------------------------------------------
    def next(self) -> Op:
        r = self.rng
        roll = r.random()
        if roll < 0.015:
            op = Op("delprefix", f"host/{r.choice(NODES)}/")
        elif roll < 0.22:
            if self.model and r.random() < 0.8:
                key = r.choice(sorted(self.model))
            else:
                key = self._key()
            op = Op("del", key)
        else:
            if r.random() < 0.05:
                key = r.choice(HOSTILE_KEYS)
                value = r.choice([self._valid("rr_v4/192.0.2.11"), r.choice(HOSTILE_VALUES),
                                  node_ip4(r.randrange(NODE_COUNT)).encode()])
                op = Op("put", key, value, hostile=True)
            else:
                key = self._key()
                hostile = r.random() < self.hostile_share
                op = Op("put", key, self._hostile_value(key) if hostile else self._valid(key), hostile)
        self.counts[op.kind] += 1
        self.counts["hostile"] += op.hostile
        self._apply(op)
        return op

    def forget(self, key: str) -> Op:
        """A delete the test decides on, outside the random sequence; the model follows it."""
        op = Op("del", key)
        self._apply(op)
        return op

    def _apply(self, op: Op) -> None:
        if op.kind == "put":
            self.model[op.key] = op.value
        elif op.kind == "del":
            self.model.pop(op.key, None)
        else:
            for key in [k for k in self.model if k.startswith(op.key)]:
                del self.model[key]


# -- the etcd driver -------------------------------------------------------------------------

class DriverError(RuntimeError):
    pass


class EtcdDriver:
    """Puts, deletes and reads through a client process inside `netns`."""

    def __init__(self, netns: str, endpoint: str, prefix: str, log_path: Path, call_timeout: float = 3.0):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONSTARTUP")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, PYTHON, "-m", "tests.faults.model_helpers", endpoint, prefix,
             str(call_timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=str(REPO_ROOT),
            env=env, start_new_session=True)

    def _ask(self, request: dict) -> dict:
        if self.proc.poll() is not None:
            raise DriverError(f"etcd driver exited with {self.proc.returncode}")
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise DriverError(f"etcd driver died (rc={self.proc.poll()})")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise DriverError(f"etcd driver: {request.get('op')} {request.get('key')!r}: {answer.get('error')}")
        return answer

    def apply(self, op: Op) -> None:
        request = {"op": op.kind, "key": op.key}
        if op.value is not None:
            request["value"] = base64.b64encode(op.value).decode()
        self._ask(request)

    def dump(self) -> Tuple[int, Dict[str, bytes]]:
        answer = self._ask({"op": "dump"})
        self.created = answer["created"]  # each key's create_revision, as of this dump
        return answer["rev"], {k: base64.b64decode(v) for k, v in answer["kvs"].items()}

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def _serve(endpoint: str, prefix: str, call_timeout: float, retry_for: float = 60.0) -> int:
    """The driver's far end: one JSON request per stdin line, one JSON answer per line."""
    from rr_service.sources.base import DatastoreError
    from rr_service.sources.etcd.client import EtcdConfig, EtcdDatastore

    store = EtcdDatastore(EtcdConfig(endpoints=(endpoint,), timeout=call_timeout), prefix)
    cut = len(prefix.rstrip("/") + "/")

    def run(request: dict) -> dict:
        op, key = request["op"], request.get("key", "")
        if op == "put":
            store.put(key, base64.b64decode(request["value"]))
            return {}
        if op == "del":
            store.delete(key)
            return {}
        if op == "delprefix":
            absolute = (prefix.rstrip("/") + "/" + key).encode()
            store._call(lambda c: c.delete_prefix(absolute))
            return {}
        if op == "dump":
            response = store._call(lambda c: c.get_prefix_response(prefix.rstrip("/") + "/"))
            kvs = {kv.key.decode("utf-8", "surrogateescape")[cut:]: base64.b64encode(kv.value).decode()
                   for kv in response.kvs}
            created = {kv.key.decode("utf-8", "surrogateescape")[cut:]: kv.create_revision for kv in response.kvs}
            return {"rev": response.header.revision, "kvs": kvs, "created": created}
        raise ValueError(f"unknown op {op!r}")

    for line in sys.stdin:
        request = json.loads(line)
        deadline = time.monotonic() + retry_for
        while True:
            try:
                answer = dict(run(request), ok=True)
                break
            except DatastoreError as exc:  # etcd restarting: every op is idempotent, retry it
                if time.monotonic() > deadline:
                    answer = {"ok": False, "error": str(exc)}
                    break
                time.sleep(0.05)
            except Exception as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                break
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    store.close()
    return 0


# -- STATUS= from the daemon ------------------------------------------------------------------

_REVISION_RE = re.compile(r"etcd ok at revision (\d+)")


def status_revision(status: str) -> Optional[int]:
    """The revision a STATUS= line says the daemon has applied, or None (etcd not ok)."""
    found = _REVISION_RE.search(status)
    return int(found.group(1)) if found else None


# -- what BIRD runs --------------------------------------------------------------------------

@dataclass(frozen=True)
class BirdSession:
    neighbor: str
    neighbor_as: Optional[int]
    local_as: Optional[int]  # BIRD 2 only: BIRD 1.6 shows no local AS


_PROTOCOL_LINE = re.compile(r"^(\S+)\s+(\S+)\s+\S+\s+\S+")  # name proto table state ...
_DETAIL = re.compile(r"^\s+(Neighbor address|Neighbor AS|Local AS):\s+(\S+)")


def bird_sessions(show_protocols_all: str) -> Dict[str, BirdSession]:
    """The BGP protocols of `show protocols all` (BIRD 1.6 and 2): name -> neighbour address,
    neighbour AS, local AS (None where BIRD does not say)."""
    found: Dict[str, dict] = {}
    current: Optional[dict] = None
    for line in show_protocols_all.splitlines():
        head = _PROTOCOL_LINE.match(line)
        if head and not line.startswith(("BIRD ", "name ", "Name ")):
            current = found.setdefault(head.group(1), {}) if head.group(2) == "BGP" else None
            continue
        detail = _DETAIL.match(line)
        if detail and current is not None:
            current.setdefault(detail.group(1), detail.group(2))
    return {name: BirdSession(d.get("Neighbor address", ""),
                              int(d["Neighbor AS"]) if "Neighbor AS" in d else None,
                              int(d["Local AS"]) if "Local AS" in d else None)
            for name, d in found.items()}


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.argv[2], float(sys.argv[3])))
