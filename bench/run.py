#!/usr/bin/python3
"""`make bench`: how fast a change in the datastore reaches BIRD, at 1,000 / 5,000 / 10,000 nodes:
Calico's legacy v1 keys and v3 resources in etcd, and the Kubernetes API datastore (the test
API server of tests/kubeapi over the same etcd; --no-kubernetes skips it), with Node churn.

    /usr/bin/python3 bench/run.py             # full run: results JSON + docs/benchmarks.md + plot
    /usr/bin/python3 bench/run.py --quick     # N = 1,000 only, 50 changes (development)
    /usr/bin/python3 bench/run.py --profile --py-spy PATH   # N = 10,000, daemon under py-spy

Needs root (network namespaces), BIRD 1.6, etcd 3.4 and Debian's python3-etcd3; the report
needs python3-matplotlib. It builds a throw-away lab (tests/lab): etcd on one namespace, the
reflector's BIRD + BIRD6 on another, whose route to the bench nodes (198.18.0.0/15, RFC
2544) leads to a next hop nobody answers (see `silent_nodes`), then runs the measurements
inside the reflector's namespace (bench/measure.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N=1,000 only, 50 changes, short idle window")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="comma-separated N")
    p.add_argument("--changes", type=int, help="single changes per N (half adds, half removals; default 200)")
    p.add_argument("--burst", type=int, default=5000, help="nodes registered in the burst")
    p.add_argument("--burst-window", type=float, default=1.0, help="seconds the burst's puts are spread over")
    p.add_argument("--idle", type=float, help="seconds of idle CPU measurement (default 10)")
    p.add_argument("--poll-interval", type=float, default=0.0005, help="seconds between BIRD polls")
    p.add_argument("--impls", type=lambda s: s.split(","), default=["daemon", "baseline"])
    p.add_argument("--profile", action="store_true", help="record the daemon with py-spy during the changes")
    p.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy binary (for --profile)")
    p.add_argument("--docs", action="store_true", help="render docs/ even for --quick / --profile runs")
    p.add_argument("--no-docs", action="store_true", help="do not render docs/")
    p.add_argument("--no-metrics", action="store_true",
                   help="run the daemon without [metrics] listen (what the metrics cost: compare)")
    p.add_argument("--keep", action="store_true", help="keep the lab's temp dir (logs)")
    p.add_argument("--no-kubernetes", action="store_true",
                   help="skip the Kubernetes datastore rows (the test API server over this etcd)")
    p.add_argument("--churn-nodes", type=int, help="N at which Node churn is measured (default 5000; --quick 1000)")
    p.add_argument("--churn-period", type=float, default=10.0, help="seconds between two updates of one Node")
    p.add_argument("--churn-seconds", type=float, help="how long the Node churn runs (default 60; --quick 20)")
    # internal: the part that runs inside the reflector's namespace
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--etcd", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    p.add_argument("--kubeapi-pid", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = [10000] if args.profile else [1000] if args.quick else [1000, 5000, 10000]
    if args.changes is None:
        args.changes = 50 if args.quick else 200
    if args.churn_nodes is None:
        args.churn_nodes = 1000 if args.quick else 5000
    if args.churn_seconds is None:
        args.churn_seconds = 20.0 if args.quick else 60.0
    if args.idle is None:
        args.idle = 3.0 if args.quick else 10.0
    if args.profile:
        args.impls = ["daemon"]
        if not args.py_spy:
            p.error("--profile needs py-spy: --py-spy PATH (pip install py-spy into a throw-away venv)")
    return args


def _out(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def code_state() -> dict:
    """What code is measured: HEAD, the files of the product that differ from it, and a hash
    of the product's files as they are on disk (others may edit the tree while we run)."""
    import hashlib
    digest = hashlib.sha256()
    for path in sorted(list((REPO / "rr_service").rglob("*.py")) + list((REPO / "templates").glob("*"))):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    changed = _out(["git", "-C", str(REPO), "status", "--porcelain", "--", "rr_service", "templates"])
    return {"head": _out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
            "changed": [line[3:] for line in changed.splitlines() if line.strip()],
            "hash": digest.hexdigest()[:12]}


