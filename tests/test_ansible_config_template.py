"""The Ansible role's config.toml template, rendered from the role's own defaults and vars
with jinja2 (the filters it uses are Jinja's own plus Ansible's to_json): what it writes is a
settings file the daemon loads, with each variable in its key. The role itself runs against a
real host in tests/ansible."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
import yaml

from rr_service.app.settings import load_settings

ROLE = Path(__file__).resolve().parents[1] / "packaging" / "ansible" / "roles" / "calico_routereflector"


def render(tmp_path: Path, **overrides) -> Path:
    variables = {**yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
                 **yaml.safe_load((ROLE / "vars" / "main.yml").read_text()),
                 # what the facts would give, and Ansible's own header
                 "calico_rr_ip": "192.0.2.10", "calico_rr_ip6": "2001:db8::10",
                 "ansible_managed": "Ansible managed", **overrides}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    text = env.from_string((ROLE / "templates" / "config.toml.j2").read_text()).render(**variables)
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_defaults_write_a_config_the_daemon_loads(tmp_path):
    s = load_settings(str(render(tmp_path)), environ={})
    assert (s.datastore.type, s.kubernetes.kubeconfig) == ("etcdv3", "")
    assert (s.filters.mode, s.filters.import_limit) == ("pools", 1000)


@pytest.mark.parametrize("mode", ["limits-only", "off"])
def test_kubernetes_and_filter_variables_reach_their_keys(tmp_path, mode):
    s = load_settings(str(render(tmp_path, calico_rr_datastore_type="kubernetes",
                                 calico_rr_kubeconfig="files/rr-kubeconfig.yaml",
                                 calico_rr_kubernetes_secret_namespace="calico-system",
                                 calico_rr_filters_mode=mode, calico_rr_import_limit=0)), environ={})
    assert s.datastore.type == "kubernetes"
    # the controller's path is copied to the host's fixed path (tasks/configure.yml)
    assert s.kubernetes.kubeconfig == "/etc/calico-routereflector/kubeconfig"
    assert s.kubernetes.secret_namespace == "calico-system"
    assert (s.filters.mode, s.filters.import_limit) == (mode, 0)
