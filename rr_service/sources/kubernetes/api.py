"""The few Kubernetes API calls the reflector makes, over urllib3 (Debian python3-urllib3).

get/list/watch/create/update/delete of cluster-scoped collections, and group discovery. A
list is paged (`limit` + `continue`) and starts again when its continue token has expired
(410); a watch yields decoded events until the server ends it. Errors become the datastore
interface's: unreachable or refused → DatastoreUnavailable naming the verb and resource
(401/403 say which); 410 Gone on a watch → ResyncNeeded.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Callable, Iterator, Optional
from urllib.parse import quote, urlencode

import urllib3

from rr_service.sources.base import DatastoreUnavailable, ResyncNeeded
from rr_service.sources.kubernetes.kubeconfig import KubeConfig

log = logging.getLogger("calico-rr")

PAGE = 500
REQUEST_TIMEOUT = 10.0
MAX_RESPONSE = 512 * 1024 * 1024

# Metadata only (meta.k8s.io/v1 PartialObjectMetadata, kube-apiserver >= 1.15): a Node's BGP
# fields are all in its metadata, and its status (images, conditions) is most of its 15 KB.
# The list asks for the List form, a watch's events carry the singular one; plain JSON
# after the comma is what a server that cannot answer with metadata sends instead.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json"
METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"


class ApiStatus(DatastoreUnavailable):
    """The API server answered with an error Status."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Conflict(ApiStatus):
    pass


class Missing(ApiStatus):
    pass


