"""Calico's data in the Kubernetes API as a Source for the v3 rule set.

read(): discovery decides the Calico group (crd.projectcalico.org/v1, or projectcalico.org/v3
when only that one exists, as Calico decides), then Nodes, BGPPeers, BGPConfigurations and
IPPools are listed (paged; the first time from the API server's watch cache) and converted
into `<plural>/<name>` → v3 JSON (convert.py), page by page. Nodes are read as metadata only
(PartialObjectMetadata): their BGP fields are annotations and labels, and the rest of a Node
is most of its size. The bookmark is each collection's resourceVersion.

follow(): one watch per collection, each on a thread of its own that only queues: from the
list's resourceVersion, with bookmarks, a jittered timeoutSeconds after which it watches again
from the last version seen. A 410 Gone is ResyncNeeded, an unreachable or refusing API
server DatastoreUnavailable: the daemon reads again either way. A Node whose converted value
did not change (a kubelet's status update) never reaches the daemon.
"""

from __future__ import annotations

import json
import queue
from typing import Callable, Optional

from rr_service.calico.v3.resources import KINDS
from rr_service.sources.base import DataSet, DatastoreError, DatastoreUnavailable, Source
from rr_service.sources.kubernetes import convert
from rr_service.sources.kubernetes.api import METADATA, METADATA_LIST, Conflict, LazyApi, Missing, item_path
from rr_service.sources.kubernetes.kubeconfig import load
from rr_service.sources.kubernetes.secret_watch import PasswordSecrets, is_secret_key, queued
from rr_service.sources.kubernetes.watcher import WATCH_TIMEOUT, Watcher, converted, created

CRD_GROUP, CRD_VERSION = "crd.projectcalico.org", "v1"
V3_GROUP, V3_VERSION = "projectcalico.org", "v3"
PLURALS = ("nodes",) + convert.CRD_PLURALS


