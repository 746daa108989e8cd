"""The test Kubernetes API server (tests/kubeapi) behaves as kube-apiserver for what a Calico
route reflector reads, witnessed by Debian's own clients against a real etcd:
kubectl 1.20 (package kubernetes-client, unpacked) and python3-kubernetes 22.6, plus raw HTTP
for the semantics clients hide (status codes, Status bodies, how watches end)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests import prereq

prereq.import_or_missing("etcd3", "python3-etcd3 is not installed")

from tests.etcdproc import etcd_for_kubeapi  # noqa: E402
from tests.kubeapi import (CRD_GROUP, KubeApiServer, bgp_peer, exec_calls,  # noqa: E402
                           kubectl_or_missing, popen_kubectl, realistic_node, run_kubectl,
                           secret)
from tests.kubeapi.httpclient import Http  # noqa: E402
from rr_service.sources.kubernetes.api import METADATA, METADATA_LIST  # noqa: E402
from tests.polling import wait_for  # noqa: E402

REPO = prereq.REPO

pytestmark = pytest.mark.integration

NODES = "/api/v1/nodes"
PEERS = f"/apis/{CRD_GROUP}/v1/bgppeers"
SECRETS = "/api/v1/namespaces/kube-system/secrets"

CALICO_YAML = """\
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata:
  name: peer-a
spec:
  peerIP: 192.0.2.10
  asNumber: {asn}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 64512
  nodeToNodeMeshEnabled: false
---
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 10.244.0.0/16
  ipipMode: Never
