"""kube-apiserver's watch cache, for the lists it serves from memory: `resourceVersion=0`.

client-go's reflectors (and the reflector's daemon, at its first read) list with
resourceVersion "0": "any version", which kube-apiserver answers from its watch cache, kept
current by one etcd watch over its whole prefix, without reading etcd and ignoring `limit`.
The answer may be a little behind etcd; a watch from its resourceVersion brings the client up
to date. Every other list reads etcd (registry.py).

Here as there the cache is filled by a list and an etcd watch from the list's revision; it
is rebuilt when that watch ends (etcd restarted, compacted under it) and starts again with the
server. One difference: before answering, a list waits (up to FRESH seconds) until the cache
holds as many objects as etcd and has seen etcd's newest one. kube-apiserver's cache is
normally milliseconds behind; the tests here must know what a list returns. (etcd's progress
notifications cannot tell: before 3.4.25 one can overtake the events it covers, which is why
kube-apiserver does not trust them on such an etcd.) A cache not filled or not caught up in
time: the list reads etcd.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Optional

from .etcdstore import StoreError, prefix_end

log = logging.getLogger("kubeapi-test")

POLL = 0.2  # how often the cache's thread looks whether it must stop
FRESH = 3.0  # the longest a list waits for the cache to catch up


class WatchCache:
    def __init__(self, registry):
        self.registry = registry
        self._objects: dict = {}  # etcd key -> the object as decoded (read-only)
        self.revision = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._stopped.clear()
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="kubeapi-watch-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        with self._lock:
            self._ready.clear()
            self._objects = {}

    def list(self, prefix: str, match: Optional[Callable[[dict], bool]]) -> Optional[tuple]:
        """(the objects under `prefix` in key order, the cache's revision), or None while the
        cache is not filled or has not caught up."""
        root = self.registry.prefix + "/"
        try:
            count, newest = self.registry.store.newest(root, prefix_end(root))
        except StoreError:
            return None
        with self._lock:
            deadline = time.monotonic() + FRESH
            while not self._ready.is_set() or self.revision < newest or len(self._objects) != count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.1))
            keys = [key for key in self._objects if key.startswith(prefix)]
            objects = [self._objects[key] for key in sorted(keys)]
            revision = self.revision
        return [obj for obj in objects if match is None or match(obj)], revision

    def _run(self) -> None:
        store, prefix = self.registry.store, self.registry.prefix + "/"
        while not self._stopped.is_set():
            try:
                page = store.range(prefix, prefix_end(prefix))
                objects = {kv.key: self.registry.decode(kv) for kv in page.kvs}
                watch = store.watch(prefix, prefix_end(prefix), page.revision + 1)
                with self._lock:
                    self._objects, self.revision = objects, page.revision
                    self._ready.set()
                    self._changed.notify_all()
                self._follow(watch)
            except StoreError as exc:
                log.info("watch cache: %s; filling it again", exc)
            except Exception as exc:  # never a dead cache thread: lists would read a frozen past
                log.warning("watch cache failed: %r; filling it again", exc)
            with self._lock:
                self._ready.clear()
            self._stopped.wait(0.5)

    def _follow(self, watch) -> None:
        try:
            while not self._stopped.is_set():
                try:
                    item = watch.items.get(timeout=POLL)
                except queue.Empty:
                    continue
                if item[0] == "events":
                    decoded = [(event.kv.key, None if event.type == "DELETE" else self.registry.decode(event.kv))
                               for event in item[1]]
                    with self._lock:
                        for key, obj in decoded:
                            if obj is None:
                                self._objects.pop(key, None)
                            else:
                                self._objects[key] = obj
                        # the events' own revisions: a response's header can be ahead of
                        # events etcd has yet to send
                        self.revision = max(self.revision, *(event.kv.mod_revision for event in item[1]))
                        self._changed.notify_all()
                elif item[0] == "progress":
                    continue  # see the module's docstring
                else:  # compacted or closed: fill the cache again
                    return
        finally:
            watch.cancel()
