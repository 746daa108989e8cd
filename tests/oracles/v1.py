"""An independent reference for the legacy v1 rules: the keys assembled and planned over from
scratch by straightforward loops, the way README.md's rules table reads. It shares no code
with rr_service/calico/v1's SnapshotParser or Planner (only the single-key validation
`parse_entry` and core's types), so tests can hold the incremental path to it.
"""

from __future__ import annotations

import ipaddress
from typing import Mapping, Optional

from rr_service.calico.v1.keys import BadSetting, InvalidSetting, Node, parse_entry
from rr_service.calico.v1.snapshot import Snapshot
from rr_service.core.plan import CLIENT, MESH, FamilyPlan, Identity, Plan, Session
from rr_service.core.values import DEFAULT_AS, InvalidValue, Rejected, shown_key


def snapshot(raw: Mapping[str, bytes], created: Optional[Mapping[str, int]] = None) -> Snapshot:
    """`created`: the keys' creation order (etcd's create_revision), as the source gives it."""
    created = created or {}
    reflectors, global_peers = {4: [], 6: []}, {4: [], 6: []}
    pools = None
    global_as = DEFAULT_AS
    fields: dict[str, dict] = {}
    rejected, bad = [], []
    for key in sorted(raw):
        try:
            entry = parse_entry(key, raw[key])
        except InvalidValue as exc:
            rejected.append(Rejected(key, str(exc)))
            if isinstance(exc, InvalidSetting):
                bad.append(BadSetting(key, str(exc), exc.kind, exc.family, exc.address))
            continue
        if entry is None:
            continue
        if entry.kind == "reflector":
            reflectors[entry.family].append(entry.value)
        elif entry.kind == "global_peer":
            global_peers[entry.family].append(entry.value)
        elif entry.kind == "global_as":
            if entry.value is not None:
                global_as = entry.value
        elif entry.kind == "pool":
            pools = sorted((pools or []) + [entry.value], key=lambda n: (n.version, n))
        else:
            node = fields.setdefault(entry.node, {"name": entry.node, "peers_v4": [], "peers_v6": []})
            if entry.kind == "node_address":
                node["ipv4" if entry.family == 4 else "ipv6"] = entry.value
                node[f"created_v{entry.family}"] = created.get(key, 0)
            elif entry.kind == "node_as":
                node["as_num"] = entry.value
            else:
                node[f"peers_v{entry.family}"].append(entry.value)

    def peer_order(p):
        return (p.ip, p.as_num is not None, p.as_num or 0)

    def reflector_order(r):
        return (r.ip, r.cluster_id is not None, r.cluster_id or "")

    nodes = []
    for name in sorted(fields):
        node = fields[name]
        node["peers_v4"] = tuple(sorted(node["peers_v4"], key=peer_order))
        node["peers_v6"] = tuple(sorted(node["peers_v6"], key=peer_order))
        nodes.append(Node(**node))
    return Snapshot(reflectors_v4=tuple(sorted(reflectors[4], key=reflector_order)),
                    reflectors_v6=tuple(sorted(reflectors[6], key=reflector_order)),
                    global_as=global_as,
                    global_peers_v4=tuple(sorted(global_peers[4], key=peer_order)),
                    global_peers_v6=tuple(sorted(global_peers[6], key=peer_order)),
                    nodes=tuple(nodes), pools=None if pools is None else tuple(pools),
                    rejected=tuple(rejected), bad_settings=tuple(bad))


def _names(names: list, limit: int) -> str:
    shown = names[:limit] + ([f"and {len(names) - limit} more"] if len(names) > limit else [])
    return ", ".join(shown)


