#!/usr/bin/python3
"""`make bench-propagation`: how fast the reflector's BIRD passes routes on to N clients.

    /usr/bin/python3 bench/propagation.py                       # bird1, bird2, bird3 at 1,000 and 5,000
    /usr/bin/python3 bench/propagation.py --sizes 200 --flavours bird1 --repeat 2   # a quick look

What a reflector is for, measured with the real daemon configuring the reflector's BIRD (each
flavour) and real BGP sessions, in a throw-away lab (tests/lab: network namespaces):

    etcd      192.0.2.2    the legacy v1 keys: N farm nodes, the origin node, a pool
    rr        192.0.2.10   the reflector: calico-rr + BIRD 1.6, BIRD 2 or BIRD 3
    origin    192.0.2.21   a Calico-like node (BIRD 1.6) that announces the routes
    farm      192.0.2.30   one BIRD 1.6 holding the N client sessions, one per address
                           198.18.0.0/16 (RFC 2544), importing every route it is sent

BIRD allows one session per neighbour address, so the farm's session i goes to its own
reflector address 198.19.x.y, which the reflector's namespace DNATs to 192.0.2.10 (nftables):
the reflector sees N clients 198.18.x.y, as N Calico nodes would show. The figures:

- one route: the origin enables a static /26; from then until the farm's table holds it
  from the first, the median and the last of the N sessions (`show route <net> count`),
  then the same for its withdrawal; the median of `--repeat` rounds;
- a burst: the origin enables M /26s at once (a node restart, a new block per node); until
  the farm holds all M from half and from all of every 10th session (SAMPLE; its whole table
  counted every 0.1 s at most); then their withdrawal;
- the reflector BIRD's RSS, and its CPU time while the burst propagates.

The farm is one BIRD 1.6 for every reflector flavour: its own work (it takes in N copies of
each route) is part of each figure and the same in all of them; the polling (a
`show route ... count` every --poll seconds) costs the farm, not the reflector.
Needs root, BIRD 1.6, etcd, nftables; BIRD 2 / 3 as tests/prereq.py fetches them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import BirdPoller  # noqa: E402
from bench.bird_sections import HEADING, propagation, splice  # noqa: E402
from tests import prereq  # noqa: E402
from tests.lab import Lab, Reflector, wait_for  # noqa: E402

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
AS_NUM = 64512
ETCD_IP, RR_IP, ORIGIN_IP, FARM_IP = "192.0.2.2", "192.0.2.10", "192.0.2.21", "192.0.2.30"
NODE_NET, ALIAS_NET = "198.18", "198.19"  # the farm's session addresses, the reflector's aliases
POOL = "10.244.0.0/16"
SINGLE = "10.244.1.0/26"
PYTHON = "/usr/bin/python3"
FLAVOURS = ("bird1", "bird2", "bird3")
BURST_POLL = 0.1  # seconds between the farm's counts of its whole table during a burst
# The farm keeps the burst's routes from every SAMPLE-th session only: BIRD keeps the routes of
# one net in a list it walks on every change, so N copies of M nets cost the farm O(N² M) and
# at 5,000 sessions the farm, not the reflector, would be measured. The reflector still sends
# every route to every session; the other sessions' routes are filtered on the farm's import.
SAMPLE = 10

# Writes the data set into etcd from inside its namespace, 128 puts per transaction
# (etcd's default --max-txn-ops).
LOADER = """
import json, sys, etcd3
host, port = sys.argv[2].rsplit("//", 1)[1].split(":")
client = etcd3.client(host=host, port=int(port))
items = json.load(open(sys.argv[1]))
for i in range(0, len(items), 128):
    client.transaction(compare=[], success=[client.transactions.put(k, v) for k, v in items[i:i + 128]], failure=[])
"""


def load_items(lab: Lab, host, endpoint: str, items: list[tuple[str, str]]) -> None:
    """Write (key, value) pairs into the lab's etcd, from inside its namespace."""
    path = lab.tmp / "items.json"
    path.write_text(json.dumps(items))
    host.run([PYTHON, "-c", LOADER, str(path), endpoint], timeout=600)


def address(net: str, index: int) -> str:
    return f"{net}.{index // 250}.{index % 250 + 1}"


def burst_nets(m: int) -> list[str]:
    return [f"10.244.{2 + i // 4}.{i % 4 * 64}/26" for i in range(m)]


