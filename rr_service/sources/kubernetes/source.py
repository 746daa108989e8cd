"""Calico's data in the Kubernetes API as a Source for the v3 rule set.

read(): discovery decides the Calico group (crd.projectcalico.org/v1, or projectcalico.org/v3
when only that one exists, as Calico decides), then Nodes, BGPPeers, BGPConfigurations and
IPPools are listed (paged) and converted into `<plural>/<name>` → v3 JSON (convert.py). The
bookmark is each collection's resourceVersion.

follow(): one watch per collection, each on a thread of its own that only queues: from the
list's resourceVersion, with bookmarks, a jittered timeoutSeconds after which it watches again
from the last version seen. A 410 Gone is ResyncNeeded, an unreachable or refusing API
server DatastoreUnavailable: the daemon reads again either way. A Node whose converted value
did not change (a kubelet's status update) never reaches the daemon.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
from datetime import datetime
from typing import Callable, Optional

from rr_service.calico.v3.resources import KINDS, SECRETS
from rr_service.core.values import InvalidValue, show
from rr_service.sources.base import (
    Change, DataSet, DatastoreError, DatastoreUnavailable, ResyncNeeded, Source,
)
from rr_service.sources.kubernetes import convert, secrets
from rr_service.sources.kubernetes.api import ApiStatus, Conflict, KubeApi, Missing, cut, item_path
from rr_service.sources.kubernetes.secrets import collection, name_query
from rr_service.sources.kubernetes.kubeconfig import load

log = logging.getLogger("calico-rr")

CRD_GROUP, CRD_VERSION = "crd.projectcalico.org", "v1"
V3_GROUP, V3_VERSION = "projectcalico.org", "v3"
WATCH_TIMEOUT = 300  # seconds, jittered by up to a fifth so watches do not reopen together
PLURALS = ("nodes",) + convert.CRD_PLURALS


class KubeSource(Source):
    def __init__(self, kubeconfig: Optional[str], secret_namespace: str = "kube-system",
                 heartbeat: Optional[Callable[[], None]] = None, watch_timeout: int = WATCH_TIMEOUT):
        self._kubeconfig = kubeconfig
        self.secret_namespace = secret_namespace
        self._heartbeat = heartbeat or (lambda: None)
        self._watch_timeout = watch_timeout
        self._api: Optional[KubeApi] = None
        self._group: Optional[str] = None
        self._versions: dict = {}
        self._watchers: list = []
        self._queue: queue.Queue = queue.Queue()
        self._known: dict = {}
        # Read once here so that a wrong kubeconfig stops `run` at start with the setting's
        # name (DatastoreConfigError), not a retry loop; read again at every reconnect so a
        # renewed certificate in it is picked up.
        load(kubeconfig)

    # -- plumbing --------------------------------------------------------------------------

    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(load(self._kubeconfig))
        return self._api

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
        items: dict = {}
        created: dict = {}
        versions: dict = {}
        for plural in PLURALS:
            objects, versions[plural] = self.api().list(self._collection(plural), plural)
            for obj in objects:
                converted = _converted(plural, obj)
                if converted is not None:
                    items[converted[0]] = converted[1]
                    created[converted[0]] = _created(obj)
            self._heartbeat()
        for name in sorted(secrets.names(items.items())):
            found, versions[secrets.version_key(name)] = self._read_secret(name)
            if found is not None:
                items[found[0]] = found[1]
        self._versions = dict(versions)
        self._known = dict(items)
        return DataSet("v3", items, versions, created)

    def _read_secret(self, name: str) -> tuple[Optional[tuple[str, bytes]], str]:
        """One BGP password Secret by name: (its item or None, the list's resourceVersion).
        A Secret RBAC does not let us read counts as missing (its BGPPeer's sessions are left
        out, with the rule set's warning) after an error naming it: one unreadable Secret
        must not stop the reflector."""
        path = collection(self.secret_namespace)
        try:
            objects, version = self.api().list(path, f"secret {self.secret_namespace}/{name}", name_query(name))
        except ApiStatus as exc:
            if exc.code not in (403, 404):
                raise
            log.error("%s: cannot read Secret %s/%s for a BGP password: %s (grant get, list and watch on it: "
                      "docs/kubernetes.md)", self.describe(), self.secret_namespace, name, exc)
            return None, ""
        found = [secrets.item(obj) for obj in objects]
        return next((f for f in found if f is not None and f[0] == secrets.version_key(name)), None), version

    def follow(self, bookmark: object) -> None:
        self._stop_watches()
        self._queue = queue.Queue()
        for plural in PLURALS:
            self._watch(_Watcher(self, plural, bookmark[plural], self._queue))
        for key, version in bookmark.items():
            if key.startswith(SECRETS + "/") and version:
                self._watch_secret(key.partition("/")[2], version)

    def _watch(self, watcher: "_Watcher") -> None:
        self._watchers.append(watcher)
        watcher.start()

    def _watch_secret(self, name: str, version: str) -> None:
        self._watch(_Watcher(self, SECRETS, version, self._queue, path=collection(self.secret_namespace),
                             extra=name_query(name), key=secrets.version_key(name)))

    def changes(self, timeout: float) -> list:
        try:
            first = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                first.append(self._queue.get_nowait())
            except queue.Empty:
                break
        out = []
        for entry in first:
            if isinstance(entry, DatastoreError):
                self._stop_watches()
                raise entry
            plural, version, change = entry
            self._versions[plural] = version  # a collection, or secrets/<name>
            if change is not None and self._known.get(change.key) != change.value:
                if change.value is None:
                    self._known.pop(change.key, None)
                else:
                    self._known[change.key] = change.value
                out.append(change)
        out.extend(self._new_secrets(out))
        return out

    def _new_secrets(self, changes: list) -> list:
        """A BGPPeer that names a Secret not read yet: read it now and watch it from there."""
        wanted = secrets.names((c.key, c.value) for c in changes) - {
            key.partition("/")[2] for key in self._versions if key.startswith(SECRETS + "/")}
        out = []
        for name in sorted(wanted):
            found, version = self._read_secret(name)
            self._versions[secrets.version_key(name)] = version
            if found is not None and self._known.get(found[0]) != found[1]:
                self._known[found[0]] = found[1]
                out.append(Change(found[0], found[1]))
            if version:
                self._watch_secret(name, version)
        return out

    def position(self) -> str:
        return "resourceVersion " + ", ".join(f"{p} {v}" for p, v in self._versions.items())

    def describe(self) -> str:
        if self._api is not None:
            return self._api.describe()
        return f"Kubernetes API ({self._kubeconfig or 'in-cluster'})"

    def close(self) -> None:
        self._stop_watches()
        if self._api is not None:
            self._api.close()
            self._api = None

    def _stop_watches(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        self._watchers = []

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


def _converted(plural: str, obj: dict) -> Optional[tuple[str, bytes]]:
    try:
        return convert.resource(plural, obj)
    except (InvalidValue, AttributeError, TypeError) as exc:
        log.warning("ignoring a %s from the Kubernetes API: %s", KINDS[plural], show(str(exc), 120))
        return None


def _created(obj: dict) -> int:
    """The object's creationTimestamp in seconds: who claimed an address first."""
    stamp = (obj.get("metadata") or {}).get("creationTimestamp") or ""
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


class _Watcher:
    """One collection's watch on its own thread; it only queues (plural, version, Change) or,
    once, the error that ended it."""

    def __init__(self, source: KubeSource, plural: str, version: str, out: queue.Queue,
                 path: Optional[str] = None, extra: Optional[dict] = None, key: Optional[str] = None):
        """`path`, `extra` (a fieldSelector) and `key` (its bookmark entry) for a Secret's
        watch; a collection's are its plural's."""
        self._api, self._path = source.api(), path or source._collection(plural)
        self._plural, self._version, self._out = plural, version, out
        self._extra, self._key = extra, key or plural
        self._timeout = source._watch_timeout
        self._stopped = threading.Event()
        self._response = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{plural}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._response is not None:
            cut(self._response)

    def _opened(self, response) -> None:
        self._response = response
        if self._stopped.is_set():
            cut(response)

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                timeout = self._timeout + random.randint(0, max(1, self._timeout // 5))
                for event in self._api.watch(self._path, self._version, timeout, self._key, self._opened,
                                             self._extra):
                    if self._stopped.is_set():
                        return
                    self._event(event)
                # The server ended the watch (timeoutSeconds): watch again from where we are.
        except DatastoreError as exc:
            if not self._stopped.is_set():
                self._out.put(exc)
        except Exception as exc:  # never a silent dead thread: the daemon reads again
            if not self._stopped.is_set():
                self._out.put(ResyncNeeded(f"watch {self._plural} failed: {exc!r}"))

    def _event(self, event: dict) -> None:
        obj = event.get("object") or {}
        metadata = obj.get("metadata") or {}
        version = metadata.get("resourceVersion") or self._version
        self._version = version
        kind = event.get("type")
        if kind == "BOOKMARK":
            self._out.put((self._key, version, None))
            return
        if kind == "DELETED":
            name = metadata.get("name")
            if name:
                self._out.put((self._key, version, Change(f"{self._plural}/{name}", None)))
            return
        if self._plural == SECRETS:
            converted = secrets.item(obj)
            if converted is not None:
                self._out.put((self._key, version, Change(converted[0], converted[1])))
            return
        converted = _converted(self._plural, obj)
        if converted is not None:
            self._out.put((self._key, version, Change(converted[0], converted[1], _created(obj))))
