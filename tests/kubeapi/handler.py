"""One HTTP request: authenticate, route the kube URL, authorise, run the verb, answer.

HTTP/1.1 with keep-alive (Go's and urllib3's connection pools reuse connections), JSON bodies
with Content-Length, and chunked transfer for watches, as kube-apiserver over HTTP/1.1.
"""

from __future__ import annotations

import json
import select
import ssl
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import parse_qs, unquote, urlsplit

from . import errors, openapi
from .errors import ApiError
from .etcdstore import StoreError
from .selectors import field_selector, label_selector
from .partial import answer, metadata_only, wants_metadata
from .tables import to_table, wants_table
from .watch import WatchStream

NON_RESOURCE = ("/healthz", "/livez", "/readyz")


class Route:
    def __init__(self, res, namespace: str = "", name: str = "", sub: str = "",
                 watch_path: bool = False):
        self.res, self.namespace, self.name, self.sub = res, namespace, name, sub
        self.watch_path = watch_path


class KubeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubeapi-test"
    timeout = 300  # idle keep-alive connections end after this (Go's pool reconnects)

    def log_message(self, fmt, *args):  # the server keeps its own request log
        pass

    @property
    def kube(self):
        return self.server.kube

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_PATCH(self):
        self._serve("PATCH")

    def do_DELETE(self):
        self._serve("DELETE")

    # -- the request ---------------------------------------------------------------------------
    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        entry = {"method": method, "path": url.path, "query": query,
                 "content_type": self.headers.get("Content-Type", ""),
                 "accept": self.headers.get("Accept", ""), "user": None, "code": None}
        self.kube.log_request(entry)
        try:
            body = self._read_body()
            peer = getattr(self.connection, "getpeercert", lambda: None)()
            user, token = self.kube.access.authenticate(self.headers.get("Authorization"), peer)
            entry["user"] = user.name
            self.kube.maybe_fail(f"{method} {self.path}")
            code = self._dispatch(method, url.path, query, body, user, token)
        except ApiError as exc:
            code = self._send_json(exc.code, exc.status(), exc.headers)
        except StoreError as exc:
            err = errors.internal(str(exc))
            code = self._send_json(err.code, err.status())
        except (OSError, ssl.SSLError):
            raise  # the connection is gone: nothing to answer
        except Exception as exc:  # a bug here must still answer like a server, and be seen
            self.kube.log_error(entry, exc)
            err = errors.internal(f"{type(exc).__name__}: {exc}")
            code = self._send_json(err.code, err.status())
        entry["code"] = code

    def _read_body(self) -> Optional[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _dispatch(self, method, path, query, body, user, token) -> int:
        catalog = self.kube.catalog
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if path == "/version":
            return self._send_json(200, catalog.version())
        if path == "/openapi/v2":
            data, ctype = openapi.document(self.headers.get("Accept", ""), catalog.git_version)
            return self._send_raw(200, data, ctype)
        if path in NON_RESOURCE:
            return self._send_raw(200, b"ok", "text/plain; charset=utf-8")
        if parts == ["api"]:
            return self._send_json(200, catalog.api_versions(self.kube.address))
        if parts == ["apis"]:
            return self._send_json(200, catalog.api_group_list())
        if len(parts) == 2 and parts[0] == "apis":
            return self._send_doc(catalog.api_group(parts[1]))
        if parts == ["api", "v1"]:
            return self._send_doc(catalog.resource_list("", "v1"))
        if len(parts) == 3 and parts[0] == "apis":
            return self._send_doc(catalog.resource_list(parts[1], parts[2]))
        route = self._route(parts)
        if route is None:
            raise errors.path_not_found()
        return self._resource(method, route, query, body, user, token)

    def _send_doc(self, doc: Optional[dict]) -> int:
        if doc is None:
            raise errors.path_not_found()
        return self._send_json(200, doc)

    def _route(self, parts) -> Optional[Route]:
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        watch_path = bool(rest) and rest[0] == "watch"  # the old /watch/ URLs
        if watch_path:
            rest = rest[1:]
        find = lambda plural: self.kube.catalog.find(group, version, plural)
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and find(rest[2]) is not None:
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        res = find(rest[0])
        if res is None or (namespace and not res.namespaced):
            return None
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and not (sub == "status" and res.status_subresource):
            return None
        return Route(res, namespace, name, sub, watch_path)

    def _resource(self, method, route, query, body, user, token) -> int:
        res, ns, name, sub = route.res, route.namespace, route.name, route.sub
        if res.namespaced and name and not ns:
            raise errors.path_not_found()
        if res.namespaced and not ns and method != "GET":
            raise errors.method_not_allowed()  # /api/v1/secrets is for reading all namespaces
        watching = route.watch_path or query.get("watch", "") in ("1", "true", "True")
        verb = {"GET": "get" if name else ("watch" if watching else "list"),
                "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        if (method == "POST" and name) or (method in ("PUT", "PATCH") and not name) or \
                (method == "DELETE" and not name):
            raise errors.method_not_allowed()
        match_fields, pinned = field_selector(query.get("fieldSelector"), res.kind)
        match_labels = label_selector(query.get("labelSelector"))
        has_selector = bool(query.get("fieldSelector") or query.get("labelSelector"))
        self.kube.access.authorize(user, verb, res.plural, res.group, name or pinned or "",
                                   ns, sub)
        registry, dry = self.kube.registry, bool(query.get("dryRun"))
        table = wants_table(self.headers.get("Accept", ""))
        partial = not table and wants_metadata(self.headers.get("Accept", ""), verb)
        if verb == "watch":
            match = (lambda o: match_fields(o) and match_labels(o))
            return self._watch(route, query, match, token, table, partial)
        if verb == "get":
            return self._send_obj(200, answer(registry.get(res, name, ns), partial), res, table, query)
        if verb == "list":
            match = (lambda o: match_fields(o) and match_labels(o)) if has_selector else None
            result = registry.list(res, ns, _int(query.get("limit")), query.get("continue", ""),
                                   query.get("resourceVersion", ""),
                                   query.get("resourceVersionMatch", ""), match)
            return self._send_obj(200, answer(result, partial), res, table, query)
        payload = self._json(body) if method != "DELETE" or body else None
        if verb == "create":
            return self._send_json(201, registry.create(res, ns, payload, dry))
        if verb == "update":
            return self._send_json(200, registry.update(res, ns, name, payload, sub, dry))
        if verb == "patch":
            ctype = self.headers.get("Content-Type", "")
            return self._send_json(200, registry.patch(res, ns, name, ctype, payload, sub, dry))
        return self._send_json(200, registry.delete(res, ns, name, payload, dry))

    def _watch(self, route, query, match, token, table, partial: bool = False) -> int:
        kube = self.kube
        timeout = float(_int(query.get("timeoutSeconds")) or kube.default_watch_timeout)
        if query.get("resourceVersion", "") not in ("", "0"):
            _int(query["resourceVersion"])  # a bad one is a 400 before the stream starts
        alive = lambda: (kube.running and token not in kube.cut_tokens
                         and not self._client_gone())
        stream = WatchStream(kube.registry, route.res, route.namespace,
                             query.get("resourceVersion", ""), match, timeout,
                             query.get("allowWatchBookmarks") in ("1", "true", "True"),
                             kube.bookmark_interval, alive)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        include = query.get("includeObject", "Metadata")

        def send(event: dict) -> None:
            if table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                event = dict(event, object=to_table(route.res.table, [event["object"]], table,
                                                    include))
            elif partial and event["type"] in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                event = dict(event, object=metadata_only(event["object"]))
            data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        kube.watch_opened(stream)
        try:
            stream.run(send)
        except (OSError, ValueError):
            stream.abrupt = True  # the client went away
        except Exception as exc:  # an ERROR event: kube ends a failing watch the same way
            if not isinstance(exc, (ApiError, StoreError)):
                self.kube.log_error({"watch": route.res.plural}, exc)
            status = exc.status() if isinstance(exc, ApiError) else errors.internal(
                f"{type(exc).__name__}: {exc}").status()
            try:
                send({"type": "ERROR", "object": status})
            except OSError:
                stream.abrupt = True
        finally:
            kube.watch_closed(stream)
        if stream.abrupt:
            self.close_connection = True
            return 200
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        return 200

    def _client_gone(self) -> bool:
        # A watching client sends nothing more on its connection (no HTTP/1.1 pipelining
        # from Go or urllib3): readable means closed. Without this check a killed client's
        # watch would linger until the next event fails to be written.
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    # -- answers -------------------------------------------------------------------------------
    def _json(self, body: Optional[bytes]):
        if not body:
            raise errors.bad_request("the request body is empty")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise errors.bad_request(f"the body of the request is not valid JSON: {exc}")

    def _send_obj(self, code, obj, res, table, query) -> int:
        if table:
            items = obj["items"] if "items" in obj else [obj]
            meta = obj["metadata"] if "items" in obj else {
                "resourceVersion": obj["metadata"].get("resourceVersion")}
            obj = to_table(res.table, items, table, query.get("includeObject", "Metadata"),
                           meta)
        return self._send_json(code, obj)

    def _send_json(self, code: int, obj: dict, headers: Optional[dict] = None) -> int:
        return self._send_raw(code, json.dumps(obj).encode(), "application/json", headers)

    def _send_raw(self, code: int, data: bytes, ctype: str,
                  headers: Optional[dict] = None) -> int:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        return code


def _int(text: Optional[str]) -> int:
    try:
        return max(int(text or 0), 0)
    except ValueError:
        raise errors.bad_request(f"invalid integer {text!r}") from None


__all__ = ["KubeHandler", "Route"]
