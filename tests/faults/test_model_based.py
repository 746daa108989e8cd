"""Model-based randomized test: the config BIRD runs always converges to what etcd says.

Thousands of seeded random puts and deletes (reflectors, global AS and peers, nodes, their AS
and peers; a fifth of them hostile: bad JSON, wrong family, injection strings, control
characters, megabyte-ish values, odd keys) go into a real etcd while the real daemon runs in
the reflector's namespace against a real BIRD + BIRD6 pair, or one BIRD 2 or 3 (node BIRDs are not
needed: their sessions stay down). etcd is restarted at random points (SIGTERM or SIGKILL, same data dir).

After every batch, at quiescence (the daemon's STATUS= says it applied etcd's last revision):
  * etcd holds exactly the model (the generator's key -> value dict);
  * if a bad key that every session rests on (global/as_num, our own reflector entry, a global
    peer entry naming us) makes the data unusable: STATUS= says NOT APPLIED, `calico-rr
    render` fails naming it, BIRD still runs what is on disk; then the test deletes those keys
    (the model follows) and checks on as below;
  * each config file equals, byte for byte, an independent full recompute over etcd's keys
    (tests/oracles/v1.py, rendered by Renderer.render) and what `calico-rr render` prints;
  * BIRD runs that plan: per BGP protocol of `show protocols all`, the neighbour address, the
    neighbour AS and the local AS are the planned session's, and there is no other protocol.
    (BIRD 1.6 does not show the local AS of a session that is not up: the test runs once per
    BIRD flavour, and BIRD 2 and 3 show it.)

Reproduce a run: RR_MODEL_SEED=<seed> (printed on failure); RR_MODEL_OPS sets the op count.
"""

from __future__ import annotations

import difflib
import os
import random
import signal
import time

import pytest

from rr_service.app import wiring as components
from rr_service.core.running import read_claims
from rr_service.core.pipeline import Computed
from rr_service.core.safety import session_names
from rr_service.app.settings import load_settings
from tests import prereq
from tests.lab.notify import NotifySocket
from tests.faults.model_helpers import EtcdDriver, OpGenerator, bird_sessions, status_revision
from tests.lab import Lab, Reflector, requirements_missing, need_rr_service, sweep, wait_for
from tests.lab.etcd import start_etcd
from tests.lab.netns import REPO_ROOT
from tests.lab.reflector import PYTHON, _env
from tests.lab.world import ETCD_IP, RR1
from tests.oracles import v1 as oracle

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("RR_MODEL_SEED", "20240611"))
OPS = int(os.environ.get("RR_MODEL_OPS", "3000"))
BATCHES = 10
RESTARTS = 8
QUIESCE_TIMEOUT = 60.0


def _planned(computed, flavour: str) -> dict:
    """{target: {protocol name: (neighbour address, neighbour AS, local AS)}} of a plan."""
    out: dict = {name: {} for name in set(components.family_targets(flavour).values())}
    for family_plan in (computed.plan.v4, computed.plan.v6):
        target = components.family_targets(flavour)[family_plan.family]
        for s in family_plan.sessions:
            out[target][s.name] = (str(s.neighbor), s.neighbor_as, s.local_as)
    return out


def _running(bird, with_local_as: bool) -> dict:
    """The same, as BIRD runs it (`show protocols all`)."""
    return {name: (s.neighbor, s.neighbor_as, s.local_as if with_local_as else None)
            for name, s in bird_sessions(bird.birdc("show protocols all")).items()}


def _diff(want: str, got: str, name: str) -> str:
    lines = difflib.unified_diff(want.splitlines(), got.splitlines(), f"{name} computed from etcd",
                                 f"{name} on disk", lineterm="", n=2)
    return "\n".join(list(lines)[:60])


