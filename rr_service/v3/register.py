"""`calico-rr register` for Calico v3: our Node resource, as calicoctl stores it. Pure.

Read-modify-write: the fields this reflector owns (`spec.bgp.ipv4Address`, `ipv6Address`,
`routeReflectorClusterID` when given, the chosen labels) are set; everything else in the
stored object (other labels, annotations, `spec.orchRefs`, `metadata.uid`, ...) stays as it
was. A new Node gets what calicoctl's create gives it: kind, apiVersion, name, uid,
creationTimestamp. `updated_node` is the pure step; the datastore's `update` runs it inside
an optimistic transaction (compare the key's mod_revision, retry on a conflict).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from datetime import datetime, timezone
from typing import Callable, Mapping, Optional

from ..model import InvalidValue, parse_cluster_id
from .resources import API_VERSION, _LABEL_KEY_RE, parse_labels, parse_name


def parse_label_option(text: str) -> tuple[str, str]:
    """`--label KEY=VALUE` (VALUE may be empty)."""
    key, sep, value = text.partition("=")
    if not sep or not _LABEL_KEY_RE.fullmatch(key):
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
    parse_name(name)
    if existing is None:
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        node: dict = {
            "kind": "Node",
            "apiVersion": API_VERSION,
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": stamp},
            "spec": {},
        }
    else:
        try:
            node = json.loads(existing.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidValue(f"the stored Node {name} is not valid JSON ({exc}); not overwriting it") from None
        if not isinstance(node, dict) or node.get("kind", "Node") != "Node":
            raise InvalidValue(f"the stored value at nodes/{name} is not a Node; not overwriting it")
    metadata = _section(node, "metadata", name)
    if metadata.get("name", name) != name:
        raise InvalidValue(f"the stored Node is named {metadata.get('name')!r}, not {name!r}; not overwriting it")
    metadata["name"] = name
    node.setdefault("kind", "Node")
    node.setdefault("apiVersion", API_VERSION)
    if labels:
        merged = _section(metadata, "labels", name)
        merged.update(labels)
    bgp = _section(_section(node, "spec", name), "bgp", name)
    bgp["ipv4Address"] = str(ipv4)
    if ipv6 is not None:
        bgp["ipv6Address"] = str(ipv6)
    if cluster_id is not None:
        bgp["routeReflectorClusterID"] = parse_cluster_id(cluster_id) or ""
        if not bgp["routeReflectorClusterID"]:
            del bgp["routeReflectorClusterID"]
    return json.dumps(node, separators=(",", ":")).encode()


def _section(parent: dict, key: str, name: str) -> dict:
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    if not isinstance(value, dict):
        raise InvalidValue(f"the stored Node {name} has a {key} that is not an object; not overwriting it")
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