def machine() -> dict:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    with open("/etc/debian_version") as f:
        debian = f.read().strip()
    bird = _out(["/usr/sbin/bird", "--version"]) or subprocess.run(
        ["/usr/sbin/bird", "--version"], capture_output=True, text=True).stderr.strip()
    etcd = _out(["/usr/bin/etcd", "--version"]).splitlines()[0]
    py = _out(["/usr/bin/python3", "--version"])
    pkgs = {}
    for pkg in ("python3-etcd3", "python3-jinja2", "python3-grpcio", "bird", "etcd-server"):
        pkgs[pkg] = _out(["dpkg-query", "-W", "-f=${Version}", pkg])
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "debian": debian, "kernel": platform.release(), "bird": bird, "etcd": etcd, "python": py,
        "packages": pkgs,
        "git": _out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(_out(["git", "-C", str(REPO), "status", "--porcelain", "--", "rr_service", "templates"])),
        "uptime_before": _out(["uptime"]),
    }


SILENT_HOP = "192.0.2.254"


def silent_nodes(rr) -> None:
    """Route the bench nodes to a next hop that never answers, inside the reflector's namespace.

    A veth pair with both ends in that namespace, and a permanent neighbour entry for the
    next hop with a MAC no interface has: BIRD's SYNs leave through one end and are dropped
    by the other, so every session waits in Connect, as towards a peer that does not answer.
    With no route at all each connect failed at once ("network unreachable"), BIRD retried
    and logged ~3,000 times a second at 10,000 nodes, and its whole-second timers bunched the
    retries into stalls of 70-200 ms that showed up in `configure`: a load no reflector of a
    healthy cluster carries. Nothing leaves the namespace either way.
    """
    for cmd in (["ip", "link", "add", "bench0", "type", "veth", "peer", "name", "bench1"],
                ["ip", "link", "set", "bench0", "up"],
                ["ip", "link", "set", "bench1", "up"],
                ["ip", "route", "add", f"{SILENT_HOP}/32", "dev", "bench0"],
                ["ip", "neigh", "add", SILENT_HOP, "lladdr", "02:00:00:00:be:ec", "dev", "bench0",
                 "nud", "permanent"],
                ["ip", "route", "add", "198.18.0.0/15", "via", SILENT_HOP, "dev", "bench0"]):
        rr.run(cmd)


def start_kubeapi(lab, host, etcd_endpoint: str) -> list[str]:
    """The test Kubernetes API server (tests/kubeapi: our HTTPS facade over this etcd, not a
    kube-apiserver) in etcd's namespace; the inner part's arguments to use it."""
    from tests.lab import wait_for

    workdir = lab.tmp / "kubeapi"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    proc = host.popen(["/usr/bin/python3", "-m", "tests.lab.kubeapi_host", "--etcd", etcd_endpoint,
                       "--host", "192.0.2.2", "--port", "6443", "--workdir", str(workdir)],
                      name="kubeapi", env=env, cwd=str(REPO))
    wait_for(lambda: (workdir / "ready").exists(), 60, what="the test API server serving")
    return ["--kubeconfig", str(workdir / "kubeconfig"), "--kubeapi-pid", str(proc.pid)]