"""


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def etcd():
    yield from etcd_for_kubeapi()


@pytest.fixture(scope="module")
def api(etcd):
    server = KubeApiServer(etcd.url, groups=("crd",), bookmark_interval=1.0)
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def clean(api):
    """An empty cluster for each test; rules, tokens and hooks back to normal after it."""
    for prefix in ("/registry/minions/", "/registry/secrets/", f"/registry/{CRD_GROUP}/"):
        api.store.delete_prefix(prefix)
    wait_for(lambda: api.open_watches == 0, 10, "the last test's watches to end")
    yield api
    api.expire_continue_tokens = False
    api.access.rules.clear()
    if not api.running:
        api.start()
    assert not api.errors, api.errors[0][1]


@pytest.fixture(scope="module")
def kubectl():
    return kubectl_or_missing()


@pytest.fixture(scope="module")
def k8s():
    return prereq.import_or_missing("kubernetes",
                                    "python3-kubernetes is not installed (apt install "
                                    "python3-kubernetes)")


def k(kubectl, config, *args, ok=True):
    result = run_kubectl(kubectl, config, *args)
    if ok:
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result


def seed_nodes(api, names, bulk=False):
    return api.seed("nodes", [realistic_node(n, ipv4=f"192.0.2.{i + 1}/24", asn="64512",
                                             bulk=bulk) for i, n in enumerate(names)])


# -- kubectl (Debian's 1.20) -------------------------------------------------------------------
def test_kubectl_get_nodes(clean, kubectl, tmp_path):
    seed_nodes(clean, ["node-a", "node-b"], bulk=True)
    config = clean.kubeconfig(tmp_path / "kubeconfig")
    table = k(kubectl, config, "get", "nodes").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [line.split()[:2] for line in table[1:]] == [["node-a", "Ready"], ["node-b", "Ready"]]
    listed = json.loads(k(kubectl, config, "get", "nodes", "-o", "json").stdout)
    annotations = listed["items"][0]["metadata"]["annotations"]
    assert annotations["projectcalico.org/IPv4Address"] == "192.0.2.1/24"


def test_kubectl_apply_get_update_delete_calico_resources(clean, kubectl, tmp_path):
    config = clean.kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "calico.yaml"
    manifest.write_text(CALICO_YAML.format(asn=64512))
    # no --validate=false: the server's minimal /openapi/v2 satisfies kubectl's validation
    out = k(kubectl, config, "apply", "-f", str(manifest)).stdout
    assert "bgppeer.crd.projectcalico.org/peer-a created" in out
    assert "bgpconfiguration.crd.projectcalico.org/default created" in out
    assert "ippool.crd.projectcalico.org/pool-a created" in out

    peers = json.loads(k(kubectl, config, "get", "bgppeers.crd.projectcalico.org",
                         "-o", "json").stdout)["items"]
    assert [(p["metadata"]["name"], p["spec"]) for p in peers] == \
        [("peer-a", {"peerIP": "192.0.2.10", "asNumber": 64512})]
    first = peers[0]["metadata"]
    assert first["generation"] == 1 and first["uid"] and first["creationTimestamp"]

    manifest.write_text(CALICO_YAML.format(asn=64513))
    out = k(kubectl, config, "apply", "-f", str(manifest)).stdout
    assert "bgppeer.crd.projectcalico.org/peer-a configured" in out
    assert "ippool.crd.projectcalico.org/pool-a unchanged" in out
    patches = [r for r in clean.requests if r["method"] == "PATCH"]
    assert patches and all(r["content_type"] == "application/merge-patch+json" for r in patches)
    after = json.loads(k(kubectl, config, "get", "bgppeer.crd.projectcalico.org", "peer-a",
                         "-o", "json").stdout)
    assert after["spec"]["asNumber"] == 64513 and after["metadata"]["generation"] == 2
    assert int(after["metadata"]["resourceVersion"]) > int(first["resourceVersion"])
    assert after["metadata"]["uid"] == first["uid"]

    out = k(kubectl, config, "delete", "-f", str(manifest)).stdout
    assert 'bgppeer.crd.projectcalico.org "peer-a" deleted' in out
    missing = k(kubectl, config, "get", "bgppeers.crd.projectcalico.org", "peer-a", ok=False)
    assert missing.returncode != 0
    assert 'bgppeers.crd.projectcalico.org "peer-a" not found' in missing.stderr


def test_kubectl_watch_sees_a_node_created_through_the_api(clean, kubectl, tmp_path):
    config = clean.kubeconfig(tmp_path / "kubeconfig")
    output = tmp_path / "watch.out"
    with open(output, "wb") as sink:
        proc = popen_kubectl(kubectl, config, "get", "nodes", "--watch-only", stdout=sink)
    try:
        wait_for(lambda: clean.open_watches, 10, "kubectl to open its watch")
        Http(clean).call("POST", NODES, realistic_node("node-watched", ipv4="192.0.2.9/24"))
        wait_for(lambda: "node-watched" in output.read_text(), 10, "kubectl to print the node")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert "Ready" in output.read_text()


@pytest.mark.parametrize("auth,ca", [("token", "data"), ("token-file", "file"),
                                     ("cert-files", "file"), ("cert-data", "data"),
                                     ("exec", "file")])
def test_kubectl_with_each_kubeconfig_variant(clean, kubectl, tmp_path, auth, ca):
    seed_nodes(clean, ["node-a"])
    config = clean.kubeconfig(tmp_path / "kubeconfig", auth=auth, ca=ca, user="cert-user")
    assert k(kubectl, config, "get", "nodes", "-o", "name").stdout.split() == ["node/node-a"]
    if auth == "exec":
        assert exec_calls(config) >= 1
    if auth.startswith("cert"):
        assert clean.requests[-1]["user"] == "cert-user"


# -- python3-kubernetes -----------------------------------------------------------------------
def client_for(k8s, config):
    return k8s.config.new_client_from_config(config_file=config)


def test_python_pages_custom_objects_and_secrets(clean, k8s, tmp_path):
    names = [f"node-{i:02d}" for i in range(7)]
    seed_nodes(clean, names)
    clean.create("bgppeers", bgp_peer("peer-a", "192.0.2.10", 64512), group="crd")
    clean.create("secrets", secret("bgp-password", {"password": "s3cret"}),
                 namespace="kube-system")
    k8s.config.load_kube_config(config_file=clean.kubeconfig(tmp_path / "kubeconfig"))
    core = k8s.client.CoreV1Api()
    seen, pages, cont, revisions = [], 0, None, set()
    while True:
        page = core.list_node(limit=3, _continue=cont) if cont else core.list_node(limit=3)
        seen += [n.metadata.name for n in page.items]
        revisions.add(page.metadata.resource_version)
        pages += 1
        cont = page.metadata._continue
        if not cont:
            break
    assert seen == names and pages == 3 and len(revisions) == 1

    custom = k8s.client.CustomObjectsApi()
    peers = custom.list_cluster_custom_object(CRD_GROUP, "v1", "bgppeers")
    assert [p["spec"]["peerIP"] for p in peers["items"]] == ["192.0.2.10"]
    patched = custom.patch_cluster_custom_object(CRD_GROUP, "v1", "bgppeers", "peer-a",
                                                 {"spec": {"asNumber": 64999}})
    assert patched["spec"] == {"peerIP": "192.0.2.10", "asNumber": 64999}

    pw = core.read_namespaced_secret("bgp-password", "kube-system")
    assert pw.type == "Opaque" and pw.data == {"password": "czNjcmV0"}
    by_name = core.list_namespaced_secret("kube-system",
                                          field_selector="metadata.name=bgp-password")
    assert [s.metadata.name for s in by_name.items] == ["bgp-password"]
    with pytest.raises(k8s.client.ApiException) as info:
        core.read_node("no-such-node")
    assert info.value.status == 404 and json.loads(info.value.body)["reason"] == "NotFound"


def test_python_watch_sees_added_modified_deleted_in_order(clean, k8s, tmp_path):
    k8s.config.load_kube_config(config_file=clean.kubeconfig(tmp_path / "kubeconfig"))
    core = k8s.client.CoreV1Api()
    rv = core.list_node().metadata.resource_version
    http = Http(clean)

    def writer():
        wait_for(lambda: clean.open_watches, 10, "the watch to open")  # none before: `clean`
        http.call("POST", NODES, realistic_node("node-w", ipv4="192.0.2.30/24", bulk=False))
        http.call("PATCH", f"{NODES}/node-w", [{"op": "add", "path": "/metadata/labels/rr",
                                                "value": "yes"}],
                  content_type="application/json-patch+json")
        http.call("DELETE", f"{NODES}/node-w")

    thread = threading.Thread(target=writer)
    thread.start()
    events, watcher = [], k8s.watch.Watch()
    for event in watcher.stream(core.list_node, resource_version=rv, timeout_seconds=10):
        events.append((event["type"], event["object"].metadata.resource_version,
                       (event["object"].metadata.labels or {}).get("rr")))
        if event["type"] == "DELETED":
            watcher.stop()
    thread.join(timeout=10)
    assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    revisions = [int(e[1]) for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == 3
    assert events[2][2] == "yes"  # DELETED carries the last state, at the delete's revision


def test_python_watch_of_a_compacted_revision_raises_410(clean, k8s, tmp_path):
    core = k8s.client.CoreV1Api(client_for(k8s, clean.kubeconfig(tmp_path / "kubeconfig")))
    stale = core.list_node().metadata.resource_version
    seed_nodes(clean, ["node-a"])
    seed_nodes(clean, ["node-b"])  # two revisions: etcd still serves the compaction revision
    clean.compact()
    for kwargs in ({"timeout_seconds": 5}, {}):
        before = len(clean.requests)
        with pytest.raises(k8s.client.ApiException) as info:
            list(k8s.watch.Watch().stream(core.list_node, resource_version=stale, **kwargs))
        assert info.value.status == 410 and info.value.reason.startswith(
            "Expired: too old resource version")
        watches = [r for r in list(clean.requests)[before:] if r["query"].get("watch")]
        # without timeout_seconds the client retries once with the same stale version
        assert len(watches) == (1 if kwargs else 2)


def test_python_reads_nodes_as_metadata_only(clean, k8s, tmp_path):
    seed_nodes(clean, ["node-a", "node-b"])
    client = client_for(k8s, clean.kubeconfig(tmp_path / "kubeconfig"))
    answer = client.call_api("/api/v1/nodes", "GET", header_params={"Accept": METADATA_LIST},
                             response_type="object", auth_settings=["BearerToken"],
                             _return_http_data_only=True)
    assert (answer["kind"], answer["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    assert [item["metadata"]["name"] for item in answer["items"]] == ["node-a", "node-b"]
    assert all(set(item) == {"kind", "apiVersion", "metadata"} for item in answer["items"])


@pytest.mark.parametrize("auth", ["token", "token-file", "cert-files", "cert-data", "exec"])
def test_python_with_each_kubeconfig_variant(clean, k8s, tmp_path, auth):
    seed_nodes(clean, ["node-a"])
    config = clean.kubeconfig(tmp_path / "kubeconfig", auth=auth, ca="data", user="py-user")
    core = k8s.client.CoreV1Api(client_for(k8s, config))
    assert [n.metadata.name for n in core.list_node().items] == ["node-a"]
    if auth.startswith("cert"):
        assert clean.requests[-1]["user"] == "py-user"


# -- kube semantics over raw HTTP -------------------------------------------------------------
def test_discovery_lists_only_the_configured_groups(clean, etcd):
    http = Http(clean)
    assert http.get("/version")[1]["gitVersion"] == "v1.28.0"
    assert [g["name"] for g in http.get("/apis")[1]["groups"]] == [CRD_GROUP]
    assert http.get("/apis/projectcalico.org/v3")[0] == 404
    names = {r["name"] for r in http.get(f"/apis/{CRD_GROUP}/v1")[1]["resources"]}
    assert names == {"bgppeers", "bgpconfigurations", "ippools"}
    with KubeApiServer(etcd.url, groups=("v3",)) as v3:
        assert [g["name"] for g in Http(v3).get("/apis")[1]["groups"]] == ["projectcalico.org"]


def test_authentication_and_rbac(clean):
    seed_nodes(clean, ["node-a"])
    clean.create("secrets", secret("bgp-a", {"p": "1"}), namespace="kube-system")
    for token in ("wrong", None):
        code, body = Http(clean, token=token).get(NODES)
        assert code == 401 and body["reason"] == "Unauthorized" and body["kind"] == "Status"
    clean.add_token("calico-token", "calico")
    clean.set_rules("calico", [("get", "nodes"), ("list", "secrets", "bgp-a")])
    calico = Http(clean, token="calico-token")
    assert calico.get(f"{NODES}/node-a")[0] == 200
    code, body = calico.get(PEERS)
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"] == ('bgppeers.crd.projectcalico.org is forbidden: User "calico" '
                               'cannot list resource "bgppeers" in API group '
                               '"crd.projectcalico.org" at the cluster scope')
    # resourceNames: a list pinned by fieldSelector=metadata.name is allowed, a plain one not
    assert calico.get(SECRETS, fieldSelector="metadata.name=bgp-a")[0] == 200
    code, body = calico.get(SECRETS)
    assert code == 403 and body["message"].endswith('in the namespace "kube-system"')
    clean.set_rules("calico", None)  # at run time
    assert calico.get(PEERS)[0] == 200
    clean.revoke_token("calico-token")
    assert calico.get(NODES)[0] == 401


def test_write_conflicts_and_not_found(clean):
    http = Http(clean)
    code, _, node = http.call("POST", NODES, realistic_node("node-a", bulk=False))
    assert code == 201
    assert http.call("POST", NODES, realistic_node("node-a", bulk=False))[2]["reason"] == \
        "AlreadyExists"
    node["metadata"]["labels"]["x"] = "1"
    code, _, fresh = http.call("PUT", f"{NODES}/node-a", node)
    assert code == 200 and int(fresh["metadata"]["resourceVersion"]) > \
        int(node["metadata"]["resourceVersion"])
    code, _, body = http.call("PUT", f"{NODES}/node-a", node)  # stale resourceVersion
    assert (code, body["reason"]) == (409, "Conflict")
    assert body["message"].startswith('Operation cannot be fulfilled on nodes "node-a"')
    code, _, body = http.call("PUT", f"{NODES}/ghost", dict(node, metadata={"name": "ghost"}))
    assert (code, body["message"]) == (404, 'nodes "ghost" not found')
    code, _, body = http.call("GET", f"{PEERS}/ghost")
    assert (code, body["details"]) == (404, {"name": "ghost", "group": CRD_GROUP,
                                             "kind": "bgppeers"})
    code, _, peer = http.call("POST", PEERS, bgp_peer("peer-a", "192.0.2.10", 64512))
    del peer["metadata"]["resourceVersion"]
    code, _, body = http.call("PUT", f"{PEERS}/peer-a", peer)  # CRs need one
    assert (code, body["reason"]) == (422, "Invalid")
    code, _, gone = http.call("DELETE", f"{PEERS}/peer-a")
    assert code == 200 and gone["kind"] == "BGPPeer"  # a CR delete answers the object
    assert http.call("DELETE", f"{NODES}/node-a")[2]["status"] == "Success"
    assert http.call("DELETE", f"{NODES}/node-a")[0] == 404


def test_storage_layout_and_resource_versions(clean):
    http = Http(clean)
    node = http.call("POST", NODES, realistic_node("node-a", bulk=False))[2]
    kv = clean.store.get("/registry/minions/node-a")
    assert str(kv.mod_revision) == node["metadata"]["resourceVersion"]
    assert "resourceVersion" not in json.loads(kv.value)["metadata"]
    http.call("POST", PEERS, bgp_peer("peer-a", "192.0.2.10", 64512))
    assert clean.store.get(f"/registry/{CRD_GROUP}/bgppeers/peer-a") is not None
    http.call("POST", SECRETS, secret("s", {"k": "v"}))
    assert clean.store.get("/registry/secrets/kube-system/s") is not None
    listed = http.get(NODES)[1]
    assert int(listed["metadata"]["resourceVersion"]) == clean.store.revision()


def test_list_pages_read_one_revision_while_writes_happen(clean):
    names = [f"node-{i}" for i in range(6)]
    seed_nodes(clean, names)
    http = Http(clean)
    first = http.get(NODES, limit="2")[1]
    assert first["metadata"]["remainingItemCount"] == 4
    http.call("POST", NODES, realistic_node("node-9", bulk=False))     # after the last page
    http.call("DELETE", f"{NODES}/node-4")                             # on a later page
    http.call("PATCH", f"{NODES}/node-5", {"metadata": {"labels": {"moved": "yes"}}},
              content_type="application/merge-patch+json")
    seen, page = [n["metadata"]["name"] for n in first["items"]], first
    while page["metadata"].get("continue"):
        page = http.get(NODES, limit="2", **{"continue": page["metadata"]["continue"]})[1]
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        seen += [n["metadata"]["name"] for n in page["items"]]
        assert all("moved" not in n["metadata"]["labels"] for n in page["items"])
    assert seen == names
    assert [n["metadata"]["name"] for n in http.get(NODES)[1]["items"]] == \
        ["node-0", "node-1", "node-2", "node-3", "node-5", "node-9"]


def test_continue_token_after_compaction_is_410_expired(clean):
    seed_nodes(clean, ["node-a", "node-b", "node-c"])
    http = Http(clean)
    token = http.get(NODES, limit="1")[1]["metadata"]["continue"]
    http.call("POST", NODES, realistic_node("node-d", bulk=False))
    clean.compact()
    code, body = http.get(NODES, limit="1", **{"continue": token})
    assert (code, body["reason"]) == (410, "Expired")
    assert body["message"].startswith("The provided continue parameter is too old")
    assert body["metadata"]["continue"]  # kube offers an inconsistent token to go on
    fresh = http.get(NODES, limit="1")[1]["metadata"]["continue"]
    clean.expire_continue_tokens = True  # the hook, without compaction
    assert http.get(NODES, limit="1", **{"continue": fresh})[0] == 410


def test_metadata_only_answers_list_get_and_watch_in_their_own_form(clean):
    """kube-apiserver's PartialObjectMetadata: the List form for a list, the singular one for
    a get and a watch's events; a form that does not fit the verb falls through to the next
    media type of the Accept header."""
    seed_nodes(clean, ["node-a", "node-b", "node-c"])
    http = Http(clean)
    code, _, page = http.call("GET", NODES, query={"limit": "2"}, headers={"Accept": METADATA_LIST})
    assert code == 200 and (page["kind"], page["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    assert page["metadata"]["continue"] and page["metadata"]["resourceVersion"]
    item = page["items"][0]
    assert (item["kind"], item["apiVersion"], set(item)) == \
        ("PartialObjectMetadata", "meta.k8s.io/v1", {"kind", "apiVersion", "metadata"})
    assert item["metadata"]["annotations"]["projectcalico.org/IPv4Address"] == "192.0.2.1/24"
    full = http.get(f"{NODES}/node-a")[1]
    assert item["metadata"] == full["metadata"] and "spec" in full

    code, _, whole = http.call("GET", NODES, headers={"Accept": METADATA})  # the singular form
    assert code == 200 and whole["kind"] == "NodeList" and "spec" in whole["items"][0]
    code, _, one = http.call("GET", f"{NODES}/node-b", headers={"Accept": METADATA})
    assert one == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": http.get(f"{NODES}/node-b")[1]["metadata"]}

    with http.watch(NODES, resourceVersion="0", timeoutSeconds="1", headers={"Accept": METADATA}) as watch:
        events = list(watch)
    assert [(e["type"], e["object"]["kind"], e["object"]["metadata"]["name"]) for e in events] == \
        [("ADDED", "PartialObjectMetadata", name) for name in ("node-a", "node-b", "node-c")]


def test_a_list_at_resource_version_0_is_the_watch_cache_whole_and_current(clean, k8s, tmp_path):
    """resourceVersion "0" ("any"): kube-apiserver answers from its watch cache, ignoring
    limit; a watch from the answer's resourceVersion goes on from there."""
    seed_nodes(clean, [f"node-{i}" for i in range(5)])
    core = k8s.client.CoreV1Api(client_for(k8s, clean.kubeconfig(tmp_path / "kubeconfig")))
    listed = core.list_node(resource_version="0", limit=2)
    assert [n.metadata.name for n in listed.items] == [f"node-{i}" for i in range(5)]
    assert not listed.metadata._continue
    http = Http(clean)
    http.call("DELETE", f"{NODES}/node-0")
    seed_nodes(clean, ["node-5"])
    code, page = http.get(NODES, resourceVersion="0")
    assert [n["metadata"]["name"] for n in page["items"]] == [f"node-{i}" for i in range(1, 6)]
    with http.watch(NODES, resourceVersion=page["metadata"]["resourceVersion"], timeoutSeconds="2") as watch:
        threading.Timer(0.3, lambda: http.call("DELETE", f"{NODES}/node-1")).start()
        events = list(watch)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "node-1")]