def data_set(n: int) -> list[tuple[str, str]]:
    """The legacy v1 keys: every node peers with the reflector (a global peer)."""
    p = "/calico/bgp/v1"
    items = [(f"{p}/global/as_num", str(AS_NUM)),
             (f"{p}/global/peer_v4/{RR_IP}", json.dumps({"ip": RR_IP, "as_num": str(AS_NUM)})),
             ("/calico/v1/ipam/v4/pool/" + POOL.replace("/", "-"),
              json.dumps({"cidr": POOL, "ipip": "", "masquerade": True, "disabled": False})),
             (f"{p}/host/origin/ip_addr_v4", ORIGIN_IP)]
    items += [(f"{p}/host/farm-{i}/ip_addr_v4", address(NODE_NET, i)) for i in range(n)]
    return items


def sampled(n: int) -> int:
    """How many farm sessions keep the burst's routes: every SAMPLE-th."""
    return len(range(0, n, SAMPLE))


def farm_config(n: int, log: Path) -> str:
    lines = [f"router id {FARM_IP};", f'log "{log}" {{ warning, error, fatal }};',
             "protocol device { scan time 60; }", 'protocol direct { interface "eth0"; }',
             "template bgp farm {", "  disabled;", f"  local as {AS_NUM};", "  import all;", "  export none;",
             "  connect delay time 1;", "  connect retry time 5;",
             # A connect the reflector refused or lost must not keep a farm session in Idle
             # for the default 60-300 s, nor in OpenSent for the default 240 s.
             "  error wait time 1, 5;", "  startup hold time 10;", "}"]
    lines += [f"protocol bgp F{i} from farm {{ neighbor {address(ALIAS_NET, i)} as {AS_NUM}; "
              f"source address {address(NODE_NET, i)};"
              + ("" if i % SAMPLE == 0 else f" import where net = {SINGLE};") + " }" for i in range(n)]
    return "\n".join(lines) + "\n"


def origin_config(m: int) -> str:
    burst = "\n".join(f"  route {net} blackhole;" for net in burst_nets(m))
    return f"""router id {ORIGIN_IP};
protocol device {{ scan time 60; }}
protocol static single {{ disabled; route {SINGLE} blackhole; }}
protocol static burst {{ disabled;
{burst}
}}
protocol bgp to_reflector {{
  local as {AS_NUM};
  neighbor {RR_IP} as {AS_NUM};
  source address {ORIGIN_IP};
  import none;
  export where proto = "single" || proto = "burst";
}}
"""


_COUNT = re.compile(rb"(\d+) of (\d+) routes")


def routes(poller: BirdPoller, what: str = "") -> int:
    """How many routes the farm's table holds (for `what`, a net, or in all). BIRD 1.6 prints
    no count for `show route <net> count`: a filter walks the table and counts."""
    code, lines = poller.command(f"show route where net = {what} count" if what else "show route count")
    if code == 8001:  # network not in table
        return 0
    if code >= 8000:  # BIRD refused; 0014 carries the count, 0000 says none
        raise RuntimeError(f"show route {what} count: {code} {lines[-3:]}")
    counts = [int(m.group(1)) for m in map(_COUNT.search, lines) if m]
    return counts[0] if counts else 0  # BIRD 1.6 prints no count line for none


def watch(poller: BirdPoller, what: str, marks: dict[str, int], interval: float, timeout: float,
          act) -> dict:
    """Do `act()`, then poll the farm's count of `what` until every mark is passed (a
    count rising to it, or falling to it when it is below the count before); seconds from
    just before `act` to each mark."""
    before = routes(poller, what)
    rising = max(marks.values()) > before
    start = time.monotonic()
    act()
    seen: dict = {}
    while len(seen) < len(marks):
        count = routes(poller, what)
        t = time.monotonic() - start
        for name, mark in marks.items():
            if name not in seen and (count >= mark if rising else count <= mark):
                seen[name] = t
        if t > timeout:
            raise TimeoutError(f"{what or 'routes'}: {count} after {timeout} s, marks {marks}, seen {seen}")
        time.sleep(interval)
    return seen


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS kB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return cpu, rss


def bird_pid(pidfile: Path) -> int:
    return int(pidfile.read_text().split()[0])


