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

import ipaddress
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, TypeVar
from urllib.parse import urlsplit

# gRPC's C core prints its own raw line for TLS failures to stderr ("E1125 ...
# ssl_transport_security.cc:1501] Handshake failed ..."), on every retry: `calico-rr render`
# showed it above our one-line error and the daemon's journal would get one every 2 s of an
# outage. Our messages say it once, in words (_explain). Read when gRPC initialises, so set
# before its first import; GRPC_VERBOSITY=ERROR in the environment brings the lines back.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import etcd3
import grpc
from etcd3 import etcdrpc
from etcd3.etcdrpc import kv_pb2
from etcd3.utils import increment_last_byte

from rr_service.sources.base import (
    Change,
    DatastoreConfigError,
    DatastoreError,
    DatastoreUnavailable,
    ResyncNeeded,
)

_log = logging.getLogger(__name__)

DEFAULT_PORT = 2379
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


# -- configuration ---------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    url: str  # as configured, for messages
    host: str  # gRPC target without the port: "ipv4:…", "ipv6:[…]" or "dns:///…"
    port: int
    tls: bool


def _parse_endpoint(url: str) -> _Endpoint:
    """Parse ``http(s)://host[:port]``; host is an IPv4/IPv6 address or a DNS name.

    A DNS name is resolved by gRPC each time a client is built (after every
    failure) and all its addresses are tried; with TLS, the certificate must
    name it.
    """
    bad = DatastoreConfigError(
        f"etcd endpoints: {url!r} is not a URL like http://192.0.2.1:2379, "
        "https://[2001:db8::1]:2379 or https://etcd.example.net:2379")
    try:
        parts = urlsplit(url.strip())
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise bad from None
    host = parts.hostname
    if (parts.scheme not in ("http", "https") or not host or parts.username is not None
            or parts.path not in ("", "/") or parts.query or parts.fragment):
        raise bad
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        if not all(c.isascii() and (c.isalnum() or c in "-.") for c in host):
            raise bad from None
        target = f"dns:///{host}"
    else:
        target = f"ipv4:{addr}" if addr.version == 4 else f"ipv6:[{addr}]"
    return _Endpoint(url=url.strip().rstrip("/"), host=target, port=port,
                     tls=parts.scheme == "https")


@dataclass(frozen=True)
class EtcdConfig:
    """How to reach etcd. Checked when built: errors name the setting.

    ``endpoints`` are URLs (a comma-separated string is accepted too), all http
    or all https. With https, ``ca_cert`` defaults to Debian's system CA store;
    ``cert`` and ``key`` (client certificate) go together, as do ``username``
    and ``password``. ``timeout`` bounds every call, in seconds.
    """

    endpoints: tuple[str, ...]
    ca_cert: str = ""
    cert: str = ""
    key: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 5.0

    def __post_init__(self) -> None:
        endpoints = self.endpoints
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        endpoints = tuple(e.strip() for e in endpoints if e and e.strip())
        object.__setattr__(self, "endpoints", endpoints)
        if not endpoints:
            raise DatastoreConfigError("etcd endpoints: at least one URL is needed")
        parsed = self.parsed_endpoints()
        if len({e.tls for e in parsed}) > 1:
            raise DatastoreConfigError(
                "etcd endpoints mix http:// and https:// URLs: use one scheme for all "
                f"({', '.join(endpoints)})")
        if bool(self.cert) != bool(self.key):
            raise DatastoreConfigError("etcd cert and key must be set together (client certificate)")
        tls_files = [name for name in ("ca_cert", "cert", "key") if getattr(self, name)]
        if tls_files and not parsed[0].tls:
            raise DatastoreConfigError(
                f"etcd {', '.join(tls_files)} set but the etcd endpoints use http://: "
                "use https:// URLs or remove the TLS settings")
        if bool(self.username) != bool(self.password):
            raise DatastoreConfigError("etcd username and password must be set together")
        if not self.timeout > 0:
            raise DatastoreConfigError(f"etcd timeout must be > 0 seconds, not {self.timeout!r}")

    def parsed_endpoints(self) -> list[_Endpoint]:
        return [_parse_endpoint(url) for url in self.endpoints]


# -- errors ----------------------------------------------------------------------


