"""Conformance with Calico itself, on Calico's own confd fixtures
(tests/conformance/calico-confd, see its README). For every case, in one real etcd that
holds the case's resources as calicoctl stores them, our reflector runs as node `kube-master`
the way the daemon runs it, and its BGP sessions, router id and listen port must equal those of
Calico's bird.cfg / bird6.cfg:

1. step 1: the case's input.yaml is put into etcd; the reflector starts from a snapshot
   (its etcd source: schema detection, snapshot; Pipeline.reset) and follows from there;
2. every further step (selectors/step2): its input.yaml is applied to the same etcd as
   `calicoctl apply` does (each resource replaced); the reflector takes the changes in from
   its etcd watch, one Pipeline.change per event, never a fresh read;
3. then, as Calico's own suite does between cases, delete.yaml is deleted and step 1's input
   applied again, through the watch: after the deletes the result must equal a fresh read of
   the same etcd, and after the re-apply Calico's step 1 again.

This is the daemon's in-process path (the etcd Source's snapshot and watch, Pipeline), chosen over `calico-rr run` against BIRD: it is the code that turns etcd's events
into configs, and the comparison is made on the configs themselves, without BIRD's timing in
the way. The `render` CLI would only exercise the fresh read. That BIRD accepts the same
configs is test_bird_accepts_our_configs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conformance_bird import (conformance_steps, globals_from_bird_config,
                              sessions_from_bird_config)
from etcdproc import EtcdProc, etcd_installed

yaml = pytest.importorskip("yaml", reason="python3-yaml is needed to read the fixtures' input.yaml")
pytest.importorskip("etcd3", reason="python3-etcd3 is not installed")

from rr_service.app import wiring  # noqa: E402
from rr_service.calico import rule_set  # noqa: E402
from rr_service.core.pipeline import Computed, Pipeline  # noqa: E402
from rr_service.core.render import Renderer  # noqa: E402
from rr_service.app.settings import load_settings  # noqa: E402
from rr_service.calico.v3.resources import PREFIX  # noqa: E402
from tests import prereq  # noqa: E402
from tests.tomlfile import write_settings  # noqa: E402

# A real etcd: `make test-unit` (no etcd) leaves these out instead of skipping them.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not etcd_installed(), reason="etcd / etcdctl not installed"),
]

PLURALS = {"Node": "nodes", "BGPPeer": "bgppeers", "BGPConfiguration": "bgpconfigurations",
           "IPPool": "ippools"}
STEPS = conformance_steps()
ME = "kube-master"
WATCH_DEADLINE = 10.0  # seconds for etcd's watch to deliver a change we made


def as_calicoctl_stores(resource: dict) -> dict:
    """YAML as read by calicoctl into Go structs, then JSON: label values are strings,
    an empty spec is an object."""
    resource = json.loads(json.dumps(resource))
    labels = (resource.get("metadata") or {}).get("labels")
    if labels:
        resource["metadata"]["labels"] = {
            k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in labels.items()
        }
    if resource.get("spec") is None:
        resource["spec"] = {}
    return resource


def resources(path: Path) -> list[tuple[str, dict]]:
    """(etcd key, resource as stored) for each resource of a fixture file."""
    out = []
    for resource in yaml.safe_load_all(path.read_text()):
        if resource:
            resource = as_calicoctl_stores(resource)
            out.append((f"{PREFIX}/{PLURALS[resource['kind']]}/{resource['metadata']['name']}", resource))
    return out


def apply(etcd: EtcdProc, path: Path) -> int:
    """`calicoctl apply -f path`: every resource replaced. Returns etcd's revision after it."""
    for key, resource in resources(path):
        etcd.ctl("put", key, json.dumps(resource))
    return etcd.revision()


def delete(etcd: EtcdProc, path: Path) -> int:
    """`calicoctl delete -f path`. Returns etcd's revision after it."""
    for key, _resource in resources(path):
        assert etcd.ctl("del", key).stdout.strip() == "1", f"{key} was not there to delete"
    return etcd.revision()


def settings_for(etcd: EtcdProc, folder: Path, first_step):
    """Our settings as the kube-master host's: its addresses from its Node of step 1."""
    me = dict(resources(first_step.inputs[0]))[f"{PREFIX}/nodes/{ME}"]["spec"]["bgp"]
    ip = me["ipv4Address"].split("/")[0]
    ip6 = me.get("ipv6Address", "").split("/")[0]
    path = write_settings(folder / "config.toml", {"reflector": {"ip": ip, "ip6": ip6, "node_name": ME},
                                                   "etcd": {"endpoints": [etcd.url], "schema": "auto"}})
    return load_settings(path, environ={})