def outer(args) -> int:
    from tests.lab import Lab, requirements_missing

    missing = requirements_missing()
    if missing:
        print(f"bench: cannot run: {missing}", file=sys.stderr)
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    info["code_before"] = code_state()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    mode = "profile" if args.profile else "quick" if args.quick else "full"
    argv = [a for a in sys.argv[1:]]
    with Lab() as lab:
        etcd_host = lab.add_host("etcd", "192.0.2.2")
        rr = lab.add_host("rr", "192.0.2.10")
        silent_nodes(rr)
        etcd = lab.start_etcd(etcd_host)
        kube = [] if args.no_kubernetes else start_kubeapi(lab, etcd_host, etcd.endpoint)
        inner_json = lab.tmp / "inner.json"
        cmd = ["ip", "netns", "exec", rr.ns, "/usr/bin/python3", "-u", str(REPO / "bench" / "run.py"),
               "--inner", "--etcd", etcd.endpoint, "--workdir", str(lab.tmp / "bench"),
               "--result", str(inner_json), "--sizes", ",".join(map(str, args.sizes)),
               "--changes", str(args.changes), "--burst", str(args.burst),
               "--burst-window", str(args.burst_window), "--idle", str(args.idle),
               "--poll-interval", str(args.poll_interval), "--impls", ",".join(args.impls),
               "--churn-nodes", str(args.churn_nodes), "--churn-period", str(args.churn_period),
               "--churn-seconds", str(args.churn_seconds), *kube]
        if args.quick:
            cmd.append("--quick")
        if args.no_metrics:
            cmd.append("--no-metrics")
        if args.profile:
            cmd += ["--profile", "--py-spy", args.py_spy]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "NOTIFY_SOCKET"}
        env["PYTHONPATH"] = str(REPO)
        rc = subprocess.run(cmd, cwd=str(REPO), env=env).returncode
        if not inner_json.exists():
            print("bench: the measurement wrote no results", file=sys.stderr)
            return 1
        inner = json.loads(inner_json.read_text())
        if args.profile:
            from bench.pyspy import summarize
            for n, size in inner["sizes"].items():
                raw = size["impls"]["daemon"].get("py_spy_raw")
                if raw and Path(raw).exists():
                    size["impls"]["daemon"]["py_spy"] = summarize(
                        Path(raw), size["impls"]["daemon"]["change"]["n"],
                        size["impls"]["daemon"]["change_cpu_ms_per_change"])
                    shutil.copy(raw, RESULTS / f"py-spy-{n}.txt")
        if args.keep:
            kept = Path(f"/tmp/rrbench-{stamp}")
            shutil.copytree(lab.tmp / "bench", kept, ignore=shutil.ignore_patterns("*.ctl", "*.sock"))
            print(f"bench: logs kept in {kept}")
    info["uptime_after"] = _out(["uptime"])
    info["code_after"] = code_state()
    if info["code_after"]["hash"] != info["code_before"]["hash"]:
        print("bench: WARNING: rr_service/ or templates/ changed during the run", file=sys.stderr)
    results = {"mode": mode, "stamp": stamp, "argv": argv, "machine": info,
               "settings": {"sizes": args.sizes, "changes": args.changes, "burst": args.burst,
                            "burst_window_s": args.burst_window, "idle_s": args.idle,
                            "poll_interval_s": args.poll_interval, "impls": args.impls,
                            "metrics": not args.no_metrics},
               "complete": rc == 0 and all("impls" in s and len(s["impls"]) == len(args.impls)
                                           for s in inner["sizes"].values())
               and len(inner["sizes"]) == len(args.sizes),
               **inner}
    name = f"{mode}-{stamp}.json"
    (RESULTS / name).write_text(json.dumps(results, indent=1))
    latest = RESULTS / (f"latest-{mode}.json" if mode != "full" else "latest.json")
    latest.write_text(json.dumps(results, indent=1))
    print(f"bench: results in {RESULTS / name} and {latest}")
    from bench.report import print_summary, render_docs
    print_summary(results)
    if (mode == "full" and results["complete"] and not args.no_docs) or args.docs:
        render_docs(results)
    return rc


def main() -> int:
    args = parse_args()
    if args.inner:
        from bench.measure import run_inner
        return run_inner(args)
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces, BIRD)", file=sys.stderr)
        return 1
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
