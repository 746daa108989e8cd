"""An independent reference for the Calico v3 rules: everything planned over from scratch, by
straightforward loops over every Node and BGPPeer, the way the rules read in
docs/calico-v3.md. It shares no code with rr_service/calico/v3's incremental planner (only
the validated input types and core's Plan), so property tests can hold the product to it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from rr_service.calico.v3.resources import BGPPeer, CalicoData, CalicoNode
from rr_service.core.plan import CLIENT, MESH, PEER, FamilyPlan, Identity, Plan, Session
from rr_service.core.values import IPAddress, shown_key


def session_name(role: str, address: IPAddress, port: Optional[int]) -> str:
    kind = {MESH: "Mesh", CLIENT: "Client", PEER: "Peer"}[role]
    token = str(address).replace(".", "_").replace(":", "_")
    return f"{kind}_{token}" + (f"_port_{port}" if port else "")


# How a session came about, which decides its role (calico_plan._session).
CALICO = "calico"  # calico/node's own rules for our Node
NODE_MESH = "node mesh"  # Calico's node-to-node mesh
REVERSE_PEER_IP = "reverse peerIP"
REFLECTOR_MESH = "reflector mesh"


@dataclass(frozen=True)
class Target:
    """One session candidate before the role is decided: where, which AS, and why."""

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
    node: str = ""  # the Node behind a target from a Node's address ("" for a BGPPeer's peerIP)
    created: int = 0
    reflector: str = ""  # the reflector a labelled BGPPeer declares


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
                                  node=node.name, created=node.created))
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
                              REFLECTOR_MESH, reflector=peer.reflector))
    return targets


def own_reflector_peer(naming: list[BGPPeer]) -> Optional[BGPPeer]:
    """Our own reflector declaration among the BGPPeers that name us (the first by name)."""
    return next((p for p in naming if p.reflector is not None), None)


def describe_external(naming: list[BGPPeer], mine: object) -> str:
    """`external reflector: 3 BGPPeers name 192.0.2.10`, for render and status."""
    count = len(naming)
    return f"{count} BGPPeer{'s' if count != 1 else ''} name{'s' if count == 1 else ''} {mine}"


def plan_v3(data: CalicoData, node_name: str, me: Identity, previous: Optional[Plan] = None,
            claims: Optional[dict] = None) -> Plan:
    """`previous`: the plan that runs now (its sessions keep an address several Nodes claim);
    or `claims`, who holds each neighbour as read from BIRD's configs (core/running.py)."""
    warnings: list[str] = []
    if previous is not None:
        running = {family: {(s.neighbor, s.port): s.node for s in previous.family(family).sessions}
                   for family in (4, 6)}
    else:
        running = {family: {((ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address)(address), port or None): node
                            for (address, port), node in (claims or {}).get(family, {}).items()}
                   for family in (4, 6)}
    ours = data.node(node_name)
    naming = {family: naming_peers(data, me.address(family)) for family in (4, 6)}
    if ours is None and not any(naming.values()):
        addresses = " or ".join(str(a) for a in (me.ipv4, me.ipv6) if a is not None)
        warnings.append(
            f"no Calico Node resource named {node_name!r} (nodes/{node_name}) and no BGPPeer with peerIP "
            f"{addresses}: no BGP sessions are configured until one exists (calico-rr register creates "
            f"this reflector's BGPPeer)"
        )
    for peer in data.peers:
        if peer.unsupported:
            warnings.append(f"bgppeer {peer.name}: {', '.join(peer.unsupported)} not supported by the reflector; ignored")
        for note in peer.notes:
            warnings.append(f"bgppeer {peer.name}: {note}")
    families = {family: _plan_family(data, ours, me, family, naming[family], warnings, running[family])
                for family in (4, 6)}
    listen_port = _listen_port(data, node_name, ours, naming, warnings)
    return Plan(router_id=me.ipv4, v4=families[4], v6=families[6], warnings=tuple(warnings), schema="v3",
                listen_port=listen_port, error=_plan_error(data, node_name))


