"""The legacy Calico BGP keys (`/calico/bgp/v1`), one key at a time: what each contributes. Pure.

Every value is validated here, once (core.values). A bad key raises InvalidValue with the
reason; snapshot.py turns it into a `Rejected(key, reason)` and the rest of the data set still
parses: one broken node must never cost the cluster its other sessions.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Optional

from rr_service.core.values import (
    IPAddress,
    InvalidValue,
    no_duplicate_fields,
    parse_address,
    parse_as_number,
    parse_cluster_id,
    parse_hostname,
    parse_route_cidr,
    show,
)

MAX_VALUE_BYTES = 4096  # legacy values are tiny; anything larger is garbage or an attack
# Calico's legacy IP pools (`/calico/v1/ipam/v4/pool/<cidr>`) as the etcd source hands them over:
# under this first segment, which no BGP key has (sources/etcd/source.py).
POOL_HEAD = "ipam"
MAX_KEY_CHARS = 512
# Path segments only the BGP keys use: a key that holds one in the wrong place is a mistake
# worth a warning, not one of Calico's other keys to ignore.
_BGP_SEGMENTS = frozenset(("rr_v4", "rr_v6", "peer_v4", "peer_v6", "ip_addr_v4", "ip_addr_v6", "as_num"))


@dataclass(frozen=True)
class BadSetting:
    """A rejected key that more than one node's session may rest on: `global/as_num`
    (kind "global_as"), a reflector entry ("reflector") or a global peer entry ("global_peer"),
    with the family and address its key names (None when the key's address does not parse).
    The planner decides whether it concerns this reflector (Plan.error)."""

    key: str
    reason: str
    kind: str
    family: int = 0
    address: Optional["IPAddress"] = None


class InvalidSetting(InvalidValue):
    """InvalidValue of a key a BadSetting stands for."""

    def __init__(self, reason: str, kind: str, family: int = 0, key_address: str = ""):
        super().__init__(reason)
        self.kind, self.family = kind, family
        self.address: Optional[IPAddress] = None
        if key_address:
            try:
                self.address = parse_address(key_address, family)
            except InvalidValue:
                pass


@dataclass(frozen=True, order=True, slots=True)
class Reflector:
    ip: IPAddress
    cluster_id: Optional[str] = None


@dataclass(frozen=True, order=True, slots=True)
class PeerEntry:
    """A BGP peer a node uses: `global/peer_vN/<ip>` or `host/<name>/peer_vN/<ip>`."""

    ip: IPAddress
    as_num: Optional[int] = None


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    ipv4: Optional[ipaddress.IPv4Address] = None
    ipv6: Optional[ipaddress.IPv6Address] = None
    as_num: Optional[int] = None
    peers_v4: tuple[PeerEntry, ...] = ()
    peers_v6: tuple[PeerEntry, ...] = ()
    # When each address key was created, in the datastore's order (sources.base.DataSet):
    # of two nodes claiming one address, the earlier claim wins.
    created_v4: int = 0
    created_v6: int = 0

    def address(self, family: int) -> Optional[IPAddress]:
        return self.ipv4 if family == 4 else self.ipv6

    def created(self, family: int) -> int:
        return self.created_v4 if family == 4 else self.created_v6

    def peers(self, family: int) -> tuple[PeerEntry, ...]:
        return self.peers_v4 if family == 4 else self.peers_v6



def _text(raw: bytes) -> str:
    if len(raw) > MAX_VALUE_BYTES:
        raise InvalidValue(f"value is {len(raw)} bytes, more than the {MAX_VALUE_BYTES} allowed")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValue("value is not UTF-8 text") from None


def _json_object(raw: bytes) -> dict:
    text = _text(raw)
    try:
        data = json.loads(text, object_pairs_hook=no_duplicate_fields)
    except RecursionError:  # "[[[[...]]]]": json's C decoder recurses per nesting level
        raise InvalidValue("value is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise InvalidValue(f"value is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidValue(f"value must be a JSON object, not {type(data).__name__}")
    return data



def _family_of(segment: str) -> int:
    return 4 if segment.endswith("v4") else 6


# ---------------------------------------------------------------------------- entries

def parse_reflector(key_ip: str, raw: bytes, family: int) -> Reflector:
    data = _json_object(raw)
    ip = parse_address(data.get("ip"), family)
    key_address = parse_address(key_ip, family)
    if key_address != ip:  # the parsed address: the key's own text may hold control characters
        raise InvalidValue(f"key names {key_address} but the value's ip is {ip}")
    return Reflector(ip=ip, cluster_id=parse_cluster_id(data.get("cluster_id")))


def parse_peer(key_ip: str, raw: bytes, family: int) -> PeerEntry:
    data = _json_object(raw)
    ip = parse_address(data.get("ip"), family)
    key_address = parse_address(key_ip, family)
    if key_address != ip:  # the parsed address: the key's own text may hold control characters
        raise InvalidValue(f"key names {key_address} but the value's ip is {ip}")
    as_num = data.get("as_num")
    return PeerEntry(ip=ip, as_num=None if as_num in (None, "") else parse_as_number(as_num))


def parse_node_address(raw: bytes, family: int) -> Optional[IPAddress]:
    text = _text(raw).strip()
    if not text:  # Calico writes an empty value for "no address of this family"
        return None
    return parse_address(text, family)


def parse_plain_as(raw: bytes) -> Optional[int]:
    text = _text(raw).strip()
    if not text:
        return None
    if text.startswith('"'):  # a JSON string, as some tools write it
        try:
            text = json.loads(text)
        except ValueError:
            raise InvalidValue(f"AS number {show(text)} is not a number") from None
    return parse_as_number(text)


@dataclass(frozen=True, slots=True)
class Entry:
    """What one etcd key contributes to the data set, parsed once per value."""

    kind: str  # reflector | global_as | global_peer | node_address | node_as | node_peer | pool
    value: object
    family: int = 0
    node: str = ""


def parse_entry(key: str, value: bytes) -> Optional[Entry]:
    """One key of the legacy layout; None for keys that are not about BGP peering.

    Raises InvalidValue with the reason when the key or its value is unusable.
    """
    if len(key) > MAX_KEY_CHARS:
        raise InvalidValue(f"key is longer than {MAX_KEY_CHARS} characters")
    parts = key.split("/")
    head = parts[0]
    if head in ("rr_v4", "rr_v6") and len(parts) == 2:
        family = _family_of(head)
        try:
            return Entry("reflector", parse_reflector(parts[1], value, family), family)
        except InvalidValue as exc:
            raise InvalidSetting(str(exc), "reflector", family, parts[1]) from None
    if head == "global" and parts[1:] == ["as_num"]:
        try:
            return Entry("global_as", parse_plain_as(value))
        except InvalidValue as exc:
            raise InvalidSetting(str(exc), "global_as") from None
    if head == "global" and len(parts) == 3 and parts[1] in ("peer_v4", "peer_v6"):
        family = _family_of(parts[1])
        try:
            return Entry("global_peer", parse_peer(parts[2], value, family), family)
        except InvalidValue as exc:
            raise InvalidSetting(str(exc), "global_peer", family, parts[2]) from None
    if head == "host" and len(parts) >= 3:
        return _parse_host_entry(parts, value)
    if head == POOL_HEAD:
        return _parse_pool(parts, value)
    if head in ("rr_v4", "rr_v6") or parts[:2] in (["global", "peer_v4"], ["global", "peer_v6"]):
        raise InvalidValue("unexpected key layout (an address with '/' in it?)")
    if _BGP_SEGMENTS.intersection(parts):  # `/rr_v4/...`, `global/as_num/x`: a misplaced key
        raise InvalidValue("unexpected key layout (an empty or extra path segment?)")
    # Anything else under the prefix (node_mesh, loglevel, custom filters, ...) is Calico's
    # business, not ours: ignored on purpose.
    return None


def _parse_pool(parts: list[str], value: bytes) -> Entry:
    """`ipam/v4/pool/192.168.0.0-16` (Calico's `/calico/v1/ipam/...`, as the source hands it
    over): {"cidr": "192.168.0.0/16", "disabled": false, ...}."""
    if len(parts) != 4 or parts[1] not in ("v4", "v6") or parts[2] != "pool":
        raise InvalidValue("unexpected IPAM pool key layout (expected ipam/v4/pool/<cidr with - for />)")
    family = _family_of(parts[1])
    data = _json_object(value)
    network = parse_route_cidr(data.get("cidr"), "cidr")
    if network.version != family:
        raise InvalidValue(f"cidr {network} is not an IPv{family} network")
    if parts[3].replace("-", "/") != str(network):
        raise InvalidValue(f"key names {show(parts[3])} but the value's cidr is {network}")
    return Entry("pool", network, family)


def _parse_host_entry(parts: list[str], value: bytes) -> Optional[Entry]:
    name, rest = parts[1], parts[2:]
    if rest == ["ip_addr_v4"] or rest == ["ip_addr_v6"]:
        family = _family_of(rest[0])
        address = parse_node_address(value, family)
        return Entry("node_address", address, family, parse_hostname(name))
    if rest == ["as_num"]:
        return Entry("node_as", parse_plain_as(value), 0, parse_hostname(name))
    if len(rest) == 2 and rest[0] in ("peer_v4", "peer_v6"):
        family = _family_of(rest[0])
        return Entry("node_peer", parse_peer(rest[1], value, family), family, parse_hostname(name))
    if rest[0] in ("peer_v4", "peer_v6", "ip_addr_v4", "ip_addr_v6", "as_num"):
        raise InvalidValue("unexpected key layout (an address with '/' in it?)")
    if _BGP_SEGMENTS.intersection(rest):  # `host/a/b/ip_addr_v4`, `host/a//as_num`
        raise InvalidValue("unexpected key layout (a host name with '/' or an empty segment?)")
    # Other per-host keys (workloads, IPAM, ...) do not concern BGP peering.
    return None

