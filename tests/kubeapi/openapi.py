"""A minimal `/openapi/v2`: enough for kubectl's client-side validation to pass.

kubectl 1.20 `apply`/`create -f` fetch /openapi/v2 as protobuf (gnostic's OpenAPIv2
`Document`) and fail with "the server could not find the requested resource" without it
(unless --validate=false). A document without definitions knows no kind, and kubectl
validates a kind it does not know only for apiVersion/kind, as for a CRD without a schema.
The protobuf is written by hand: Document{swagger=1, info=2{title=1, version=2}}.
"""

from __future__ import annotations

import json

# kube-openapi answers the protobuf as octet-stream: the media type kubectl asks for has an
# "@" that Go's mime parser rejects in a Content-Type.
PROTOBUF = "application/octet-stream"


def _field(number: int, payload: bytes) -> bytes:
    # length-delimited field (wire type 2); payloads here are < 128 bytes: one-byte length
    assert len(payload) < 128
    return bytes([(number << 3) | 2, len(payload)]) + payload


def document(accept: str, git_version: str) -> tuple:
    """(body, content type) for the Accept header."""
    title, version = b"Kubernetes", git_version.encode()
    if "protobuf" in (accept or ""):
        info = _field(1, title) + _field(2, version)
        return _field(1, b"2.0") + _field(2, info), PROTOBUF
    doc = {"swagger": "2.0", "info": {"title": title.decode(), "version": git_version},
           "paths": {}, "definitions": {}}
    return json.dumps(doc).encode(), "application/json"
