"""The rules for a reflector outside the cluster: BGPPeers that name our address. Pure.

Calico's documented way to peer with a route reflector that is not a Calico node is a
BGPPeer whose `peerIP` is the reflector's address: calico/node configures the node's side,
and the reflector must configure its own. These rules derive our side from the same
BGPPeers, so nothing about the nodes is typed on the reflector:

- **Reverse peerIP peering**: a BGPPeer whose peerIP is our address (the family's) gives us a
  session to every Node it applies to (every Node when it has neither `node` nor
  `nodeSelector`), at that Node's address and listen port. Neighbour AS: the Node's, else the
  global one; our AS on that session: the BGPPeer's `asNumber` (what the node dials).
  iBGP: an `rr client` (with our cluster id when we have one), except a Node that is a
  reflector of our own cluster (same routeReflectorClusterID): a plain peer, as Calico makes
  it. eBGP: a plain peer. The BGPPeer's keepOriginalNextHop, sourceAddress and
  maxRestartTime apply.
- **Reflector mesh**: a BGPPeer labelled REFLECTOR_LABEL declares a reflector at its peerIP
  (`calico-rr register` writes one per family). Every reflector (one that has such a BGPPeer
  of its own, or a Calico Node with a routeReflectorClusterID) has a non-client iBGP session
  to every other declared reflector, whatever that BGPPeer's node scope: the reflectors form
  one full mesh, Node and non-Node alike.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from rr_service.core.values import IPAddress
from rr_service.calico.v3.resources import BGPPeer, CalicoData, CalicoNode

# How a session came about, which decides its role (calico_plan._session).
CALICO = "calico"  # calico/node's own rules for our Node
NODE_MESH = "node mesh"  # Calico's node-to-node mesh
REVERSE_PEER_IP = "reverse peerIP"
REFLECTOR_MESH = "reflector mesh"


class Target(NamedTuple):
    """One session candidate before the role is decided: where, which AS, and why. A tuple
    for the speed of building many (rules.Candidate)."""

    address: IPAddress
    port: Optional[int]
    as_num: int  # the neighbour's AS
    cluster_id: Optional[str]  # the neighbour's, when it is a Node with one
    source: str  # the rule in words, for warnings and `calico-rr status`
    description: str
    rule: str = CALICO
    peer: Optional[BGPPeer] = None  # the BGPPeer whose options apply; None: no options
    passive: bool = False
    local_as: Optional[int] = None  # None: our AS
    node: str = ""  # the Calico node (or declared reflector) behind the address
    created: int = 0  # that Node's creation in the datastore's order (a claim's age)


def reflector_peer_name(node_name: str, family: int) -> str:
    """The BGPPeer `calico-rr register` writes for this reflector and family."""
    return f"calico-rr-{node_name.lower()}-ipv{family}"


def naming_peers(data: CalicoData, mine: Optional[IPAddress]) -> list[BGPPeer]:
    """The BGPPeers whose peerIP is our address, in name order."""
    if mine is None:
        return []
    return sorted((p for p in data.peers if p.peer_ip == mine), key=lambda p: p.name)


def reverse_peer_ip_targets(data: CalicoData, naming: list[BGPPeer], ours: Optional[CalicoNode],
                            family: int) -> list[Target]:
    targets = []
    for peer in naming:
        source = f"bgppeer {peer.name} (peerIP names us)"
        for node in data.nodes:
            address = node.address(family)
            if address is None or (ours is not None and node.name == ours.name) or not peer.applies_to(node):
                continue
            targets.append(Target(address, data.listen_port_of(node.name), data.as_of(node), node.cluster_id,
                                  source, f"node {node.name}", REVERSE_PEER_IP, peer, local_as=peer.as_num,
                                  node=node.name))
    return targets


def reflector_mesh_targets(data: CalicoData, mine: IPAddress, family: int) -> list[Target]:
    """A session to every other declared reflector of the family, in BGPPeer name order."""
    targets = []
    for peer in sorted(data.peers, key=lambda p: p.name):
        if peer.reflector is None or peer.peer_ip is None or peer.peer_ip.version != family or peer.peer_ip == mine:
            continue
        port = peer.peer_port if peer.peer_port is not None else data.default.listen_port
        # No BGPPeer options: keepOriginalNextHop & co. are for the nodes' sessions to it.
        targets.append(Target(peer.peer_ip, port, peer.as_num, peer.reflector_cluster_id,
                              f"reflector mesh (bgppeer {peer.name})", f"reflector {peer.reflector}",
                              REFLECTOR_MESH, node=peer.reflector))
    return targets


def own_reflector_peer(naming: list[BGPPeer]) -> Optional[BGPPeer]:
    """Our own reflector declaration among the BGPPeers that name us (the first by name)."""
    return next((p for p in naming if p.reflector is not None), None)


def describe_external(naming: list[BGPPeer], mine: object) -> str:
    """`external reflector: 3 BGPPeers name 192.0.2.10`, for render and status."""
    count = len(naming)
    return f"{count} BGPPeer{'s' if count != 1 else ''} name{'s' if count == 1 else ''} {mine}"