def one_case(flavour: str, n: int, m: int, repeat: int, poll: float, keep: bool) -> dict:
    binary = prereq.bird_binary_or_missing(flavour)
    with Lab(keep_tmp=keep) as lab:
        etcd_host = lab.add_host("etcd", ETCD_IP)
        etcd = lab.start_etcd(etcd_host)
        load_items(lab, etcd_host, etcd.endpoint, data_set(n))

        rr_host = lab.add_host("rr", RR_IP)
        rr_host.run(["ip", "route", "add", f"{NODE_NET}.0.0/16", "via", FARM_IP])
        rr_host.run(["nft", "-f", "-"], input=(
            "table ip farm {\n  chain prerouting {\n    type nat hook prerouting priority -100;\n"
            f"    ip daddr {ALIAS_NET}.0.0/16 dnat to {RR_IP};\n  }}\n}}\n"))
        rr = Reflector(lab, rr_host, [etcd.endpoint], ipv6=False, log_level="info", flavour=flavour,
                       bird_binary=str(binary) if binary else None,
                       settings={"etcd": {"schema": "v1"}, "safety": {"state_dir": str(lab.tmp / "rr-state")}})
        rr.start()
        wait_for(lambda: rr.bird.bgp_protocols().__len__() >= n + 1, 300, interval=1.0,
                 what=f"the reflector's BIRD configured with {n + 1} clients")

        origin_host = lab.add_host("origin", ORIGIN_IP)
        origin = lab.start_bird(origin_host, origin_config(m), 4, name="origin-bird")
        farm_host = lab.add_host("farm", FARM_IP)
        batch = lab.tmp / "farm-addresses"
        batch.write_text("".join(f"address add {address(NODE_NET, i)}/32 dev eth0\n" for i in range(n)))
        farm_host.run(["ip", "-batch", str(batch)], timeout=300)
        farm_host.run(["ip", "route", "add", f"{ALIAS_NET}.0.0/16", "via", RR_IP])
        # The reflector's own connects to 198.18.x.y must go unanswered: the farm's BIRD would
        # close them (no session of its has the neighbour 192.0.2.10), and a reflector session
        # closed so waits `error wait time` (60 s and more) in Idle, refusing the farm's
        # connects meanwhile. Unanswered, it waits in Connect and takes the farm's.
        farm_host.run(["nft", "-f", "-"], input=(
            "table ip farm {\n  chain input {\n    type filter hook input priority 0;\n"
            f"    ip saddr {RR_IP} tcp dport 179 drop;\n  }}\n}}\n"))
        farm = lab.start_bird(farm_host, farm_config(n, lab.tmp / "farm-bird.log"), 4, name="farm-bird")

        poller = BirdPoller(str(farm.socket_path), timeout=120)
        rr_poller = BirdPoller(str(rr.bird.socket_path), timeout=120)
        up_since = time.monotonic()
        enable_in_waves(poller, n)
        def all_up():
            farm_states, rr_states = states(poller), states(rr_poller)
            print(f"  {time.monotonic() - up_since:5.0f} s  farm {farm_states}  reflector {rr_states}", flush=True)
            return farm_states.get("Established", 0) >= n and rr_states.get("Established", 0) >= n + 1
        wait_for(all_up, 900, interval=5.0, what=f"{n} farm sessions and the origin's Established")
        sessions_up = time.monotonic() - up_since
        origin_ctl = BirdPoller(str(origin.socket_path), timeout=60)
        try:
            figures = measure(poller, origin_ctl, bird_pid(rr.bird.pid_path), n, m, repeat, poll)
        except Exception:
            for who, bird, cmd in (("origin", origin, "show protocols all to_reflector"),
                                   ("reflector", rr.bird, f"show route {SINGLE} all"),
                                   ("reflector", rr.bird, "show protocols all Client_192_0_2_21"),
                                   ("farm", farm, f"show route {SINGLE}")):
                print(f"--- {who}: {cmd}\n{bird.birdc(cmd)[-3000:]}", file=sys.stderr)
            print(f"--- rr log\n{rr.log()[-3000:]}", file=sys.stderr)
            raise
        finally:
            for p in (origin_ctl, poller, rr_poller):
                p.close()
        version = rr.bird.birdc("show status").splitlines()[0].replace(" ready.", "").strip()
        rr.stop()
        return {"flavour": flavour, "n": n, "burst_routes": m, "repeat": repeat, "poll_s": poll,
                "sessions_up_s": sessions_up, "rr_bird_version": version, **figures}


