"""The measurements, run inside the reflector's network namespace (run.py starts us there).

Per N: the data set into etcd; the render and `bird -p` times; the floor (etcd put -> watch
delivery, BIRD's own `configure`); where a change's time goes inside the daemon's own code
(in-process, real BIRD); then the daemon and the confd-like baseline, each as a separate
process against a freshly started BIRD: cold start, RSS, idle CPU, single changes, a burst.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

from bench import harness as h
from bench.harness import now

log = logging.getLogger("bench")


class Env:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(args.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.etcd_endpoint = args.etcd
        self.etcd = h.EtcdWriter(args.etcd)
        self.syslog = h.SyslogSink(self.workdir / "syslog.sock")
        self.bird4 = h.Bird(self.workdir, 4, self.syslog)
        self.bird6 = h.Bird(self.workdir, 6, self.syslog)
        self.configs = {name: self._write_config(layout) for name, layout in h.LAYOUTS.items()}
        self.config_path = self.configs["v1"]  # the baseline's, and the v1 daemon's
        self.load_log: list = []
        self.kubeapi_pid = args.kubeapi_pid
        self._busy = h.machine_busy()

    def _write_config(self, layout: h.Layout) -> Path:
        """calico-routereflector settings of the bench for one data layout (the same file for
        the daemon and the baseline)."""
        from tests.tomlfile import write_settings

        sections = {
            "reflector": {"ip": h.RR_IP},
            "etcd": {"endpoints": [self.args.etcd]},
            "bird": {"config": str(self.bird4.config), "config6": str(self.bird6.config),
                     "socket": str(self.bird4.socket), "socket6": str(self.bird6.socket)},
            "log": {"level": "info"},
            "safety": {"max_drop_share": 1.0, "state_dir": str(self.workdir / "state")},
            # as an operator runs it: its own metrics on (they must cost nothing measurable)
            "metrics": {"listen": "" if self.args.no_metrics else "127.0.0.1:9824"},
        }
        for section, values in layout.settings.items():
            sections[section] = {**sections.get(section, {}), **values}
        return Path(write_settings(self.workdir / f"rr-{layout.name}.toml", sections))

    def mark(self, stage: str) -> None:
        """Record the machine's load at each stage: others share this machine."""
        busy, total = h.machine_busy()
        share = (busy - self._busy[0]) / max(1, total - self._busy[1])
        self._busy = (busy, total)
        self.load_log.append({"stage": stage, "t": time.time(), "loadavg": h.loadavg(),
                              "busy_since_last": round(100 * share, 1)})
        log.info("[%s] load %s (machine busy since last mark %.0f %%)", stage, h.loadavg(), 100 * share)

    def fresh_birds(self) -> None:
        self.bird4.restart()
        self.bird6.restart()

    def close(self) -> None:
        self.bird4.stop()
        self.bird6.stop()
        self.syslog.close()
        self.etcd.close()


# -- 4. render times --------------------------------------------------------------------

