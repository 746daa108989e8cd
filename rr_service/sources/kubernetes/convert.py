"""Kubernetes objects → the v3 resource data the etcd v3 source delivers. Pure.

The v3 rule set reads `<plural>/<name>` → the resource's v3 JSON, whatever store it came
from; this module is the only place that knows how Calico keeps those resources in
Kubernetes:

- a Calico Node is a Kubernetes v1 Node; its BGP fields are annotations
  (`projectcalico.org/IPv4Address`, `IPv6Address`, `ASNumber`, `RouteReflectorClusterID`) and
  its labels are the Node's labels laid over the JSON map in `projectcalico.org/labels`
  (Kubernetes labels win). An invalid annotation is read as absent, as Calico does, with a
  warning naming the Node: one bad kubelet never hides a node's other fields or other nodes.
- BGPPeer, BGPConfiguration and IPPool are cluster-scoped objects (group
  `crd.projectcalico.org/v1` or natively `projectcalico.org/v3`) whose `spec` is the v3 spec:
  they pass through with kind and apiVersion set to v3, so resources.py validates them
  exactly as it does etcd's.

Only the fields the rule set reads are copied: a kubelet's status churn (conditions, images)
then gives the same bytes, and an unchanged value costs the daemon nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Optional

from rr_service.calico.v3 import fields
from rr_service.calico.v3.resources import API_VERSION, KINDS
from rr_service.core.values import InvalidValue, parse_as_number, parse_cluster_id, show

log = logging.getLogger("calico-rr")

ANNOTATION = "projectcalico.org/"
IPV4 = ANNOTATION + "IPv4Address"
IPV6 = ANNOTATION + "IPv6Address"
ASN = ANNOTATION + "ASNumber"
CLUSTER_ID = ANNOTATION + "RouteReflectorClusterID"
LABELS = ANNOTATION + "labels"
# The Calico kinds kept as cluster-scoped custom resources (plural → kind).
CRD_PLURALS = ("bgppeers", "bgpconfigurations", "ippools")


# Kubelets rewrite their Node every few seconds: a bad annotation is reported once, not at
# every rewrite. Bounded: cleared when full (then each is reported once more).
_WARNED: set = set()
MAX_WARNED = 10000


def _warn_once(node: str, what: str, message: str) -> None:
    if (node, what, message) in _WARNED:
        return
    if len(_WARNED) >= MAX_WARNED:
        _WARNED.clear()
    _WARNED.add((node, what, message))
    log.warning("Node %s: ignoring annotation %s: %s", show(node), what, message)


def _checked(node: str, annotation: str, value: object, check) -> Optional[object]:
    """The annotation's value if `check` accepts it, else None with a warning naming the
    Node (Calico reads an invalid annotation as absent)."""
    if value in (None, ""):
        return None
    try:
        check(value)
    except InvalidValue as exc:
        _warn_once(node, annotation, f"{show(value, 80)}: {exc}")
        return None
    return value


def _labels(name: str, metadata: dict) -> dict:
    annotations = metadata.get("annotations") or {}
    labels: dict = {}
    raw = annotations.get(LABELS)
    if raw:
        try:
            overlay = json.loads(raw)
            if not isinstance(overlay, dict) or not all(isinstance(v, str) for v in overlay.values()):
                raise ValueError("not a map of strings")
            labels.update(overlay)
        except (TypeError, ValueError) as exc:
            _warn_once(name, LABELS, show(str(exc), 80))
    labels.update(metadata.get("labels") or {})
    return labels


def node_resource(obj: dict) -> tuple[str, bytes]:
    """A Kubernetes Node → (`nodes/<name>`, the v3 Node JSON the rule set reads)."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidValue(f"Node without a name: {show(metadata, 80)}")
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        annotations = {}
    bgp: dict = {}
    for annotation, field_name, check in (
        (IPV4, "ipv4Address", lambda v: fields.parse_cidr_address(v, 4)),
        (IPV6, "ipv6Address", lambda v: fields.parse_cidr_address(v, 6)),
        (ASN, "asNumber", parse_as_number),
        (CLUSTER_ID, "routeReflectorClusterID", parse_cluster_id),
    ):
        value = _checked(name, annotation, annotations.get(annotation), check)
        if value is not None:
            # asdot and decimal strings become the number the v3 spec holds
            bgp[field_name] = parse_as_number(value) if annotation == ASN else value
    resource = {
        "kind": "Node",
        "apiVersion": API_VERSION,
        "metadata": {"name": name, "labels": _labels(name, metadata)},
        "spec": {"bgp": bgp} if bgp else {},
    }
    return f"nodes/{name}", _dump(resource)


def crd_resource(plural: str, obj: dict) -> tuple[str, bytes]:
    """A Calico custom resource (either group) → (`<plural>/<name>`, its v3 JSON)."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidValue(f"{KINDS[plural]} without a name")
    resource = {
        "kind": KINDS[plural],
        "apiVersion": API_VERSION,
        "metadata": {"name": name, "labels": metadata.get("labels") or {}},
        "spec": obj.get("spec") if obj.get("spec") is not None else {},
    }
    return f"{plural}/{name}", _dump(resource)


def resource(plural: str, obj: dict) -> tuple[str, bytes]:
    return node_resource(obj) if plural == "nodes" else crd_resource(plural, obj)


def crd_object(plural: str, group_version: str, v3: dict) -> dict:
    """A v3 resource (as `register` writes it) → the object to write to the API."""
    metadata = v3.get("metadata") or {}
    out = {
        "apiVersion": group_version,
        "kind": KINDS[plural],
        "metadata": {"name": metadata.get("name"), "labels": metadata.get("labels") or {}},
        "spec": v3.get("spec") or {},
    }
    if metadata.get("resourceVersion"):
        out["metadata"]["resourceVersion"] = metadata["resourceVersion"]
    return out


def _dump(resource: dict) -> bytes:
    # Sorted keys: the same object always gives the same bytes, so churn compares equal.
    return json.dumps(resource, sort_keys=True, separators=(",", ":")).encode()
