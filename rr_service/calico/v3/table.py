"""The Calico v3 resources kept up to date key by key: what a change did. Pure.

A change re-parses only its own key. A Node that parses to the same record as before is no
change at all (kubelets rewrite their Node objects all the time: only the BGP fields
count), so it costs no plan and no render. Nodes are kept in name order (a sorted list, bisect),
so the data set is one tuple() of them, not a Python loop over 10,000 nodes.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Mapping, Optional

from rr_service.calico.v3.resources import SECRETS, CalicoData, CalicoNode, parse_resource
from rr_service.core.values import InvalidValue, Rejected

BULK_KEYS = 256


@dataclass(frozen=True)
class Parsed:
    """What one ResourceTable.apply did: the data now, the Nodes that differ by name (the new
    record, None: gone), and whether anything else differs (a BGPPeer, a BGPConfiguration)."""

    data: CalicoData
    nodes: Mapping[str, Optional[CalicoNode]]
    globals_changed: bool

    @property
    def rejected(self) -> tuple:
        return self.data.rejected


class ResourceTable:
    def __init__(self, created: Optional[Mapping[str, int]] = None) -> None:
        self._created = created if created is not None else {}
        self.clear()

    def clear(self) -> None:
        self._nodes: dict[str, CalicoNode] = {}
        self._names: list[str] = []  # sorted; _list[i] is the node named _names[i]
        self._list: list[CalicoNode] = []
        self._peers: dict = {}
        self._configs: dict = {}
        self._pools: dict = {}
        self._secrets: dict = {}  # Secret name -> {key: value}
        self._rejected: dict[str, Rejected] = {}
        self._rejected_tuple: Optional[tuple] = ()
        self._peers_tuple: tuple = ()
        self._data: Optional[CalicoData] = None
        self._bulk = False

    def apply(self, changes: Mapping[str, Optional[bytes]]) -> Parsed:
        nodes: dict[str, Optional[CalicoNode]] = {}
        globals_changed = self._data is None
        # Many keys at once (a snapshot, a burst): one sort at the end instead of thousands of
        # inserts into the middle of the ordered lists.
        self._bulk = len(changes) > BULK_KEYS
        for key, raw in changes.items():
            plural, _, name = key.partition("/")
            old_rejection = self._rejected.pop(key, None)
            record = None
            if raw is not None:
                try:
                    parsed = parse_resource(key, raw, self._created.get(key, 0))
                except InvalidValue as exc:
                    self._rejected[key] = Rejected(key, str(exc))
                else:
                    if parsed is None:
                        continue  # not a kind we read
                    record = parsed[1]

            if self._rejected.get(key) != old_rejection:
                self._rejected_tuple = None
            if plural == "nodes":
                if self._put_node(name, record):
                    nodes[name] = record
            elif plural in ("bgppeers", "bgpconfigurations", "ippools", SECRETS):
                table = {"bgppeers": self._peers, "bgpconfigurations": self._configs, "ippools": self._pools,
                         SECRETS: self._secrets}[plural]
                if table.get(name) != record:
                    globals_changed = True
                    if record is None:
                        table.pop(name, None)
                    else:
                        table[name] = record
        if self._bulk:
            self._names = sorted(self._nodes)
            self._list = list(map(self._nodes.__getitem__, self._names))
            self._bulk = False
        if globals_changed or nodes or self._rejected_tuple is None:
            self._data = self._build(globals_changed)
        return Parsed(self._data, nodes, globals_changed)

    def _put_node(self, name: str, node: Optional[CalicoNode]) -> bool:
        """Keep `node` (None: remove it); False when nothing differs."""
        old = self._nodes.get(name)
        if old == node:
            return False
        if self._bulk:
            if node is None:
                del self._nodes[name]
            else:
                self._nodes[name] = node
            return True
        i = bisect_left(self._names, name)
        if node is None:
            del self._nodes[name], self._names[i], self._list[i]
        elif old is None:
            self._nodes[name] = node
            self._names.insert(i, name)
            self._list.insert(i, node)
        else:
            self._nodes[name] = node
            self._list[i] = node
        return True

    def _build(self, globals_changed: bool) -> CalicoData:
        if self._rejected_tuple is None:
            self._rejected_tuple = tuple(self._rejected[key] for key in sorted(self._rejected))
        if globals_changed or self._data is None:
            self._peers_tuple = tuple(self._peers[name] for name in sorted(self._peers))
            configs = dict(self._configs)
            pools = tuple(self._pools[name] for name in sorted(self._pools))
            secrets = {(name, key): value for name, data in self._secrets.items() for key, value in data.items()}
        else:
            configs, pools, secrets = self._data.configs, self._data.pools, self._data.secrets
        return CalicoData(nodes=tuple(self._list), peers=self._peers_tuple, configs=configs, pools=pools,
                          rejected=self._rejected_tuple, by_name=self._nodes, secrets=secrets)