def _family(snap: Snapshot, me: Identity, family: int, warnings: list, previous) -> FamilyPlan:
    mine = me.address(family)
    # What clients may announce: this family's pools, none inside another (None: no pools).
    prefixes = None
    if snap.pools is not None:
        mine_pools = [n for n in snap.pools if n.version == family]
        prefixes = tuple(n for n in mine_pools if not any(o != n and n.subnet_of(o) for o in mine_pools))
    if mine is None:
        return FamilyPlan(family, None, False, None, (), client_prefixes=prefixes)
    own = next((r for r in snap.reflectors(family) if r.ip == mine), None)
    cluster_id = own.cluster_id if own else None
    mesh = {}
    if own is not None:
        for r in snap.reflectors(family):
            if r.ip != mine:
                mesh[r.ip] = Session(f"Mesh_{str(r.ip).replace('.', '_').replace(':', '_')}", MESH, r.ip,
                                     snap.global_as, snap.global_as, False, None, "reflector",
                                     origin=f"rr_v{family} entry")
    global_peer = next((p for p in snap.global_peers(family) if p.ip == mine), None)
    claims: dict = {}
    for node in snap.nodes:  # in name order
        address = node.address(family)
        own_peer = next((p for p in node.peers(family) if p.ip == mine), None)
        if address is None or (own_peer is None and global_peer is None):
            continue
        peer_as = own_peer.as_num if own_peer is not None else global_peer.as_num
        neighbor_as = node.as_num if node.as_num is not None else snap.global_as
        local_as = peer_as if peer_as is not None else neighbor_as
        internal = local_as == neighbor_as
        claims.setdefault(address, []).append(Session(
            f"Client_{str(address).replace('.', '_').replace(':', '_')}", CLIENT, address, local_as, neighbor_as,
            internal, cluster_id if internal else None, node.name,
            origin=f"{'host/<name>' if own_peer is not None else 'global'}/peer_v{family}", node=node.name))
    clients = []
    for address in sorted(claims):
        found = claims[address]
        names = [s.description for s in found]
        if address == mine:
            warnings.append(f"node {_names(names, 10)} has this reflector's own address {mine}; no session to self")
            continue
        if address in mesh:
            continue
        if len(found) == 1:
            clients.append(found[0])
            continue
        # A shared address: the node whose session runs keeps it, else the earliest claim.
        created = {node.name: node.created(family) for node in snap.nodes}
        found.sort(key=lambda s: (created[s.node], s.node))
        running = previous.get(address) if previous else None
        winner = next((s for s in found if s.node == running), found[0])
        others = [s.node for s in found if s is not winner]
        warnings.append(f"{len(found)} nodes claim the address {address}: node {winner.node} keeps its session "
                        f"(the running session, else the earliest claim); ignored: {_names(others, 10)}")
        clients.append(winner)
    sessions = tuple(mesh[ip] for ip in sorted(mesh)) + tuple(clients)
    return FamilyPlan(family, mine, own is not None, cluster_id, sessions, client_prefixes=prefixes)


def plan(snap: Snapshot, me: Identity, previous: Optional[Plan] = None, claims: Optional[dict] = None) -> Plan:
    """`previous`: the plan that runs now (its client sessions keep a shared address); or
    `claims`, who holds each neighbour as read from BIRD's configs (core/running.py)."""
    warnings: list = []
    if previous is not None:
        running = {family: {s.neighbor: s.node for s in previous.family(family).sessions if s.role == CLIENT}
                   for family in (4, 6)}
    else:
        running = {family: {(ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address)(address): node for (address, _port), node in (claims or {}).get(
            family, {}).items()} for family in (4, 6)}
    v4, v6 = _family(snap, me, 4, warnings, running[4]), _family(snap, me, 6, warnings, running[6])
    reasons = []
    for bad in snap.bad_settings:
        if bad.kind == "global_as":
            what = "every session's AS"
        elif bad.address is None or bad.address != me.address(bad.family):
            continue
        elif bad.kind == "reflector":
            what = "this reflector's mesh and cluster id"
        else:
            what = f"which nodes are this reflector's IPv{bad.family} clients"
        reasons.append(f"etcd key {shown_key(bad.key)} is invalid ({bad.reason}) and decides {what}")
    return Plan(router_id=me.ipv4, v4=v4, v6=v6, warnings=tuple(warnings), error="; ".join(reasons) or None)
