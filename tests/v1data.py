"""Legacy v1 values as the tests write them into etcd or a data set."""

from __future__ import annotations

import json


def j(**fields) -> bytes:
    """A v1 JSON value, e.g. j(ip="192.0.2.10", cluster_id="1.2.3.4") for an rr_v4 entry."""
    return json.dumps(fields).encode()