def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def measure_render(env: Env, n: int, layout: h.Layout) -> tuple[dict, str, str, str]:
    """The pure pipeline over the whole data set: parse, plan, render (a cold start's work)."""
    from rr_service.app import wiring
    from rr_service.app.settings import load_settings
    from rr_service.calico import rule_set
    from rr_service.core.pipeline import compute_once
    from rr_service.core.render import IncrementalRenderer

    settings = load_settings(str(env.configs[layout.name]))
    me = wiring.identity(settings)
    rules = rule_set(layout.name)
    raw = layout.relative_raw(n)
    repeat = 3 if env.args.quick else 5
    parsed = rules.parser().apply(raw)
    planned = rules.planner(me).update(parsed)

    # The configs the daemon writes with the bench's settings ([filters] included), so that
    # the render time and BIRD's `configure` floor are those of the same text.
    renderer = wiring.renderer_for(settings, "bird1")

    def render(text_only=False):
        return IncrementalRenderer(wiring.renderer_for(settings, "bird1")).render(planned)
    out = {
        "parse_ms": 1000 * median_time(lambda: rules.parser().apply(raw), repeat),
        "plan_ms": 1000 * median_time(lambda: rules.planner(me).update(parsed), repeat),
        "render_ms": 1000 * median_time(render, repeat),
    }
    out["full_ms"] = out["parse_ms"] + out["plan_ms"] + out["render_ms"]

    def text_of(data: dict) -> str:
        return compute_once(rules, data, me, renderer).configs["bird"]
    text = text_of(dict(raw))
    # the same data plus one more client: for BIRD's own `configure` floor
    key, value = layout.node_item("bench-floor-extra", h.addr(h.PROBE_NET, 250))
    text_plus = text_of({**raw, layout.relative(key): value.encode()})
    # ... and plus the burst's nodes: BIRD's own cost of taking them all in one reload
    burst = dict(raw)
    for i in range(env.args.burst):
        key, value = layout.node_item(f"bench-burst-{i:05d}", h.addr(h.BURST_NET, i))
        burst[layout.relative(key)] = value.encode()
    text_burst = text_of(burst)
    out["config_bytes"] = len(text.encode())
    out["sessions"] = text.count("\nprotocol bgp ")

    floor_dir = env.workdir / "floor"
    floor_dir.mkdir(exist_ok=True)
    path = floor_dir / "base.conf"
    path.write_text(text)

    def check():
        res = subprocess.run([h.BIRD_BIN[4], "-p", "-c", str(path)], capture_output=True)
        if res.returncode:
            raise RuntimeError(f"bird -p: {res.stderr.decode()}")
    out["bird_p_ms"] = 1000 * median_time(check, repeat)
    return out, text, text_plus, text_burst


# -- 5. the floor -----------------------------------------------------------------------