def _plan_error(data: CalicoData, node_name: str) -> Optional[str]:
    """Why the plan must not be applied: a rejected resource every session of ours rests on.
    Planned without it, a bad `default` BGPConfiguration would move every session to AS 64512
    and switch the node-to-node mesh on, a bad Node of ours would drop every session, a bad
    BGPPeer of our own (`calico-rr register`'s) would drop our mesh and cluster id. A bad
    BGPPeer of somebody else or another node costs only its own sessions (skipped, with a
    warning)."""
    decisive = {
        "bgpconfigurations/default": "the cluster's AS number, node-to-node mesh and listen port",
        f"bgpconfigurations/node.{node_name}": "this reflector's listen port",
        f"nodes/{node_name}": "this reflector's addresses, AS and cluster id",
    }
    for family in (4, 6):
        decisive[f"bgppeers/{reflector_peer_name(node_name, family)}"] = (
            f"this reflector's IPv{family} AS, reflector mesh and cluster id")
    reasons = [f"etcd key {shown_key(bad.key)} is invalid ({bad.reason}) and decides {decisive[bad.key]}"
               for bad in data.rejected if bad.key in decisive]
    return "; ".join(reasons) or None


def _listen_port(data: CalicoData, node_name: str, ours: Optional[CalicoNode], naming: dict,
                 warnings: list) -> Optional[int]:
    """Where BIRD listens. With our Node, Calico's rule for every node (node.<name>
    listenPort, else the default's); without, the port the BGPPeers naming us give (the one in
    peerIP, else the default listenPort: where the nodes dial). One BIRD listens on one port:
    a BGPPeer asking for another one is named in a warning."""
    asked: dict[Optional[int], str] = {}
    for peer in sorted((p for peers in naming.values() for p in peers), key=lambda p: p.name):
        asked.setdefault(peer.peer_port if peer.peer_port is not None else data.default.listen_port, peer.name)
    if ours is not None or not asked:
        chosen = data.listen_port_of(node_name)
        why = f"our Node {node_name}'s listenPort" if ours is not None else "the default listenPort"
    else:
        chosen = next(iter(asked))
        why = f"as bgppeer {asked[chosen]} asks"
    for port, name in asked.items():
        if port != chosen:
            warnings.append(f"bgppeer {name}: the nodes dial this reflector on port {port or 179}, but BIRD "
                            f"listens on port {chosen or 179} ({why}); its sessions cannot come up")
    return chosen


def _local_address(ours: Optional[CalicoNode], me: Identity, family: int,
                   naming: list) -> tuple[Optional[IPAddress], Optional[str]]:
    """Our address for this family, or None and why. With our Node, the setting and the Node
    must agree; without, the setting, once a BGPPeer names it."""
    configured = me.address(family)
    if ours is None:
        if configured is None or naming:
            return configured, None
        return None, (f"no Node of ours and no BGPPeer with peerIP {configured}: no IPv{family} sessions "
                      f"(calico-rr register creates this reflector's BGPPeer)")
    on_node = ours.address(family)
    if configured is None:
        if on_node is not None and family == 6:
            return None, f"Node {ours.name} has IPv6 address {ours.ipv6} but reflector.ip6 is empty: no IPv6 sessions"
        return None, None
    if on_node is None:
        return None, (f"Node {ours.name} has no IPv{family} address (reflector ip {configured}): no IPv{family} "
                      f"sessions (calico-rr register --node adds it)")
    if on_node != configured:
        return None, (f"Node {ours.name} says IPv{family} {on_node} but this reflector is configured as {configured}: "
                      f"no IPv{family} sessions until they agree (fix the setting, or run calico-rr register --node)")
    return configured, None


