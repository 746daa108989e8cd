"""The Kubernetes source against the test API server (a real etcd behind it): what the
daemon gets from it — the v3 data, changes, resyncs, and register's writes."""

from __future__ import annotations

import json

import pytest

from tests import prereq

prereq.import_or_missing("etcd3", "python3-etcd3 is not installed")

from rr_service.calico.v3.resources import parse_resources  # noqa: E402
from rr_service.sources.base import DatastoreUnavailable, ResyncNeeded  # noqa: E402
from rr_service.sources.kubernetes.api import METADATA, METADATA_LIST  # noqa: E402
from rr_service.sources.kubernetes.source import KubeSource  # noqa: E402
from tests.etcdproc import etcd_for_kubeapi  # noqa: E402
from tests.kubeapi import (CRD_GROUP, KubeApiServer, bgp_configuration, bgp_peer,  # noqa: E402
                           ip_pool, realistic_node)
from tests.polling import wait_for  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def etcd():
    yield from etcd_for_kubeapi()


@pytest.fixture(params=["crd", "v3"])
def api(etcd, request):
    etcd_client = etcd
    server = KubeApiServer(etcd_client.url, groups=(request.param,), bookmark_interval=1.0)
    try:
        server.start()
        server.store.delete_prefix("/registry/")
        server.group = CRD_GROUP if request.param == "crd" else "projectcalico.org"
        server.version = "v1" if request.param == "crd" else "v3"
        yield server
    finally:
        server.close()


@pytest.fixture
def source(api, tmp_path):
    src = KubeSource(api.kubeconfig(tmp_path / "kubeconfig", auth="token", ca="data"), watch_timeout=2)
    try:
        yield src
    finally:
        src.close()


def calico(api, fn, *args, **kw):
    return fn(*args, group=api.group, version=api.version, **kw)


def collect(source, until, timeout=15.0):
    """Changes from the source until `until(changes)` holds (a deadline, no fixed sleep)."""
    seen = []

    def step():
        seen.extend(source.changes(0.2))
        return until(seen)
    wait_for(step, timeout, "changes from the Kubernetes source", describe=lambda: repr(seen))
    return seen


def test_read_gives_the_v3_data_of_nodes_peers_configs_and_pools(api, source):
    api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24", asn="64512", labels={"rr": "no"}),
                       realistic_node("node-2", ipv6="2001:db8::22/64")])
    api.create("bgppeers", calico(api, bgp_peer, "to-rr", "192.0.2.2", 64512), group=api.group)
    api.create("bgpconfigurations", calico(api, bgp_configuration, "default", asNumber=64512,
                                           nodeToNodeMeshEnabled=False), group=api.group)
    api.create("ippools", calico(api, ip_pool, "pool4", "10.244.0.0/16"), group=api.group)
    data = source.read()
    assert data.rules == "v3"
    assert sorted(data.items) == ["bgpconfigurations/default", "bgppeers/to-rr", "ippools/pool4",
                                  "nodes/node-1", "nodes/node-2"]
    parsed = parse_resources(data.items)
    assert not parsed.rejected
    assert str(parsed.node("node-1").ipv4) == "192.0.2.21" and str(parsed.node("node-2").ipv6) == "2001:db8::22"
    assert not parsed.mesh_enabled and len(parsed.pools) == 1
    assert all(isinstance(v, int) for v in data.created.values())


def test_changes_follow_and_kubelet_churn_costs_nothing(api, source):
    api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24")])
    source.follow(source.read().bookmark)
    api.create("nodes", realistic_node("node-3", ipv4="192.0.2.23/24"))
    changes = collect(source, lambda seen: any(c.key == "nodes/node-3" for c in seen))
    assert [c.key for c in changes] == ["nodes/node-3"]
    # a status-only rewrite of node-1, as kubelets do all the time: nothing reaches the daemon
    churned = realistic_node("node-1", ipv4="192.0.2.21/24")
    churned["status"]["images"] = []
    api.seed("nodes", [churned])
    api.create("bgppeers", calico(api, bgp_peer, "marker", "192.0.2.9", 64512), group=api.group)
    changes = collect(source, lambda seen: any(c.key == "bgppeers/marker" for c in seen))
    assert [c.key for c in changes] == ["bgppeers/marker"]
    api.store.delete_prefix("/registry/minions/node-3")
    changes = collect(source, lambda seen: any(c.key == "nodes/node-3" for c in seen))
    assert changes[-1].value is None


