"""Conformance with Calico itself: for every case of Calico's own confd fixtures
(/work/shared/conformance/calico-confd, see its README), load the v3 input into a real etcd as
calicoctl stores it, compute our configs as node `kube-master` through the daemon's own path
(schema detection and snapshot from etcd, schema.to_plan, render), and compare the BGP
sessions of our bird.conf / bird6.conf with those of Calico's bird.cfg / bird6.cfg.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conformance_bird import (CONFORMANCE_DIR, conformance_cases, globals_from_bird_config,
                              sessions_from_bird_config)
from etcdproc import EtcdProc, etcd_installed

yaml = pytest.importorskip("yaml", reason="python3-yaml is needed to read the fixtures' input.yaml")
pytest.importorskip("etcd3", reason="python3-etcd3 is not installed")

from rr_service import components  # noqa: E402
from rr_service.render import Renderer  # noqa: E402
from rr_service.settings import load_settings  # noqa: E402
from rr_service.v3.resources import PREFIX  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not CONFORMANCE_DIR.is_dir(), reason=f"no conformance fixtures at {CONFORMANCE_DIR}"),
    pytest.mark.skipif(not etcd_installed(), reason="etcd / etcdctl not installed"),
]

PLURALS = {"Node": "nodes", "BGPPeer": "bgppeers", "BGPConfiguration": "bgpconfigurations",
           "IPPool": "ippools"}
CASES = {case.name: case for case in conformance_cases()} if CONFORMANCE_DIR.is_dir() else {}
ME = "kube-master"


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


def load_case(etcd: EtcdProc, case) -> dict:
    etcd.ctl("del", "--prefix", "/calico/")
    stored = {}
    for path in case.inputs:
        for resource in yaml.safe_load_all(path.read_text()):
            if not resource:
                continue
            resource = as_calicoctl_stores(resource)
            key = f"{PREFIX}/{PLURALS[resource['kind']]}/{resource['metadata']['name']}"
            etcd.ctl("put", key, json.dumps(resource))
            stored[key] = resource
    return stored


def settings_for(etcd: EtcdProc, tmp_path, stored: dict):
    me = stored[f"{PREFIX}/nodes/{ME}"]["spec"]["bgp"]
    ip = me["ipv4Address"].split("/")[0]
    ip6 = me.get("ipv6Address", "").split("/")[0]
    path = tmp_path / "config.toml"
    path.write_text(
        f'[reflector]\nip = "{ip}"\nip6 = "{ip6}"\nnode_name = "{ME}"\n'
        f'[etcd]\nendpoints = ["{etcd.url}"]\nschema = "auto"\n'
    )
    return load_settings(str(path), environ={})


@pytest.fixture(scope="module")
def etcd():
    with EtcdProc() as server:
        yield server


@pytest.mark.parametrize("name", sorted(CASES))
def test_sessions_equal_calicos(etcd, tmp_path, name):
    case = CASES[name]
    stored = load_case(etcd, case)
    settings = settings_for(etcd, tmp_path, stored)

    # The daemon's path: auto-detect, snapshot, keep the schema's keys, plan, render.
    schema, store, raw, _revision = components.read_with_schema(settings)
    store.close()
    assert schema.name == "v3"
    raw = {key: value for key, value in raw.items() if schema.keep(key)}
    plan, rejected = schema.to_plan(raw, components.identity(settings))
    assert rejected == ()
    assert plan.warnings == ()
    configs = Renderer(flavour="bird1").render(plan)

    for family, target in ((4, "bird"), (6, "bird6")):
        ours = sessions_from_bird_config(configs[target])
        calicos = case.sessions(family)
        assert ours == calicos, f"{name} IPv{family}:\nours    {sorted(ours.values(), key=str)}\ncalico's {sorted(calicos.values(), key=str)}"
        # router id, and the port BIRD listens on: the one the other nodes connect to
        assert globals_from_bird_config(configs[target]) == case.globals(family), f"{name} IPv{family}"


BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRD6 = shutil.which("bird6") or "/usr/sbin/bird6"


@pytest.mark.skipif(not shutil.which(BIRD) or not shutil.which(BIRD6), reason="BIRD 1.6 not installed")
@pytest.mark.parametrize("name", sorted(CASES))
def test_bird_accepts_our_configs(etcd, tmp_path, name):
    stored = load_case(etcd, CASES[name])
    settings = settings_for(etcd, tmp_path, stored)
    schema, store, raw, _revision = components.read_with_schema(settings)
    store.close()
    plan, _rejected = schema.to_plan(raw, components.identity(settings))
    configs = Renderer(flavour="bird1").render(plan)
    for binary, target in ((BIRD, "bird"), (BIRD6, "bird6")):
        path = tmp_path / f"{target}.conf"
        path.write_text(configs[target])
        result = subprocess.run([binary, "-p", "-c", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr + configs[target]