def test_watch_from_a_compacted_revision_is_one_error_event(clean):
    http = Http(clean)
    old = int(http.get(NODES)[1]["metadata"]["resourceVersion"])
    seed_nodes(clean, ["node-a"])
    seed_nodes(clean, ["node-b"])  # two revisions: etcd still serves the compaction revision
    compacted = clean.compact()
    with http.watch(NODES, resourceVersion=str(old)) as watch:
        assert watch.status == 200  # never an HTTP 410 for a watch
        events = list(watch)
    assert watch.clean_end and len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["code"], status["reason"], status["status"]) == (410, "Expired", "Failure")
    assert status["message"] == f"too old resource version: {old} ({compacted})"


def test_watch_timeout_bookmarks_and_initial_events(clean):
    seed_nodes(clean, ["node-a", "node-b"])
    http = Http(clean)
    started = time.monotonic()
    with http.watch(NODES, resourceVersion="0", allowWatchBookmarks="true",
                    timeoutSeconds="3") as watch:
        events = iter(watch)
        initial = [next(events), next(events)]
        # a write elsewhere: only etcd's progress notifications tell the Node watch about it
        other = http.call("POST", SECRETS, secret("elsewhere", {"k": "v"}))[2]
        rest = list(events)
    elapsed = time.monotonic() - started
    assert watch.clean_end and 2.5 < elapsed < 6
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in initial] == \
        [("ADDED", "node-a"), ("ADDED", "node-b")]
    bookmarks = [e for e in rest if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2 and rest[-1]["type"] == "BOOKMARK"
    last = bookmarks[-1]["object"]
    assert last == {"kind": "Node", "apiVersion": "v1",
                    "metadata": {"resourceVersion": last["metadata"]["resourceVersion"]}}
    assert int(last["metadata"]["resourceVersion"]) >= int(
        other["metadata"]["resourceVersion"])


def test_watch_field_selector_and_cuts(clean):
    http = Http(clean)
    rv = http.get(SECRETS)[1]["metadata"]["resourceVersion"]
    with http.watch(SECRETS, resourceVersion=rv, fieldSelector="metadata.name=bgp-a",
                    timeoutSeconds="20") as watch:
        events = iter(watch)
        http.call("POST", SECRETS, secret("bgp-b", {"p": "2"}))
        http.call("POST", SECRETS, secret("bgp-a", {"p": "1"}))
        event = next(events)
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "bgp-a")
        clean.restart()  # same port; open watches are cut, not ended cleanly
        assert list(events) == [] and watch.clean_end is False
    assert http.get(SECRETS)[0] == 200
    clean.add_token("short-lived", "calico")
    with Http(clean, token="short-lived").watch(NODES, timeoutSeconds="20") as watch:
        clean.revoke_token("short-lived", cut_watches=True)
        assert list(watch) == [] and watch.clean_end is False


