"""The BGP password Secrets BGPPeers name, read by name and each watched from its own list's
resourceVersion (secrets.py says why by name). A Kubernetes source keeps one beside its
collections; so does an etcd v3 source given a kubeconfig (with_secrets.py), as Calico reads
BGP passwords from Kubernetes in both modes.

Its watchers queue into the queue its owner drains (queued()); the owner hands every queued
entry whose key is a Secret's (`secrets/<name>`) to take(). Nothing here logs a value.
"""

from __future__ import annotations

import logging
import queue
from typing import Callable, Iterable, Mapping, Optional

from rr_service.calico.v3.resources import SECRETS
from rr_service.sources.base import Change, DatastoreError
from rr_service.sources.kubernetes import secrets
from rr_service.sources.kubernetes.api import ApiStatus, KubeApi
from rr_service.sources.kubernetes.watcher import Watcher

log = logging.getLogger("calico-rr")


def is_secret_key(key: str) -> bool:
    return key.startswith(SECRETS + "/")


def queued(entries: queue.Queue, timeout: float) -> list:
    """Every entry the watchers have queued, waiting up to `timeout` for the first one (0:
    not at all). The error that ended a watch is raised: the owner stops its watches and the
    daemon reads again."""
    out = []
    try:
        out.append(entries.get(timeout=timeout) if timeout > 0 else entries.get_nowait())
        while True:
            out.append(entries.get_nowait())
    except queue.Empty:
        pass
    for entry in out:
        if isinstance(entry, DatastoreError):
            raise entry
    return out


class PasswordSecrets:
    def __init__(self, api: Callable[[], KubeApi], namespace: str, watch_timeout: int):
        self._api = api
        self.namespace = namespace
        self._watch_timeout = watch_timeout
        self.versions: dict = {}  # secrets/<name> -> its list's resourceVersion ("" if unreadable)
        self._known: dict = {}    # secrets/<name> -> its item, as last given
        self._watchers: list = []
        self._out: Optional[queue.Queue] = None

    def read(self, items: Mapping[str, bytes]) -> dict:
        """The Secrets the BGPPeers among `items` name, as items (a missing one is absent)."""
        self.stop()
        self.versions, found_items = {}, {}
        for name in sorted(secrets.names(items.items())):
            found, self.versions[secrets.version_key(name)] = self._read(name)
            if found is not None:
                found_items[found[0]] = found[1]
        self._known = dict(found_items)
        return found_items

    def _read(self, name: str) -> tuple[Optional[tuple[str, bytes]], str]:
        """One Secret: (its item or None, the list's resourceVersion). A Secret RBAC does not
        let us read counts as missing (its BGPPeer's sessions are left out, with the rule
        set's warning) after an error naming it: one unreadable Secret must not stop the
        reflector."""
        api = self._api()
        try:
            objects, version = api.list(secrets.collection(self.namespace), f"secret {self.namespace}/{name}",
                                        secrets.name_query(name))
        except ApiStatus as exc:
            if exc.code not in (403, 404):
                raise
            log.error("%s: cannot read Secret %s/%s for a BGP password: %s (grant get, list and watch on it: "
                      "docs/kubernetes.md)", api.describe(), self.namespace, name, exc)
            return None, ""
        found = [secrets.item(obj) for obj in objects]
        return next((f for f in found if f is not None and f[0] == secrets.version_key(name)), None), version

    def follow(self, versions: Mapping[str, str], out: queue.Queue) -> None:
        """Watch every Secret of `versions` (the Secret entries of a bookmark) into `out`."""
        self.stop()
        self._out = out
        self.versions = {key: version for key, version in versions.items() if is_secret_key(key)}
        for key, version in self.versions.items():
            if version:
                self._watch(key.partition("/")[2], version)

    def _watch(self, name: str, version: str) -> None:
        watcher = Watcher(self._api(), secrets.collection(self.namespace), SECRETS, version, self._out,
                          self._watch_timeout, extra=secrets.name_query(name), key=secrets.version_key(name))
        self._watchers.append(watcher)
        watcher.start()

    def take(self, key: str, version: str, change: Optional[Change]) -> Optional[Change]:
        """One queued entry of a Secret's watch: the change, if it changes what was given."""
        self.versions[key] = version
        if change is None or self._known.get(change.key) == change.value:
            return None
        self._remember(change.key, change.value)
        return change

    def new(self, changes: Iterable[Change]) -> list:
        """A BGPPeer among `changes` that names a Secret not read yet: read it now and watch
        it from there."""
        wanted = secrets.names((c.key, c.value) for c in changes) - {
            key.partition("/")[2] for key in self.versions}
        out = []
        for name in sorted(wanted):
            found, version = self._read(name)
            self.versions[secrets.version_key(name)] = version
            if found is not None and self._known.get(found[0]) != found[1]:
                self._remember(*found)
                out.append(Change(found[0], found[1]))
            if version and self._out is not None:
                self._watch(name, version)
        return out

    def _remember(self, key: str, value: Optional[bytes]) -> None:
        if value is None:
            self._known.pop(key, None)
        else:
            self._known[key] = value

    def stop(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        self._watchers = []
