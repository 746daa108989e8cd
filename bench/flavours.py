#!/usr/bin/python3
"""`make bench-flavours`: the reflector's BIRD 1.6, BIRD 2 and BIRD 3 side by side, at 1,000 /
5,000 / 10,000 client sessions: cold start, change → applied, BIRD's own RSS and CPU.

    /usr/bin/python3 bench/flavours.py                                   # the full run
    /usr/bin/python3 bench/flavours.py --sizes 200 --changes 10 --idle 2  # a quick look

The same daemon and data in each case, in a throw-away lab (tests/lab: network namespaces):
etcd (192.0.2.2) holds the legacy v1 keys of N nodes in 198.18.0.0/15, every one a client of
the reflector (192.0.2.10), whose route to them leads to a next hop that never answers
(bench/run.py's silent_nodes): BIRD's sessions wait in Connect, as towards nodes that are
not up yet. BIRD 2 is the extracted bookworm build, BIRD 3 runs from the trixie tree
(tests/prereq.py fetches both). Figures:

- cold start: from starting `calico-rr run` (BIRD already running on its minimal config) to
  BIRD showing the last node's session;
- change → applied: a node's key put (or deleted) in etcd, until BIRD shows (or no longer
  shows) its session, one change at a time;
- BIRD's RSS with N sessions, and its CPU while the changes run and while idle.

bench/run.py measures the daemon itself in depth on BIRD 1.6; this is about the BIRD under it.
Needs root, BIRD 1.6, etcd; BIRD 2 / 3 as tests/prereq.py fetches them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import harness as h  # noqa: E402
from bench.propagation import FLAVOURS, bird_pid, load_items, proc_stat  # noqa: E402
from bench.bird_sections import FLAVOURS_HEADING, flavours, splice  # noqa: E402
from bench.run import silent_nodes  # noqa: E402
from tests import prereq  # noqa: E402
from tests.lab import Lab, Reflector  # noqa: E402

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"

# Puts and deletes etcd keys for the outer process, from inside the reflector's namespace
# (the lab's etcd is not reachable from outside): one line in, "ok" out.
WRITER = """
import sys, etcd3
host, port = sys.argv[1].rsplit("//", 1)[1].split(":")
client = etcd3.client(host=host, port=int(port))
for line in sys.stdin:
    op, key, *value = line.rstrip("\\n").split(" ", 2)
    client.put(key, value[0]) if op == "put" else client.delete(key)
    print("ok", flush=True)
"""


class Writer:
    def __init__(self, ns: str, endpoint: str):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, h.PYTHON, "-u", "-c", WRITER, endpoint],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def do(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise RuntimeError(f"etcd writer: {line!r} failed")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def one_case(flavour: str, n: int, changes: int, idle: float) -> dict:
    binary = prereq.bird_binary_or_missing(flavour)
    with Lab() as lab:
        etcd_host = lab.add_host("etcd", h.ETCD_IP)
        etcd = lab.start_etcd(etcd_host)
        load_items(lab, etcd_host, etcd.endpoint, h.V1.items(n))
        rr_host = lab.add_host("rr", h.RR_IP)
        silent_nodes(rr_host)
        rr = Reflector(lab, rr_host, [etcd.endpoint], ipv6=False, log_level="info", flavour=flavour,
                       bird_binary=str(binary) if binary else None,
                       settings={"etcd": {"schema": "v1"},
                                 "safety": {"state_dir": str(lab.tmp / "rr-state"), "max_drop_share": 1.0}})
        poller = h.BirdPoller(str(rr.bird.socket_path), timeout=120)
        pid = bird_pid(rr.bird.pid_path)
        writer = Writer(rr_host.ns, etcd.endpoint)
        try:
            t0 = time.monotonic()
            rr.start()
            configured = poller.wait(h.proto_of(h.addr(h.BASE_NET, n - 1)), True, 300, 0.002) - t0
            time.sleep(1.0)
            cpu0, w0 = proc_stat(pid)[0], time.monotonic()
            time.sleep(idle)
            idle_cpu = 100 * (proc_stat(pid)[0] - cpu0) / (time.monotonic() - w0)
            samples = []
            rng = random.Random(n)
            cpu0, w0 = proc_stat(pid)[0], time.monotonic()
            for i in range(changes // 2):
                ip = h.addr(h.CHANGE_NET, i)
                key, value = h.V1.node_item(f"bench-chg-{i:04d}", ip)
                for line, present in ((f"put {key} {value}", True), (f"del {key}", False)):
                    start = time.monotonic()
                    writer.do(line)
                    samples.append(poller.wait(h.proto_of(ip), present, 60, 0.0005) - start)
                    time.sleep(rng.uniform(0.05, 0.1))  # the daemon's apply finishes (rename, STATUS=)
            change_cpu = 100 * (proc_stat(pid)[0] - cpu0) / (time.monotonic() - w0)
            version = rr.bird.birdc("show status").splitlines()[0].replace(" ready.", "").strip()
            return {"flavour": flavour, "n": n, "bird_version": version, "configured_s": configured,
                    "change": h.summary(samples), "bird_rss_mb": proc_stat(pid)[1] / 1024,
                    "bird_cpu_idle_pct": idle_cpu, "bird_cpu_during_changes_pct": change_cpu,
                    "changes": len(samples), "idle_s": idle}
        except Exception as exc:
            raise RuntimeError(f"{exc!r}; {bird_state(rr)}") from exc
        finally:
            writer.close()
            poller.close()
            rr.stop()


def bird_state(rr: Reflector) -> str:
    """What a failed case's BIRD was doing: alive or its exit status, and its log's end (the
    lab's files are gone once the case returns)."""
    proc = rr.bird.proc
    status = "alive" if proc.alive() else f"exited with {proc.popen.returncode}"
    tail = " | ".join(proc.log().strip().splitlines()[-8:])
    daemon = " | ".join(rr.log().strip().splitlines()[-5:]) if rr.daemon is not None else ""
    return f"BIRD {status}; BIRD's log: {tail or '(empty)'}; daemon's log: {daemon or '(none)'}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 5000, 10000],
                   help="client sessions N (comma-separated; default 1000,5000,10000)")
    p.add_argument("--flavours", type=lambda s: s.split(","), default=list(FLAVOURS),
                   help="reflector BIRDs (comma-separated; default bird1,bird2,bird3)")
    p.add_argument("--changes", type=int, default=100, help="changes per case, half adds (default 100)")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement (default 10)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/flavours-<time>.json)")
    p.add_argument("--no-docs", action="store_true", help="do not write the section of docs/benchmarks.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/flavours.py needs root (network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear the lab down on a kill
    cases, failed = [], []
    for n in args.sizes:
        for flavour in args.flavours:
            print(f"flavours: {flavour}, N={n} ...", flush=True)
            try:
                case = one_case(flavour, n, args.changes, args.idle)
            except Exception as exc:  # one BIRD failing must not lose the others' figures
                failed.append({"flavour": flavour, "n": n, "error": f"{type(exc).__name__}: {exc}"[:2000]})
                print(f"flavours: {flavour}, N={n} failed: {exc!r}", flush=True)
                continue
            print(json.dumps(case), flush=True)
            cases.append(case)
    out = args.out or RESULTS / f"flavours-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": {
        "cpus": os.cpu_count(), "kernel": platform.release(), "load": os.getloadavg()}, "cases": cases,
        "failed": failed}
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}")
    if not args.no_docs:
        splice(DOC, flavours(out.name, results), FLAVOURS_HEADING)
        print(f"wrote the flavours section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
