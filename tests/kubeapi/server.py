"""KubeApiServer: the test Kubernetes API server's lifecycle, TLS, and the hooks tests pull.

    with KubeApiServer(etcd.url, groups=("crd",)) as api:
        config = api.kubeconfig(tmp_path / "kubeconfig")            # bearer token, CA file
        api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24")])
        api.set_rules("calico", [("list", "nodes"), ("watch", "nodes")])
        api.restart()                                                # same port, new process state

Each connection's TLS handshake runs in its own thread (a stalled client cannot block accept).
"""

from __future__ import annotations

import collections
import secrets
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Iterable, List, Optional

from . import errors
from .auth import Access
from .certs import CertAuthority
from .etcdstore import EtcdStore
from .handler import KubeHandler
from .registry import Registry
from .watchcache import WatchCache
from .resources import Resource, build_catalog

HANDSHAKE_TIMEOUT = 10


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, kube: "KubeApiServer"):
        self.kube = kube
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, KubeHandler)

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name (getfqdn): inside a network
        # namespace without DNS that can stall; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        request.settimeout(HANDSHAKE_TIMEOUT)
        # headers and body go out in separate writes: without NODELAY, Nagle and the
        # client's delayed ACK add 40 ms to every answer
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = self.kube.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        conn.settimeout(None)
        with self.kube._lock:
            self.kube._connections.add(conn)
        try:
            KubeHandler(conn, client_address, self)
        except (OSError, ssl.SSLError):
            pass  # the peer vanished mid-request
        finally:
            with self.kube._lock:
                self.kube._connections.discard(conn)
            try:
                conn.close()
            except OSError:
                pass


