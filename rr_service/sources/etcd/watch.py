"""One etcd watch on its own gRPC stream and thread (python-etcd3's Watcher is not used:
see client.py)."""

from __future__ import annotations

import logging
import queue
import threading
from typing import NamedTuple, Optional

import grpc
from etcd3 import etcdrpc
from etcd3.etcdrpc import kv_pb2

from rr_service.sources.base import DatastoreError, DatastoreUnavailable, ResyncNeeded
from rr_service.sources.etcd.config import Endpoint
from rr_service.sources.etcd.errors import explain

_log = logging.getLogger(__name__)


class KeyEvent(NamedTuple):
    """One key that changed under the watched prefix: relative key, value (None: deleted),
    the etcd revision of the change and the key's create_revision (None: deleted)."""

    key: str
    value: Optional[bytes]
    revision: int
    created: Optional[int] = None


def decode(key: bytes) -> str:
    # Lossless for any bytes; the model rejects names that are not clean.
    return key.decode("utf-8", "surrogateescape")


class WatchStream:
    """One etcd watch on its own gRPC stream and thread.

    The thread only queues lists of KeyEvent, or one DatastoreError and ends.
    It never calls etcd itself (calling the client from a watch thread can
    deadlock) and never retries (retrying is the daemon's resync).
    """

    def __init__(self, channel, metadata, prefix: str, key: bytes, range_end: bytes, from_revision: int,
                 endpoint: Endpoint, timeout: float, events: Optional[queue.Queue] = None, rename: str = "",
                 exclude: str = ""):
        """Watches the keys from `key` up to `range_end`; keys come out relative to `prefix`,
        after `rename`, except those starting with `exclude`. Several streams may share one
        `events` queue."""
        self.events: queue.Queue = events if events is not None else queue.Queue()
        self._prefix_len = len(prefix)
        self._rename = rename
        self._exclude = exclude
        self._endpoint = endpoint
        self._timeout = timeout
        self._stopped = threading.Event()
        create = etcdrpc.WatchCreateRequest(key=key, range_end=range_end, start_revision=max(int(from_revision), 0))
        request = etcdrpc.WatchRequest(create_request=create)

        def requests():
            yield request
            # Returning would half-close the stream: keep it open until cancel.
            self._stopped.wait()

        # hasleader: a member cut off from its cluster's majority keeps answering pings but
        # sees no more changes; with this, it cancels the watch ("no leader") and the daemon
        # resyncs from another endpoint instead of waiting on a silent watch forever.
        self._call = etcdrpc.WatchStub(channel).Watch(
            requests(), metadata=tuple(metadata or ()) + (("hasleader", "true"),))
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"etcd-watch {prefix} @{from_revision}")
        self._thread.start()

    def cancel(self) -> None:
        self._stopped.set()
        self._call.cancel()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=self._timeout)

    def _run(self) -> None:
        try:
            for response in self._call:
                if response.compact_revision:
                    self._fail(ResyncNeeded(
                        f"etcd watch revision compacted (etcd kept history from "
                        f"{response.compact_revision} on): resync"))
                    return
                if response.canceled:
                    reason = response.cancel_reason or "no reason given"
                    self._fail(ResyncNeeded(f"etcd cancelled the watch: {reason}"))
                    return
                changes = [self._change(event) for event in response.events]
                if self._exclude:
                    changes = [change for change in changes if not change.key.startswith(self._exclude)]
                if changes:
                    self.events.put(changes)
            self._fail(ResyncNeeded("etcd ended the watch stream"))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and self._stopped.is_set():
                return
            reason = explain(exc, self._endpoint, self._timeout)
            self._fail(DatastoreUnavailable(f"etcd {self._endpoint.url}: watch lost: {reason}"))
        except Exception as exc:  # a thread must not die silently
            _log.exception("etcd watch thread failed")
            self._fail(ResyncNeeded(f"etcd watch failed: {exc}"))
        finally:
            self._stopped.set()  # lets gRPC's request thread finish too

    def _fail(self, error: DatastoreError) -> None:
        if not self._stopped.is_set():
            self.events.put(error)

    def _change(self, event) -> KeyEvent:
        kv = event.kv
        deleted = event.type == kv_pb2.Event.DELETE
        return KeyEvent(key=self._rename + decode(kv.key)[self._prefix_len:],
                        value=None if deleted else kv.value,
                        revision=kv.mod_revision,
                        created=None if deleted else kv.create_revision)