class KubeApi:
    def __init__(self, config: KubeConfig):
        self.config = config
        context = config.ssl_context
        insecure = context.verify_mode == ssl.CERT_NONE
        # urllib3 checks the name itself (IP SANs too, which ssl's check_hostname misses when
        # urllib3 sends no server_hostname for an IP address).
        context.check_hostname = False
        self._pool = urllib3.PoolManager(
            ssl_context=context, maxsize=8, retries=False,
            cert_reqs="CERT_NONE" if insecure else "CERT_REQUIRED",
            assert_hostname=False if insecure else None)

    def describe(self) -> str:
        return f"Kubernetes API {self.config.server}"

    def close(self) -> None:
        self._pool.clear()

    # -- plumbing ---------------------------------------------------------------------------

    def _headers(self, accept: str = "application/json") -> dict:
        headers = {"Accept": accept, "User-Agent": "calico-rr"}
        token = self.config.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _open(self, method: str, path: str, query: Optional[dict], body: Optional[dict],
              what: str, timeout, stream: bool = False, accept: str = "application/json"):
        url = self.config.server + path + ("?" + urlencode(query) if query else "")
        headers = self._headers(accept)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                response = self._pool.request(method, url, body=data, headers=headers, timeout=timeout,
                                              preload_content=not stream, redirect=False)
            except urllib3.exceptions.HTTPError as exc:
                raise DatastoreUnavailable(f"{self.describe()}: {what} failed: {_reason(exc)}") from None
            if response.status == 401 and attempt == 1:
                # An exec credential the server no longer takes: ask the plugin once more.
                self.config.forget()
                headers = {**headers, **self._headers(accept)}
                response.release_conn()
                continue
            break
        if response.status >= 400:
            raise _status_error(response, what)
        return response

    def request(self, method: str, path: str, what: str, query: Optional[dict] = None,
                body: Optional[dict] = None, accept: str = "application/json") -> dict:
        response = self._open(method, path, query, body, what, REQUEST_TIMEOUT, accept=accept)
        try:
            return json.loads(response.data)
        except ValueError:
            raise DatastoreUnavailable(f"{self.describe()}: {what}: the answer is not JSON") from None

    # -- calls --------------------------------------------------------------------------------

    def groups(self) -> dict:
        """API group → its versions (`/apis` discovery)."""
        answer = self.request("GET", "/apis", "discover API groups")
        return {g.get("name"): [v.get("version") for v in g.get("versions") or []]
                for g in answer.get("groups") or []}

    def list(self, path: str, what: str, extra: Optional[dict] = None, keep: Callable = lambda obj: obj,
             accept: str = "application/json", any_version: bool = False) -> tuple[list, str]:
        """`keep(item)` of every item of a collection, and the list's resourceVersion; pages
        of PAGE items, started again from the first page when a continue token has expired.
        `keep` runs page by page, so that only one page of whole objects is held at a time.
        `extra`: more query parameters (a fieldSelector). `any_version`: resourceVersion "0",
        which kube-apiserver answers from its watch cache (whole, without reading etcd): the
        answer may be a little behind, which a watch from its resourceVersion makes good."""
        for _ in range(5):
            items, token, version = [], "", ""
            try:
                while True:
                    query = {**(extra or {}), "limit": PAGE,
                             **({"continue": token} if token else {"resourceVersion": "0"} if any_version else {})}
                    page = self.request("GET", path, f"list {what}", query, accept=accept)
                    meta = page.get("metadata") or {}
                    items.extend(keep(obj) for obj in page.pop("items", None) or [])
                    version = version or meta.get("resourceVersion", "")
                    token = meta.get("continue") or ""
                    if not token:
                        return items, version
            except ApiStatus as exc:
                if exc.code != 410 or not token:
                    raise
                log.info("%s: the list of %s outlived its continue token; listing again", self.describe(), what)
        raise DatastoreUnavailable(f"{self.describe()}: list {what}: continue tokens keep expiring")

    def watch(self, path: str, version: str, timeout_seconds: int, what: str,
              opened=lambda response: None, extra: Optional[dict] = None,
              accept: str = "application/json") -> Iterator[dict]:
        """Events after `version` until the server ends the watch (about timeout_seconds).
        `opened(response)` lets the caller cut the stream from another thread (see cut())."""
        query = {**(extra or {}), "watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds)}
        timeout = urllib3.Timeout(connect=REQUEST_TIMEOUT, read=timeout_seconds + 30)
        response = self._open("GET", path, query, None, f"watch {what}", timeout, stream=True, accept=accept)
        opened(response)
        try:
            buffer = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise DatastoreUnavailable(f"{self.describe()}: watch {what}: an event is not JSON") from None
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        if status.get("code") == 410:
                            raise ResyncNeeded(f"watch {what} from {version}: {status.get('message', 'Gone')}")
                        raise DatastoreUnavailable(f"{self.describe()}: watch {what}: {status.get('message')}")
                    yield event
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DatastoreUnavailable(f"{self.describe()}: watch {what} cut: {_reason(exc)}") from None
        finally:
            response.release_conn()


class LazyApi:
    """The KubeApi of a kubeconfig, made when first called for (and again after close()):
    the kubeconfig is read anew at every reconnect, so a renewed certificate in it is used."""

    def __init__(self, kubeconfig: Optional[str], load: Callable[[Optional[str]], KubeConfig]):
        self.kubeconfig = kubeconfig
        self._load = load
        self._api: Optional[KubeApi] = None

    def __call__(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(self._load(self.kubeconfig))
        return self._api

    def describe(self) -> str:
        if self._api is not None:
            return self._api.describe()
        return f"Kubernetes API ({self.kubeconfig or 'in-cluster'})"

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None


def cut(response) -> None:
    """End a watch stream another thread is reading: its read returns at once."""
    try:
        sock = response._fp.fp.raw._sock  # http.client response → socket
        sock.shutdown(2)
    except (AttributeError, OSError):
        pass


def item_path(collection: str, name: str) -> str:
    return f"{collection}/{quote(name, safe='')}"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def _status_error(response, what: str) -> ApiStatus:
    try:
        status = json.loads(response.data)
        message = status.get("message") or status.get("reason") or ""
    except ValueError:
        message = response.data[:200].decode(errors="replace")
    code = response.status
    if code == 401:
        text = f"{what}: 401 Unauthorized: the API server does not accept our credentials"
    elif code == 403:
        text = f"{what}: 403 Forbidden (RBAC): {message}"
    else:
        text = f"{what}: {code} {message}"
    cls = Conflict if code == 409 else Missing if code == 404 else ApiStatus
    return cls(code, text)
