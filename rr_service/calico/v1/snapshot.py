"""The legacy data set as one validated Snapshot, kept up to date key by key. Pure."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Mapping, Optional

from rr_service.core.values import DEFAULT_AS, InvalidValue, Rejected
from rr_service.calico.v1.keys import (
    BadSetting,
    Entry,
    InvalidSetting,
    Node,
    PeerEntry,
    Reflector,
    parse_entry,
)

BULK_NODES = 256  # more changed nodes than this: SnapshotParser re-sorts its node list at once


def _reflector_order(reflector: "Reflector") -> tuple:
    """Sort key of reflectors (and `_peer_order` of peer entries): two keys may name one address
    in different spellings (`2001:DB8::1`, ` 192.0.2.1`) with different settings, and None
    does not compare with a number or a string. The order is total, so the entry that wins
    does not depend on etcd's key order."""
    return (reflector.ip, reflector.cluster_id is not None, reflector.cluster_id or "")


def _network_order(network) -> tuple:
    return (network.version, network)


def _peer_order(peer: "PeerEntry") -> tuple:
    return (peer.ip, peer.as_num is not None, peer.as_num or 0)



@dataclass(frozen=True)
class Snapshot:
    """Everything the planner needs, already validated."""

    reflectors_v4: tuple[Reflector, ...] = ()
    reflectors_v6: tuple[Reflector, ...] = ()
    global_as: int = DEFAULT_AS
    global_peers_v4: tuple[PeerEntry, ...] = ()
    global_peers_v6: tuple[PeerEntry, ...] = ()
    nodes: tuple[Node, ...] = ()
    # Calico's IP pools (the networks clients may announce in); None: no pool key at all.
    pools: Optional[tuple] = None
    rejected: tuple[Rejected, ...] = field(default=(), compare=False)
    bad_settings: tuple[BadSetting, ...] = field(default=(), compare=False)  # among `rejected`

    def reflectors(self, family: int) -> tuple[Reflector, ...]:
        return self.reflectors_v4 if family == 4 else self.reflectors_v6

    def global_peers(self, family: int) -> tuple[PeerEntry, ...]:
        return self.global_peers_v4 if family == 4 else self.global_peers_v6


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

    @property
    def rejected(self) -> tuple:
        return self.snapshot.rejected


class SnapshotParser:
    """parse_snapshot that remembers: a change re-parses only its own keys and rebuilds only
    the nodes they belong to, and says which nodes it changed (`apply`). An unchanged Node
    stays the very same object. The nodes are kept in name order in a list (bisect), so a
    Snapshot costs one tuple() of it, not a Python loop over 10,000 nodes. Same result as
    parse_snapshot."""

    def __init__(self, created: Optional[Mapping[str, int]] = None) -> None:
        self._created = created if created is not None else {}
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
                fields["created_v4" if entry.family == 4 else "created_v6"] = self._created.get(key, 0)
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
            pools: Optional[list] = None
            global_as = DEFAULT_AS
            for key in self._global_keys:
                entry = self._entries[key]
                if entry.kind == "reflector":
                    reflectors[entry.family].append(entry.value)
                elif entry.kind == "global_peer":
                    peers[entry.family].append(entry.value)
                elif entry.kind == "pool":
                    pools = (pools or []) + [entry.value]
                elif entry.value is not None:
                    global_as = entry.value
            self._globals = dict(
                reflectors_v4=tuple(sorted(reflectors[4], key=_reflector_order)),
                reflectors_v6=tuple(sorted(reflectors[6], key=_reflector_order)),
                global_as=global_as,
                global_peers_v4=tuple(sorted(peers[4], key=_peer_order)),
                global_peers_v6=tuple(sorted(peers[6], key=_peer_order)),
                pools=None if pools is None else tuple(sorted(pools, key=_network_order)),
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
