"""Typed records of the legacy Calico BGP data (`/calico/bgp/v1`) and their parsing.

Every value from etcd is validated here, once. A bad entry becomes a `Rejected(key, reason)`
and the rest of the data set still parses: one broken node must never cost the cluster its
other sessions. Nothing downstream (plan, render) re-checks what this module guarantees:
addresses are `ipaddress` objects of the right family, AS numbers are in range, cluster IDs
are dotted quads and host names match a strict pattern.
"""

from __future__ import annotations

import ipaddress
import json
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

DEFAULT_AS = 64512  # Calico's default when global/as_num is absent
AS_MAX = 4294967295
MAX_VALUE_BYTES = 4096  # legacy values are tiny; anything larger is garbage or an attack
MAX_KEY_CHARS = 512
BULK_NODES = 256  # more changed nodes than this: SnapshotParser re-sorts its node list at once
# RFC 1123 labels, plus '_' which Calico tolerates in node names; no quotes, spaces or
# control characters, so a name is safe to show in a BIRD comment or a log line.
HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?")
_ASDOT_RE = re.compile(r"([0-9]{1,5})\.([0-9]{1,5})")
_ASPLAIN_RE = re.compile(r"[0-9]{1,10}")
# Path segments only the BGP keys use: a key that holds one in the wrong place is a mistake
# worth a warning, not one of Calico's other keys to ignore.
_BGP_SEGMENTS = frozenset(("rr_v4", "rr_v6", "peer_v4", "peer_v6", "ip_addr_v4", "ip_addr_v6", "as_num"))


def _reflector_order(reflector: "Reflector") -> tuple:
    """Sort key of reflectors (and `_peer_order` of peer entries): two keys may name one address
    in different spellings (`2001:DB8::1`, ` 192.0.2.1`) with different settings, and None
    does not compare with a number or a string. The order is total, so the entry that wins
    does not depend on etcd's key order."""
    return (reflector.ip, reflector.cluster_id is not None, reflector.cluster_id or "")


def _peer_order(peer: "PeerEntry") -> tuple:
    return (peer.ip, peer.as_num is not None, peer.as_num or 0)


class InvalidValue(ValueError):
    """A value that cannot be used; the message is the reason shown to the operator."""


@dataclass(frozen=True)
class Rejected:
    key: str
    reason: str


def shown_key(key: str) -> str:
    """An etcd key as a log line shows it: repr'd when it holds control characters (a newline,
    an escape), so a key can neither span nor forge log lines."""
    return key if key.isprintable() else repr(key)


def rejection_message(rejected: Rejected) -> str:
    """The one log line for a rejected key, the daemon's and `calico-rr render`'s alike."""
    return f"ignoring etcd key {shown_key(rejected.key)}: {rejected.reason}"


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

    def address(self, family: int) -> Optional[IPAddress]:
        return self.ipv4 if family == 4 else self.ipv6

    def peers(self, family: int) -> tuple[PeerEntry, ...]:
        return self.peers_v4 if family == 4 else self.peers_v6


@dataclass(frozen=True)
class Snapshot:
    """Everything the planner needs, already validated."""

    reflectors_v4: tuple[Reflector, ...] = ()
    reflectors_v6: tuple[Reflector, ...] = ()
    global_as: int = DEFAULT_AS
    global_peers_v4: tuple[PeerEntry, ...] = ()
    global_peers_v6: tuple[PeerEntry, ...] = ()
    nodes: tuple[Node, ...] = ()
    rejected: tuple[Rejected, ...] = field(default=(), compare=False)
    bad_settings: tuple[BadSetting, ...] = field(default=(), compare=False)  # among `rejected`

    def reflectors(self, family: int) -> tuple[Reflector, ...]:
        return self.reflectors_v4 if family == 4 else self.reflectors_v6

    def global_peers(self, family: int) -> tuple[PeerEntry, ...]:
        return self.global_peers_v4 if family == 4 else self.global_peers_v6


# ---------------------------------------------------------------------------- values