def test_nodes_are_read_and_watched_as_metadata_only(api, source):
    """A Node's BGP fields are in its metadata; its status (images, conditions) is most of it
    and is never transferred."""
    api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24")])
    before = len(api.requests)
    source.follow(source.read().bookmark)
    api.create("nodes", realistic_node("node-3", ipv4="192.0.2.23/24"))
    changes = collect(source, lambda seen: any(c.key == "nodes/node-3" for c in seen))
    assert json.loads(changes[-1].value)["spec"]["bgp"] == {"ipv4Address": "192.0.2.23/24"}
    node_calls = [(r["query"].get("watch", ""), r["accept"]) for r in list(api.requests)[before:]
                  if r["path"] == "/api/v1/nodes"]
    assert ("", METADATA_LIST) in node_calls and ("1", METADATA) in node_calls
    assert all(accept in (METADATA_LIST, METADATA) for _, accept in node_calls)


def test_a_compacted_watch_asks_for_a_resync_and_a_cut_watch_for_a_new_read(api, source):
    api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24")])
    bookmark = source.read().bookmark
    api.create("nodes", realistic_node("node-3", ipv4="192.0.2.23/24"))
    api.create("nodes", realistic_node("node-4", ipv4="192.0.2.24/24"))
    api.compact()  # the history after the bookmark is gone
    source.follow(bookmark)
    with pytest.raises(ResyncNeeded):
        collect(source, lambda seen: False, timeout=10)
    data = source.read()
    assert "nodes/node-3" in data.items
    source.follow(data.bookmark)
    api.stop()
    with pytest.raises(DatastoreUnavailable):
        collect(source, lambda seen: False, timeout=10)
    with pytest.raises(DatastoreUnavailable):
        source.read()
    api.start()
    assert "nodes/node-3" in wait_for(lambda: source.read().items, 15, "a read after the restart",
                                      retry_on=(DatastoreUnavailable,))


def test_register_writes_update_and_delete_a_bgppeer(api, source):
    key = "bgppeers/rr-a"
    assert source.get(key) is None

    def change(existing):
        res = json.loads(existing) if existing else {"kind": "BGPPeer", "metadata": {"name": "rr-a"}, "spec": {}}
        res["spec"]["peerIP"] = "192.0.2.2"
        res["metadata"].setdefault("labels", {})["calico-rr/reflector"] = "rr-a"
        return json.dumps(res).encode()
    before, _ = source.update(key, change)
    assert before is None
    stored = json.loads(source.get(key))
    assert stored["spec"]["peerIP"] == "192.0.2.2"
    before, _ = source.update(key, change)
    assert before is not None
    assert source.where(key).endswith("/bgppeers/rr-a") and api.group in source.where(key)
    assert source.delete(key) and not source.delete(key)


def shipped_rules(without: tuple = ()) -> list:
    """The ClusterRole of packaging/kubernetes/rbac.yaml as the test API server's rules."""
    import yaml
    from tests.kubeapi.auth import Rule
    docs = yaml.safe_load_all((prereq.REPO / "packaging" / "kubernetes" / "rbac.yaml").read_text())
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    rules = []
    for r in role["rules"]:
        resources = tuple(f"{res}.{g}" if g else res for g in r["apiGroups"] for res in r["resources"])
        verbs = tuple(v for v in r["verbs"] if v not in without)
        rules.append(Rule(verbs, resources))
    return rules


def rbac_source(api, tmp_path, rules) -> KubeSource:
    api.add_token("rr-token", "system:serviceaccount:kube-system:calico-routereflector")
    api.set_rules("system:serviceaccount:kube-system:calico-routereflector", rules)
    return KubeSource(api.kubeconfig(tmp_path / "rr-kubeconfig", auth="token", ca="file", token="rr-token"))


def test_the_shipped_rbac_is_enough_to_read_and_register(api, tmp_path):
    api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24")])
    source = rbac_source(api, tmp_path, shipped_rules())
    try:
        assert "nodes/node-1" in source.read().items
        source.update("bgppeers/calico-rr-rr1-ipv4", lambda old: json.dumps(
            {"kind": "BGPPeer", "metadata": {"name": "calico-rr-rr1-ipv4"}, "spec": {"peerIP": "192.0.2.10"}}).encode())
        assert source.delete("bgppeers/calico-rr-rr1-ipv4")
    finally:
        source.close()