@pytest.mark.parametrize("flavour", ["bird1", "bird2", "bird3"])
def test_random_puts_deletes_and_etcd_restarts_converge(flavour, figures):
    prereq.need(requirements_missing())
    need_rr_service()
    binary = prereq.bird_binary_or_missing(flavour)
    started = time.monotonic()
    schedule = random.Random(SEED ^ 0x5EED)
    restart_at = set(schedule.sample(range(50, OPS - 50), RESTARTS)) if OPS > 200 else set()
    batch_ends = {OPS * (i + 1) // BATCHES for i in range(BATCHES)}
    gen = OpGenerator(SEED)
    figures_seen = {"restarts": 0, "checks": 0, "unusable": 0, "keys_deleted": 0, "sessions_max": 0, "protocols_compared": 0}
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
            rr = Reflector(lab, rr_host, [etcd.endpoint], flavour=flavour, bird_binary=binary, settings={
                "safety": {"max_drop_share": 1.0, "state_dir": str(lab.tmp / "rr-state")}})
            env = dict(_env(), NOTIFY_SOCKET=notify.path)
            rr.daemon = rr_host.popen([PYTHON, "-m", "rr_service", "--config", str(rr.config), "run"],
                                      name=f"{name}-rr_service", env=env, cwd=str(REPO_ROOT))
            driver = EtcdDriver(etcd_host.ns, etcd.endpoint, "/calico/bgp/v1", lab.tmp / "driver.log")

            settings = load_settings(str(rr.config), environ={})
            renderer = components.renderer_for(settings, flavour)
            targets = components.targets(settings, flavour)
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
                figures_seen["restarts"] += 1

            def compute(kvs):
                # Nodes sharing an address: the node whose session runs keeps it, else the
                # earliest key (etcd's create_revision). What runs is read back from the
                # configs on disk, as the daemon and `calico-rr render` read it; that the
                # running session is never taken over is held to the oracle step by step in
                # tests/test_pipeline.py.
                snap = oracle.snapshot(kvs, driver.created)
                claims = read_claims(target.config_path for target in targets.values())
                the_plan = oracle.plan(snap, components.identity(settings), claims=claims)
                return Computed(the_plan, snap.rejected, renderer.render(the_plan))

            def settled() -> tuple:
                """etcd's revision and keys (= the model), once the daemon has seen that revision."""
                revision, kvs = driver.dump()
                assert kvs == gen.model, (
                    f"etcd does not hold the model: only in etcd {sorted(set(kvs) - set(gen.model))[:5]}, "
                    f"only in the model {sorted(set(gen.model) - set(kvs))[:5]}, differing "
                    f"{sorted(k for k in kvs if k in gen.model and kvs[k] != gen.model[k])[:5]}")

                def quiescent():
                    rr.assert_alive()
                    applied = status_revision(notify.status())
                    return applied is not None and applied >= revision
                wait_for(quiescent, QUIESCE_TIMEOUT, interval=0.1,
                         what=f"the daemon to see etcd revision {revision}",
                         describe=lambda: notify.status() + "\n--- daemon log tail ---\n" + rr.log()[-3000:])
                return revision, kvs

            def check_unusable(kvs, computed) -> None:
                """The data is unusable: nothing of it applied, said so, and then made usable."""
                figures_seen["unusable"] += 1
                status = notify.wait_status(lambda s: "NOT APPLIED" in s, 10, what="STATUS= saying NOT APPLIED")
                rendered = rr.cli("render", check=False, timeout=60)
                if rendered.returncode == 0 or computed.plan.error not in rendered.stderr:
                    mismatches.append(f"`calico-rr render` on unusable data: exit {rendered.returncode}, "
                                      f"stderr {rendered.stderr[-500:]!r}; expected the error {computed.plan.error!r}")
                for target_name, target in targets.items():
                    with open(target.config_path, encoding="utf-8") as handle:
                        in_file = session_names([handle.read()])
                    running = set(birds[target_name].bgp_protocols())
                    if running != in_file:
                        mismatches.append(f"unusable data: {target_name} runs {sorted(running ^ in_file)} "
                                          f"differently from {target.config_path} (STATUS: {status})")
                # Which keys make it unusable: those whose removal changes the plan's error.
                blocking = [r.key for r in computed.rejected
                            if compute({k: v for k, v in kvs.items() if k != r.key}).plan.error != computed.plan.error]
                assert blocking, f"no rejected key explains {computed.plan.error!r}"
                for key in blocking:
                    driver.apply(gen.forget(key))
                figures_seen["keys_deleted"] += len(blocking)

            def check() -> None:
                revision, kvs = settled()
                computed = compute(kvs)
                if computed.plan.error is not None:
                    check_unusable(kvs, computed)
                    revision, kvs = settled()
                    computed = compute(kvs)
                    assert computed.plan.error is None, computed.plan.error
                planned = _planned(computed, flavour)
                figures_seen["checks"] += 1
                check_no = figures_seen["checks"]
                for target_name, target in targets.items():
                    with open(target.config_path, "rb") as handle:
                        on_disk = handle.read()
                    rendered = rr.cli("render", "--only", target_name, timeout=60).stdout.encode()
                    running = _running(birds[target_name], with_local_as=flavour != "bird1")
                    want = {n: (a, nas, las if flavour != "bird1" else None)
                            for n, (a, nas, las) in planned[target_name].items()}
                    figures_seen["sessions_max"] = max(figures_seen["sessions_max"], len(want))
                    figures_seen["protocols_compared"] += len(running)
                    if on_disk != computed.configs[target_name].encode():
                        mismatches.append(f"check {check_no}: {target.config_path} differs from the pure pipeline:\n"
                                          + _diff(computed.configs[target_name], on_disk.decode(), target_name))
                    if on_disk != rendered:
                        mismatches.append(f"check {check_no}: {target.config_path} differs from `calico-rr render`:\n"
                                          + _diff(rendered.decode(), on_disk.decode(), target_name))
                    if running != want:
                        wrong = sorted(n for n in set(running) | set(want) if running.get(n) != want.get(n))
                        mismatches.append(
                            f"check {check_no}: {target_name} runs other sessions than planned: "
                            + "; ".join(f"{n}: runs {running.get(n)}, planned {want.get(n)}" for n in wrong[:5])
                            + f" (STATUS: {notify.status()})")
                    assert b"Evil" not in on_disk, f"injected text reached {target.config_path}"

            for index in range(1, OPS + 1):
                if index in restart_at:
                    restart_etcd()
                op = gen.next()
                last_op = op.describe()
                driver.apply(op)
                if index in batch_ends:
                    check()
            assert not mismatches, "\n\n".join(mismatches[:5])
            rr.assert_alive()
        except BaseException:
            print(f"model-based test failed: RR_MODEL_SEED={SEED} RR_MODEL_OPS={OPS} "
                  f"(last op: {last_op}); restarts so far {figures_seen['restarts']}")
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
    birds_text = {"bird1": "BIRD 1.6 + BIRD6", "bird2": "BIRD 2", "bird3": "BIRD 3"}[flavour]
    compared = "neighbour address and AS" if flavour == "bird1" else "neighbour address and AS, local AS"
    figures.add("model", f"model_{flavour}", fault=f"model-based randomized, {birds_text} (seed {SEED})",
                done=f"{OPS} random etcd ops: {counts['put']} puts ({counts['hostile']} hostile values or "
                     f"keys), {counts['del']} deletes, {counts['delprefix']} node removals; "
                     f"{figures_seen['restarts']} etcd restarts (SIGTERM or SIGKILL, same data dir); "
                     f"real daemon and {birds_text}",
                figure=f"{figures_seen['checks']} quiescence checks ({figures_seen['unusable']} found the data "
                       f"unusable first: not applied, said so, BIRD kept its config; then the "
                       f"{figures_seen['keys_deleted']} keys to blame deleted), 0 mismatches: config on disk = pure "
                       f"pipeline over etcd = `calico-rr render`; {figures_seen['protocols_compared']} "
                       f"protocols in BIRD compared ({compared}), none missing or extra; up to "
                       f"{figures_seen['sessions_max']} sessions per config; {elapsed:.0f} s in all",
                measured={"ops": OPS, **counts, **figures_seen, "seconds": elapsed})