def _plan_family(data: CalicoData, ours: Optional[CalicoNode], me: Identity, family: int, naming: list,
                 warnings: list, previous: Optional[dict] = None) -> FamilyPlan:
    """`previous`: who has each neighbour ((address, port) -> node) in the plan that runs."""
    mine, reason = _local_address(ours, me, family, naming)
    # A missing Node with nothing naming us is warned about once, by plan_v3.
    if reason is not None and (ours is not None or any(p.peer_ip is not None for p in naming)):
        warnings.append(reason)
    own = own_reflector_peer(naming)
    cluster_id = _cluster_id(ours, own, family, warnings)
    prefixes = _client_prefixes(data, family)
    if mine is None:
        return FamilyPlan(family, None, ours is not None, cluster_id, (), reason, client_prefixes=prefixes)
    our_as = data.as_of(ours) if ours is not None else (own.as_num if own is not None else data.global_as)
    targets: list[Target] = []
    if own is not None or (ours is not None and ours.cluster_id is not None):
        targets += reflector_mesh_targets(data, mine, family)
    if ours is not None:
        targets += _peer_ip_targets(data, ours, family)  # the operator's word: before any Node's
        targets += _bgp_peer_targets(data, ours, family) + _mesh_targets(data, ours, mine, family)
    targets += reverse_peer_ip_targets(data, naming, ours, family)
    by_key: dict[tuple, list] = {}
    for target in targets:
        if target.address != mine:  # "Skipping ourselves"
            by_key.setdefault((target.address, target.port), []).append(target)
    chosen: dict[tuple, Target] = {}
    for key, found in by_key.items():
        explicit = [t for t in found if not t.node]
        if explicit:
            chosen[key] = winner = explicit[0]
            for target in explicit[1:]:
                if _conflict(winner, target, our_as):
                    warnings.append(f"IPv{family} {_spelled(key)}: {target.source} ignored, {winner.source} already "
                                    f"peers there")
            said = []
            for target in found:
                text = (f"IPv{family} {target.address}: node {target.node} has the address {winner.source} peers "
                        f"with; its claim is ignored")
                if target.node and target.as_num != winner.as_num and text not in said:
                    said.append(text)
            warnings.extend(said)
            continue
        created = {}
        for target in found:
            created.setdefault(target.node, target.created)
        if len(created) > 1:
            running = (previous or {}).get(key)
            owner = running if running in created else min(created, key=lambda n: (created[n], n))
            others = sorted(n for n in created if n != owner)
            shown = others[:10] + ([f"and {len(others) - 10} more"] if len(others) > 10 else [])
            warnings.append(f"IPv{family} {key[0]}: {len(created)} nodes claim it; node {owner} keeps its session "
                            f"(the running session, else the earliest claim); ignored: {', '.join(shown)}")
            found = [t for t in found if t.node == owner]
        chosen[key] = winner = found[0]
        for target in found[1:]:
            if _conflict(winner, target, our_as):
                warnings.append(f"IPv{family} {_spelled(key)}: {target.source} ignored, {winner.source} already "
                                f"peers there")
    sessions = [_session(t, our_as, cluster_id) for t in chosen.values()]
    for session in sessions:
        if session.role == MESH and session.origin.startswith("reflector mesh") and session.local_as != session.neighbor_as:
            warnings.append(f"IPv{family} {session.neighbor}: {session.description} is in AS {session.neighbor_as}, "
                            f"this reflector in AS {session.local_as}: an eBGP session, not a reflector mesh member")
    ordered = tuple(sorted(sessions, key=lambda s: ({MESH: 0, PEER: 1, CLIENT: 2}[s.role], int(s.neighbor), s.port or 0)))
    return FamilyPlan(family, mine, True, cluster_id, ordered, mode=_mode(ours, naming, own, mine),
                      client_prefixes=prefixes)


def _client_prefixes(data: CalicoData, family: int):
    """Pools without disableBGPExport and the default BGPConfiguration's service ranges, of
    this family, leaving out any inside another; None when there is no IP pool at all."""
    if not data.pools:
        return None
    networks = {p.cidr for p in data.pools if p.bgp_export and p.cidr.version == family}
    networks |= {r for r in data.default.service_ranges if r.version == family}
    return tuple(sorted(n for n in networks
                        if not any(other != n and n.subnet_of(other) for other in networks)))


def _cluster_id(ours: Optional[CalicoNode], own: Optional[BGPPeer], family: int, warnings: list) -> Optional[str]:
    """Our cluster id: our Node's routeReflectorClusterID, else our reflector BGPPeer's label."""
    if ours is None:
        return own.reflector_cluster_id if own is not None else None
    if own is not None and own.reflector_cluster_id not in (None, ours.cluster_id):
        warnings.append(f"IPv{family}: bgppeer {own.name} says cluster id {own.reflector_cluster_id}, our Node "
                        f"{ours.name} {ours.cluster_id or 'none'}: the Node's applies")
    return ours.cluster_id


def _mode(ours: Optional[CalicoNode], naming: list, own: Optional[BGPPeer], mine: IPAddress) -> str:
    """What makes us a reflector of this family, e.g. `external reflector: 3 BGPPeers name
    192.0.2.10, declared by bgppeer calico-rr-rr1-ipv4` (render's log, status)."""
    if ours is not None:
        text = f"Calico Node {ours.name} at {mine}"
        if naming:
            text += f", and {describe_external(naming, 'it')}"
    else:
        text = f"external reflector: {describe_external(naming, mine)}"
    if own is not None:
        text += f", declared by bgppeer {own.name}"
    return text