class KubeApiServer:
    """A Kubernetes API server for tests: HTTPS on `host`, objects in a real etcd.

    groups: Calico API groups to serve, "crd" (crd.projectcalico.org/v1) and/or "v3"
    (projectcalico.org/v3). tokens: {token: user}; an admin token is always added
    (`admin_token`, user "admin"). extra_ips: more subjectAltNames for the serving cert.
    bookmark_interval: seconds between BOOKMARK events (kube-apiserver: about a minute).
    etcd_tls: {"ca_cert", "cert", "key"} paths for an https etcd. etcd_timeout: how long a
    request waits for etcd (also while it is down) before answering 500.
    """

    def __init__(self, etcd_url: str, groups: Iterable[str] = ("crd",), host: str = "127.0.0.1",
                 port: int = 0, tokens: Optional[dict] = None, extra_ips: Iterable[str] = (),
                 prefix: str = "/registry", git_version: str = "v1.28.0",
                 bookmark_interval: float = 60.0, default_watch_timeout: float = 1800.0,
                 namespaces: Iterable[str] = ("default", "kube-system"),
                 workdir: Optional[str] = None, etcd_tls: Optional[dict] = None,
                 etcd_timeout: float = 5.0, extra_resources: Iterable[Resource] = ()):
        self.host, self.port = host, port
        self.groups = tuple(groups)
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubeapi-test-"))
        self.catalog = build_catalog(self.groups, git_version, extra_resources)
        self.store = EtcdStore(etcd_url, timeout=etcd_timeout, **(etcd_tls or {}))
        self.registry = Registry(self.store, self.catalog, prefix)
        self.registry.cache = self.watch_cache = WatchCache(self.registry)
        self.access = Access()
        self.admin_token = "admin-" + secrets.token_hex(16)
        self.access.add_token(self.admin_token, "admin", ["system:masters"])
        for token, user in (tokens or {}).items():
            self.access.add_token(token, user)
        try:
            self.ca = CertAuthority(self.workdir / "pki")
            self.server_cert, self.server_key = self.ca.server_cert(
                [host, *extra_ips] if host not in ("0.0.0.0", "::", "localhost") else extra_ips)
            self.ssl_context = self._context()
        except BaseException:
            self.store.close()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.requests: collections.deque = collections.deque(maxlen=10000)
        self.errors: list = []  # (request, traceback) of exceptions the handler caught
        self._namespaces = tuple(namespaces)
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._connections: set = set()
        self._watches: set = set()
        self._lock = threading.Lock()
        self._failures: List[list] = []
        self.cut_tokens: set = set()  # watches opened with these end (revoke_token)
        self.running = False

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        ctx.load_verify_locations(cafile=str(self.ca.cert))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is one way to log in
        ctx.set_alpn_protocols(["http/1.1"])  # no h2: Go then speaks HTTP/1.1
        return ctx

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "KubeApiServer":
        assert not self.running, "already running"
        self.registry.ensure_namespaces(self._namespaces)
        self.watch_cache.start()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]  # a restart binds the same port again
        self.running = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={
            "poll_interval": 0.1}, name="kubeapi-test", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (like a killed kube-apiserver): open watches and connections drop."""
        if not self.running:
            return
        self.running = False
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
        self.watch_cache.stop()
        self.cut_watches()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd = None

    def restart(self) -> "KubeApiServer":
        self.stop()
        return self.start()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.store.close()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "KubeApiServer":
        try:
            return self.start()
        except BaseException:
            self.close()  # __exit__ will not run: leave no channel or folder behind
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    @property
    def ca_cert(self) -> str:
        return str(self.ca.cert)

    # -- credentials and rules -------------------------------------------------------------------
    def add_token(self, token: str, user: str, groups: Iterable[str] = ()) -> None:
        self.access.add_token(token, user, groups)

    def revoke_token(self, token: str, cut_watches: bool = False) -> None:
        """The next request with token gets 401. kube-apiserver lets a watch opened with it
        run on; cut_watches=True ends those watches (without a clean end of the body)."""
        self.access.revoke_token(token)
        if cut_watches:
            # checked by every watch as it polls: also catches one authenticated just before
            # the revocation but not yet registered
            self.cut_tokens.add(token)

    def set_rules(self, user: str, rules: Optional[Iterable]) -> None:
        """Allowed requests of user: [(verb, resource[, name]), ...] or auth.Rule objects;
        None = everything. resource is "nodes", "secrets", "nodes/status",
        "bgppeers.crd.projectcalico.org" or "*"."""
        self.access.set_rules(user, rules)

    def client_cert(self, user: str, groups: Iterable[str] = ()):
        """(cert path, key path) of a client certificate for user, signed by the server's CA."""
        return self.ca.client_cert(user, groups)

    # -- fault hooks -----------------------------------------------------------------------------
    @property
    def expire_continue_tokens(self) -> bool:
        return self.registry.expire_continue

    @expire_continue_tokens.setter
    def expire_continue_tokens(self, value: bool) -> None:
        """While True, every list with a continue token answers 410 Expired."""
        self.registry.expire_continue = value

    def inject_failure(self, code: int = 503, times: int = 1, match: str = "") -> None:
        """The next `times` requests whose "METHOD /path?query" contains match answer code."""
        with self._lock:
            self._failures.append([match, code, times])

    def maybe_fail(self, request_line: str) -> None:
        with self._lock:
            for failure in self._failures:
                match, code, left = failure
                if left > 0 and match in request_line:
                    failure[2] -= 1
                    raise errors.injected(code)

    def cut_watches(self) -> int:
        """End every open watch abruptly (a dropped connection); how many there were."""
        with self._lock:
            streams = list(self._watches)
        for stream in streams:
            stream.stop(abrupt=True)
        return len(streams)

    def compact(self, revision: Optional[int] = None) -> int:
        """Compact etcd at revision (default: the current one); the revision compacted."""
        revision = revision or self.store.revision()
        self.store.compact(revision)
        return revision

    # -- bookkeeping for the handler -----------------------------------------------------------
    def log_request(self, entry: dict) -> None:
        self.requests.append(entry)

    def log_error(self, entry: dict, exc: BaseException) -> None:
        """An unexpected exception in a handler: kept for tests to assert there were none."""
        import traceback
        self.errors.append((entry, "".join(traceback.format_exception(exc))))

    def watch_opened(self, stream) -> None:
        with self._lock:
            self._watches.add(stream)

    def watch_closed(self, stream) -> None:
        with self._lock:
            self._watches.discard(stream)

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    # -- objects ---------------------------------------------------------------------------------
    def resource(self, plural: str, group: str = "") -> Resource:
        """The Resource for a plural in a group ("" = core; "crd"/"v3" are accepted too)."""
        from .resources import GROUPS
        group_name, version = GROUPS.get(group, (group, None))
        for res in self.catalog.resources:
            if res.plural == plural and res.group == group_name and \
                    (version is None or res.version == version):
                return res
        raise KeyError(f"no resource {plural!r} in group {group!r} on this server")

    def seed(self, plural: str, objects: Iterable[dict], group: str = "",
             namespace: str = "") -> int:
        """Write objects straight into etcd (no HTTP, no checks); the last revision."""
        return self.registry.seed(self.resource(plural, group), objects, namespace)

    def create(self, plural: str, obj: dict, group: str = "", namespace: str = "") -> dict:
        """Create through the API's rules (no HTTP): the stored object with resourceVersion."""
        return self.registry.create(self.resource(plural, group), namespace, obj)

    def kubeconfig(self, path, auth: str = "token", ca: str = "file", **kw) -> str:
        """Write a kubeconfig for this server (see kubeconfig.write_kubeconfig)."""
        from .kubeconfig import write_kubeconfig
        return write_kubeconfig(self, path, auth=auth, ca=ca, **kw)
