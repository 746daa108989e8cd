"""etcd v3 adapter on Debian's python-etcd3 0.12.

python-etcd3 0.12 is used for what it does well (the gRPC channel with TLS, the
KV calls with a timeout, the protobuf stubs); its weak spots are replaced here
(see the python-etcd3 section of FIELD-NOTES.md):

* Its ``Watcher`` thread loops forever: it spins at 100 % CPU while etcd is
  down, never delivers again after etcd restarts, and takes a full timeout to
  report a compacted start revision. This module runs its own watch stream, one
  per ``start_watch``, on the client's channel: a thread that only puts changes
  or one error on a queue and then ends, so there is nothing left to spin.
* It has no multi-endpoint client. A gRPC target listing several addresses
  fails over, but then TLS checks every server against the whole list
  ("Peer name 10.0.0.1:2379,10.0.0.2:2379 is not in peer certificate"), and a
  black-holed first address eats the whole call timeout. So endpoints are tried
  here, one channel each, in order, starting with the last one that worked.
* It authenticates with call credentials, which grpcio >= 1.45 refuses on a
  plain-text channel. The token is sent as plain metadata instead (what etcd
  reads either way), and a rejected token ("invalid auth token": expired, or
  invalidated by a password change) rebuilds the client once.

Any failure closes the whole client; the next call builds a fresh one, with a
fresh channel (no inherited reconnect backoff) and a fresh token.
"""

from __future__ import annotations

import logging
import queue
from typing import Callable, NamedTuple, Sequence, TypeVar

import etcd3
import grpc
from etcd3 import etcdrpc
from etcd3.utils import increment_last_byte

from rr_service.sources.etcd.config import EtcdConfig, Endpoint
from rr_service.sources.etcd.errors import explain, is_token_rejected
from rr_service.sources.etcd.watch import KeyEvent, WatchStream, decode
from rr_service.sources.base import (
    DatastoreError,
    DatastoreUnavailable,
    ResyncNeeded,
)

_log = logging.getLogger(__name__)

# https without ca_cert trusts Debian's system store, not gRPC's bundled one.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

GRPC_OPTIONS = (
    # A hung etcd (SIGSTOP, dead host, lost route) is only noticed by pings:
    # a watch sees it within keepalive time + timeout (~8 s). Not 5 s: etcd's
    # --grpc-keepalive-min-time is 5 s, a ping that arrives a hair early is a
    # strike, and after three it closes the connection (GOAWAY too_many_pings):
    # a quiet watch was lost every ~30 s.
    ("grpc.keepalive_time_ms", 6000),
    ("grpc.keepalive_timeout_ms", 2000),
    # Not without calls: etcd allows pings on a connection without streams
    # only every 2 h, answers the third with GOAWAY "too_many_pings" (and gRPC
    # logs an error and doubles its ping interval for good). Unary calls have
    # their own timeout; the watch stream is the call that needs pings.
    ("grpc.keepalive_permit_without_calls", 0),
    # By default gRPC stops pinging after 2 pings without data: a quiet watch
    # stream would then never notice a hung etcd (measured: not in 60 s).
    ("grpc.http2.max_pings_without_data", 0),
    # 4 MiB default: a Calico-sized prefix read or catch-up watch overflows it,
    # and that error kills every stream on the channel.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Subchannels are shared across channels by default: a "fresh" client could
    # inherit the reconnect backoff of the one just closed.
    ("grpc.use_local_subchannel_pool", 1),
)

# Keys per Range of a snapshot: a reply for the whole prefix, held beside the dict it fills,
# raised the peak memory of a start by ~1.8 MB at 10,000 keys; 1,000 keeps that to a tenth
# for one extra round trip per 1,000 keys.
SNAPSHOT_PAGE_KEYS = 1000
SNAPSHOT_ATTEMPTS = 3

T = TypeVar("T")


# -- errors ----------------------------------------------------------------------


class _EndpointFailure(Exception):
    """One endpoint failed (message: what failed); the next one may work."""


def _readable(path: str, setting: str) -> str:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise DatastoreUnavailable(
            f"etcd {setting} file {path}: cannot read it: {exc.strerror or exc}") from None
    return path


# -- the adapter -----------------------------------------------------------------


class AlsoRange(NamedTuple):
    """Keys under another prefix that one data set needs beside its own (Calico's legacy IP
    pools beside the BGP keys): read at the snapshot's revision, watched on a stream of its
    own, handed over as `rename` + their key relative to `prefix`."""

    prefix: str
    under: tuple
    rename: str