def test_patches_status_subresource_and_injected_faults(clean):
    http = Http(clean)
    http.call("POST", NODES, realistic_node("node-a", ipv4="192.0.2.1/24"))
    code, _, node = http.call("PATCH", f"{NODES}/node-a", {"status": {"conditions": [
        {"type": "Ready", "status": "False"}]}, "metadata": {"labels": {"a": "b"}}},
        content_type="application/strategic-merge-patch+json")
    assert code == 200 and node["metadata"]["labels"]["a"] == "b"
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"  # status changes only through /status
    code, _, node = http.call("PATCH", f"{NODES}/node-a/status", {"status": {"conditions": [
        {"type": "Ready", "status": "False"}]}},
        content_type="application/strategic-merge-patch+json")
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "False" and len(conditions) == 5  # merged by "type"
    assert http.get(NODES, labelSelector="a=b")[1]["items"][0]["metadata"]["name"] == "node-a"
    assert http.get(NODES, labelSelector="a!=b")[1]["items"] == []
    clean.inject_failure(503, times=1, match="GET /api/v1/nodes")
    code, headers, body = http.call("GET", NODES)
    assert (code, body["reason"], headers.get("Retry-After")) == (503, "ServiceUnavailable", "1")
    assert http.get(NODES)[0] == 200


