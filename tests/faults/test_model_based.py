"""Model-based randomized test: the config BIRD runs always converges to what etcd says.

Thousands of seeded random puts and deletes (reflectors, global AS and peers, nodes, their AS
and peers; a fifth of them hostile: bad JSON, wrong family, injection strings, control
characters, megabyte-ish values, odd keys) go into a real etcd while the real daemon runs in
the reflector's namespace against a real BIRD + BIRD6 pair (node BIRDs are not needed: their
sessions stay down). etcd is restarted at random points (SIGTERM or SIGKILL, same data dir).

After every batch, at quiescence (the daemon's STATUS= says it applied etcd's last revision):
  * etcd holds exactly the model (the generator's key -> value dict);
  * each config file equals `components.compute` over etcd's final keys (the pure pipeline);
  * BIRD runs that file: its `show protocols` BGP names are the file's `protocol bgp` names;
  * at the end, `calico-rr render` prints the same text.

Reproduce a run: RR_MODEL_SEED=<seed> (printed on failure); RR_MODEL_OPS sets the op count.
"""

from __future__ import annotations

import difflib
import os
import random
import signal
import time

import pytest

from rr_service import components
from rr_service.render import Renderer
from rr_service.safety import session_names
from rr_service.settings import load_settings
from tests.lab.notify import NotifySocket
from tests.faults.model_helpers import (EtcdDriver, OpGenerator, status_revision,
                                        write_figures)
from tests.lab import Lab, Reflector, requirements_missing, rr_service_available, sweep, wait_for
from tests.lab.etcd import start_etcd
from tests.lab.netns import REPO_ROOT
from tests.lab.reflector import PYTHON, _env
from tests.lab.world import ETCD_IP, RR1

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("RR_MODEL_SEED", "20240611"))
OPS = int(os.environ.get("RR_MODEL_OPS", "3000"))
BATCHES = 10
RESTARTS = 8
QUIESCE_TIMEOUT = 60.0


def _expected(kvs, settings, schema, renderer) -> dict:
    return components.compute(kvs, components.identity(settings), renderer, schema).configs


def _diff(want: str, got: str, name: str) -> str:
    lines = difflib.unified_diff(want.splitlines(), got.splitlines(), f"{name} computed from etcd",
                                 f"{name} on disk / in BIRD", lineterm="", n=2)
    return "\n".join(list(lines)[:60])


def _render_output(text: str) -> dict:
    """`calico-rr render` prints `### PATH` before each file."""
    files, current = {}, None
    for line in text.splitlines(keepends=True):
        if line.startswith("### "):
            current = line[4:].strip()
            files[current] = ""
        elif current is not None:
            files[current] += line
    return files