class KubeSource(Source):
    def __init__(self, kubeconfig: Optional[str], secret_namespace: str = "kube-system",
                 heartbeat: Optional[Callable[[], None]] = None, watch_timeout: int = WATCH_TIMEOUT):
        self._kubeconfig = kubeconfig
        self.secret_namespace = secret_namespace
        self._heartbeat = heartbeat or (lambda: None)
        self._watch_timeout = watch_timeout
        self.api = LazyApi(kubeconfig, load)
        self._group: Optional[str] = None
        self._versions: dict = {}
        self._watchers: list = []
        self._queue: queue.Queue = queue.Queue()
        self._known: dict = {}
        self._read_before = False
        self._secrets = PasswordSecrets(self.api, secret_namespace, watch_timeout)
        # Read once here so that a wrong kubeconfig stops `run` at start with the setting's
        # name (DatastoreConfigError), not a retry loop.
        load(kubeconfig)

    # -- plumbing --------------------------------------------------------------------------

    def group_version(self) -> str:
        """The Calico group to use, by discovery, as Calico decides it."""
        if self._group is None:
            groups = self.api().groups()
            if CRD_GROUP in groups:
                self._group = f"{CRD_GROUP}/{CRD_VERSION}"
            elif V3_VERSION in groups.get(V3_GROUP, ()):
                self._group = f"{V3_GROUP}/{V3_VERSION}"
            else:
                raise DatastoreUnavailable(f"{self.describe()}: neither {CRD_GROUP} nor {V3_GROUP}/{V3_VERSION} "
                                           "is served: are Calico's resources installed?")
        return self._group

    def _collection(self, plural: str) -> str:
        return "/api/v1/nodes" if plural == "nodes" else f"/apis/{self.group_version()}/{plural}"

    # -- reading -----------------------------------------------------------------------------

    def read(self) -> DataSet:
        self._stop_watches()
        self._group = None  # decided again: Calico may have been upgraded meanwhile
        # The first read takes what the API server's cache has, as client-go's informers do:
        # nothing is configured yet that an older answer could take back. A later read (after
        # a 410 or an outage) must not go back behind what BIRD runs: it reads etcd.
        first, self._read_before = not self._read_before, True
        items: dict = {}
        created_at: dict = {}
        versions: dict = {}
        for plural in PLURALS:
            kept, versions[plural] = self.api().list(
                self._collection(plural), plural, keep=lambda obj, plural=plural: (converted(plural, obj), created(obj)),
                accept=METADATA_LIST if plural == "nodes" else "application/json", any_version=first)
            for item, when in kept:
                if item is not None:
                    items[item[0]] = item[1]
                    created_at[item[0]] = when
            self._heartbeat()
        self._known = dict(items)
        items.update(self._secrets.read(items))
        self._versions = dict(versions)
        return DataSet("v3", items, {**versions, **self._secrets.versions}, created_at)

    def follow(self, bookmark: object) -> None:
        self._stop_watches()
        self._queue = queue.Queue()
        for plural in PLURALS:
            known = {key: value for key, value in self._known.items() if key.startswith(plural + "/")}
            watcher = Watcher(self.api(), self._collection(plural), plural, bookmark[plural], self._queue,
                              self._watch_timeout, known=known,
                              accept=METADATA if plural == "nodes" else "application/json")
            self._watchers.append(watcher)
            watcher.start()
        self._secrets.follow(bookmark, self._queue)

    def changes(self, timeout: float) -> list:
        try:
            entries = queued(self._queue, timeout)
        except DatastoreError:
            self._stop_watches()
            raise
        out = []
        for key, version, change in entries:
            if is_secret_key(key):
                change = self._secrets.take(key, version, change)
                if change is not None:
                    out.append(change)
                continue
            self._versions[key] = version
            if change is not None and self._known.get(change.key) != change.value:
                if change.value is None:
                    self._known.pop(change.key, None)
                else:
                    self._known[change.key] = change.value
                out.append(change)
        out.extend(self._secrets.new(out))
        return out

    def position(self) -> str:
        versions = {**self._versions, **self._secrets.versions}
        return "resourceVersion " + ", ".join(f"{p} {v}" for p, v in versions.items())

    def describe(self) -> str:
        return self.api.describe()

    def close(self) -> None:
        self._stop_watches()
        self.api.close()

    def _stop_watches(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        self._watchers = []
        self._secrets.stop()

    # -- writing (register) -------------------------------------------------------------------

    def rules(self) -> str:
        return "v3"

    def _split(self, key: str) -> tuple[str, str]:
        plural, _, name = key.partition("/")
        if plural not in PLURALS or not name:
            raise DatastoreUnavailable(f"{key}: not a resource this reflector keeps in Kubernetes")
        return plural, name

    def _get_object(self, key: str) -> Optional[dict]:
        plural, name = self._split(key)
        try:
            return self.api().request("GET", item_path(self._collection(plural), name), f"get {key}")
        except Missing:
            return None

    def get(self, key: str) -> Optional[bytes]:
        obj = self._get_object(key)
        if obj is None:
            return None
        plural, _ = self._split(key)
        if plural == "nodes":
            return convert.node_resource(obj)[1]
        # The whole metadata (resourceVersion for the update's precondition) and the spec.
        return json.dumps({"kind": KINDS[plural], "apiVersion": "projectcalico.org/v3",
                           "metadata": obj.get("metadata") or {}, "spec": obj.get("spec") or {}}).encode()

    def put(self, key: str, value: bytes) -> None:
        self._write(key, value, exists=self._get_object(key) is not None)

    def _write(self, key: str, value: bytes, exists: bool) -> None:
        plural, name = self._split(key)
        if plural == "nodes":
            raise DatastoreUnavailable("in the Kubernetes datastore Calico Nodes are Kubernetes Nodes: "
                                       "calico-rr does not write them (register the reflector as a BGPPeer)")
        body = convert.crd_object(plural, self.group_version(), json.loads(value))
        if exists:
            self.api().request("PUT", item_path(self._collection(plural), name), f"update {key}", body=body)
        else:
            body["metadata"].pop("resourceVersion", None)
            self.api().request("POST", self._collection(plural), f"create {key}", body=body)

    def delete(self, key: str) -> bool:
        plural, name = self._split(key)
        try:
            self.api().request("DELETE", item_path(self._collection(plural), name), f"delete {key}")
        except Missing:
            return False
        return True

    def update(self, key, change):
        for _ in range(10):
            existing = self.get(key)
            value = change(existing)
            try:
                self._write(key, value, exists=existing is not None)
            except Conflict:
                continue  # someone wrote between our read and write: read again
            return existing, value
        raise DatastoreUnavailable(f"update {key}: kept conflicting with other writers")

    def where(self, key: str) -> str:
        plural, name = self._split(key)
        try:
            return f"{self._collection(plural)}/{name}"
        except DatastoreError:
            return key

    def __repr__(self) -> str:
        return f"<KubeSource {self.describe()}>"
