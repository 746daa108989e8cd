"""Server-side printing: the `Table` kubectl asks for (`Accept: ...;as=Table;g=meta.k8s.io`).

kubectl 1.20 prints `get` output from the server's Table; without one it falls back to its own
NAME/AGE columns, which hides what a real cluster shows. The columns copy kube-apiserver's for
Nodes, Secrets and Namespaces, and a CRD's default (Name, Age) for Calico's kinds.
"""

from __future__ import annotations

import datetime
from typing import List, Optional

COLUMNS = {
    "node": [("Name", "string", "name", 0), ("Status", "string", "", 0), ("Roles", "string", "", 0),
             ("Age", "string", "", 0), ("Version", "string", "", 0),
             ("Internal-IP", "string", "", 1), ("External-IP", "string", "", 1),
             ("OS-Image", "string", "", 1), ("Kernel-Version", "string", "", 1),
             ("Container-Runtime", "string", "", 1)],
    "secret": [("Name", "string", "name", 0), ("Type", "string", "", 0),
               ("Data", "string", "", 0), ("Age", "string", "", 0)],
    "namespace": [("Name", "string", "name", 0), ("Status", "string", "", 0),
                  ("Age", "string", "", 0)],
    "default": [("Name", "string", "name", 0), ("Age", "date", "", 0)],
}


def wants_table(accept: str) -> Optional[str]:
    """The Table apiVersion the Accept header asks for (kubectl lists v1 first), or None."""
    for part in (accept or "").split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return f"meta.k8s.io/{params.get('v', 'v1')}"
    return None


def to_table(style: str, objects: List[dict], api_version: str, include: str = "Metadata",
             list_meta: Optional[dict] = None, headers: bool = True) -> dict:
    table = {"kind": "Table", "apiVersion": api_version, "metadata": list_meta or {},
             "rows": [_row(style, obj, include) for obj in objects]}
    if headers:
        table["columnDefinitions"] = [
            {"name": name, "type": typ, "format": fmt, "description": name, "priority": prio}
            for name, typ, fmt, prio in COLUMNS[style]]
    else:
        table["columnDefinitions"] = None
    return table


def _row(style: str, obj: dict, include: str) -> dict:
    meta = obj.get("metadata", {})
    age = _age(meta.get("creationTimestamp"))
    if style == "node":
        cells = [meta.get("name"), _node_status(obj), _roles(meta.get("labels") or {}), age,
                 obj.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""),
                 _address(obj, "InternalIP"), _address(obj, "ExternalIP"),
                 obj.get("status", {}).get("nodeInfo", {}).get("osImage", "<unknown>"),
                 obj.get("status", {}).get("nodeInfo", {}).get("kernelVersion", "<unknown>"),
                 obj.get("status", {}).get("nodeInfo", {}).get("containerRuntimeVersion",
                                                               "<unknown>")]
    elif style == "secret":
        cells = [meta.get("name"), obj.get("type", ""), len(obj.get("data") or {}), age]
    elif style == "namespace":
        cells = [meta.get("name"), obj.get("status", {}).get("phase", "Active"), age]
    else:
        # a CRD's Age column is typed "date" but kube sends it already humanised
        cells = [meta.get("name"), age]
    row = {"cells": cells}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": meta}
    return row


def _node_status(node: dict) -> str:
    ready = [c for c in node.get("status", {}).get("conditions", []) if c.get("type") == "Ready"]
    status = "Unknown" if not ready else ("Ready" if ready[0].get("status") == "True"
                                          else "NotReady")
    if node.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _roles(labels: dict) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix):] for k in labels if k.startswith(prefix))
    return ",".join(roles) or "<none>"


def _address(node: dict, kind: str) -> str:
    for addr in node.get("status", {}).get("addresses", []):
        if addr.get("type") == kind:
            return addr.get("address", "")
    return "<none>"


def _age(timestamp: Optional[str]) -> str:
    """kube's HumanDuration, short form: 45s, 12m, 5h, 3d."""
    try:
        created = datetime.datetime.strptime(timestamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:  # seeded objects may carry anything here
        return "<unknown>"
    seconds = int((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 3600 * 3:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
