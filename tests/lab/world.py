"""The integration lab's topology: who is who, and a `World` holding the
running pieces (used by tests/integration and tools/demo.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from .bird import BirdProc, calico_node_bird_config
from .etcd import CalicoData, Etcd
from .netns import Host, Lab
from .reflector import Reflector

AS_NUM = 64512
CLUSTER_ID = "1.2.3.4"
RR2_CLUSTER_ID = "1.2.3.5"   # distinct, so rr2 reflects rr1's routes to its own clients
ETCD_IP = "192.0.2.2"
RR1 = ("rr1", "192.0.2.10", "2001:db8::10")
RR2 = ("rr2", "192.0.2.11", "2001:db8::11")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    ipv4: str
    ipv6: Optional[str]
    block4: str
    block6: Optional[str]


NODES = {
    "a": NodeSpec("a", "192.0.2.21", "2001:db8::21", "198.51.100.0/26", "2001:db8:1::/64"),
    "b": NodeSpec("b", "192.0.2.22", "2001:db8::22", "198.51.100.64/26", "2001:db8:2::/64"),
    "c": NodeSpec("c", "192.0.2.23", "2001:db8::23", "198.51.100.128/26", "2001:db8:3::/64"),
    "d": NodeSpec("d", "192.0.2.24", None, "203.0.113.0/26", None),
    "e": NodeSpec("e", "192.0.2.25", None, "203.0.113.64/26", None),
}


@dataclass
class Node:
    spec: NodeSpec
    host: Host
    bird: Optional[BirdProc] = None
    bird6: Optional[BirdProc] = None

    def bird_for(self, family: int) -> BirdProc:
        b = self.bird if family == 4 else self.bird6
        assert b is not None, f"node {self.spec.name} runs no BIRD{family}"
        return b


@dataclass
class World:
    lab: Lab
    etcd: Etcd
    calico: CalicoData
    rr1: Reflector
    nodes: Dict[str, Node] = field(default_factory=dict)

    def add_node(self, name: str, rr_ips4=(), rr_ips6=()) -> Node:
        """Create node `name`'s host and start its BIRD(s) peering with the
        given reflector addresses.  Writes nothing to etcd."""
        spec = NODES[name]
        host = self.lab.add_host(spec.name, spec.ipv4, spec.ipv6)
        node = Node(spec, host)
        if rr_ips4:
            node.bird = self.lab.start_bird(host, calico_node_bird_config(
                spec.ipv4, AS_NUM, list(rr_ips4), spec.block4))
        if rr_ips6 and spec.ipv6:
            node.bird6 = self.lab.start_bird(host, calico_node_bird_config(
                spec.ipv6, AS_NUM, list(rr_ips6), spec.block6, router_id=spec.ipv4, family=6),
                family=6)
        self.nodes[name] = node
        return node