def test_random_puts_deletes_and_etcd_restarts_converge(request):
    reason = requirements_missing()
    if reason:
        pytest.skip(reason)
    problem = rr_service_available()
    if problem:
        pytest.fail(f"python3 -m rr_service does not start: {problem}", pytrace=False)
    started = time.monotonic()
    schedule = random.Random(SEED ^ 0x5EED)
    restart_at = set(schedule.sample(range(50, OPS - 50), RESTARTS)) if OPS > 200 else set()
    batch_ends = {OPS * (i + 1) // BATCHES for i in range(BATCHES)}
    gen = OpGenerator(SEED)
    figures = {"restarts": 0, "checks": 0, "mismatches": 0, "sessions_max": 0}
    mismatches: list = []
    last_op = ""

    sweep()
    with Lab(keep_tmp=bool(os.environ.get("RRLAB_KEEP"))) as lab:
        notify = NotifySocket(lab.tmp / "notify.sock")
        driver = None
        rr = None
        try:
            etcd_host = lab.add_host("etcd", ETCD_IP)
            etcd = start_etcd(lab, etcd_host)
            name, ip4, ip6 = RR1
            rr_host = lab.add_host(name, ip4, ip6)
            rr = Reflector(lab, rr_host, [etcd.endpoint], extra_toml=(
                "\n[safety]\nmax_drop_share = 1.0\n"
                f'state_dir = "{lab.tmp / "rr-state"}"\n'))
            env = dict(_env(), NOTIFY_SOCKET=notify.path)
            rr.daemon = rr_host.popen([PYTHON, "-m", "rr_service", "--config", str(rr.config), "run"],
                                      name=f"{name}-rr_service", env=env, cwd=str(REPO_ROOT))
            driver = EtcdDriver(etcd_host.ns, etcd.endpoint, "/calico/bgp/v1", lab.tmp / "driver.log")

            settings = load_settings(str(rr.config), environ={})
            schema = components.schema(settings, "v1")
            renderer = Renderer(flavour="bird1")
            targets = components.targets(settings, "bird1")
            birds = {"bird": rr.bird, "bird6": rr.bird6}

            def restart_etcd() -> None:
                nonlocal etcd
                how = schedule.choice(["term", "kill"])
                if how == "kill":
                    os.killpg(etcd.proc.pid, signal.SIGKILL)
                    etcd.proc.popen.wait(10)
                else:
                    etcd.proc.stop()
                if schedule.random() < 0.5:  # sometimes let the daemon notice the outage first
                    wait_for(lambda: "etcd unreachable" in notify.status(), 30,
                             what="the daemon to report etcd unreachable",
                             describe=notify.status)
                etcd = start_etcd(lab, etcd_host)
                figures["restarts"] += 1

            def check(final: bool) -> None:
                revision, kvs = driver.dump()
                assert kvs == gen.model, (
                    f"etcd does not hold the model: only in etcd {sorted(set(kvs) - set(gen.model))[:5]}, "
                    f"only in the model {sorted(set(gen.model) - set(kvs))[:5]}, differing "
                    f"{sorted(k for k in kvs if k in gen.model and kvs[k] != gen.model[k])[:5]}")
                expected = _expected(kvs, settings, schema, renderer)

                def quiescent():
                    rr.assert_alive()
                    applied = status_revision(notify.status())
                    return applied is not None and applied >= revision
                wait_for(quiescent, QUIESCE_TIMEOUT, interval=0.1,
                         what=f"the daemon to apply etcd revision {revision}",
                         describe=lambda: notify.status() + "\n--- daemon log tail ---\n" + rr.log()[-3000:])
                figures["checks"] += 1
                for target_name, target in targets.items():
                    with open(target.config_path, encoding="utf-8") as handle:
                        on_disk = handle.read()
                    in_file = session_names([on_disk])
                    running = set(birds[target_name].bgp_protocols())
                    figures["sessions_max"] = max(figures["sessions_max"], len(in_file))
                    if on_disk != expected[target_name]:
                        mismatches.append(f"check {figures['checks']}: {target.config_path} differs:\n"
                                          + _diff(expected[target_name], on_disk, target_name))
                    if running != in_file:
                        mismatches.append(
                            f"check {figures['checks']}: {target_name} runs {sorted(running ^ in_file)} "
                            f"differently from {target.config_path} (STATUS: {notify.status()})")
                    assert "Evil" not in on_disk, f"injected text reached {target.config_path}"
                if final:
                    rendered = _render_output(rr.cli("render").stdout)
                    for target_name, target in targets.items():
                        if rendered.get(target.config_path) != expected[target_name]:
                            mismatches.append(f"`calico-rr render` differs for {target.config_path}:\n"
                                              + _diff(expected[target_name],
                                                      rendered.get(target.config_path, ""), target_name))

            for index in range(1, OPS + 1):
                if index in restart_at:
                    restart_etcd()
                op = gen.next()
                last_op = op.describe()
                driver.apply(op)
                if index in batch_ends:
                    check(final=index == OPS)
            figures["mismatches"] = len(mismatches)
            assert not mismatches, "\n\n".join(mismatches[:5])
            rr.assert_alive()
        except BaseException:
            print(f"model-based test failed: RR_MODEL_SEED={SEED} RR_MODEL_OPS={OPS} "
                  f"(last op: {last_op}); restarts so far {figures['restarts']}")
            if rr is not None:
                print("===== daemon log (tail) =====\n" + rr.log()[-5000:])
                print("===== last STATUS =====\n" + notify.status())
            raise
        finally:
            if driver is not None:
                driver.close()
            if rr is not None:
                rr.stop()
            notify.close()

    elapsed = time.monotonic() - started
    counts = gen.counts
    write_figures("model", [
        {"fault": "model-based randomized (seed %d)" % SEED,
         "what": f"{OPS} random etcd ops: {counts['put']} puts ({counts['hostile']} hostile values or keys), "
                 f"{counts['del']} deletes, {counts['delprefix']} node removals; real daemon, BIRD + BIRD6",
         "figure": f"{figures['checks']} quiescence checks, {figures['mismatches']} mismatches "
                   f"(config on disk = pure pipeline over etcd = what BIRD runs)"},
        {"fault": "model-based randomized: etcd restarts",
         "what": f"{figures['restarts']} etcd restarts (SIGTERM or SIGKILL, same data dir) at random ops",
         "figure": f"0 mismatches after each; up to {figures['sessions_max']} sessions per config"},
        {"fault": "model-based randomized: run time",
         "what": "whole test incl. lab set-up, 2 shared cores",
         "figure": f"{elapsed:.0f} s"},
    ])
