"""One Kubernetes watch on a thread of its own, and how its objects become the source's items.

The thread only queues: `(key, resourceVersion, Change or None)` for every event (None: a
bookmark), or once the error that ended it. It watches again from the last version seen
whenever the server ends a watch at its (jittered) timeoutSeconds.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from datetime import datetime
from typing import Optional

from rr_service.calico.v3.resources import KINDS, SECRETS
from rr_service.core.values import InvalidValue, show
from rr_service.sources.base import Change, DatastoreError, ResyncNeeded
from rr_service.sources.kubernetes import convert, secrets
from rr_service.sources.kubernetes.api import KubeApi, cut

log = logging.getLogger("calico-rr")

WATCH_TIMEOUT = 300  # seconds, jittered by up to a fifth so watches do not reopen together


def converted(plural: str, obj: dict) -> Optional[tuple[str, bytes]]:
    """A Node or Calico object from the API as (`<plural>/<name>`, v3 JSON); None, with a
    warning, when it cannot be read."""
    try:
        return convert.resource(plural, obj)
    except (InvalidValue, AttributeError, TypeError) as exc:
        log.warning("ignoring a %s from the Kubernetes API: %s", KINDS[plural], show(str(exc), 120))
        return None


def created(obj: dict) -> int:
    """The object's creationTimestamp in seconds: who claimed an address first."""
    stamp = (obj.get("metadata") or {}).get("creationTimestamp") or ""
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


class Watcher:
    def __init__(self, api: KubeApi, path: str, plural: str, version: str, out: queue.Queue, timeout: int,
                 extra: Optional[dict] = None, key: Optional[str] = None, known: Optional[dict] = None,
                 accept: str = "application/json"):
        """`plural` says how objects become items; `key` is the watch's entry in the source's
        bookmark (the plural, or `secrets/<name>` for a Secret's watch, whose `extra` is its
        fieldSelector). `known`: the collection's items as the source has them: an object
        whose item did not change (a kubelet's status update) is dropped here, on this
        thread, and never wakes the daemon."""
        self._known = dict(known or {})
        self._api, self._path = api, path
        self._plural, self._version, self._out = plural, version, out
        self._extra, self._key = extra, key or plural
        self._timeout, self._accept = timeout, accept
        self._stopped = threading.Event()
        self._response = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{self._key}", daemon=True)

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
                                             self._extra, self._accept):
                    if self._stopped.is_set():
                        return
                    self._event(event)
                # The server ended the watch (timeoutSeconds): watch again from where we are.
        except DatastoreError as exc:
            if not self._stopped.is_set():
                self._out.put(exc)
        except Exception as exc:  # never a silent dead thread: the daemon reads again
            if not self._stopped.is_set():
                self._out.put(ResyncNeeded(f"watch {self._key} failed: {exc!r}"))

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
                self._known.pop(f"{self._plural}/{name}", None)
                self._out.put((self._key, version, Change(f"{self._plural}/{name}", None)))
            return
        if self._plural == SECRETS:
            item = secrets.item(obj)
            if item is not None:
                self._out.put((self._key, version, Change(item[0], item[1])))
            return
        item = converted(self._plural, obj)
        if item is not None and self._known.get(item[0]) != item[1]:
            self._known[item[0]] = item[1]
            self._out.put((self._key, version, Change(item[0], item[1], created(obj))))
