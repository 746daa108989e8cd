"""Conformance with Calico in the Kubernetes API datastore: Calico's own confd fixtures
(tests/conformance/calico-confd, as in tests/test_conformance.py) served by the test API server
(tests/kubeapi, a real etcd behind it) the way a Kubernetes-datastore cluster holds them, and
read by the product's Kubernetes source as the daemon reads them. The sessions, router id and
listen port must equal Calico's bird.cfg / bird6.cfg, in both API groups Calico may use.

- each fixture Node becomes a Kubernetes v1 Node: its labels the Node's labels, its BGP fields
  the annotations calico-node writes (projectcalico.org/IPv4Address, IPv6Address, ASNumber,
  RouteReflectorClusterID);
- BGPPeers, BGPConfigurations and IPPools become custom resources of crd.projectcalico.org/v1
  (what Calico installs) or projectcalico.org/v3 (its native API, chosen by discovery when
  the CRD group is absent), with the fixture's spec;
- step 1 is a fresh read (list); every further step reaches the reflector through the watches,
  and at the end the watch path must equal a fresh read.
"""

from __future__ import annotations

import json
import time

import pytest

from tests import prereq

prereq.import_or_missing("etcd3", "python3-etcd3 is not installed")
yaml = prereq.import_or_missing("yaml", "python3-yaml is needed to read the fixtures' input.yaml")

from rr_service.app import wiring  # noqa: E402
from rr_service.app.settings import load_settings  # noqa: E402
from rr_service.calico import rule_set  # noqa: E402
from rr_service.core.pipeline import Computed, Pipeline  # noqa: E402
from rr_service.core.render import Renderer  # noqa: E402
from tests.etcdproc import etcd_for_kubeapi  # noqa: E402
from tests.kubeapi import CRD_GROUP, KubeApiServer  # noqa: E402
from tests.test_conformance import ME, PLURALS, STEPS, assert_like_calicos, resources  # noqa: E402
from tests.tomlfile import write_settings  # noqa: E402

pytestmark = pytest.mark.integration

ANNOTATION = "projectcalico.org/"
GROUPS = {"crd": (CRD_GROUP, "v1"), "v3": ("projectcalico.org", "v3")}
WATCH_DEADLINE = 15.0  # seconds for the source's watches to deliver what a step wrote


def kubernetes_node(resource: dict) -> dict:
    """A fixture's v3 Node as a Kubernetes Node: labels as labels, BGP fields as calico-node's
    annotations."""
    metadata = resource["metadata"]
    bgp = (resource.get("spec") or {}).get("bgp") or {}
    annotations = {}
    for field, annotation in (("ipv4Address", "IPv4Address"), ("ipv6Address", "IPv6Address"),
                              ("asNumber", "ASNumber"), ("routeReflectorClusterID", "RouteReflectorClusterID")):
        if bgp.get(field) not in (None, ""):
            annotations[ANNOTATION + annotation] = str(bgp[field])
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": metadata["name"], "labels": metadata.get("labels") or {},
                         "annotations": annotations},
            "spec": {}, "status": {}}


def custom_resource(resource: dict, group: str) -> dict:
    name, version = GROUPS[group]
    metadata = resource["metadata"]
    out = {"apiVersion": f"{name}/{version}", "kind": resource["kind"],
           "metadata": {"name": metadata["name"]}, "spec": resource.get("spec") or {}}
    if metadata.get("labels"):
        out["metadata"]["labels"] = metadata["labels"]
    return out


def apply(api: KubeApiServer, group: str, path) -> set:
    """The fixture file's resources written to the API's store, each replaced (as `kubectl
    apply` leaves them); the keys the Kubernetes source names them by."""
    keys = set()
    for _key, resource in resources(path):
        plural = PLURALS[resource["kind"]]
        if plural == "nodes":
            api.seed("nodes", [kubernetes_node(resource)])
        else:
            api.seed(plural, [custom_resource(resource, group)], group=GROUPS[group][0])
        keys.add(f"{plural}/{resource['metadata']['name']}")
    return keys


