"""The BGP sessions Calico's calico/node would render for our node, as a Plan. Pure.

Rules (Calico's, checked against its confd fixtures; see docs/calico-v3.md):
- Node-to-node mesh (`nodeToNodeMeshEnabled`, default on) only when our Node has no
  `routeReflectorClusterID`: a reflector ignores the mesh setting, as calico/node does.
- A BGPPeer applies to us when `node` is our name, `nodeSelector` matches our labels, or it
  has neither. With `peerIP` it gives one session to that address (port: the one in peerIP,
  else the global `listenPort`); with `peerSelector`, one to every selected node.
- Reverse peering: a BGPPeer whose `peerSelector` matches us gives us a session to every
  node it applies to (unless `reversePeering: Manual`).
- A selected node is reached at its own address for the family, its AS and its listen port
  (`bgpconfigurations/node.<name>`, else the global `listenPort`); by the same rule BIRD
  listens on our own listen port, where the other nodes connect to us.
- `rr client` + `rr cluster id <ours>` when iBGP, we have a cluster id and the peer's cluster
  id differs (peers given by `peerIP` have none). Never a session to our own address.
- One session per neighbour address and port: a BGPPeer wins over the mesh, and among
  BGPPeers the first by name wins (a warning names the others).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..model import IPAddress, shown_key
from ..plan import CLIENT, MESH, FamilyPlan, Identity, Plan, Session
from .resources import BGPPeer, CalicoData, CalicoNode

PEER = "peer"  # a non-client session from a BGPPeer: another reflector, a router, a node


@dataclass(frozen=True)
class _Target:
    """One session candidate before rr-client rules: where, which AS, and where from."""

    address: IPAddress
    port: Optional[int]
    as_num: int
    cluster_id: Optional[str]
    source: str  # "mesh" or "bgppeer <name>", for names and warnings
    description: str
    peer: Optional[BGPPeer] = None  # None: mesh
    passive: bool = False


def session_name(kind: str, address: IPAddress, port: Optional[int]) -> str:
    """`Client_10_0_0_1`, `Peer_ac13__57_port_50`: stable while kind, address, port stay."""
    token = str(address).replace(".", "_").replace(":", "_")
    return f"{kind}_{token}" + (f"_port_{port}" if port else "")


def plan_v3(data: CalicoData, node_name: str, me: Identity) -> Plan:
    warnings: list[str] = []
    ours = data.node(node_name)
    if ours is None:
        warnings.append(
            f"no Calico Node resource named {node_name!r} (nodes/{node_name}): no BGP sessions "
            f"are configured until it exists (calico-rr register creates it)"
        )
    for peer in data.peers:
        if peer.unsupported:
            warnings.append(f"bgppeer {peer.name}: {', '.join(peer.unsupported)} not supported by the reflector; ignored")
    families = {family: _plan_family(data, ours, me, family, warnings) for family in (4, 6)}
    # As calico/node: node.<name> listenPort, else the default's, whether or not our Node exists.
    return Plan(router_id=me.ipv4, v4=families[4], v6=families[6], warnings=tuple(warnings), schema="v3",
                listen_port=data.listen_port_of(node_name), error=_plan_error(data, node_name))


def _plan_error(data: CalicoData, node_name: str) -> Optional[str]:
    """Why the plan must not be applied: a rejected resource every session of ours rests on.
    Planned without it, a bad `default` BGPConfiguration would move every session to AS 64512
    and switch the node-to-node mesh on, a bad Node of ours would drop every session. A bad
    BGPPeer or another node costs only its own sessions (skipped, with a warning)."""
    decisive = {
        "bgpconfigurations/default": "the cluster's AS number, node-to-node mesh and listen port",
        f"bgpconfigurations/node.{node_name}": "this reflector's listen port",
        f"nodes/{node_name}": "this reflector's addresses, AS and cluster id",
    }
    reasons = [f"etcd key {shown_key(bad.key)} is invalid ({bad.reason}) and decides {decisive[bad.key]}"
               for bad in data.rejected if bad.key in decisive]
    return "; ".join(reasons) or None


def _local_address(ours: Optional[CalicoNode], me: Identity, family: int) -> tuple[Optional[IPAddress], Optional[str]]:
    """Our address for this family, or None and why: the setting and our Node must agree."""
    configured = me.address(family)
    if ours is None:
        return None, None if configured is None else "our Node resource missing: no sessions (calico-rr register creates it)"
    on_node = ours.address(family)
    if configured is None:
        if on_node is not None and family == 6:
            return None, f"Node {ours.name} has IPv6 address {ours.ipv6} but reflector.ip6 is empty: no IPv6 sessions"
        return None, None
    if on_node is None:
        return None, (f"Node {ours.name} has no IPv{family} address (reflector ip {configured}): no IPv{family} "
                      f"sessions (calico-rr register adds it)")
    if on_node != configured:
        return None, (f"Node {ours.name} says IPv{family} {on_node} but this reflector is configured as {configured}: "
                      f"no IPv{family} sessions until they agree (fix the setting, or run calico-rr register)")
    return configured, None


def _plan_family(data: CalicoData, ours: Optional[CalicoNode], me: Identity, family: int, warnings: list) -> FamilyPlan:
    mine, reason = _local_address(ours, me, family)
    if reason is not None and ours is not None:  # a missing Node is warned about once, by plan_v3
        warnings.append(reason)
    if ours is None or mine is None:
        return FamilyPlan(family, mine, ours is not None, ours.cluster_id if ours else None, (), reason)
    targets = _bgp_peer_targets(data, ours, family) + _mesh_targets(data, ours, mine, family)
    our_as = data.as_of(ours)
    chosen: dict[tuple, _Target] = {}
    for target in targets:
        if target.address == mine:
            continue  # "Skipping ourselves"
        key = (target.address, target.port)
        if key in chosen:
            first = chosen[key]
            if _conflict(first, target):
                warnings.append(
                    f"IPv{family} {_spelled(key)}: {target.source} ignored, {first.source} already peers there"
                )
            continue
        chosen[key] = target
    sessions = [_session(t, our_as, ours.cluster_id, mine) for t in chosen.values()]
    ordered = tuple(sorted(sessions, key=lambda s: (s.role != MESH, s.role != PEER, s.neighbor, s.port or 0)))
    return FamilyPlan(family, mine, True, ours.cluster_id, ordered)


def _conflict(first: _Target, later: _Target) -> bool:
    """Two BGPPeers asking for one neighbour with different settings: worth a warning."""
    if first.peer is None or later.peer is None or first.peer.name == later.peer.name:
        return False
    options = lambda t: (t.as_num, t.peer.keep_next_hop, t.peer.no_source_address, t.peer.max_restart_time)  # noqa: E731
    return options(first) != options(later)


def _spelled(key: tuple) -> str:
    address, port = key
    if port is None:
        return str(address)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _bgp_peer_targets(data: CalicoData, ours: CalicoNode, family: int) -> list[_Target]:
    targets: list[_Target] = []
    for peer in sorted(data.peers, key=lambda p: p.name):
        source = f"bgppeer {peer.name}"
        if peer.applies_to(ours):
            if peer.peer_ip is not None:
                if peer.peer_ip.version == family:
                    port = peer.peer_port if peer.peer_port is not None else data.default.listen_port
                    targets.append(_Target(peer.peer_ip, port, peer.as_num, None, source, f"bgppeer {peer.name}", peer))
            else:
                for node in data.nodes:
                    if peer.peer_selector.matches(node.labels):
                        targets.extend(_node_target(data, node, family, source, peer))
        if peer.reverse and peer.peer_selector is not None and peer.peer_selector.matches(ours.labels):
            for node in data.nodes:
                if peer.applies_to(node):
                    targets.extend(_node_target(data, node, family, source + " (reverse)", peer))
    return targets


def _node_target(data: CalicoData, node: CalicoNode, family: int, source: str, peer: BGPPeer) -> list[_Target]:
    address = node.address(family)
    if address is None:
        return []
    return [_Target(address, data.listen_port_of(node.name), data.as_of(node), node.cluster_id, source,
                    f"node {node.name}", peer)]


def _mesh_targets(data: CalicoData, ours: CalicoNode, mine: IPAddress, family: int) -> list[_Target]:
    if ours.cluster_id is not None or not data.mesh_enabled:
        return []
    targets = []
    for node in data.nodes:
        address = node.address(family)
        if address is None or node.name == ours.name:
            continue
        # Calico makes the mesh one-way: the side whose address sorts lower (as text) connects.
        targets.append(_Target(address, data.listen_port_of(node.name), data.as_of(node), node.cluster_id,
                               "mesh", f"node {node.name}", None, passive=str(address) > str(mine)))
    return targets


def _session(target: _Target, our_as: int, our_cluster_id: Optional[str], mine: IPAddress) -> Session:
    client = (
        target.peer is not None
        and target.as_num == our_as
        and our_cluster_id is not None
        and target.cluster_id != our_cluster_id
    )
    if target.peer is None:
        kind, role = "Mesh", MESH
    elif client:
        kind, role = "Client", CLIENT
    else:
        kind, role = "Peer", PEER
    peer = target.peer
    return Session(
        name=session_name(kind, target.address, target.port),
        role=role,
        neighbor=target.address,
        local_as=our_as,
        neighbor_as=target.as_num,
        rr_client=client,
        cluster_id=our_cluster_id if client else None,
        description=target.description,
        port=target.port,
        next_hop_keep=bool(peer and peer.keep_next_hop),
        passive=target.passive,
        no_source_address=bool(peer and peer.no_source_address),
        graceful_restart_time=peer.max_restart_time if peer else None,
    )
