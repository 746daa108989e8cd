"""`calico-rr register` for Calico v3, as calicoctl stores resources. Pure.

Two ways to declare this reflector: a BGPPeer per family with our address as peerIP and the
labels reflectors find each other by (`updated_reflector_peer`, the default: a reflector
outside the cluster), or our own Calico Node (`updated_node`, `register --node`).

Read-modify-write: the fields this reflector owns are set; everything else in the stored
object (other labels, annotations, `spec.orchRefs`, `metadata.uid`, ...) stays as it was. A
new resource gets what calicoctl's create gives it: kind, apiVersion, name, uid,
creationTimestamp. These are the pure steps; the datastore's `update` runs them inside an
optimistic transaction (compare the key's mod_revision, retry on a conflict).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from datetime import datetime, timezone
from typing import Callable, Mapping, Optional

from rr_service.core.values import InvalidValue, parse_cluster_id
from rr_service.calico.v3.fields import LABEL_KEY_RE, parse_labels, parse_name, parse_peer_ip, parse_selector_field
from rr_service.calico.v3.resources import API_VERSION, CLUSTER_ID_LABEL, REFLECTOR_LABEL


def parse_label_option(text: str) -> tuple[str, str]:
    """`--label KEY=VALUE` (VALUE may be empty)."""
    key, sep, value = text.partition("=")
    if not sep or not LABEL_KEY_RE.fullmatch(key):
        raise InvalidValue(f"label {text!r} is not KEY=VALUE with a valid label key")
    parse_labels({key: value})  # the same checks as a stored label
    return key, value


def updated_node(
    existing: Optional[bytes],
    name: str,
    ipv4: ipaddress.IPv4Interface,
    ipv6: Optional[ipaddress.IPv6Interface],
    cluster_id: Optional[str],
    labels: Mapping[str, str],
    now: Optional[datetime] = None,
) -> bytes:
    """The JSON to store at `nodes/<name>`. Raises InvalidValue if the stored one is unusable."""
    node = _resource(existing, "Node", name, now)
    if labels:
        _section(node["metadata"], "labels", name).update(labels)
    bgp = _section(_section(node, "spec", name), "bgp", name)
    bgp["ipv4Address"] = str(ipv4)
    if ipv6 is not None:
        bgp["ipv6Address"] = str(ipv6)
    if cluster_id is not None:
        bgp["routeReflectorClusterID"] = parse_cluster_id(cluster_id) or ""
        if not bgp["routeReflectorClusterID"]:
            del bgp["routeReflectorClusterID"]
    return _dump(node)


def updated_reflector_peer(
    existing: Optional[bytes],
    name: str,
    reflector: str,
    address: str,
    as_num: Optional[int],
    default_as: int,
    cluster_id: Optional[str],
    node_selector: Optional[str],
    labels: Mapping[str, str],
    now: Optional[datetime] = None,
) -> bytes:
    """The JSON to store at `bgppeers/<name>`: the BGPPeer that declares this reflector at
    `address` (every Node it applies to peers with it; the other reflectors mesh with it).

    `as_num`, `cluster_id` and `node_selector` None keep the stored value (cluster id and
    selector "" remove it); with no AS given or stored, `default_as` (the cluster's). A port
    the stored peerIP has for this same address is kept. Raises InvalidValue if the stored
    one is unusable."""
    peer = _resource(existing, "BGPPeer", name, now)
    spec = _section(peer, "spec", name)
    metadata_labels = _section(peer["metadata"], "labels", name)
    metadata_labels.update(labels)
    metadata_labels[REFLECTOR_LABEL] = reflector
    if cluster_id is not None:
        parsed = parse_cluster_id(cluster_id)
        if parsed is None:
            metadata_labels.pop(CLUSTER_ID_LABEL, None)
        else:
            metadata_labels[CLUSTER_ID_LABEL] = parsed
    spec["peerIP"] = _peer_ip_keeping_port(spec.get("peerIP"), address)
    if as_num is not None or spec.get("asNumber") in (None, "", 0):
        spec["asNumber"] = as_num if as_num is not None else default_as
    if node_selector is not None:
        if node_selector:
            parse_selector_field(node_selector, "--node-selector")
            spec["nodeSelector"] = node_selector
            spec.pop("node", None)  # Calico refuses both
        else:
            spec.pop("nodeSelector", None)
    return _dump(peer)


def _peer_ip_keeping_port(stored: object, address: str) -> str:
    """`address`, with the port of the stored peerIP when that names the same address."""
    ip = ipaddress.ip_address(address)
    if isinstance(stored, str) and stored:
        try:
            stored_ip, port = parse_peer_ip(stored)
        except InvalidValue:
            port = None
        else:
            if stored_ip == ip and port is not None:
                return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    return str(ip)


def _resource(existing: Optional[bytes], kind: str, name: str, now: Optional[datetime]) -> dict:
    """The stored resource, or a new one as calicoctl's create gives it."""
    parse_name(name)
    if existing is None:
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "kind": kind,
            "apiVersion": API_VERSION,
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": stamp},
            "spec": {},
        }
    try:
        resource = json.loads(existing.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidValue(f"the stored {kind} {name} is not valid JSON ({exc}); not overwriting it") from None
    if not isinstance(resource, dict) or resource.get("kind", kind) != kind:
        raise InvalidValue(f"the stored value of {kind} {name} is not a {kind}; not overwriting it")
    metadata = _section(resource, "metadata", name)
    if metadata.get("name", name) != name:
        raise InvalidValue(f"the stored {kind} is named {metadata.get('name')!r}, not {name!r}; not overwriting it")
    metadata["name"] = name
    resource.setdefault("kind", kind)
    resource.setdefault("apiVersion", API_VERSION)
    return resource


def _dump(resource: dict) -> bytes:
    return json.dumps(resource, separators=(",", ":")).encode()


def _section(parent: dict, key: str, name: str) -> dict:
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    if not isinstance(value, dict):
        raise InvalidValue(f"the stored resource {name} has a {key} that is not an object; not overwriting it")
    return value


def with_prefix(address: str, prefix_length: Optional[int]):
    """`10.0.0.5` + 24 -> `10.0.0.5/24`; no known length: a host prefix (/32, /128)."""
    ip = ipaddress.ip_address(address)
    length = prefix_length if prefix_length is not None else ip.max_prefixlen
    return ipaddress.ip_interface(f"{ip}/{length}")


def node_addresses(
    existing: Optional[bytes], ips: tuple[str, str], host_prefix_length: Callable[[str], Optional[int]]
) -> tuple:
    """Our Node's ipv4Address and ipv6Address (interfaces, as with_prefix gives them), for the configured addresses
    (empty: none). An address the stored Node already has keeps its stored prefix length;
    a new one takes the host's (`host_prefix_length`, which asks the interfaces)."""
    stored = _stored_prefix_lengths(existing)
    found = []
    for ip in ips:
        if not ip:
            found.append(None)
            continue
        known = stored.get(ip)
        found.append(with_prefix(ip, known if known is not None else host_prefix_length(ip)))
    return found[0], found[1]


def _stored_prefix_lengths(existing: Optional[bytes]) -> dict:
    """address -> prefix length, from the stored Node's spec.bgp (best effort)."""
    try:
        bgp = json.loads(existing)["spec"]["bgp"]
        found = {}
        for field in ("ipv4Address", "ipv6Address"):
            interface = ipaddress.ip_interface(bgp[field]) if bgp.get(field) else None
            if interface is not None:
                found[str(interface.ip)] = interface.network.prefixlen
        return found
    except (TypeError, ValueError, KeyError):
        return {}
