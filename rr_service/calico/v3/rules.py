"""The Calico v3 rules: which sessions this reflector runs, per address family. Pure.

Two rule sets combine, one session per neighbour address and port (docs/calico-v3.md):

Calico's own rules for our Node, as calico/node renders them (checked against its confd
fixtures):
- Node-to-node mesh (`nodeToNodeMeshEnabled`, default on) only when our Node has no
  `routeReflectorClusterID`: a reflector ignores the mesh setting, as calico/node does.
  One-way like Calico's: passive where the peer's address sorts after ours as text.
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

The rules for a reflector outside the cluster (external.py): BGPPeers whose peerIP is our
address, and the mesh of declared reflectors. They apply with or without a Node of ours.

Which candidate wins a neighbour: the reflector mesh, then Calico's rules (BGPPeers by name,
then the node-to-node mesh), then reverse peerIP peerings; a warning names the others when
their settings differ, and `calico-rr status` shows the winner's rule. Every candidate has a
rank that says so (`Candidate.rank`): the planner keeps, per neighbour, its candidates in rank
order, so a changed node re-decides only its own neighbours.

Everything that does not depend on a single other node is the Context: our Node, our
address, AS and cluster id per family, the BGPPeers that apply to us or name us, the listen
port. A change of a BGPPeer, a BGPConfiguration or our own Node builds a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional

from rr_service.calico.v3 import external
from rr_service.calico.v3.external import CALICO, NODE_MESH, REFLECTOR_MESH, REVERSE_PEER_IP, Target
from rr_service.calico.v3.resources import BGPPeer, CalicoData, CalicoNode
from rr_service.core.plan import CLIENT, MESH, PEER, Identity, Session, protocol_name
from rr_service.core.values import IPAddress, outermost, password_problem, shown_key

# Rank groups, in the order their candidates win a neighbour. The first two are the
# operator's word (a BGPPeer's peerIP); the others come from a Node's own address, which any
# writer of that Node can set.
RANK_REFLECTOR_MESH, RANK_PEER_IP, RANK_CALICO, RANK_NODE_MESH, RANK_REVERSE_PEER_IP = 0, 1, 2, 3, 4
FIRST_NODE_RANK = RANK_CALICO


class Candidate(NamedTuple):
    # A tuple: one per (BGPPeer, Node) that selects it, so 150,000 of them for 50 BGPPeers over
    # 3,000 Nodes; a frozen dataclass took three times as long to build.
    rank: tuple  # (group, BGPPeer name, 0 forward / 1 reverse, node name)
    target: Target


@dataclass
class FamilyContext:
    """What every candidate of one family rests on."""

    family: int
    mine: Optional[IPAddress]  # None: no sessions in this family
    reason: Optional[str]  # why mine is None although the family is configured somewhere
    our_as: int
    cluster_id: Optional[str]
    mode: Optional[str]
    naming: list  # BGPPeers whose peerIP is our address, by name
    registered: bool
    client_prefixes: Optional[tuple] = None  # core.plan.FamilyPlan.client_prefixes
    warnings: list = field(default_factory=list)
    globals: list = field(default_factory=list)  # candidates that depend on no single node


@dataclass
class Context:
    """Everything global: our Node, the BGPPeers that concern every node, the listen port."""

    data: CalicoData
    ours: Optional[CalicoNode]
    node_name: str
    families: dict  # family -> FamilyContext
    warnings: list  # not tied to a family: missing Node, unsupported fields, listen port
    listen_port: Optional[int]
    error: Optional[str]
    # The BGPPeers the per-node rules walk, in name order: those that apply to us with a
    # peerSelector (they select nodes), those whose peerSelector selects us (reverse).
    forward: tuple = ()
    reverse: tuple = ()
    node_mesh: bool = False
    blocked: frozenset = frozenset()  # BGPPeers left out for their password, by name


def context(data: CalicoData, me: Identity) -> Context:
    node_name = me.node_name
    ours = data.node(node_name)
    warnings: list[str] = []
    everyone = sorted(data.peers, key=lambda p: p.name)
    peers = _with_passwords(everyone, data.secrets, warnings)
    # A BGPPeer left out for its password still says who we are (peerIP names us): only its
    # sessions go, not this reflector's identity (node_candidates skips it).
    resolved = {p.name: p for p in peers}
    blocked = frozenset(p.name for p in everyone if p.name not in resolved)
    naming = {family: [resolved.get(p.name, p) for p in everyone
                       if p.peer_ip is not None and p.peer_ip == me.address(family)]
              for family in (4, 6)}
    if ours is None and not any(naming.values()):
        addresses = " or ".join(str(a) for a in (me.ipv4, me.ipv6) if a is not None)
        warnings.append(
            f"no Calico Node resource named {node_name!r} (nodes/{node_name}) and no BGPPeer with peerIP "
            f"{addresses}: no BGP sessions are configured until one exists (calico-rr register creates "
            f"this reflector's BGPPeer)"
        )
    for peer in peers:
        if peer.unsupported:
            warnings.append(f"bgppeer {peer.name}: {', '.join(peer.unsupported)} not supported by the reflector; ignored")
        warnings.extend(f"bgppeer {peer.name}: {note}" for note in peer.notes)
    ctx = Context(data, ours, node_name, {}, warnings, None, plan_error(data, node_name))
    ctx.blocked = blocked
    if ours is not None:
        ctx.forward = tuple(p for p in peers if p.peer_selector is not None and p.applies_to(ours))
        ctx.reverse = tuple(p for p in peers if p.reverse and p.peer_selector is not None
                            and p.peer_selector.matches(ours.labels))
        ctx.node_mesh = ours.cluster_id is None and data.mesh_enabled
    for family in (4, 6):
        ctx.families[family] = _family_context(ctx, me, family, naming[family], peers)
    ctx.listen_port = _listen_port(ctx, naming, warnings)
    return ctx


def _with_passwords(peers: list, secrets, warnings: list) -> list:
    """The BGPPeers with their passwords filled in from the secrets. A BGPPeer whose secret or
    key is missing, or whose password BIRD cannot carry, is left out whole, with a warning
    naming it and the secret (never the value): a session must never run without the
    password its BGPPeer asks for. Peers without a password keep their identity (the
    planner's per-node answers are keyed by it)."""
    out = []
    for peer in peers:
        if peer.password_ref is None:
            out.append(peer)
            continue
        name, key = peer.password_ref
        value = secrets.get(peer.password_ref)
        problem = (f"no key {key!r} in Secret {name!r} (or no such Secret) in the secret namespace"
                   if value is None else password_problem(value))
        if problem is not None:
            warnings.append(f"bgppeer {peer.name}: password from Secret {name!r} key {key!r}: {problem}; "
                            f"its sessions are left out")
            continue
        out.append(replace(peer, password=value))
    return out


def _family_context(ctx: Context, me: Identity, family: int, naming: list, peers: list) -> FamilyContext:
    data, ours = ctx.data, ctx.ours
    mine, reason = _local_address(ours, me, family, naming)
    own = external.own_reflector_peer(naming)
    fam = FamilyContext(family, mine, reason, 0, None, None, naming, ours is not None,
                        client_prefixes(data.pools, data.default.service_ranges, family))
    # A missing Node with nothing naming us is warned about once, by context().
    if reason is not None and (ours is not None or naming):
        fam.warnings.append(reason)
    fam.cluster_id = _cluster_id(ours, own, family, fam.warnings)
    if mine is None:
        return fam
    fam.registered = True
    fam.our_as = data.as_of(ours) if ours is not None else (own.as_num if own is not None else data.global_as)
    fam.mode = _mode(ours, naming, own, mine)
    if own is not None or (ours is not None and ours.cluster_id is not None):
        for target in external.reflector_mesh_targets(data, mine, family):
            fam.globals.append(Candidate((RANK_REFLECTOR_MESH, target.source, 0, ""), target))
            if target.as_num != fam.our_as:
                fam.warnings.append(f"IPv{family} {target.address}: {target.description} is in AS {target.as_num}, "
                                    f"this reflector in AS {fam.our_as}: an eBGP session, not a reflector mesh member")
    if ours is not None:
        for peer in peers:
            if peer.peer_ip is not None and peer.peer_ip.version == family and peer.applies_to(ours):
                port = peer.peer_port if peer.peer_port is not None else data.default.listen_port
                target = Target(peer.peer_ip, port, peer.as_num, None, f"bgppeer {peer.name}",
                                f"bgppeer {peer.name}", CALICO, peer)
                fam.globals.append(Candidate((RANK_PEER_IP, peer.name, 0, ""), target))
    return fam


def node_candidates(ctx: Context, fam: FamilyContext, node: CalicoNode, before: Optional[tuple] = None) -> tuple:
    """What one other node gives this family: its candidates, in rank order.

    `before` = (the Context this very node was last planned under, the candidates it got):
    a BGPPeer both Contexts hold keeps its answer for this node instead of matching its
    selectors again. A BGPPeer change then costs that BGPPeer's selectors over the Nodes, not
    every BGPPeer's (selectors are bounded, but 50 of them over 10,000 Nodes still add up)."""
    address = node.address(fam.family)
    if fam.mine is None or address is None or address == fam.mine or node.name == ctx.node_name:
        return ()
    forward_match = reverse_match = None
    if before is not None:
        forward_match, reverse_match = _answers(*before)
    data, name, created = ctx.data, node.name, node.created
    port, asn, cid, description = data.listen_port_of(name), data.as_of(node), node.cluster_id, f"node {name}"
    found = []
    for peer in ctx.forward:
        known = forward_match.get(id(peer)) if forward_match is not None else None
        if known if known is not None else peer.peer_selector.matches(node.labels):
            found.append(Candidate((RANK_CALICO, peer.name, 0, name),
                                   Target(address, port, asn, cid, f"bgppeer {peer.name}", description, CALICO, peer,
                                          node=name, created=created)))
    for peer in ctx.reverse:
        known = reverse_match.get(id(peer)) if reverse_match is not None else None
        if known if known is not None else peer.applies_to(node):
            found.append(Candidate((RANK_CALICO, peer.name, 1, name),
                                   Target(address, port, asn, cid, f"bgppeer {peer.name} (reverse)", description,
                                          CALICO, peer, node=name, created=created)))
    if ctx.node_mesh:
        found.append(Candidate((RANK_NODE_MESH, "", 0, name),
                               Target(address, port, asn, cid, "node-to-node mesh", description, NODE_MESH,
                                      passive=str(address) > str(fam.mine), node=name, created=created)))
    for peer in fam.naming:
        if peer.name not in ctx.blocked and peer.applies_to(node):
            found.append(Candidate((RANK_REVERSE_PEER_IP, peer.name, 0, name),
                                   Target(address, port, asn, cid, f"bgppeer {peer.name} (peerIP names us)", description,
                                          REVERSE_PEER_IP, peer, local_as=peer.as_num, node=name, created=created)))
    found.sort(key=_rank)
    return tuple(found)


def client_prefixes(pools: tuple, service_ranges: tuple, family: int) -> Optional[tuple]:
    """What a client may announce in this family (core.plan.FamilyPlan.client_prefixes): the
    pools Calico announces (not those with disableBGPExport), and the service ranges. None
    without any IP pool: then only limits apply."""
    if not pools:
        return None
    return outermost([p.cidr for p in pools if p.bgp_export] + list(service_ranges), family)


def _rank(candidate: Candidate) -> tuple:
    return candidate.rank


def _answers(old: Context, old_found: tuple) -> tuple[dict, dict]:
    """What each forward and reverse BGPPeer of `old` answered for a node that got
    `old_found` under it, by id(peer): the BGPPeers are the very objects (`old` keeps them
    alive, so no id is reused meanwhile)."""
    matched = {(id(c.target.peer), c.rank[2]) for c in old_found if c.rank[0] == RANK_CALICO}
    return ({id(p): (id(p), 0) in matched for p in old.forward},
            {id(p): (id(p), 1) in matched for p in old.reverse})


def settle(fam: FamilyContext, found: list, running: Optional[str]) -> tuple[Optional[Target], list]:
    """Which candidate of one neighbour gives the session, and the warnings about the others.
    `found` is in rank order; `running` the node whose session is there now (None: none).

    The operator's BGPPeers (peerIP) win over every Node. Among Nodes claiming one address,
    the node whose session runs keeps it, else the earliest claim (the datastore's creation
    order): writing another node's address into a Node never takes its session over."""
    if not found:
        return None, []
    warnings = []
    if found[0].rank[0] < FIRST_NODE_RANK:
        winner = found[0].target
        for later in found[1:]:
            lost = later.target
            if later.rank[0] < FIRST_NODE_RANK:
                warning = conflict_warning(fam, winner, lost)
                if warning is not None:
                    warnings.append(warning)
            elif lost.as_num != winner.as_num:
                warnings.append(f"IPv{fam.family} {lost.address}: node {lost.node} has the address {winner.source} "
                                f"peers with; its claim is ignored")
        return winner, list(dict.fromkeys(warnings))  # one per node, whatever gave it candidates
    claimants = {}
    for candidate in found:
        claimants.setdefault(candidate.target.node, candidate.target.created)
    if len(claimants) > 1:
        owner = running if running in claimants else \
            min(claimants, key=lambda node: (claimants[node], node))
        others = sorted(node for node in claimants if node != owner)
        warnings.append(f"IPv{fam.family} {found[0].target.address}: {len(claimants)} nodes claim it; node {owner} "
                        f"keeps its session (the running session, else the earliest claim); ignored: "
                        f"{_some(others)}")
        found = [c for c in found if c.target.node == owner]
    winner = found[0].target
    for later in found[1:]:
        warning = conflict_warning(fam, winner, later.target)
        if warning is not None:
            warnings.append(warning)
    return winner, warnings


def _some(names: list, limit: int = 10) -> str:
    shown = names[:limit] + ([f"and {len(names) - limit} more"] if len(names) > limit else [])
    return ", ".join(shown)


def conflict_warning(fam: FamilyContext, first: Target, later: Target) -> Optional[str]:
    """Two BGPPeers asking for one neighbour with different settings: worth a warning."""
    if first.peer is None or later.peer is None or first.peer.name == later.peer.name:
        return None

    def options(t: Target) -> tuple:
        local = t.local_as if t.local_as is not None else fam.our_as
        return (t.as_num, local, t.peer.keep_next_hop, t.peer.no_source_address, t.peer.max_restart_time)
    if options(first) == options(later):
        return None
    address, port = first.address, first.port
    spelled = str(address) if port is None else (f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}")
    return f"IPv{fam.family} {spelled}: {later.source} ignored, {first.source} already peers there"


def session(fam: FamilyContext, target: Target) -> Session:
    """The session a winning candidate gives."""
    local_as = target.local_as if target.local_as is not None else fam.our_as
    role, client = _role(target, local_as, fam.cluster_id)
    peer = target.peer
    return Session(
        name=protocol_name(role, target.address, target.port),
        role=role,
        neighbor=target.address,
        local_as=local_as,
        neighbor_as=target.as_num,
        rr_client=client,
        cluster_id=fam.cluster_id if client else None,
        description=target.description,
        port=target.port,
        next_hop_keep=bool(peer and peer.keep_next_hop),
        passive=target.passive,
        no_source_address=bool(peer and peer.no_source_address),
        graceful_restart_time=peer.max_restart_time if peer else None,
        password=peer.password if peer else None,
        origin=target.source,
        node=target.node,
    )


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


def plan_error(data: CalicoData, node_name: str) -> Optional[str]:
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
        decisive[f"bgppeers/{external.reflector_peer_name(node_name, family)}"] = (
            f"this reflector's IPv{family} AS, reflector mesh and cluster id")
    reasons = [f"etcd key {shown_key(bad.key)} is invalid ({bad.reason}) and decides {decisive[bad.key]}"
               for bad in data.rejected if bad.key in decisive]
    return "; ".join(reasons) or None


def _listen_port(ctx: Context, naming: dict, warnings: list) -> Optional[int]:
    """Where BIRD listens. With our Node, Calico's rule for every node (node.<name>
    listenPort, else the default's); without, the port the BGPPeers naming us give (the one in
    peerIP, else the default listenPort: where the nodes dial). One BIRD listens on one port:
    a BGPPeer asking for another one is named in a warning."""
    data, node_name = ctx.data, ctx.node_name
    asked: dict[Optional[int], str] = {}
    for peer in sorted((p for peers in naming.values() for p in peers), key=lambda p: p.name):
        asked.setdefault(peer.peer_port if peer.peer_port is not None else data.default.listen_port, peer.name)
    if ctx.ours is not None or not asked:
        chosen = data.listen_port_of(node_name)
        why = f"our Node {node_name}'s listenPort" if ctx.ours is not None else "the default listenPort"
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
            text += f", and {external.describe_external(naming, 'it')}"
    else:
        text = f"external reflector: {external.describe_external(naming, mine)}"
    if own is not None:
        text += f", declared by bgppeer {own.name}"
    return text