def _rpc_error(exc: BaseException) -> grpc.RpcError | None:
    # python-etcd3 re-raises UNAVAILABLE / DEADLINE_EXCEEDED as its own
    # exceptions without the details; the gRPC error stays in __context__.
    for candidate in (exc, exc.__context__):
        if isinstance(candidate, grpc.RpcError) and hasattr(candidate, "code"):
            return candidate
    return None


def _is_token_rejected(exc: BaseException) -> bool:
    rpc = _rpc_error(exc)
    return (rpc is not None and rpc.code() == grpc.StatusCode.UNAUTHENTICATED
            and "auth token" in (rpc.details() or ""))


def _explain(exc: BaseException, endpoint: _Endpoint, timeout: float) -> str:
    """One line a person can act on, from a gRPC / python-etcd3 error."""
    rpc = _rpc_error(exc)
    if rpc is None:
        return str(exc) or type(exc).__name__
    code, details = rpc.code(), (rpc.details() or "").strip()
    lowered = details.lower()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer within {timeout:g} s"
    if "handshake failed" in lowered:
        reason = details.rsplit("::", 1)[-1] if "::" in details else details.rsplit(":", 1)[-1]
        return f"TLS handshake failed: {reason.strip()}"
    if "not in peer certificate" in lowered:
        return f"TLS: the server certificate does not name {endpoint.url}"
    if "connection refused" in lowered:
        return "connection refused"
    if "connection reset" in lowered:
        if endpoint.tls:  # etcd refusing our client certificate resets as often as it closes
            return ("connection reset by etcd during TLS setup: etcd may have rejected the "
                    "client certificate (cert, key)")
        return "connection reset by etcd"
    if code == grpc.StatusCode.UNAVAILABLE and ("endpoint read failed" in lowered
                                                or "socket closed" in lowered):
        if endpoint.tls:
            return ("connection closed during TLS setup: etcd may have rejected the "
                    "client certificate (cert, key) or not speak TLS")
        return "connection closed by etcd: does it want https:// ?"
    if code == grpc.StatusCode.UNAVAILABLE and "keepalive" in lowered:
        return "no answer to keepalive pings: etcd hung or unreachable"
    details = details.removeprefix("etcdserver: ")
    return f"{code.name.lower()}: {details}" if details else code.name.lower()


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
        self._watch: _WatchStream | None = None

    def retarget(self, prefix: str) -> None:
        """Read (and later watch) another prefix over the same connection: deciding
        `schema = "auto"` costs no second connect (nor TLS handshake, nor authentication)."""
        if self._watch is not None:
            raise RuntimeError("retarget() before start_watch(), not while a watch runs")
        self._prefix = prefix.rstrip("/") + "/"

    # -- reading ---------------------------------------------------------------

    def snapshot(self, page_keys: int | None = SNAPSHOT_PAGE_KEYS) -> tuple[dict[str, bytes], int]:
        """All keys under the prefix and the etcd revision they were read at.

        To see every later change, call ``start_watch(revision + 1)``. Read in pages of
        `page_keys` keys (None: in one Range), each page at the first one's revision, so the
        result is the same consistent view one Range gives.
        """
        return self._call(lambda c: _read_prefix(c, self._prefix, page_keys))

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

    def start_watch(self, from_revision: int) -> None:
        """Watch the prefix for changes with revision >= from_revision.

        Returns at once; failures (including a compacted from_revision) come
        out of next_changes(). Replaces any previous watch.
        """
        self._stop_watch()
        client = self._call(lambda c: c)  # builds (and authenticates) if needed
        self._watch = _WatchStream(
            client.channel, client.metadata, self._prefix, from_revision,
            self._endpoints[self._current], self._config.timeout)

    def next_changes(self, timeout: float) -> list[Change]:
        """Wait up to ``timeout`` s for changes, then take all already queued.

        Returns [] when nothing changed. Raises ResyncNeeded when the watch is
        compacted, cancelled or gone, DatastoreUnavailable when etcd is
        unreachable; either way the client is closed and the caller must take
        a new snapshot (which reconnects) and call start_watch again.
        """
        if self._watch is None:
            raise ResyncNeeded("no etcd watch running: take a snapshot and start one")
        changes: list[Change] = []
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
                    if not _is_token_rejected(exc):
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
                failures.append(f"{endpoint.url}: {_explain(exc, endpoint, self._config.timeout)}")
            self._reset()
            self._current = (self._current + 1) % len(self._endpoints)
        if len(failures) == 1:
            raise DatastoreUnavailable(f"etcd {failures[0]}")
        raise DatastoreUnavailable("no etcd endpoint answered: " + "; ".join(failures))

    def _ensure_client(self) -> etcd3.Etcd3Client:
        if self._client is None:
            self._client = self._connect(self._endpoints[self._current])
        return self._client

    def _connect(self, endpoint: _Endpoint) -> etcd3.Etcd3Client:
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
                reason = _explain(exc, endpoint, cfg.timeout)
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    reason = f"authentication failed for user {cfg.username}: {reason}"
                raise _EndpointFailure(reason) from None
            client.metadata = (("token", response.token),)
            self._heartbeat()  # the call that follows may take another timeout
        return client

    def _stop_watch(self) -> None:
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