def test_big_lists_and_another_listen_address(clean, etcd):
    # 1,000 realistic Nodes (~15 MB) in one answer: past gRPC's 4 MiB default
    seed_nodes(clean, [f"node-{i:04d}" for i in range(1000)], bulk=True)
    code, items = Http(clean).get(NODES)
    assert code == 200 and len(items["items"]) == 1000
    assert 12_000 < len(json.dumps(items["items"][0])) < 20_000
    with KubeApiServer(etcd.url, host="127.0.0.2") as other:  # the cert names its address
        assert other.url.startswith("https://127.0.0.2:") and Http(other).get(NODES)[0] == 200


def test_standalone_command(etcd, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tests.kubeapi", "--etcd", etcd.url,
                             "--port", "0", "--groups", "crd,v3", "--workdir", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        lines = {}
        while "serving" not in lines:
            line = proc.stdout.readline()  # the child prints promptly or dies (EOF)
            assert line, f"tests.kubeapi exited: {proc.wait(timeout=10)}"
            key, _, value = line.partition(":")
            lines[key.strip().split(";")[0]] = value.strip()
        config = json.loads(open(lines["kubeconfig"]).read())
        assert config["clusters"][0]["cluster"]["server"] == lines["url"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_etcd_outage_answers_errors_then_recovers(etcd):
    with KubeApiServer(etcd.url, etcd_timeout=1.0) as api:
        http = Http(api)
        with http.watch(NODES, timeoutSeconds="30", timeout=30) as watch:
            events = iter(watch)
            etcd.stop()
            try:
                event = next(events)
                # as kube-apiserver when its etcd watch fails: an ERROR event, then the end
                assert (event["type"], event["object"]["code"]) == ("ERROR", 500)
                assert list(events) == [] and watch.clean_end
                code, body = http.get(NODES)
                assert (code, body["reason"]) == (500, "InternalError")
            finally:
                etcd.start()
        wait_for(lambda: http.get(NODES)[0] == 200, 15, "the server to reach etcd again")
        assert not api.errors