def parse_as_number(value: object) -> int:
    """An AS number from a JSON number, a decimal string or asdot ("1.10" = 65546)."""
    if isinstance(value, bool):  # JSON true is an int to Python, never an AS
        raise InvalidValue(f"AS number must be a number, not {_show(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        dotted = _ASDOT_RE.fullmatch(text)
        if dotted:
            high, low = int(dotted.group(1)), int(dotted.group(2))
            if high > 65535 or low > 65535:
                raise InvalidValue(f"asdot AS number {_show(value)} has a part above 65535")
            number = high * 65536 + low
        elif _ASPLAIN_RE.fullmatch(text):
            number = int(text)
        else:
            raise InvalidValue(f"AS number {_show(value)} is not a number")
    else:
        raise InvalidValue(f"AS number must be a number or a string, not {type(value).__name__}")
    if not 1 <= number <= AS_MAX:
        raise InvalidValue(f"AS number {_show(number)} is outside 1-{AS_MAX}")  # _show: 4000 digits fit in 4 KB
    return number


def parse_address(value: object, family: int) -> IPAddress:
    if not isinstance(value, str):
        raise InvalidValue(f"address must be a string, not {type(value).__name__}")
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidValue(f"{_show(value)} is not an IP address") from None
    if address.version != family:
        raise InvalidValue(f"{address} is an IPv{address.version} address, expected IPv{family}")
    check_neighbour(address, value)
    return address


def check_neighbour(address: IPAddress, value: object) -> None:
    """What an address must be to reach a BIRD config as a multihop BGP neighbour."""
    if getattr(address, "scope_id", None) is not None:  # fe80::1%eth0: not a BIRD address
        raise InvalidValue(f"{_show(value)} has a zone index (%...), which a BGP neighbour cannot have")
    if address.is_unspecified or address.is_multicast:
        raise InvalidValue(f"{address} cannot be a BGP neighbour")
    if address.version == 6 and address.is_link_local:
        # BIRD refuses the whole config: a link-local neighbour needs an interface, and these
        # sessions are multihop.
        raise InvalidValue(f"{address} is link-local, which a multihop BGP session cannot use")


def parse_cluster_id(value: object) -> Optional[str]:
    """Empty or missing means no cluster id; otherwise a dotted quad, as BIRD wants it."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"cluster_id must be a string, not {type(value).__name__}")
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise InvalidValue(f"cluster_id {_show(value)} is not a dotted quad like 1.0.0.1") from None


def parse_hostname(name: str) -> str:
    if not HOSTNAME_RE.fullmatch(name):
        raise InvalidValue(f"host name {_show(name)} is not a valid host name")
    return name


def _show(value: object, limit: int = 60) -> str:
    """A value as it may appear in a log line: repr'd, so control characters stay inert."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def no_duplicate_fields(pairs: list) -> dict:
    """json.loads object_pairs_hook: a duplicated field means two writers disagree, and
    guessing which one wins is worse than refusing the entry."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate field {_show(key)}")
        result[key] = value
    return result


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
            raise InvalidValue(f"AS number {_show(text)} is not a number") from None
    return parse_as_number(text)


# ---------------------------------------------------------------------------- snapshot

@dataclass(frozen=True, slots=True)
class Entry:
    """What one etcd key contributes to the data set, parsed once per value."""

    kind: str  # reflector | global_as | global_peer | node_address | node_as | node_peer
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
    if head in ("rr_v4", "rr_v6") or parts[:2] in (["global", "peer_v4"], ["global", "peer_v6"]):
        raise InvalidValue("unexpected key layout (an address with '/' in it?)")
    if _BGP_SEGMENTS.intersection(parts):  # `/rr_v4/...`, `global/as_num/x`: a misplaced key
        raise InvalidValue("unexpected key layout (an empty or extra path segment?)")
    # Anything else under the prefix (node_mesh, loglevel, custom filters, ...) is Calico's
    # business, not ours: ignored on purpose.
    return None


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


def parse_snapshot(raw: Mapping[str, bytes]) -> Snapshot:
    """Build a Snapshot from keys relative to the prefix (e.g. `rr_v4/192.0.2.10`)."""
    return SnapshotParser().reset(raw)


@dataclass(frozen=True)
class Parsed:
    """What one SnapshotParser.apply did: the new Snapshot and what differs from the last one."""

    snapshot: Snapshot
    # The nodes that differ, by name: the new Node, None when the node is gone.
    nodes: Mapping[str, Optional[Node]]
    # Reflectors, global peers or global_as differ (or the parser was cleared): every session
    # may differ, so the planner starts over.
    globals_changed: bool


class SnapshotParser:
    """parse_snapshot that remembers: a change re-parses only its own keys and rebuilds only
    the nodes they belong to, and says which nodes it changed (`apply`). An unchanged Node
    stays the very same object. The nodes are kept in name order in a list (bisect), so a
    Snapshot costs one tuple() of it, not a Python loop over 10,000 nodes. Same result as
    parse_snapshot."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._rejected: dict[str, Rejected] = {}
        self._bad_settings: dict[str, BadSetting] = {}
        self._rejected_tuples: Optional[tuple] = None  # (rejected, bad_settings), sorted by key
        # A node's keys as a tuple: it has one to a few, and a 1-tuple costs 48 bytes where a
        # set costs 216 (1.7 MB at 10,000 nodes, kept for the daemon's whole life).
        self._node_keys: dict[str, tuple] = {}
        self._nodes: dict[str, Node] = {}
        self._node_names: list[str] = []  # sorted; _node_list[i] is the Node of _node_names[i]
        self._node_list: list[Node] = []
        self._global_keys: set = set()
        self._globals: Optional[dict] = None

    def reset(self, raw: Mapping[str, bytes]) -> Snapshot:
        self.clear()
        return self.update(raw)

    def update(self, changes: Mapping[str, Optional[bytes]]) -> Snapshot:
        """Apply changed keys (value None: deleted) and return the new Snapshot."""
        return self.apply(changes).snapshot

    def apply(self, changes: Mapping[str, Optional[bytes]]) -> Parsed:
        """Apply changed keys (value None: deleted): the new Snapshot and what changed."""
        touched_nodes: set = set()
        old_globals = self._globals
        for key, value in changes.items():
            self._forget(key, touched_nodes)
            if value is None:
                continue
            try:
                entry = parse_entry(key, value)
            except InvalidValue as exc:
                self._rejected[key] = Rejected(key=key, reason=str(exc))
                if isinstance(exc, InvalidSetting):
                    self._bad_settings[key] = BadSetting(key, str(exc), exc.kind, exc.family, exc.address)
                self._rejected_tuples = None
                continue
            if entry is None:
                continue
            self._entries[key] = entry
            if entry.node:
                keys = self._node_keys.get(entry.node, ())
                if key not in keys:
                    self._node_keys[entry.node] = (*keys, key)
                touched_nodes.add(entry.node)
            else:
                self._global_keys.add(key)
                self._globals = None
        changed: dict[str, Optional[Node]] = {}
        # Many nodes at once (a snapshot, a burst): one sort instead of thousands of inserts
        # into the middle of the ordered lists.
        bulk = len(touched_nodes) > BULK_NODES
        for name in touched_nodes:
            self._rebuild_node(name, changed, keep_order=not bulk)
        if bulk:
            self._node_names = sorted(self._nodes)
            self._node_list = list(map(self._nodes.__getitem__, self._node_names))
        globals_now = self._global_fields()
        # The same global value written again re-parses to equal fields: not a change.
        globals_changed = globals_now is not old_globals and globals_now != old_globals
        return Parsed(self._snapshot(), changed, globals_changed)

    def _forget(self, key: str, touched_nodes: set) -> None:
        if self._rejected.pop(key, None) is not None:
            self._bad_settings.pop(key, None)
            self._rejected_tuples = None
        old = self._entries.pop(key, None)
        if old is None:
            return
        if old.node:
            keys = self._node_keys[old.node]
            self._node_keys[old.node] = tuple(k for k in keys if k != key)
            touched_nodes.add(old.node)
        else:
            self._global_keys.discard(key)
            self._globals = None

    def _rebuild_node(self, name: str, changed: dict, keep_order: bool) -> None:
        keys = self._node_keys.get(name)
        old = self._nodes.get(name)
        if not keys:
            self._node_keys.pop(name, None)
            if old is not None:
                del self._nodes[name]
                if keep_order:
                    i = bisect_left(self._node_names, name)
                    del self._node_names[i], self._node_list[i]
                changed[name] = None
            return
        fields: dict = {"name": name}
        peers: dict = {4: [], 6: []}
        for key in keys:
            entry = self._entries[key]
            if entry.kind == "node_address":
                fields["ipv4" if entry.family == 4 else "ipv6"] = entry.value
            elif entry.kind == "node_as":
                fields["as_num"] = entry.value
            else:
                peers[entry.family].append(entry.value)
        node = Node(**fields, peers_v4=tuple(sorted(peers[4], key=_peer_order)),
                    peers_v6=tuple(sorted(peers[6], key=_peer_order)))
        if old == node:
            return  # the old object stays: the planner and renderer skip what is identical
        self._nodes[name] = node
        changed[name] = node
        if not keep_order:
            return
        i = bisect_left(self._node_names, name)
        if old is None:
            self._node_names.insert(i, name)
            self._node_list.insert(i, node)
        else:
            self._node_list[i] = node

    def _global_fields(self) -> dict:
        if self._globals is None:
            reflectors: dict = {4: [], 6: []}
            peers: dict = {4: [], 6: []}
            global_as = DEFAULT_AS
            for key in self._global_keys:
                entry = self._entries[key]
                if entry.kind == "reflector":
                    reflectors[entry.family].append(entry.value)
                elif entry.kind == "global_peer":
                    peers[entry.family].append(entry.value)
                elif entry.value is not None:
                    global_as = entry.value
            self._globals = dict(
                reflectors_v4=tuple(sorted(reflectors[4], key=_reflector_order)),
                reflectors_v6=tuple(sorted(reflectors[6], key=_reflector_order)),
                global_as=global_as,
                global_peers_v4=tuple(sorted(peers[4], key=_peer_order)),
                global_peers_v6=tuple(sorted(peers[6], key=_peer_order)),
            )
        return self._globals

    def _snapshot(self) -> Snapshot:
        if self._rejected_tuples is None:
            rejected, bad = self._rejected, self._bad_settings
            self._rejected_tuples = (tuple(map(rejected.__getitem__, sorted(rejected))),
                                     tuple(map(bad.__getitem__, sorted(bad))))
        rejected, bad_settings = self._rejected_tuples
        return Snapshot(**self._global_fields(), nodes=tuple(self._node_list),
                        rejected=rejected, bad_settings=bad_settings)