class EtcdDatastore:
    """All keys under one prefix of etcd, as a snapshot plus a stream of changes.

    Keys given and returned are relative to ``prefix`` (no leading '/'). A
    second instance with another prefix (e.g. "/calico/resources/v3") is
    independent. Not thread-safe: one caller thread (the daemon loop).

    Endpoints are tried in order, starting with the last one that answered; a
    call fails with DatastoreUnavailable only when every endpoint failed (so it
    can take up to len(endpoints) × timeout, twice that with authentication).
    A failed call closes the client and with it a running watch: next_changes()
    then asks for a resync.

    ``heartbeat`` is called before every step that may block for up to one
    timeout (an endpoint's call, its authentication), in the caller's thread:
    the daemon feeds systemd's watchdog with it, so a slow or black-holed etcd
    never looks like a hung loop, while a loop that really hangs still stops
    the pings.
    """

    def __init__(self, config: EtcdConfig, prefix: str,
                 heartbeat: Callable[[], None] | None = None):
        self._config = config
        self._heartbeat = heartbeat or _nothing
        self._endpoints = config.parsed_endpoints()
        self._prefix = prefix.rstrip("/") + "/"
        self._current = 0
        self._client: etcd3.Etcd3Client | None = None
        self._watch: WatchStream | None = None
        self._also_watches: list[WatchStream] = []

    def retarget(self, prefix: str) -> None:
        """Read (and later watch) another prefix over the same connection: deciding
        `schema = "auto"` costs no second connect (nor TLS handshake, nor authentication)."""
        if self._watch is not None:
            raise RuntimeError("retarget() before start_watch(), not while a watch runs")
        self._prefix = prefix.rstrip("/") + "/"

    # -- reading ---------------------------------------------------------------

    def snapshot(self, page_keys: int | None = SNAPSHOT_PAGE_KEYS,
                 under: Sequence[str] = ("",), created: dict | None = None) -> tuple[dict[str, bytes], int]:
        """All keys under the prefix (or only under the sub-prefixes `under`, relative) and
        the etcd revision they were read at; `created`, when given, gets every key's
        create_revision.

        To see every later change, call ``start_watch(revision + 1)``. Read in pages of
        `page_keys` keys (None: in one Range), each page at the first one's revision, so the
        result is the same consistent view one Range gives.
        """
        return self._call(lambda c: _read_prefixes(c, self._prefix, under, page_keys, created))

    def read_also(self, also: "AlsoRange", revision: int, created: dict | None = None) -> dict[str, bytes]:
        """The keys of another prefix at `revision` (a snapshot's, so both are one consistent
        view), keyed `also.rename` + their key relative to `also.prefix`."""
        mine: dict = {}
        items = self._call(lambda c: _read_prefixes(c, also.prefix, also.under, SNAPSHOT_PAGE_KEYS, mine, revision)[0])
        if created is not None:
            created.update((also.rename + key, order) for key, order in mine.items())
        return {also.rename + key: value for key, value in items.items()}

    def holds_any(self, sub: str) -> bool:
        """Whether any key lies under the sub-prefix `sub` (one key read, not all of them)."""
        start = (self._prefix + sub).encode()
        request = etcdrpc.RangeRequest(key=start, range_end=increment_last_byte(start), limit=1, keys_only=True)
        response = self._call(lambda c: c.kvstub.Range(request, c.timeout, credentials=c.call_credentials,
                                                         metadata=c.metadata))
        return bool(response.kvs)

    def get(self, key: str) -> bytes | None:
        absolute = self._absolute(key)
        value, _meta = self._call(lambda c: c.get(absolute))
        return value

    def put(self, key: str, value: bytes) -> None:
        absolute = self._absolute(key)
        self._call(lambda c: c.put(absolute, value))

    def delete(self, key: str) -> bool:
        """Delete one key; True if it existed."""
        absolute = self._absolute(key)
        return bool(self._call(lambda c: c.delete(absolute)))

    def update(self, key: str, change: Callable[[bytes | None], bytes],
               attempts: int = 5) -> tuple[bytes | None, bytes]:
        """Read-modify-write of one key that never loses a concurrent writer's update.

        ``change(value read, None when absent)`` gives the value to write. The write is an
        etcd transaction that succeeds only while the key's mod_revision is still the one
        read (when absent: only while it is still absent), the optimistic update calicoctl
        does with a resourceVersion. On a conflict the key is read again and ``change``
        called again, up to ``attempts`` times. Returns (value read, value written).
        Raises DatastoreError when every attempt lost the race; an exception from
        ``change`` propagates, and nothing is written.
        """
        absolute = self._absolute(key)
        for _ in range(attempts):
            current, meta = self._call(lambda c: c.get(absolute))
            value = change(current)

            def write(c: etcd3.Etcd3Client) -> bool:
                tx = c.transactions
                if meta is None:
                    unchanged = tx.version(absolute) == 0  # still absent
                else:
                    unchanged = tx.mod(absolute) == meta.mod_revision
                succeeded, _responses = c.transaction(
                    compare=[unchanged], success=[tx.put(absolute, value)], failure=[])
                return succeeded

            if self._call(write):
                return current, value
        raise DatastoreError(f"etcd key {self._prefix}{key} was changed by another writer "
                             f"{attempts} times while we updated it; not written")

    # -- watching --------------------------------------------------------------

    def start_watch(self, from_revision: int, under: Sequence[str] = ("",), also: Sequence["AlsoRange"] = (),
                    exclude: str = "") -> None:
        """Watch the prefix (or the smallest key range that holds every sub-prefix of
        `under`) for changes with revision >= from_revision, and each `also` range on a
        stream of its own into the same queue (a common range would carry the churn between).
        Keys of the prefix that start with `exclude` are dropped (they would pass for an
        `also` range's).

        Returns at once; failures (including a compacted from_revision) come
        out of next_changes(). Replaces any previous watch.
        """
        self._stop_watch()
        client = self._call(lambda c: c)  # builds (and authenticates) if needed
        first, last = min(under), max(under)
        endpoint = self._endpoints[self._current]
        self._watch = WatchStream(
            client.channel, client.metadata, self._prefix, (self._prefix + first).encode(),
            increment_last_byte((self._prefix + last).encode()), from_revision, endpoint, self._config.timeout,
            exclude=exclude)
        for extra in also:
            first, last = min(extra.under), max(extra.under)
            self._also_watches.append(WatchStream(
                client.channel, client.metadata, extra.prefix, (extra.prefix + first).encode(),
                increment_last_byte((extra.prefix + last).encode()), from_revision, endpoint, self._config.timeout,
                events=self._watch.events, rename=extra.rename))

    def next_changes(self, timeout: float) -> list[KeyEvent]:
        """Wait up to ``timeout`` s for changes, then take all already queued.

        Returns [] when nothing changed. Raises ResyncNeeded when the watch is
        compacted, cancelled or gone, DatastoreUnavailable when etcd is
        unreachable; either way the client is closed and the caller must take
        a new snapshot (which reconnects) and call start_watch again.
        """
        if self._watch is None:
            raise ResyncNeeded("no etcd watch running: take a snapshot and start one")
        changes: list[KeyEvent] = []
        try:
            item = self._watch.events.get(timeout=timeout)
        except queue.Empty:
            return changes
        while True:
            if isinstance(item, DatastoreError):
                # Changes before the error are dropped: the resync covers them.
                self._reset()
                raise item
            changes.extend(item)
            try:
                item = self._watch.events.get_nowait()
            except queue.Empty:
                return changes

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        self._reset()

    def describe(self) -> str:
        text = f"etcd {self._endpoints[self._current].url}"
        if len(self._endpoints) > 1:
            text += f" (1 of {len(self._endpoints)} endpoints)"
        return text

    def __repr__(self) -> str:
        return f"<EtcdDatastore {self.describe()} prefix={self._prefix!r}>"

    # -- internals -------------------------------------------------------------

    def _absolute(self, key: str) -> bytes:
        if not key or key.startswith("/"):
            raise ValueError(f"key must be relative to {self._prefix!r}: {key!r}")
        return (self._prefix + key).encode("utf-8", "surrogateescape")

    def _call(self, operation: Callable[[etcd3.Etcd3Client], T]) -> T:
        """Run operation on the current endpoint, else on the next ones, in order."""
        failures = []
        for _ in range(len(self._endpoints)):
            endpoint = self._endpoints[self._current]
            self._heartbeat()
            try:
                try:
                    return operation(self._ensure_client())
                except Exception as exc:
                    if not is_token_rejected(exc):
                        raise
                    _log.info("etcd %s rejected our auth token; authenticating again", endpoint.url)
                    self._reset()
                    self._heartbeat()
                    return operation(self._ensure_client())
            except DatastoreUnavailable:
                self._reset()
                raise  # a local problem (unreadable file): the same for every endpoint
            except _EndpointFailure as exc:
                failures.append(f"{endpoint.url}: {exc}")
            except Exception as exc:
                failures.append(f"{endpoint.url}: {explain(exc, endpoint, self._config.timeout)}")
            self._reset()
            self._current = (self._current + 1) % len(self._endpoints)
        if len(failures) == 1:
            raise DatastoreUnavailable(f"etcd {failures[0]}")
        raise DatastoreUnavailable("no etcd endpoint answered: " + "; ".join(failures))

    def _ensure_client(self) -> etcd3.Etcd3Client:
        if self._client is None:
            self._client = self._connect(self._endpoints[self._current])
        return self._client

    def _connect(self, endpoint: Endpoint) -> etcd3.Etcd3Client:
        """A new client for one endpoint (authenticated if configured)."""
        cfg = self._config
        tls = {}
        if endpoint.tls:
            tls["ca_cert"] = _readable(cfg.ca_cert or SYSTEM_CA_BUNDLE, "ca_cert")
            if cfg.cert:
                tls["cert_cert"] = _readable(cfg.cert, "cert")
                tls["cert_key"] = _readable(cfg.key, "key")
        # No user/password here: python-etcd3 would attach call credentials,
        # which grpcio refuses on plain-text channels.
        client = etcd3.client(host=endpoint.host, port=endpoint.port, timeout=cfg.timeout,
                              grpc_options=GRPC_OPTIONS, **tls)
        if cfg.username:
            try:
                response = etcdrpc.AuthStub(client.channel).Authenticate(
                    etcdrpc.AuthenticateRequest(name=cfg.username, password=cfg.password),
                    timeout=cfg.timeout)
            except grpc.RpcError as exc:
                client.close()
                reason = explain(exc, endpoint, cfg.timeout)
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    reason = f"authentication failed for user {cfg.username}: {reason}"
                raise _EndpointFailure(reason) from None
            client.metadata = (("token", response.token),)
            self._heartbeat()  # the call that follows may take another timeout
        return client

    def _stop_watch(self) -> None:
        for stream in self._also_watches:
            stream.cancel()
        self._also_watches = []
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _reset(self) -> None:
        self._stop_watch()
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing must never hide the error being handled
                _log.debug("closing the etcd client failed", exc_info=True)
            self._client = None


