"""Who this reflector peers with, per address family: the routing rules, and nothing else.

Pure: a Snapshot and this reflector's identity in, a Plan out. The rules are the original
calico/routereflector image's, with its known bugs fixed (IPv6 names with ':', IPv6 node
peers compared against the IPv4 address, duplicate sessions to one neighbour).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Optional

from .model import IPAddress, Node, Snapshot, shown_key

MESH = "mesh"
CLIENT = "client"
# Nodes sharing one address (400 nodes that autodetected docker0's 172.17.0.1) get one
# session: its description names a few of them, the warning more, each with the count of the
# rest, so neither grows with the cluster (nor reaches the renderer's 4096-character check).
DESCRIPTION_NAMES = 3
WARNING_NAMES = 10


@dataclass(frozen=True)
class Identity:
    """This reflector: its IPv4 address (also the router id) and optional IPv6 address."""

    ipv4: ipaddress.IPv4Address
    ipv6: Optional[ipaddress.IPv6Address] = None

    def address(self, family: int) -> Optional[IPAddress]:
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True)
class Session:
    name: str  # a BIRD symbol, stable for as long as the role and address stay the same
    role: str  # MESH or CLIENT
    neighbor: IPAddress
    local_as: int
    neighbor_as: int
    rr_client: bool
    cluster_id: Optional[str]
    description: str  # node names or "reflector"; validated, safe in a BIRD comment
    # Options only Calico v3 data sets; None/False renders exactly the seed image's session.
    port: Optional[int] = None
    next_hop_keep: bool = False
    passive: bool = False
    source_address: Optional[IPAddress] = None  # None: the template's (this reflector's)
    no_source_address: bool = False  # Calico `sourceAddress: None`: no source address at all
    graceful_restart_time: Optional[int] = None  # seconds, from BGPPeer maxRestartTime


@dataclass(frozen=True)
class FamilyPlan:
    family: int
    local_address: Optional[IPAddress]  # None: this family is not configured here
    registered: bool  # our own rr_vN entry exists (mesh member, cluster id applies)
    cluster_id: Optional[str]
    sessions: tuple[Session, ...]
    # Why local_address is None although the family is configured somewhere (Calico v3: our
    # Node and the settings disagree on the address); `calico-rr status` shows it.
    unconfigured_reason: Optional[str] = None

    def count(self, role: str) -> int:
        return sum(1 for session in self.sessions if session.role == role)


@dataclass(frozen=True)
class Plan:
    router_id: ipaddress.IPv4Address
    v4: FamilyPlan
    v6: FamilyPlan
    warnings: tuple[str, ...] = ()
    # Set when the data every session rests on is invalid (a typo in global/as_num): the
    # sessions were planned on a fallback, and the daemon must not apply them.
    error: Optional[str] = None
    schema: str = "v1"  # which Calico data model it came from; only wording depends on it
    # Where BIRD listens for BGP (Calico v3 listenPort): the port the other nodes connect to.
    # None: BIRD's default, 179.
    listen_port: Optional[int] = None

    def family(self, family: int) -> FamilyPlan:
        return self.v4 if family == 4 else self.v6


def protocol_name(role: str, address: IPAddress) -> str:
    """`Mesh_192_0_2_11`, `Client_2001_db8__21`: a valid BIRD symbol for both families.

    The compressed form is canonical, so the name is a function of the address alone and
    never changes between renders (a changed name would restart the session).
    """
    token = str(address).replace(".", "_").replace(":", "_")
    return f"{'Mesh' if role == MESH else 'Client'}_{token}"


def plan(snapshot: Snapshot, me: Identity, memo: Optional[dict] = None) -> Plan:
    """The sessions this reflector runs. `memo` (a dict the caller keeps between calls) lets
    a node that is the same object as last time skip its work; the result is the same."""
    warnings: list[str] = []
    memo = {} if memo is None else memo
    v4 = _plan_family(snapshot, me, 4, warnings, memo)
    v6 = _plan_family(snapshot, me, 6, warnings, memo)
    return Plan(router_id=me.ipv4, v4=v4, v6=v6, warnings=tuple(warnings), error=_plan_error(snapshot, me))


def _plan_error(snapshot: Snapshot, me: Identity) -> Optional[str]:
    """Why the plan must not be applied: a rejected key every session of ours rests on. A bad
    global/as_num would put every session in the default AS, a bad entry of our own would
    make us standalone (no mesh, no cluster id), a bad global peer entry naming us would drop
    every node that peers through it. A bad key of one node costs only that node (skipped)."""
    reasons = []
    for bad in snapshot.bad_settings:
        if bad.kind == "global_as":
            what = "every session's AS"
        elif bad.address is None or bad.address != me.address(bad.family):
            continue  # another reflector's or peer's entry: only that peer is affected
        elif bad.kind == "reflector":
            what = "this reflector's mesh and cluster id"
        else:
            what = f"which nodes are this reflector's IPv{bad.family} clients"
        reasons.append(f"etcd key {shown_key(bad.key)} is invalid ({bad.reason}) and decides {what}")
    return "; ".join(reasons) or None


def _some_names(sessions: list, limit: int) -> str:
    names = [session.description for session in sessions[:limit]]
    if len(sessions) > limit:
        names.append(f"and {len(sessions) - limit} more")
    return ", ".join(names)


def _plan_family(snapshot: Snapshot, me: Identity, family: int, warnings: list, memo: dict) -> FamilyPlan:
    mine = me.address(family)
    if mine is None:
        return FamilyPlan(family, None, False, None, ())

    own_entry = next((r for r in snapshot.reflectors(family) if r.ip == mine), None)
    cluster_id = own_entry.cluster_id if own_entry else None
    mesh: dict[int, Session] = {}
    if own_entry is not None:
        for reflector in snapshot.reflectors(family):
            if reflector.ip == mine:
                continue
            mesh[int(reflector.ip)] = Session(
                name=protocol_name(MESH, reflector.ip),
                role=MESH,
                neighbor=reflector.ip,
                local_as=snapshot.global_as,
                neighbor_as=snapshot.global_as,
                rr_client=False,
                cluster_id=None,
                description="reflector",
            )

    global_peer = next((p for p in snapshot.global_peers(family) if p.ip == mine), None)
    context = (family, mine, global_peer, snapshot.global_as, cluster_id)
    previous = memo.get(family, {})
    current: dict[int, tuple] = {}
    # Addresses as ints: sorting and hashing ipaddress objects is Python-level and dominated
    # the planner at 10,000 nodes.
    clients: dict[int, list[Session]] = {}
    for node in snapshot.nodes:
        cached = previous.get(id(node))
        if cached is not None and cached[0] is node and cached[1] == context:
            candidate = cached[2]
        else:
            candidate = _client_candidate(node, family, mine, global_peer, snapshot.global_as, cluster_id)
        current[id(node)] = (node, context, candidate)
        if candidate is not None:
            clients.setdefault(candidate[0], []).append(candidate[1])
    memo[family] = current

    mine_key = int(mine)
    sessions = [mesh[key] for key in sorted(mesh)]
    for key in sorted(clients):
        claimants = clients[key]
        if key == mine_key:
            names = _some_names(claimants, WARNING_NAMES)
            warnings.append(f"node {names} has this reflector's own address {mine}; no session to self")
            continue
        if key in mesh:
            continue  # a reflector that is also listed as a node: the mesh session covers it
        session = claimants[0]
        if len(claimants) > 1:
            warnings.append(f"{len(claimants)} nodes share the address {session.neighbor} ({_some_names(claimants, WARNING_NAMES)}); "
                            f"one session, settings of {session.description}")
            session = dataclasses.replace(session, description=_some_names(claimants, DESCRIPTION_NAMES))
        sessions.append(session)
    return FamilyPlan(family, mine, own_entry is not None, cluster_id, tuple(sessions))


def _client_candidate(node: Node, family: int, mine: IPAddress, global_peer, global_as: int, cluster_id) -> Optional[tuple[int, Session]]:
    """The session this node would get on its own, before duplicates are settled."""
    address = node.address(family)
    if address is None:
        return None
    own_peer = next((p for p in node.peers(family) if p.ip == mine), None)
    if own_peer is None and global_peer is None:
        return None
    # The node's own peer entry is the more specific one, so its AS wins.
    peer_as = own_peer.as_num if own_peer is not None else global_peer.as_num
    neighbor_as = node.as_num if node.as_num is not None else global_as
    local_as = peer_as if peer_as is not None else neighbor_as
    internal = local_as == neighbor_as
    return int(address), Session(
        name=protocol_name(CLIENT, address),
        role=CLIENT,
        neighbor=address,
        local_as=local_as,
        neighbor_as=neighbor_as,
        # BIRD refuses `rr client` on an eBGP session; such a node is a plain peer.
        rr_client=internal,
        cluster_id=cluster_id if internal else None,
        description=node.name,
    )