def test_missing_rbac_names_the_verb_and_resource_refused(api, tmp_path):
    source = rbac_source(api, tmp_path, shipped_rules(without=("create",)))
    try:
        source.read()
        with pytest.raises(DatastoreUnavailable, match=r"create bgppeers/calico-rr-rr1-ipv4: 403 Forbidden"):
            source.update("bgppeers/calico-rr-rr1-ipv4", lambda old: json.dumps(
                {"kind": "BGPPeer", "metadata": {"name": "calico-rr-rr1-ipv4"}, "spec": {}}).encode())
    finally:
        source.close()


def test_watches_the_server_ends_are_opened_again_from_where_they_were(api, tmp_path):
    source = KubeSource(api.kubeconfig(tmp_path / "kc", auth="token", ca="file"), watch_timeout=1)
    try:
        source.follow(source.read().bookmark)
        def watches():
            return len([r for r in list(api.requests) if r["query"].get("watch") in ("1", "true")])
        opened = watches()
        wait_for(lambda: watches() >= opened + 4, 15,
                 "the watches to end at their timeoutSeconds and be opened again")
        api.create("nodes", realistic_node("node-5", ipv4="192.0.2.25/24"))
        changes = collect(source, lambda seen: any(c.key == "nodes/node-5" for c in seen))
        assert [c.key for c in changes] == ["nodes/node-5"]
    finally:
        source.close()


def test_an_exec_credential_the_server_refuses_is_asked_for_again(api, tmp_path):
    from tests.kubeapi import exec_calls, set_exec_token
    api.add_token("first", "admin", ["system:masters"])
    path = api.kubeconfig(tmp_path / "kc", auth="exec", ca="file", token="first")
    source = KubeSource(path)
    try:
        source.read()
        api.revoke_token("first")
        api.add_token("second", "admin", ["system:masters"])
        set_exec_token(path, "second", lifetime=3600)
        assert source.read().rules == "v3"
        assert exec_calls(path) == 2
    finally:
        source.close()


@pytest.mark.parametrize("auth", ["token", "token-file", "cert-files", "cert-data", "exec"])
@pytest.mark.parametrize("ca", ["file", "data"])
def test_every_kubeconfig_kubectl_accepts_reads(api, tmp_path, auth, ca):
    """The kubeconfig variants tests/test_kubeapi_fidelity.py proves kubectl and
    python3-kubernetes accept, with real TLS (client certificates, the IP in the SAN)."""
    api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24")])
    source = KubeSource(api.kubeconfig(tmp_path / "kc", auth=auth, ca=ca))
    try:
        assert "nodes/node-1" in source.read().items
    finally:
        source.close()


def test_a_wrong_ca_is_refused_with_a_clear_error(api, tmp_path, etcd):
    other = KubeApiServer(etcd.url, groups=("crd",))
    try:
        path = api.kubeconfig(tmp_path / "kc", auth="token", ca="file")
        text = open(path).read().replace(api.ca_cert, other.ca_cert)
        open(path, "w").write(text)
        with pytest.raises(DatastoreUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            KubeSource(path).read()
    finally:
        other.close()


def test_lists_are_paged_and_an_expired_continue_token_fails_clearly(api, source, monkeypatch):
    from rr_service.sources.kubernetes import api as kube_api
    monkeypatch.setattr(kube_api, "PAGE", 2)
    api.seed("nodes", [realistic_node(f"node-{i}", ipv4=f"192.0.2.{30 + i}/24") for i in range(5)])
    # the first read takes the API server's watch cache (resourceVersion 0): whole, unpaged
    assert len([k for k in source.read().items if k.startswith("nodes/")]) == 5
    first = [r for r in list(api.requests) if r["path"] == "/api/v1/nodes"]
    assert [r["query"].get("resourceVersion") for r in first] == ["0"]
    # a later read (after a 410 or an outage) reads etcd, page by page
    assert len([k for k in source.read().items if k.startswith("nodes/")]) == 5
    later = [r for r in list(api.requests)[len(first):] if r["path"] == "/api/v1/nodes"]
    assert "resourceVersion" not in later[0]["query"]
    assert len([r for r in later if r["query"].get("continue")]) >= 2
    api.expire_continue_tokens = True  # every continue token 410: listing again cannot help
    try:
        with pytest.raises(DatastoreUnavailable, match="continue tokens keep expiring"):
            source.read()
    finally:
        api.expire_continue_tokens = False