def measure_floor(env: Env, n: int, layout: h.Layout, text: str, text_plus: str, text_burst: str) -> dict:
    from rr_service.sources.etcd.client import EtcdConfig, EtcdDatastore

    samples = 50 if env.args.quick else 200
    # etcd put -> watch event, through the project's own adapter (the daemon's path)
    store = EtcdDatastore(EtcdConfig(endpoints=(env.etcd_endpoint,)), "/bench/floor")
    _raw, revision = store.snapshot()
    store.start_watch(revision + 1)
    deliver = []
    put_rpc = []
    for i in range(samples):
        t0 = now()
        env.etcd.put("/bench/floor/key", str(i))
        t1 = now()
        changes = []
        while not changes:
            changes = store.next_changes(5.0)
        deliver.append(now() - t0)
        put_rpc.append(t1 - t0)
        time.sleep(0.005)
    store.close()
    # reading this layout's data set (v3's lives under its own prefix, not the v1 one)
    snap = EtcdDatastore(EtcdConfig(endpoints=(env.etcd_endpoint,)), layout.prefix)
    get_prefix = median_time(snap.snapshot, 3)
    snap.close()

    # BIRD's own configure, straight over the socket: cold (0 -> N sessions), then +1 / -1
    env.fresh_birds()
    floor_dir = env.workdir / "floor"
    base, plus = floor_dir / "base.conf", floor_dir / "plus.conf"
    base.write_text(text)
    plus.write_text(text_plus)
    poller = h.BirdPoller(str(env.bird4.socket))
    t0 = now()
    poller.configure(str(base))
    cold = now() - t0
    configure = []
    for i in range(samples // 2 if not env.args.quick else samples):
        for path in (plus, base):
            t0 = now()
            poller.configure(str(path))
            configure.append(now() - t0)
        time.sleep(0.005)
    # the burst's floor: N -> N + burst sessions and back, each in one `configure`
    burst_path = floor_dir / "burst.conf"
    burst_path.write_text(text_burst)
    t0 = now()
    poller.configure(str(burst_path))
    burst_add = now() - t0
    t0 = now()
    poller.configure(str(base))
    burst_remove = now() - t0
    poller.close()
    return {
        "bird_configure_burst_add_ms": 1000 * burst_add,
        "bird_configure_burst_remove_ms": 1000 * burst_remove,
        "etcd_put_to_watch": h.summary(deliver),
        "etcd_put_rpc": h.summary(put_rpc),
        "etcd_get_prefix_ms": 1000 * get_prefix,
        "bird_configure": h.summary(configure),
        "bird_configure_cold_ms": 1000 * cold,
        "bird_rss_kb": env.bird4.rss_kb(),
    }


# -- where a change's time goes, in the daemon's own code --------------------------------

class Timers:
    """Exclusive wall time per named phase (a phase nested in another is not counted twice)."""

    def __init__(self):
        self.total: dict = {}
        self.stack: list = []

    def reset(self) -> dict:
        out, self.total = self.total, {}
        return out

    def wrap(self, name: str, fn):
        def timed(*a, **kw):
            start = time.perf_counter()
            self.stack.append(0.0)
            try:
                return fn(*a, **kw)
            finally:
                elapsed = time.perf_counter() - start
                children = self.stack.pop()
                self.total[name] = self.total.get(name, 0.0) + elapsed - children
                if self.stack:
                    self.stack[-1] += elapsed
        return timed


PHASES = [
    ("parse", "parse: the changed keys"),
    ("plan", "plan: the sessions they touch"),
    ("render", "render: their blocks (jinja2), one str.join"),
    ("compute_other", "the rest of compute (session names per BIRD, ...)"),
    ("guard", "drop guard (session names of old + new plan)"),
    ("read", "read the config on disk, compare"),
    ("write_fsync", "write + fsync the candidate"),
    ("configure", "BIRD `configure \"candidate\"` (socket round trip)"),
    ("rename_fsync", "rename + fsync the folder"),
    ("bird_p", "`bird -p` (only while BIRD is down)"),
    ("status", "STATUS= line"),
    ("apply_other", "the rest of apply (bookkeeping)"),
]


def measure_breakdown(env: Env, n: int, layout: h.Layout) -> dict:
    """The daemon's own objects, in this process, driven change by change against the real
    BIRD: the same code as `calico-rr run` (the pipeline, the drop guard, the applier) minus
    the etcd watch (measured in the floor) and the loop's bookkeeping."""
    import rr_service.bird.apply as apply_mod
    from rr_service import loop
    from rr_service.app.daemon import Daemon
    from rr_service.app.notify import Notifier
    from rr_service.app.settings import load_settings
    from rr_service.calico import rule_set
    from rr_service.core.pipeline import Pipeline
    from rr_service.core.safety import DropGuard
    from rr_service.loop.status import union

    env.fresh_birds()
    logger = logging.getLogger("calico-rr")
    handler = logging.FileHandler(env.workdir / f"inprocess-{layout.name}-{n}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    timers = Timers()
    gc_log: list = []  # (generation, seconds) of each collection while a change runs

    def on_gc(phase, info):
        if phase == "start":
            on_gc.started = time.perf_counter()
        else:
            gc_log.append((info["generation"], time.perf_counter() - on_gc.started))
    original_read = apply_mod._read
    try:
        settings = load_settings(str(env.configs[layout.name]))
        # The daemon process measured next serves the metrics port; this one measures no scrape.
        settings = dataclasses.replace(settings, metrics=dataclasses.replace(settings.metrics, listen=""))
        d = Daemon(settings, reload_settings=lambda: settings, notifier=Notifier(environ={}))
        d.pipeline = Pipeline(rule_set(layout.name), d.me, d.renderer)
        d.pipeline.reset(layout.relative_raw(n))
        apply_mod._read = timers.wrap("read", original_read)
        p = d.pipeline
        p._parser.apply = timers.wrap("parse", p._parser.apply)
        p._planner.update = timers.wrap("plan", p._planner.update)
        p._blocks.render = timers.wrap("render", p._blocks.render)
        for applier in d.appliers.values():
            applier._write_temp = timers.wrap("write_fsync", applier._write_temp)
            applier._rename = timers.wrap("rename_fsync", applier._rename)
            applier._check = timers.wrap("bird_p", applier._check)
            applier.client.configure = timers.wrap("configure", applier.client.configure)
        compute = timers.wrap("compute_other", d._compute)
        apply = timers.wrap("apply_other", d._apply)
        guard = DropGuard(settings.safety.max_drop_share, settings.safety.hold_seconds)
        check = timers.wrap("guard", guard.check)
        status = timers.wrap("status", loop.status_line)
        running = [frozenset()]

        gc.callbacks.append(on_gc)

        def step() -> tuple[float, dict]:
            t0 = time.perf_counter()
            computed = compute()
            new = union(computed.names.values())
            check(running[0], new, time.monotonic())
            apply(computed.configs)
            running[0] = new
            d.state.running_names.update(computed.names)  # as the loop records what BIRD runs
            status(d.state, d.loop_settings)
            return time.perf_counter() - t0, timers.reset()

        cold_total, cold = step()
        count = 50 if env.args.quick else 100
        per_change: dict = {}
        totals = []
        gc_per_change = []
        slowest = []
        for i in range(count):
            key, value = layout.node_item(f"bench-probe-{i:04d}", h.addr(h.PROBE_NET, i))
            for change in (value.encode(), None):
                gc_log.clear()
                t0 = time.perf_counter()
                d.pipeline.change(layout.relative(key), change)  # what the daemon does with a watch event
                _, parts = step()
                totals.append(time.perf_counter() - t0)
                for name, seconds in parts.items():
                    per_change.setdefault(name, []).append(seconds)
                gc_ms = {g: 1000 * sum(t for gen, t in gc_log if gen == g) for g in (0, 1, 2)}
                gc_per_change.append(gc_ms)
                slowest.append((totals[-1], {k: round(1000 * v, 2) for k, v in parts.items()}, gc_ms))
        d.source.close()
    finally:
        if on_gc in gc.callbacks:
            gc.callbacks.remove(on_gc)
        apply_mod._read = original_read
        logger.removeHandler(handler)
        handler.close()
    changes = len(totals)
    return {
        "changes": changes,
        "total": h.summary(totals),
        "phases_mean_ms": {name: 1000 * sum(per_change.get(name, [])) / changes for name, _ in PHASES},
        "phases_p50_ms": {name: h.summary(per_change[name])["p50"] for name, _ in PHASES if name in per_change},
        # Python's garbage collector, inside the phases above (not on top of them)
        "gc_mean_ms": {str(g): sum(c[g] for c in gc_per_change) / changes for g in (0, 1, 2)},
        "gc_gen2_per_100_changes": 100 * sum(1 for c in gc_per_change if c[2] > 0) / changes,
        "slowest": [{"total_ms": round(1000 * t, 2), "phases_ms": p, "gc_ms": g}
                    for t, p, g in sorted(slowest, key=lambda x: -x[0])[:5]],
        "cold_apply_ms": 1000 * cold_total,
        "cold_phases_ms": {name: 1000 * cold.get(name, 0.0) for name, _ in PHASES},
    }


# -- 1-3. the daemon and the baseline as processes ---------------------------------------

IMPLS = {
    "daemon": {
        "cmd": lambda env, layout: [h.PYTHON, "-m", "rr_service", "--config", str(env.configs[layout.name]), "run"],
        "reload_line": r" bird accepted ",
    },
    "baseline": {
        "cmd": lambda env, layout: [h.PYTHON, str(h.REPO / "bench" / "baseline.py"), "--config", str(env.config_path)],
        "reload_line": r"baseline: bird configured",
    },
}


class PySpy:
    def __init__(self, binary: str, pid: int, out: Path, rate: int = 1000):
        self.out = out
        self.proc = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--threads", "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_impl(env: Env, kind: str, n: int, layout: h.Layout, spy: Optional[str] = None) -> dict:
    args = env.args
    spec = IMPLS[kind]
    env.fresh_birds()
    env.mark(f"N={n} {kind} {layout.name}")
    logpath = env.workdir / f"{kind}-{layout.name}-{n}.log"
    reloads = h.LogWatcher(logpath, spec["reload_line"])
    last_base = h.proto_of(h.addr(h.BASE_NET, n - 1))
    result: dict = {}
    proc, notify, t0 = start_impl(env, kind, layout, logpath)
    try:
        # 3. cold start: READY=1 on our NOTIFY_SOCKET, and BIRD showing the last node's session
        poller = h.BirdPoller(str(env.bird4.socket))
        t_ready, t_configured = wait_started(kind, proc, notify, poller, last_base, logpath, t0)
        result["ready_s"] = t_ready - t0
        result["configured_s"] = t_configured - t0
        time.sleep(1.0)
        status = h.proc_status(proc.pid)
        result["rss_ready_mb"] = status["VmRSS"] / 1024
        result["hwm_ready_mb"] = status["VmHWM"] / 1024
        # CPU while idle
        c0, b0, w0 = h.cpu_seconds_exact(proc.pid), h.cpu_seconds_exact(env.bird4.proc.pid), now()
        time.sleep(args.idle)
        result["idle_cpu_pct"] = 100 * (h.cpu_seconds_exact(proc.pid) - c0) / (now() - w0)
        # BIRD's own background work meanwhile: N sessions retrying their (failing) connects
        result["bird_idle_cpu_pct"] = 100 * (h.cpu_seconds_exact(env.bird4.proc.pid) - b0) / (now() - w0)
        result["idle_seconds"] = args.idle
        reloads.poll()
        result["reloads_at_start"] = reloads.count

        # 1. single changes, one at a time
        profiler = PySpy(spy, proc.pid, env.workdir / f"py-spy-{kind}-{layout.name}-{n}.txt") if spy else None
        samples = {"add": [], "remove": []}
        put_rpc = []
        cpu0 = h.cpu_seconds(proc.pid)
        rng = random.Random(n)
        for i in range(args.changes // 2):
            ip = h.addr(h.CHANGE_NET, i)
            key, value = layout.node_item(f"bench-chg-{i:04d}", ip)
            proto = h.proto_of(ip)
            for kind_of_change in ("add", "remove"):
                before = reloads.poll()
                t_start = now()
                if kind_of_change == "add":
                    env.etcd.put(key, value)
                else:
                    env.etcd.delete(key)
                t_put = now()
                try:
                    t_seen = poller.wait(proto, kind_of_change == "add", 30, args.poll_interval)
                except TimeoutError:
                    diagnose(env, proc.pid, logpath)
                    raise
                samples[kind_of_change].append(t_seen - t_start)
                put_rpc.append(t_put - t_start)
                reloads.wait_above(before, 30)  # the implementation finished its apply
                time.sleep(rng.uniform(0.02, 0.05))
        cpu_changes = h.cpu_seconds(proc.pid) - cpu0
        if profiler:
            profiler.stop()
            result["py_spy_raw"] = str(profiler.out)
        every = samples["add"] + samples["remove"]
        result["change"] = h.summary(every)
        result["change_add"] = h.summary(samples["add"])
        result["change_remove"] = h.summary(samples["remove"])
        result["change_put_rpc"] = h.summary(put_rpc)
        result["change_cpu_ms_per_change"] = 1000 * cpu_changes / max(1, len(every))
        result["change_samples_ms"] = [round(1000 * v, 3) for v in every]

        # 2. the burst: registrations within about one second, transactions of <= 128 puts
        result["burst"] = burst(env, poller, reloads, layout, add=True)
        result["burst_remove"] = burst(env, poller, reloads, layout, add=False)
        if layout is h.K8S and n == args.churn_nodes:
            env.mark(f"N={n} k8s: node churn")
            result["churn"] = node_churn(env, proc, reloads, n)
        status = h.proc_status(proc.pid)
        result["hwm_mb"] = status["VmHWM"] / 1024
        result["bird_rss_mb"] = env.bird4.rss_kb() / 1024
        poller.close()
    finally:
        result["exit_code"] = h.stop_process(proc)
        notify.close()
    # 3b. a restart: BIRD already runs the N-node config the previous run left in place (a
    # package upgrade, `systemctl restart`, or a reboot where BIRD starts from the file)
    reloads_before = reloads.poll()
    proc, notify, t0 = start_impl(env, kind, layout, logpath)
    try:
        poller = h.BirdPoller(str(env.bird4.socket))
        t_ready, _ = wait_started(kind, proc, notify, poller, last_base, logpath, t0)
        result["restart_ready_s"] = t_ready - t0
        result["restart_hwm_mb"] = h.proc_status(proc.pid)["VmHWM"] / 1024
        poller.close()
    finally:
        result["restart_exit_code"] = h.stop_process(proc)
        notify.close()
    result["restart_reloads"] = reloads.poll() - reloads_before  # the log is complete once it exited
    log.info("N=%d %s %s: ready %.2f s (restart %.2f s), change p50 %.1f ms p99 %.1f ms, burst %d reloads %.2f s",
             n, kind, layout.name, result["ready_s"], result["restart_ready_s"], result["change"]["p50"], result["change"]["p99"],
             result["burst"]["reloads"], result["burst"]["converged_after_last_put_s"])
    return result


def diagnose(env: Env, pid: int, logpath: Path) -> None:
    """A change never arrived: append the stuck process's stacks to its log (py-spy dump)."""
    spy = env.args.py_spy
    if not spy:
        return
    dump = subprocess.run([spy, "dump", "--pid", str(pid), "--locals"], capture_output=True, text=True)
    with open(logpath, "a") as f:
        f.write("\n--- bench: py-spy dump after a timeout ---\n" + dump.stdout + dump.stderr)


def start_impl(env: Env, kind: str, layout: h.Layout, logpath: Path):
    notify = h.NotifySocket(env.workdir / f"notify-{kind}.sock")
    with open(logpath, "ab") as logfile:
        t0 = now()
        proc = subprocess.Popen(IMPLS[kind]["cmd"](env, layout), cwd=str(h.REPO), env=h.product_env(notify.path),
                                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, notify, t0


def wait_started(kind, proc, notify, poller, last_base, logpath, t0) -> tuple[float, float]:
    """(READY=1 time, time BIRD first showed the last node's session)."""
    t_ready = t_configured = None
    deadline = t0 + 300
    while t_ready is None or t_configured is None:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited: {logpath.read_text()[-3000:]}")
        if now() > deadline:
            raise TimeoutError(f"{kind}: start not done in 300 s")
        t_ready = notify.first("READY=1")
        if t_configured is None and poller.present(last_base):
            t_configured = now()
        time.sleep(0.002)
    return t_ready, t_configured


def burst(env: Env, poller: h.BirdPoller, reloads: h.LogWatcher, layout: h.Layout, add: bool) -> dict:
    count = env.args.burst
    nodes = [(f"bench-burst-{i:05d}", h.addr(h.BURST_NET, i)) for i in range(count)]
    batches = [nodes[i:i + layout.per_txn] for i in range(0, count, layout.per_txn)]
    spacing = env.args.burst_window / max(1, len(batches) - 1)
    before = reloads.poll()
    t_first = now()
    for j, batch in enumerate(batches):
        delay = t_first + j * spacing - now()
        if delay > 0:
            time.sleep(delay)
        if add:
            env.etcd.txn_put([layout.node_item(name, ip) for name, ip in batch])
        else:
            env.etcd.txn_delete([layout.node_item(name, ip)[0] for name, ip in batch])
    t_last = now()
    t_conv = poller.wait(h.proto_of(nodes[-1][1]), add, 300, 0.001)
    after = reloads.wait_quiet(2.0, 120)
    names = poller.names()
    burst_prefix = "Client_198_19_"
    present = sum(1 for name in names if name.startswith(burst_prefix))
    return {
        "nodes": count,
        "transactions": len(batches),
        "put_window_s": t_last - t_first,
        "converged_after_last_put_s": t_conv - t_last,
        "converged_after_first_put_s": t_conv - t_first,
        "reloads": after - before,
        "sessions_present_after": present,
        "complete": present == (count if add else 0),
    }


def node_churn(env: Env, proc: subprocess.Popen, reloads: h.LogWatcher, n: int) -> dict:
    """Kubelets rewriting their Nodes: each of the N Nodes MODIFIED every `churn_period`
    seconds (its heartbeat times and resourceVersion change, its BGP fields do not), spread
    evenly over the period, for `churn_seconds`. What the daemon may spend on it: no reload,
    little CPU."""
    args = env.args
    layout = h.K8S
    nodes = [layout.node_item(name, ip) for name, ip in h.base_nodes(n)]
    stamp = '"lastHeartbeatTime":"2024-01-01T00:00:00Z"'
    assert stamp in nodes[0][1], "the Node's heartbeat time is where the bench changes it"
    tick = 0.1
    per_tick = max(1, round(n * tick / args.churn_period))
    before = reloads.poll()
    c0, w0 = h.cpu_seconds_exact(proc.pid), now()
    api0 = h.cpu_seconds_exact(env.kubeapi_pid) if env.kubeapi_pid else None
    writes, i, next_tick = 0, 0, now()
    while now() - w0 < args.churn_seconds:
        heartbeat = time.strftime('"lastHeartbeatTime":"%Y-%m-%dT%H:%M:%SZ"', time.gmtime())
        batch = []
        for _ in range(per_tick):
            key, value = nodes[i % n]
            batch.append((key, value.replace(stamp, heartbeat)))
            i += 1
        for j in range(0, len(batch), layout.per_txn):
            env.etcd.txn_put(batch[j:j + layout.per_txn])
        writes += len(batch)
        next_tick += tick
        delay = next_tick - now()
        if delay > 0:
            time.sleep(delay)
    elapsed = now() - w0
    cpu = h.cpu_seconds_exact(proc.pid) - c0
    out = {"nodes": n, "period_s": args.churn_period, "seconds": elapsed, "writes": writes,
           "writes_per_s": writes / elapsed, "node_bytes": len(nodes[0][1]),
           "reloads": reloads.wait_quiet(1.0, 30) - before, "daemon_cpu_pct": 100 * cpu / elapsed}
    if api0 is not None:
        out["api_server_cpu_pct"] = 100 * (h.cpu_seconds_exact(env.kubeapi_pid) - api0) / elapsed
    log.info("N=%d node churn: %d writes in %.0f s (%.0f/s), %d reloads, daemon CPU %.1f %%", n, writes, elapsed,
             out["writes_per_s"], out["reloads"], out["daemon_cpu_pct"])
    return out


def run_size(env: Env, n: int) -> dict:
    """Everything at N nodes for the legacy v1 layout (daemon and baseline); then the same for
    Calico v3 data (the daemon: the baseline reads only v1), under `out["v3"]`; then, with the
    test API server, the Kubernetes datastore (the daemon) under `out["k8s"]`."""
    out: dict = {"n": n}
    for layout in (h.V1, h.V3):
        part = out if layout is h.V1 else out.setdefault("v3", {"n": n})
        env.mark(f"N={n} {layout.name}: load etcd")
        t = now()
        env.etcd.reset(n, layout)
        log.info("N=%d %s: %d nodes in etcd (%.1f s)", n, layout.name, n, now() - t)
        env.mark(f"N={n} {layout.name}: render")
        part["render"], text, text_plus, text_burst = measure_render(env, n, layout)
        log.info("N=%d %s render: %s", n, layout.name, {k: round(v, 1) for k, v in part["render"].items()})
        # The floor of each layout: etcd's delivery and BIRD's own configure of this layout's
        # text (v3 sessions carry more lines than v1's: a cluster id, longer descriptions).
        env.mark(f"N={n} {layout.name}: floor")
        part["floor"] = measure_floor(env, n, layout, text, text_plus, text_burst)
        log.info("N=%d %s floor: etcd p50 %.2f ms, BIRD configure p50 %.1f ms", n, layout.name,
                 part["floor"]["etcd_put_to_watch"]["p50"], part["floor"]["bird_configure"]["p50"])
        env.mark(f"N={n} {layout.name}: breakdown")
        part["breakdown"] = measure_breakdown(env, n, layout)
        log.info("N=%d %s in-process change: p50 %.1f ms; %s", n, layout.name, part["breakdown"]["total"]["p50"],
                 {k: round(v, 2) for k, v in part["breakdown"]["phases_mean_ms"].items()})
        part["impls"] = {}
        spy = env.args.py_spy if env.args.profile else None
        for kind in env.args.impls:
            if kind == "baseline" and layout is not h.V1:
                continue
            part["impls"][kind] = run_impl(env, kind, n, layout, spy if kind == "daemon" else None)
    if env.args.kubeconfig:
        env.mark(f"N={n} k8s: load the API server's etcd")
        env.etcd.reset(n, h.K8S)
        env.mark(f"N={n} k8s: daemon")
        out["k8s"] = {"n": n, "impls": {"daemon": run_impl(env, "daemon", n, h.K8S)}}
    return out


def run_inner(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s")
    h.K8S.kubeconfig = args.kubeconfig or ""
    env = Env(args)
    started = time.time()
    results = {"sizes": {}, "started": started}
    try:
        env.mark("start")
        for n in args.sizes:
            results["sizes"][str(n)] = run_size(env, n)
            Path(args.result).write_text(json.dumps(results, indent=1))
        env.mark("end")
    finally:
        results["load"] = env.load_log
        results["finished"] = time.time()
        Path(args.result).write_text(json.dumps(results, indent=1))
        env.close()
    return 0