def _read_prefix(client: etcd3.Etcd3Client, prefix: str, page_keys: int | None) -> tuple[dict[str, bytes], int]:
    cut = len(prefix)
    first = prefix.encode()
    end = increment_last_byte(first)
    for _attempt in range(SNAPSHOT_ATTEMPTS):
        data: dict[str, bytes] = {}
        start, revision = first, None
        try:
            while True:
                # Built here: python-etcd3 0.12's get_range_response drops `limit` and `revision`.
                request = etcdrpc.RangeRequest(key=start, range_end=end, limit=page_keys or 0,
                                               revision=revision or 0,
                                               sort_order=etcdrpc.RangeRequest.ASCEND,
                                               sort_target=etcdrpc.RangeRequest.KEY)
                response = client.kvstub.Range(request, client.timeout, credentials=client.call_credentials,
                                               metadata=client.metadata)
                revision = revision or response.header.revision
                for kv in response.kvs:
                    data[_decode(kv.key)[cut:]] = kv.value
                if not response.more:
                    return data, revision
                start = response.kvs[-1].key + b"\0"
                del response  # one page held at a time: that is the point of paging
        except grpc.RpcError as exc:
            # Compacted past the first page's revision while reading: read again, newer.
            if exc.code() != grpc.StatusCode.OUT_OF_RANGE or revision is None:
                raise
            _log.info("etcd compacted past revision %d while reading %s; reading again", revision, prefix)
    raise DatastoreError(f"etcd compacted {prefix} faster than it could be read, {SNAPSHOT_ATTEMPTS} times")


def _decode(key: bytes) -> str:
    # Lossless for any bytes; the model rejects names that are not clean.
    return key.decode("utf-8", "surrogateescape")


class _WatchStream:
    """One etcd watch on its own gRPC stream and thread.

    The thread only queues lists of Change, or one DatastoreError and ends.
    It never calls etcd itself (calling the client from a watch thread can
    deadlock) and never retries (retrying is the daemon's resync).
    """

    def __init__(self, channel, metadata, prefix: str, from_revision: int,
                 endpoint: _Endpoint, timeout: float):
        self.events: queue.Queue = queue.Queue()
        self._prefix_len = len(prefix)
        self._endpoint = endpoint
        self._timeout = timeout
        self._stopped = threading.Event()
        key = prefix.encode()
        create = etcdrpc.WatchCreateRequest(
            key=key, range_end=increment_last_byte(key),
            start_revision=max(int(from_revision), 0))
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
                if changes:
                    self.events.put(changes)
            self._fail(ResyncNeeded("etcd ended the watch stream"))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and self._stopped.is_set():
                return
            reason = _explain(exc, self._endpoint, self._timeout)
            self._fail(DatastoreUnavailable(f"etcd {self._endpoint.url}: watch lost: {reason}"))
        except Exception as exc:  # a thread must not die silently
            _log.exception("etcd watch thread failed")
            self._fail(ResyncNeeded(f"etcd watch failed: {exc}"))
        finally:
            self._stopped.set()  # lets gRPC's request thread finish too

    def _fail(self, error: DatastoreError) -> None:
        if not self._stopped.is_set():
            self.events.put(error)

    def _change(self, event) -> Change:
        kv = event.kv
        deleted = event.type == kv_pb2.Event.DELETE
        return Change(key=_decode(kv.key)[self._prefix_len:],
                      value=None if deleted else kv.value,
                      revision=kv.mod_revision)