def _conflict(first: Target, later: Target, our_as: int) -> bool:
    """Two BGPPeers asking for one neighbour with different settings: worth a warning."""
    if first.peer is None or later.peer is None or first.peer.name == later.peer.name:
        return False

    def options(t: Target) -> tuple:
        local = t.local_as if t.local_as is not None else our_as
        return (t.as_num, local, t.peer.keep_next_hop, t.peer.no_source_address, t.peer.max_restart_time)
    return options(first) != options(later)


def _spelled(key: tuple) -> str:
    address, port = key
    if port is None:
        return str(address)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _peer_ip_targets(data: CalicoData, ours: CalicoNode, family: int) -> list[Target]:
    targets: list[Target] = []
    for peer in sorted(data.peers, key=lambda p: p.name):
        if peer.applies_to(ours) and peer.peer_ip is not None and peer.peer_ip.version == family:
            port = peer.peer_port if peer.peer_port is not None else data.default.listen_port
            targets.append(Target(peer.peer_ip, port, peer.as_num, None, f"bgppeer {peer.name}",
                                  f"bgppeer {peer.name}", CALICO, peer))
    return targets


def _bgp_peer_targets(data: CalicoData, ours: CalicoNode, family: int) -> list[Target]:
    """The targets BGPPeers with a peerSelector give: at the selected Nodes' addresses."""
    targets: list[Target] = []
    for peer in sorted(data.peers, key=lambda p: p.name):
        source = f"bgppeer {peer.name}"
        if peer.applies_to(ours):
            if peer.peer_ip is None:
                for node in data.nodes:
                    if peer.peer_selector.matches(node.labels):
                        targets.extend(_node_target(data, node, family, source, peer))
        if peer.reverse and peer.peer_selector is not None and peer.peer_selector.matches(ours.labels):
            for node in data.nodes:
                if peer.applies_to(node):
                    targets.extend(_node_target(data, node, family, source + " (reverse)", peer))
    return targets


def _node_target(data: CalicoData, node: CalicoNode, family: int, source: str, peer: BGPPeer) -> list[Target]:
    address = node.address(family)
    if address is None:
        return []
    return [Target(address, data.listen_port_of(node.name), data.as_of(node), node.cluster_id, source,
                   f"node {node.name}", CALICO, peer, node=node.name, created=node.created)]


def _mesh_targets(data: CalicoData, ours: CalicoNode, mine: IPAddress, family: int) -> list[Target]:
    if ours.cluster_id is not None or not data.mesh_enabled:
        return []
    targets = []
    for node in data.nodes:
        address = node.address(family)
        if address is None or node.name == ours.name:
            continue
        # Calico makes the mesh one-way: the side whose address sorts lower (as text) connects.
        targets.append(Target(address, data.listen_port_of(node.name), data.as_of(node), node.cluster_id,
                              "node-to-node mesh", f"node {node.name}", NODE_MESH, passive=str(address) > str(mine),
                              node=node.name, created=node.created))
    return targets


def _role(target: Target, local_as: int, our_cluster_id: Optional[str]) -> tuple[str, bool]:
    """(role, rr client?) of a candidate."""
    if target.rule in (NODE_MESH, REFLECTOR_MESH):
        return MESH, False
    internal = target.as_num == local_as
    if target.rule == REVERSE_PEER_IP:
        # A node dialling us as its reflector is our client whether or not we have a cluster
        # id (the original image's rule), unless it is a reflector of our own cluster.
        client = internal and not (target.cluster_id is not None and target.cluster_id == our_cluster_id)
    else:
        client = internal and our_cluster_id is not None and target.cluster_id != our_cluster_id
    return (CLIENT if client else PEER), client


def _session(target: Target, our_as: int, our_cluster_id: Optional[str]) -> Session:
    local_as = target.local_as if target.local_as is not None else our_as
    role, client = _role(target, local_as, our_cluster_id)
    peer = target.peer
    return Session(
        name=session_name(role, target.address, target.port),
        role=role,
        neighbor=target.address,
        local_as=local_as,
        neighbor_as=target.as_num,
        rr_client=client,
        cluster_id=our_cluster_id if client else None,
        description=target.description,
        port=target.port,
        next_hop_keep=bool(peer and peer.keep_next_hop),
        passive=target.passive,
        no_source_address=bool(peer and peer.no_source_address),
        graceful_restart_time=peer.max_restart_time if peer else None,
        origin=target.source,
        node=target.node or target.reflector,
    )
