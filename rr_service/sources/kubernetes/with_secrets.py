"""An etcd source with BGP passwords from Kubernetes: Calico keeps its v3 resources in etcd
but reads the Secrets a BGPPeer's `password.secretKeyRef` names from the Kubernetes API when
it has a kubeconfig, and so does the reflector (`[kubernetes] kubeconfig` in etcd mode).

Everything but the Secrets is the wrapped source's: its data, bookmark, changes and writes.
The Secrets are read after each snapshot (only those BGPPeers name: none, no API call) and
watched beside its changes. The Kubernetes API unreachable while a BGPPeer needs a Secret is
DatastoreUnavailable, as etcd unreachable is: the daemon keeps the configs BIRD runs rather
than drop the sessions of every BGPPeer with a password.
"""

from __future__ import annotations

import queue
import time
from typing import Callable, Optional

from rr_service.sources.base import Change, DataSet, DatastoreError, Source
from rr_service.sources.kubernetes.api import LazyApi
from rr_service.sources.kubernetes.kubeconfig import load
from rr_service.sources.kubernetes.secret_watch import PasswordSecrets, queued
from rr_service.sources.kubernetes.watcher import WATCH_TIMEOUT

# How often a wait on the wrapped source's changes looks at the Secrets' watches: the most a
# rotated password waits before it is applied. etcd's changes are never held up by it.
SECRETS_POLL = 0.5


class WithKubernetesSecrets(Source):
    def __init__(self, inner: Source, kubeconfig: str, namespace: str, watch_timeout: int = WATCH_TIMEOUT):
        self._inner = inner
        self._api = LazyApi(kubeconfig, load)
        self._secrets = PasswordSecrets(self._api, namespace, watch_timeout)
        self._queue: queue.Queue = queue.Queue()
        load(kubeconfig)  # a wrong kubeconfig stops `run` at start, naming the setting

    def read(self) -> DataSet:
        data = self._inner.read()
        items = dict(data.items)
        if data.rules == "v3":
            items.update(self._secrets.read(items))
        else:
            self._secrets.read({})  # the v1 rules have no passwords
        return DataSet(data.rules, items, (data.bookmark, dict(self._secrets.versions)), data.created)

    def follow(self, bookmark: object) -> None:
        inner, versions = bookmark
        self._inner.follow(inner)
        self._queue = queue.Queue()
        self._secrets.follow(versions, self._queue)

    def changes(self, timeout: float) -> list[Change]:
        deadline = time.monotonic() + timeout
        while True:
            out = self._taken()
            wait = 0.0 if out else min(SECRETS_POLL, max(0.0, deadline - time.monotonic()))
            inner = self._inner.changes(wait)
            out = inner + out + self._secrets.new(inner)
            if out or time.monotonic() >= deadline:
                return out

    def _taken(self) -> list[Change]:
        try:
            entries = queued(self._queue, 0)
        except DatastoreError:
            self._secrets.stop()
            raise
        return [change for change in (self._secrets.take(*entry) for entry in entries) if change is not None]

    def position(self) -> str:
        return self._inner.position()

    def describe(self) -> str:
        return f"{self._inner.describe()} (BGP passwords: {self._api.describe()})"

    def close(self) -> None:
        self._secrets.stop()
        self._inner.close()
        self._api.close()

    # -- writes are the wrapped store's -----------------------------------------------------

    def rules(self) -> str:
        return self._inner.rules()

    def get(self, key: str) -> Optional[bytes]:
        return self._inner.get(key)

    def put(self, key: str, value: bytes) -> None:
        self._inner.put(key, value)

    def delete(self, key: str) -> bool:
        return self._inner.delete(key)

    def update(self, key: str, change: Callable[[Optional[bytes]], bytes]) -> tuple[Optional[bytes], bytes]:
        return self._inner.update(key, change)

    def where(self, key: str) -> str:
        return self._inner.where(key)

    def __repr__(self) -> str:
        return f"<WithKubernetesSecrets {self.describe()}>"