def measure(poller: BirdPoller, origin: BirdPoller, rr_pid: int, n: int, m: int, repeat: int,
            poll: float) -> dict:
    single, single_gone, bursts, burst_gone, burst_cpu = [], [], [], [], []
    baseline = routes(poller)
    for _ in range(repeat):
        single.append(watch(poller, SINGLE, {"first": 1, "median": n // 2, "all": n}, poll, 60,
                            lambda: origin.command("enable single")))
        single_gone.append(watch(poller, SINGLE, {"all": 0}, poll, 300, lambda: origin.command("disable single")))
        cpu0, _ = proc_stat(rr_pid)
        # Counting the whole table walks all N x M routes in the farm: polled as often as one
        # route's count, the polling would be most of the farm's work.
        slow = max(poll, BURST_POLL)
        k = sampled(n)
        bursts.append(watch(poller, "", {"half": baseline + m * k // 2, "all": baseline + m * k}, slow, 900,
                            lambda: origin.command("enable burst")))
        burst_cpu.append(proc_stat(rr_pid)[0] - cpu0)
        burst_gone.append(watch(poller, "", {"all": baseline}, slow, 900, lambda: origin.command("disable burst")))
    cpu, rss = proc_stat(rr_pid)
    return {"single": medians(single), "single_withdrawn": medians(single_gone),
            "burst": medians(bursts), "burst_withdrawn": medians(burst_gone),
            "rr_bird_cpu_during_burst_s": statistics.median(burst_cpu),
            "rr_bird_rss_mb": rss / 1024, "rr_bird_cpu_total_s": cpu}


def enable_in_waves(poller: BirdPoller, n: int, wave: int = 8, pause: float = 0.15) -> None:
    """Start the farm's sessions a few at a time. BIRD listens with a backlog of 8: when
    thousands of connects arrive at once the kernel drops the handshakes that overflow it, and
    those sessions sit in OpenSent until their (startup) hold timer expires. Calico nodes do
    not all connect in the same millisecond; the farm's sessions would."""
    for start in range(0, n, wave):
        for i in range(start, min(n, start + wave)):
            poller.command(f"enable F{i}")
        time.sleep(pause)


def states(poller: BirdPoller) -> dict:
    """How many BGP sessions are in each state (`show protocols`' info column)."""
    _, lines = poller.command("show protocols")
    out: dict = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[1] == b"BGP":
            state = fields[-1].decode() if len(fields) >= 6 else fields[3].decode()
            out[state] = out.get(state, 0) + 1
    return out


def medians(rounds: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 5000],
                   help="client sessions N (comma-separated; default 1000,5000)")
    p.add_argument("--flavours", type=lambda s: s.split(","), default=list(FLAVOURS),
                   help="reflector BIRDs (comma-separated; default bird1,bird2,bird3)")
    p.add_argument("--burst", type=int, default=100, help="routes M in the burst (default 100)")
    p.add_argument("--repeat", type=int, default=3, help="rounds per figure; the median is kept (default 3)")
    p.add_argument("--poll", type=float, default=0.01, help="seconds between the farm's counts (default 0.01)")
    p.add_argument("--keep", action="store_true", help="keep the labs' temp dirs (logs)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results/propagation-<time>.json)")
    p.add_argument("--no-docs", action="store_true", help="do not write the section of docs/benchmarks.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # A kill must still tear the lab down (its namespaces and BIRDs): exit through the
    # Lab's context manager.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("bench/propagation.py needs root (network namespaces)", file=sys.stderr)
        return 2
    cases = []
    for n in args.sizes:
        for flavour in args.flavours:
            print(f"propagation: {flavour}, N={n} ...", flush=True)
            case = one_case(flavour, n, args.burst, args.repeat, args.poll, args.keep)
            print(json.dumps(case), flush=True)
            cases.append(case)
    out = args.out or RESULTS / f"propagation-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": {
        "cpus": os.cpu_count(), "kernel": platform.release(), "load": os.getloadavg()}, "cases": cases},
        indent=1) + "\n")
    print(f"results: {out}")
    if not args.no_docs:
        splice(DOC, propagation(out.name, json.loads(out.read_text())), HEADING)
        print(f"wrote the route propagation section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
