"""The etcd side: reads at a revision, compare-and-swap writes, one raw watch stream per watcher.

Requests are built from etcd's own protobuf messages (`etcd3.etcdrpc`) and sent on the stubs
of a python-etcd3 client, because python-etcd3 0.12's helpers drop what kube-apiserver's
storage relies on: `limit` and `revision` on ranges, the header of a transaction (the revision
a write got) and `prev_kv` on watches (a DELETED event carries the last object).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple
from urllib.parse import urlparse

import etcd3
import grpc
from etcd3 import etcdrpc

# A page of big Nodes, or a catch-up watch, passes gRPC's default 4 MiB (FIELD-NOTES).
GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 5000), ("grpc.keepalive_timeout_ms", 2000),
                ("grpc.keepalive_permit_without_calls", 1),
                # back after an etcd restart within a second, not gRPC's default 7-10 s
                ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000)]


class StoreError(Exception):
    """etcd failed or is unreachable (the HTTP side answers 500/503)."""


class Compacted(StoreError):
    """The revision asked for has been compacted away."""

    def __init__(self, compact_revision: int = 0):
        super().__init__(f"required revision has been compacted ({compact_revision})")
        self.compact_revision = compact_revision


class FutureRevision(StoreError):
    pass


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True)
class Page:
    kvs: List[KV]
    revision: int      # the header revision the range was read at
    count: int         # keys in the whole range (not only this page)
    more: bool


@dataclass(frozen=True)
class Event:
    type: str                 # "PUT" or "DELETE"
    kv: KV                    # for a DELETE: key and the delete's revision, no value
    prev: Optional[KV]        # the value before (prev_kv), if etcd still had it

    @property
    def created(self) -> bool:
        return self.type == "PUT" and self.kv.create_revision == self.kv.mod_revision


def _kv(kv) -> KV:
    return KV(kv.key.decode(), bytes(kv.value), kv.mod_revision, kv.create_revision)


def prefix_end(prefix: str) -> str:
    """The range_end that makes [prefix, end) the keys under prefix (prefix ends in '/')."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EtcdStore:
    def __init__(self, url: str, ca_cert: Optional[str] = None, cert: Optional[str] = None,
                 key: Optional[str] = None, timeout: float = 5.0):
        parsed = urlparse(url if "://" in url else f"http://{url}")
        self.url, self.timeout = url, timeout
        tls = {}
        if parsed.scheme == "https":
            tls = {"ca_cert": ca_cert, "cert_cert": cert, "cert_key": key}
        self.client = etcd3.client(host=parsed.hostname, port=parsed.port or 2379,
                                   timeout=timeout, grpc_options=GRPC_OPTIONS, **tls)
        self.watch_stub = etcdrpc.WatchStub(self.client.channel)

    def close(self) -> None:
        self.client.close()

    def _call(self, method, request, timeout: Optional[float] = None):
        try:
            # wait_for_ready: while etcd is down or reconnecting a request waits (up to its
            # timeout) like kube-apiserver's, instead of failing at once
            return method(request, timeout or self.timeout,
                          credentials=self.client.call_credentials,
                          metadata=self.client.metadata, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _translate(exc) from exc

    # -- reads --------------------------------------------------------------------------------
    def revision(self) -> int:
        response = self._call(self.client.kvstub.Range,
                              etcdrpc.RangeRequest(key=b"\0", count_only=True))
        return response.header.revision

    def newest(self, start: str, end: str) -> Tuple[int, int]:
        """(how many keys the range holds, the highest mod_revision among them)."""
        request = etcdrpc.RangeRequest(key=start.encode(), range_end=end.encode(), limit=1, keys_only=True,
                                       sort_order=etcdrpc.RangeRequest.DESCEND,
                                       sort_target=etcdrpc.RangeRequest.MOD)
        response = self._call(self.client.kvstub.Range, request)
        return response.count, (response.kvs[0].mod_revision if response.kvs else 0)

    def get(self, key: str) -> Optional[KV]:
        response = self._call(self.client.kvstub.Range, etcdrpc.RangeRequest(key=key.encode()))
        return _kv(response.kvs[0]) if response.kvs else None

    def range(self, start: str, end: str, revision: int = 0, limit: int = 0) -> Page:
        request = etcdrpc.RangeRequest(key=start.encode(), range_end=end.encode(),
                                       revision=revision, limit=limit,
                                       sort_order=etcdrpc.RangeRequest.ASCEND,
                                       sort_target=etcdrpc.RangeRequest.KEY)
        response = self._call(self.client.kvstub.Range, request)
        return Page([_kv(kv) for kv in response.kvs], response.header.revision, response.count,
                    response.more)

    # -- writes: each is one transaction, so the answer carries the revision it made ----------
    def _txn(self, compare, success, failure):
        return self._call(self.client.kvstub.Txn,
                          etcdrpc.TxnRequest(compare=compare, success=success, failure=failure))

    @staticmethod
    def _cmp_mod(key: str, mod_revision: int):
        return etcdrpc.Compare(key=key.encode(), target=etcdrpc.Compare.MOD,
                               result=etcdrpc.Compare.EQUAL, mod_revision=mod_revision)

    @staticmethod
    def _get_op(key: str):
        return etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key.encode()))

    def create(self, key: str, value: bytes) -> Optional[int]:
        """Put key if absent: its revision, or None if it exists."""
        response = self._txn([self._cmp_mod(key, 0)],
                             [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                                 key=key.encode(), value=value))], [])
        return response.header.revision if response.succeeded else None

    def update(self, key: str, value: bytes, mod_revision: int) -> Tuple[bool, Optional[KV], int]:
        """Put key if it is still at mod_revision: (done, current kv if not, revision)."""
        response = self._txn([self._cmp_mod(key, mod_revision)],
                             [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                                 key=key.encode(), value=value))], [self._get_op(key)])
        return self._cas_result(response)

    def delete(self, key: str, mod_revision: int) -> Tuple[bool, Optional[KV], int]:
        """Delete key if it is still at mod_revision: (done, current kv if not, revision)."""
        response = self._txn([self._cmp_mod(key, mod_revision)],
                             [etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(
                                 key=key.encode()))], [self._get_op(key)])
        return self._cas_result(response)

    @staticmethod
    def _cas_result(response) -> Tuple[bool, Optional[KV], int]:
        if response.succeeded:
            return True, None, response.header.revision
        kvs = response.responses[0].response_range.kvs
        return False, (_kv(kvs[0]) if kvs else None), response.header.revision

    def put(self, key: str, value: bytes) -> int:
        """An unconditional write (for test helpers that seed etcd directly)."""
        request = etcdrpc.PutRequest(key=key.encode(), value=value)
        return self._call(self.client.kvstub.Put, request).header.revision

    def put_many(self, items: List[Tuple[str, bytes]], max_ops: int = 128,
                 max_bytes: int = 1 << 20) -> int:
        """Unconditional writes, many per transaction (under etcd's defaults: 128 ops,
        1.5 MiB a request): seeding 10,000 Nodes takes seconds, not a minute. Each
        transaction is one revision. The last revision written."""
        rev, ops, size = 0, [], 0
        for key, value in items:
            if ops and (len(ops) == max_ops or size + len(value) > max_bytes):
                rev = self._txn([], ops, []).header.revision
                ops, size = [], 0
            ops.append(etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key.encode(),
                                                                        value=value)))
            size += len(key) + len(value)
        if ops:
            rev = self._txn([], ops, []).header.revision
        return rev

    def delete_prefix(self, prefix: str) -> int:
        request = etcdrpc.DeleteRangeRequest(key=prefix.encode(),
                                             range_end=prefix_end(prefix).encode())
        return self._call(self.client.kvstub.DeleteRange, request).header.revision

    def compact(self, revision: int) -> None:
        self._call(self.client.kvstub.Compact,
                   etcdrpc.CompactionRequest(revision=revision, physical=True), timeout=30)

    def watch(self, start: str, end: str, start_revision: int) -> "EtcdWatch":
        return EtcdWatch(self, start, end, start_revision)