def _nothing() -> None:
    pass


def _read_prefixes(client: etcd3.Etcd3Client, prefix: str, under: Sequence[str],
                   page_keys: int | None, created: dict | None, at: int | None = None) -> tuple[dict[str, bytes], int]:
    """Every key under prefix + each of `under`, all at the revision of the first page (or
    at `at`). `created` gets each key's create_revision."""
    cut = len(prefix)
    for _attempt in range(SNAPSHOT_ATTEMPTS):
        data: dict[str, bytes] = {}
        if created is not None:
            created.clear()
        revision = at
        try:
            for sub in under:
                start = (prefix + sub).encode()
                end = increment_last_byte(start)
                while True:
                    # Built here: python-etcd3 0.12's get_range_response drops `limit` and `revision`.
                    request = etcdrpc.RangeRequest(key=start, range_end=end, limit=page_keys or 0,
                                                   revision=revision or 0,
                                                   sort_order=etcdrpc.RangeRequest.ASCEND,
                                                   sort_target=etcdrpc.RangeRequest.KEY)
                    response = client.kvstub.Range(request, client.timeout, credentials=client.call_credentials,
                                                   metadata=client.metadata)
                    revision = revision or response.header.revision
                    if created is None:
                        for kv in response.kvs:
                            data[decode(kv.key)[cut:]] = kv.value
                    else:
                        for kv in response.kvs:
                            key = decode(kv.key)[cut:]
                            data[key] = kv.value
                            created[key] = kv.create_revision
                    if not response.more:
                        break
                    start = response.kvs[-1].key + b"\0"
                    del response  # one page held at a time: that is the point of paging
            return data, revision
        except grpc.RpcError as exc:
            # Compacted past the first page's revision while reading: read again, newer.
            if exc.code() != grpc.StatusCode.OUT_OF_RANGE or revision is None or at is not None:
                raise
            _log.info("etcd compacted past revision %d while reading %s; reading again", revision, prefix)
    raise DatastoreError(f"etcd compacted {prefix} faster than it could be read, {SNAPSHOT_ATTEMPTS} times")
