"""BGP passwords in etcd mode: Calico's v3 resources in a real etcd, the Secret a BGPPeer
names in the test Kubernetes API server (on its own real etcd), read because a kubeconfig is
given (as Calico reads them in etcd mode). Without a kubeconfig nothing Kubernetes is loaded
and such a BGPPeer's sessions are left out, with the warning."""

from __future__ import annotations

import json

import pytest

from tests import prereq

prereq.import_or_missing("etcd3", "python3-etcd3 is not installed")

import etcd3  # noqa: E402

from rr_service.app import wiring  # noqa: E402
from rr_service.app.settings import load_settings  # noqa: E402
from rr_service.calico.v3.resources import PREFIX  # noqa: E402
from rr_service.sources.base import DatastoreUnavailable  # noqa: E402
from rr_service.sources.kubernetes.with_secrets import WithKubernetesSecrets  # noqa: E402
from tests.kubeapi import secret  # noqa: E402
from tests.test_etcd_datastore import own_etcd as calico_etcd  # noqa: E402,F401  (a fixture)
from tests.test_k8s_secrets import PW, api, etcd, fold, passwords  # noqa: E402,F401  (api, etcd: fixtures)
from tests.test_k8s_source import collect  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def calico(calico_etcd):
    """Writes v3 resources into Calico's etcd as calicoctl does."""
    client = etcd3.client(host="127.0.0.1", port=calico_etcd.client_port)
    client.delete_prefix("/calico/")

    def put(plural: str, name: str, spec: dict) -> None:
        kind = {"nodes": "Node", "bgppeers": "BGPPeer"}[plural]
        client.put(f"{PREFIX}/{plural}/{name}", json.dumps(
            {"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": {"name": name}, "spec": spec}))
    try:
        yield put
    finally:
        client.close()


def settings(calico_etcd, monkeypatch, tmp_path, kubeconfig=""):
    monkeypatch.setattr("rr_service.app.settings.DEFAULT_CONFIG_PATH", str(tmp_path / "none.toml"))
    environ = {"IP": "192.0.2.2", "ETCD_ENDPOINTS": calico_etcd.url}
    if kubeconfig:
        environ["KUBECONFIG"] = kubeconfig
    return load_settings(None, environ=environ)


def peer(name: str, secret_name: str) -> dict:
    return {"peerIP": "192.0.2.2", "asNumber": 64512, "nodeSelector": "all()",
            "password": {"secretKeyRef": {"name": secret_name, "key": "password"}}}


def test_a_secret_from_kubernetes_gives_the_etcd_bgppeer_its_password(api, calico, calico_etcd, monkeypatch,
                                                                        tmp_path):
    calico("nodes", "node-1", {"bgp": {"ipv4Address": "192.0.2.21/24"}})
    calico("bgppeers", "to-rr", peer("to-rr", "bgp-secrets"))
    api.create("secrets", secret("bgp-secrets", {"password": PW}), namespace="kube-system")
    api.create("secrets", secret("unrelated", {"password": "never-read"}), namespace="kube-system")
    kubeconfig = api.kubeconfig(tmp_path / "kc", auth="token", ca="data")
    source = wiring.source(settings(calico_etcd, monkeypatch, tmp_path, kubeconfig))
    assert isinstance(source, WithKubernetesSecrets)
    try:
        data = source.read()
        assert data.rules == "v3"
        assert "secrets/bgp-secrets" in data.items and "secrets/unrelated" not in data.items
        items = dict(data.items)
        assert passwords(items)[0] == {"192.0.2.21": PW}
        assert "etcd" in source.describe() and "Kubernetes API" in source.describe()
        source.follow(data.bookmark)

        # a rotated Secret arrives as a change, beside etcd's own changes
        api.registry.update(api.resource("secrets"), "kube-system", "bgp-secrets",
                            secret("bgp-secrets", {"password": "rotated"}))
        calico("nodes", "node-2", {"bgp": {"ipv4Address": "192.0.2.22/24"}})
        seen = collect(source, lambda s: {"secrets/bgp-secrets", "nodes/node-2"} <= {c.key for c in s})
        fold(items, seen)
        assert passwords(items)[0] == {"192.0.2.21": "rotated", "192.0.2.22": "rotated"}

        # a BGPPeer written to etcd that names a Secret not read yet: read at once, then watched
        api.create("secrets", secret("second", {"password": "second-pw"}), namespace="kube-system")
        calico("bgppeers", "to-rr", peer("to-rr", "second"))
        seen = collect(source, lambda s: any(c.key == "secrets/second" for c in s))
        fold(items, seen)
        assert passwords(items)[0] == {"192.0.2.21": "second-pw", "192.0.2.22": "second-pw"}
        api.registry.update(api.resource("secrets"), "kube-system", "second",
                            secret("second", {"password": "second-rotated"}))
        fold(items, collect(source, lambda s: any(c.key == "secrets/second" for c in s)))
        assert passwords(items)[0]["192.0.2.21"] == "second-rotated"
    finally:
        source.close()


def test_the_api_server_down_holds_the_read_when_a_bgppeer_needs_a_secret(api, calico, calico_etcd,
                                                                           monkeypatch, tmp_path):
    """A failed read keeps the configs BIRD runs: better than dropping every session that has
    a password because its Secret could not be read."""
    calico("nodes", "node-1", {"bgp": {"ipv4Address": "192.0.2.21/24"}})
    kubeconfig = api.kubeconfig(tmp_path / "kc", auth="token", ca="data")
    api.stop()
    source = wiring.source(settings(calico_etcd, monkeypatch, tmp_path, kubeconfig))
    try:
        assert "secrets/" not in " ".join(source.read().items)  # no BGPPeer names one: no API call
        calico("bgppeers", "to-rr", peer("to-rr", "bgp-secrets"))
        with pytest.raises(DatastoreUnavailable, match="Kubernetes API .*secret kube-system/bgp-secrets"):
            source.read()
    finally:
        source.close()


def test_without_a_kubeconfig_the_bgppeer_with_a_password_is_left_out(calico, calico_etcd, monkeypatch,
                                                                      tmp_path):
    calico("nodes", "node-1", {"bgp": {"ipv4Address": "192.0.2.21/24"}})
    calico("bgppeers", "to-rr", peer("to-rr", "bgp-secrets"))
    source = wiring.source(settings(calico_etcd, monkeypatch, tmp_path))
    assert not isinstance(source, WithKubernetesSecrets)
    try:
        sessions, warnings = passwords(source.read().items)
    finally:
        source.close()
    assert sessions == {}
    assert any("bgppeer to-rr:" in w and "'bgp-secrets'" in w for w in warnings)
