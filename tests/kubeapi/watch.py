"""`?watch=1`: an etcd watch turned into kube watch events.

What kube-apiserver does and clients depend on:
- resourceVersion "0" or absent: first a synthetic ADDED for every current object, then the
  changes after that list's revision; a resourceVersion N: the changes after N.
- N older than etcd's compaction: HTTP 200, then one ERROR event carrying a 410 Expired
  Status, then the end of the stream (never an HTTP 410).
- A DELETED event carries the last state of the object with the delete's revision as its
  resourceVersion; with a selector, an object that stops matching is DELETED and one that
  starts matching is ADDED.
- timeoutSeconds ends the stream cleanly (a final BOOKMARK first when bookmarks are on).
- BOOKMARK objects carry only kind, apiVersion and metadata.resourceVersion: the revision up
  to which the watcher has seen everything (the last event's, or an etcd progress
  notification's when etcd runs with --experimental-watch-progress-notify-interval).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Optional

from . import errors
from .etcdstore import Event, prefix_end
from .registry import Registry
from .resources import Resource

# How often a quiet watch re-checks whether it must stop (server stop, cut, revoked token).
POLL = 0.2


class WatchStream:
    def __init__(self, registry: Registry, res: Resource, namespace: str, rv: str,
                 match: Callable[[dict], bool], timeout: float, bookmarks: bool,
                 bookmark_interval: float, alive: Callable[[], bool]):
        self.registry, self.res, self.namespace = registry, res, namespace
        self.rv, self.match, self.timeout = rv, match, timeout
        self.bookmarks, self.bookmark_interval, self.alive = bookmarks, bookmark_interval, alive
        self.stopped = threading.Event()
        self.abrupt = False  # set when a test cuts the stream: no clean end of the body

    def stop(self, abrupt: bool = False) -> None:
        self.abrupt = self.abrupt or abrupt
        self.stopped.set()

    def run(self, send: Callable[[dict], None]) -> None:
        """Send events until the timeout, a stop, or an error; send raises on a dead client."""
        store, prefix = self.registry.store, self.res.key_prefix(self.registry.prefix,
                                                                 self.namespace)
        initial = []
        if self.rv in ("", "0"):
            page = store.range(prefix, prefix_end(prefix))
            last = page.revision
            initial = [self.registry.decode(kv) for kv in page.kvs]
        else:
            try:
                last = int(self.rv)
            except ValueError:
                raise errors.bad_request(f"invalid resource version: {self.rv!r}") from None
        etcd_watch = store.watch(prefix, prefix_end(prefix), last + 1)
        try:
            for obj in initial:
                if self.match(obj):
                    send({"type": "ADDED", "object": obj})
            self._loop(etcd_watch, last, send)
        finally:
            etcd_watch.cancel()

    def _loop(self, etcd_watch, last: int, send) -> None:
        deadline = time.monotonic() + self.timeout
        next_bookmark = time.monotonic() + self.bookmark_interval
        while True:
            if self.stopped.is_set() or not self.alive():
                self.abrupt = True
                return
            now = time.monotonic()
            if now >= deadline:
                if self.bookmarks:
                    send(self._bookmark(last))
                return
            if self.bookmarks and now >= next_bookmark:
                send(self._bookmark(last))
                next_bookmark = now + self.bookmark_interval
            wait = min(deadline, next_bookmark if self.bookmarks else deadline, now + POLL) - now
            try:
                item = etcd_watch.items.get(timeout=max(wait, 0.001))
            except queue.Empty:
                continue
            if item[0] == "events":
                for event in item[1]:
                    out = self._translate(event)
                    if out:
                        send(out)
                    last = max(last, event.kv.mod_revision)
            elif item[0] == "progress":
                last = max(last, item[1])
            elif item[0] == "compacted":
                send({"type": "ERROR", "object": errors.too_old(int(self.rv or last),
                                                                item[1]).status()})
                return
            else:  # the etcd stream died: kube ends the watch with an error event too
                send({"type": "ERROR", "object": errors.internal(item[1]).status()})
                return

    def _translate(self, event: Event) -> Optional[dict]:
        rev = event.kv.mod_revision
        old = self.registry.decode(event.prev, rev) if event.prev else None
        old_matches = old is not None and self.match(old)
        if event.type == "DELETE":
            if old is None:  # etcd no longer had the old value: name what we know
                old = self._stub(event.kv.key, rev)
                old_matches = self.match(old)
            return {"type": "DELETED", "object": old} if old_matches else None
        new = self.registry.decode(event.kv)
        if self.match(new):
            return {"type": "MODIFIED" if old_matches else "ADDED", "object": new}
        return {"type": "DELETED", "object": old} if old_matches else None

    def _stub(self, key: str, rev: int) -> dict:
        meta = {"name": key.rsplit("/", 1)[-1], "resourceVersion": str(rev)}
        if self.res.namespaced:
            meta["namespace"] = key.rsplit("/", 2)[-2]
        return {"kind": self.res.kind, "apiVersion": self.res.api_version, "metadata": meta}

    def _bookmark(self, rev: int) -> dict:
        return {"type": "BOOKMARK", "object": {"kind": self.res.kind,
                                               "apiVersion": self.res.api_version,
                                               "metadata": {"resourceVersion": str(rev)}}}

