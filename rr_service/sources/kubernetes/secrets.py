"""The BGP password Secrets a Kubernetes source reads: which, where, and as what item.

Only the Secrets BGPPeers name are read, each with `fieldSelector=metadata.name=<name>`, as
calico-node does: RBAC can then grant get/list/watch on just those names (`resourceNames`),
never on every Secret of the namespace. A Secret becomes the item `secrets/<name>` → its
`data` map as JSON (base64 values, as Kubernetes keeps them); the pure rule set decodes and
checks it (calico/v3/resources.parse_secret). Nothing here ever logs a value.
"""

from __future__ import annotations

import json
from typing import Iterable, Optional

from rr_service.calico.v3.resources import SECRETS


def collection(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets"


def name_query(name: str) -> dict:
    return {"fieldSelector": f"metadata.name={name}"}


def version_key(name: str) -> str:
    """The Secret's own entry in the source's bookmark (one list+watch per Secret)."""
    return f"{SECRETS}/{name}"


def names(items: Iterable[tuple[str, bytes]]) -> set[str]:
    """The Secret names the BGPPeers among these (key, v3 JSON) items refer to. A BGPPeer
    too broken to say is the rule set's to reject; here it names nothing."""
    out = set()
    for key, raw in items:
        if not key.startswith("bgppeers/") or raw is None:
            continue
        try:
            ref = json.loads(raw)["spec"]["password"]["secretKeyRef"]["name"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(ref, str) and ref:
            out.add(ref)
    return out


def item(obj: dict) -> Optional[tuple[str, bytes]]:
    """A Secret object from the API → (`secrets/<name>`, its data as JSON); None without a name."""
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        return None
    data = obj.get("data")
    return f"{SECRETS}/{name}", json.dumps(data if isinstance(data, dict) else {}, sort_keys=True).encode()