@pytest.fixture(scope="module")
def etcd():
    yield from etcd_for_kubeapi()


@pytest.fixture(scope="module", params=sorted(GROUPS))
def api(etcd, request):
    server = KubeApiServer(etcd.url, groups=(request.param,), bookmark_interval=1.0)
    server.group_name = request.param
    try:
        server.start()
        yield server
    finally:
        server.close()


def settings_for(api: KubeApiServer, tmp_path, first_step):
    me = dict(resources(first_step.inputs[0]))[f"/calico/resources/v3/projectcalico.org/nodes/{ME}"]["spec"]["bgp"]
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig", auth="token", ca="file")
    path = write_settings(tmp_path / "config.toml", {
        "reflector": {"ip": me["ipv4Address"].split("/")[0], "ip6": me.get("ipv6Address", "").split("/")[0],
                      "node_name": ME},
        "datastore": {"type": "kubernetes"}, "kubernetes": {"kubeconfig": kubeconfig}})
    return load_settings(path, environ={})


class WatchingReflector:
    """The daemon's path in process: the Kubernetes source's list, then its watches."""

    def __init__(self, settings):
        self.source = wiring.source(settings)
        data = self.source.read()
        assert data.rules == "v3"
        self.pipeline = Pipeline(rule_set(data.rules), wiring.identity(settings), Renderer(flavour="bird1"))
        self.pipeline.reset(data.items)
        self.source.follow(data.bookmark)

    def take_in(self, keys: set) -> Computed:
        """Fold the watches' changes in until each of `keys` was delivered, then compute."""
        waiting = set(keys)
        deadline = time.monotonic() + WATCH_DEADLINE
        while waiting:
            left = deadline - time.monotonic()
            assert left > 0, f"the watches delivered nothing for {sorted(waiting)} ({self.source.position()})"
            for change in self.source.changes(min(left, 0.5)):
                self.pipeline.change(change.key, change.value)
                waiting.discard(change.key)
        return self.pipeline.compute()

    def close(self) -> None:
        self.source.close()


@pytest.mark.parametrize("name", sorted(STEPS))
def test_sessions_equal_calicos_from_the_kubernetes_api(api, tmp_path, name):
    steps = STEPS[name]
    api.store.delete_prefix("/registry/")
    apply(api, api.group_name, steps[0].inputs[0])
    settings = settings_for(api, tmp_path, steps[0])
    reflector = WatchingReflector(settings)
    try:
        assert_like_calicos(reflector.pipeline.compute(), steps[0], f"{steps[0].name} (list, {api.group_name})")
        for step in steps[1:]:
            computed = reflector.take_in(apply(api, api.group_name, step.inputs[-1]))
            assert_like_calicos(computed, step, f"{step.name} (watch, {api.group_name})")
        computed = reflector.pipeline.compute()
        _data, fresh = wiring.compute_now(settings, Renderer(flavour="bird1"))
        assert (computed.plan, computed.configs) == (fresh.plan, fresh.configs), \
            f"{name}: the watch path differs from a fresh read of the API"
    finally:
        reflector.close()


def test_a_fixture_node_becomes_what_calico_node_writes():
    node = kubernetes_node({"kind": "Node", "metadata": {"name": "n", "labels": {"rr": "true"}},
                            "spec": {"bgp": {"ipv4Address": "10.0.0.1/24", "asNumber": 64512,
                                             "routeReflectorClusterID": "224.0.0.1"}}})
    assert node["metadata"]["annotations"] == {
        "projectcalico.org/IPv4Address": "10.0.0.1/24", "projectcalico.org/ASNumber": "64512",
        "projectcalico.org/RouteReflectorClusterID": "224.0.0.1"}
    assert json.loads(json.dumps(node))["metadata"]["labels"] == {"rr": "true"}
