"""A bare HTTPS client for checking the server's answers byte for byte (stdlib http.client).

Real clients hide what tests need to see (status codes, Status bodies, how a watch ends); this
one shows them: `call()` returns code, headers and the decoded body, `watch()` yields events and
tells a clean end of the chunked body from a cut connection.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Iterator, Optional, Tuple
from urllib.parse import urlencode

_DEFAULT = object()


class Http:
    def __init__(self, api, token=_DEFAULT, cert: Optional[Tuple[str, str]] = None):
        """api: a KubeApiServer. token: bearer token (default the admin's; None sends none).
        cert: (cert, key) paths of a client certificate to present."""
        self.api = api
        self.token = api.admin_token if token is _DEFAULT else token
        self.context = ssl.create_default_context(cafile=api.ca_cert)
        if cert:
            self.context.load_cert_chain(*cert)

    def _conn(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.api.host, self.api.port, context=self.context,
                                           timeout=timeout)

    def _headers(self, extra: Optional[dict]) -> dict:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def call(self, method: str, path: str, body=None, query: Optional[dict] = None,
             headers: Optional[dict] = None, content_type: str = "application/json",
             timeout: float = 10) -> Tuple[int, dict, object]:
        """(status code, headers, JSON body or raw bytes)."""
        if query:
            path += "?" + urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers(headers)
        if data is not None:
            headers["Content-Type"] = content_type
        conn = self._conn(timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw
            return response.status, dict(response.getheaders()), payload
        finally:
            conn.close()

    def get(self, path: str, **query) -> Tuple[int, object]:
        code, _, body = self.call("GET", path, query=query or None)
        return code, body

    def watch(self, path: str, timeout: float = 10, headers: Optional[dict] = None, **query) -> "WatchReader":
        """Open a watch (watch=1 is added); iterate the reader for events."""
        query = dict(query, watch="1")
        conn = self._conn(timeout)
        conn.request("GET", f"{path}?{urlencode(query)}", headers=self._headers(headers))
        return WatchReader(conn, conn.getresponse())


class WatchReader:
    """Events of one watch; after iteration, `clean_end` says whether the body ended with
    the final chunk (a timeout, an ERROR) rather than a cut connection."""

    def __init__(self, conn: http.client.HTTPSConnection, response: http.client.HTTPResponse):
        self.conn, self.response, self.status = conn, response, response.status
        self.clean_end: Optional[bool] = None

    def __iter__(self) -> Iterator[dict]:
        # Chunks are decoded here: http.client answers b"" both for the final chunk and for
        # a connection cut mid-body, and this difference is what the tests look at.
        buffer = b""
        for chunk in self._chunks():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)

    def _chunks(self) -> Iterator[bytes]:
        fp = self.response.fp
        try:
            while True:
                line = fp.readline() if fp else b""
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.clean_end = False  # EOF or garbage where a chunk size belongs
                    return
                if size == 0:
                    fp.readline()  # the CRLF after the (empty) trailer
                    self.clean_end = True
                    return
                data = fp.read(size + 2)
                if len(data) < size + 2:
                    self.clean_end = False
                    return
                yield data[:-2]
        except (OSError, ssl.SSLError):
            self.clean_end = False

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "WatchReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