def _translate(exc: grpc.RpcError) -> StoreError:
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if "compacted" in (details or ""):
        return Compacted()
    if "future revision" in (details or ""):
        return FutureRevision(details)
    return StoreError(f"etcd: {exc.code().name if hasattr(exc, 'code') else ''} {details}")


class EtcdWatch:
    """One etcd watch stream of its own (not python-etcd3's shared watcher, whose callbacks
    see raw gRPC errors and die silently after an etcd restart). A reader thread turns
    responses into queue items; the HTTP side waits on the queue with its own deadlines.

    Queue items: ("events", [Event], header_revision), ("progress", header_revision),
    ("compacted", compact_revision), ("closed", reason).
    """

    def __init__(self, store: EtcdStore, start: str, end: str, start_revision: int):
        self.items: "queue.Queue[tuple]" = queue.Queue()
        self._requests: "queue.Queue" = queue.Queue()
        create = etcdrpc.WatchCreateRequest(key=start.encode(), range_end=end.encode(),
                                            start_revision=start_revision, prev_kv=True,
                                            progress_notify=True)
        self._requests.put(etcdrpc.WatchRequest(create_request=create))
        client = store.client
        self._call = store.watch_stub.Watch(self._request_iter(),
                                            credentials=client.call_credentials,
                                            metadata=client.metadata, wait_for_ready=True)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="kubeapi-etcd-watch", daemon=True)
        self._thread.start()

    def _request_iter(self):
        # Ending this iterator half-closes the stream and etcd then ends the watch: it must
        # block until cancel().
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def _read(self) -> None:
        try:
            for response in self._call:
                if response.compact_revision:
                    self.items.put(("compacted", response.compact_revision))
                    return
                if response.canceled:
                    self.items.put(("closed", response.cancel_reason or "watch canceled by etcd"))
                    return
                if response.events:
                    events = [Event("DELETE" if e.type == 1 else "PUT", _kv(e.kv),
                                    _kv(e.prev_kv) if e.HasField("prev_kv") else None)
                              for e in response.events]
                    self.items.put(("events", events, response.header.revision))
                elif not response.created:
                    self.items.put(("progress", response.header.revision))
            self.items.put(("closed", "etcd ended the watch stream"))
        except grpc.RpcError as exc:
            if not self._closed.is_set():
                self.items.put(("closed", f"etcd watch failed: {exc.code().name}"))
        except Exception as exc:  # never let the reader die without telling the waiter
            self.items.put(("closed", f"etcd watch failed: {exc!r}"))

    def cancel(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._requests.put(None)
        self._call.cancel()
        self._thread.join(timeout=5)