class WatchingReflector:
    """Our reflector as the daemon runs it, in process: one snapshot, then etcd's watch."""

    def __init__(self, settings):
        self.settings = settings
        self.source = wiring.source(settings)
        data = self.source.read()
        self.rules = data.rules
        self.pipeline = Pipeline(rule_set(data.rules), wiring.identity(settings), Renderer(flavour="bird1"))
        self.pipeline.reset(data.items)
        self.source.follow(data.bookmark)
        self.changes = 0  # changes of the rule set's keys taken in from the watch

    def take_in(self, revision: int) -> Computed:
        """Fold the watch's events into the pipeline until etcd's `revision` arrived, as the
        daemon does, and compute."""
        deadline = time.monotonic() + WATCH_DEADLINE
        while int(self.source.position().split()[1]) < revision:
            left = deadline - time.monotonic()
            assert left > 0, f"etcd's watch stopped at {self.source.position()}, waiting for {revision}"
            for change in self.source.changes(min(left, 0.5)):
                self.changes += self.pipeline.change(change.key, change.value)
        return self.pipeline.compute()

    def close(self) -> None:
        self.source.close()


def fresh_read(settings) -> Computed:
    """What `calico-rr render` (and a daemon starting now) computes from etcd."""
    _data, computed = wiring.compute_now(settings, Renderer(flavour="bird1"))
    return computed


def assert_like_calicos(computed: Computed, case, when: str) -> None:
    assert computed.rejected == (), when
    assert computed.plan.warnings == (), when
    for family, target in ((4, "bird"), (6, "bird6")):
        ours = sessions_from_bird_config(computed.configs[target])
        calicos = case.sessions(family)
        assert ours == calicos, (f"{when} IPv{family}:\nours    {sorted(ours.values(), key=str)}\n"
                                 f"calico's {sorted(calicos.values(), key=str)}")
        # the router id, and the port BIRD listens on: the one the other nodes connect to
        assert globals_from_bird_config(computed.configs[target]) == case.globals(family), f"{when} IPv{family}"


@pytest.fixture(scope="module")
def etcd():
    with EtcdProc() as server:
        yield server


@pytest.mark.parametrize("name", sorted(STEPS))
def test_sessions_equal_calicos(etcd, tmp_path, name):
    steps = STEPS[name]
    etcd.ctl("del", "--prefix", "/calico/")
    apply(etcd, steps[0].inputs[0])
    settings = settings_for(etcd, tmp_path, steps[0])
    reflector = WatchingReflector(settings)
    try:
        assert reflector.rules == "v3"
        assert_like_calicos(reflector.pipeline.compute(), steps[0], f"{steps[0].name} (snapshot)")

        for step in steps[1:]:
            revision = apply(etcd, step.inputs[-1])
            before = reflector.changes
            computed = reflector.take_in(revision)
            assert reflector.changes > before, f"{step.name}: the watch delivered none of its changes"
            assert_like_calicos(computed, step, f"{step.name} (watch)")

        # Calico's suite between cases: delete.yaml; then the case again, all through the watch
        computed = reflector.take_in(delete(etcd, steps[0].directory / "delete.yaml"))
        fresh = fresh_read(settings)
        assert (computed.plan, computed.configs) == (fresh.plan, fresh.configs), \
            f"{name}: after delete.yaml the watch path differs from a fresh read of etcd"
        assert_like_calicos(reflector.take_in(apply(etcd, steps[0].inputs[0])), steps[0],
                            f"{steps[0].name} (watch, after delete.yaml and apply again)")
    finally:
        reflector.close()


BIRD1 = {"bird": shutil.which("bird") or "/usr/sbin/bird", "bird6": shutil.which("bird6") or "/usr/sbin/bird6"}
@pytest.mark.parametrize("flavour", ["bird1", "bird2", "bird3"])
@pytest.mark.parametrize("name", sorted(STEPS))
def test_bird_accepts_our_configs(etcd, tmp_path, name, flavour):
    binaries = {"bird": prereq.bird_binary_or_missing(flavour)} if flavour != "bird1" else BIRD1
    if not all(Path(binary).exists() for binary in binaries.values()):
        pytest.skip(f"no {flavour} binary here")
    etcd.ctl("del", "--prefix", "/calico/")
    settings = settings_for(etcd, tmp_path, STEPS[name][0])
    for step in STEPS[name]:
        apply(etcd, step.inputs[-1])
        data, computed = wiring.compute_now(settings, wiring.renderer_for(settings, flavour))
        for target, text in computed.configs.items():
            path = tmp_path / f"{target}.conf"
            path.write_text(text)
            result = subprocess.run([binaries[target], "-p", "-c", str(path)], capture_output=True, text=True)
            assert result.returncode == 0, f"{step.name}: {result.stderr}{text}"
