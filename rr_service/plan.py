"""Who this reflector peers with, per address family: the routing rules, and nothing else.

Pure: a Snapshot and this reflector's identity in, a Plan out. The rules are the original
calico/routereflector image's, with its known bugs fixed (IPv6 names with ':', IPv6 node
peers compared against the IPv4 address, duplicate sessions to one neighbour).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from .model import IPAddress, Node, Snapshot

MESH = "mesh"
CLIENT = "client"


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

    def count(self, role: str) -> int:
        return sum(1 for session in self.sessions if session.role == role)


@dataclass(frozen=True)
class Plan:
    router_id: ipaddress.IPv4Address
    v4: FamilyPlan
    v6: FamilyPlan
    warnings: tuple[str, ...] = ()
    schema: str = "v1"  # which Calico data model it came from; only wording depends on it

    def family(self, family: int) -> FamilyPlan:
        return self.v4 if family == 4 else self.v6


def protocol_name(role: str, address: IPAddress) -> str:
    """`Mesh_192_0_2_11`, `Client_2001_db8__21`: a valid BIRD symbol for both families.

    The compressed form is canonical, so the name is a function of the address alone and
    never changes between renders (a changed name would restart the session).
    """
    token = str(address).replace(".", "_").replace(":", "_")
    return f"{'Mesh' if role == MESH else 'Client'}_{token}"


def plan(snapshot: Snapshot, me: Identity) -> Plan:
    warnings: list[str] = []
    v4 = _plan_family(snapshot, me, 4, warnings)
    v6 = _plan_family(snapshot, me, 6, warnings)
    return Plan(router_id=me.ipv4, v4=v4, v6=v6, warnings=tuple(warnings))


def _plan_family(snapshot: Snapshot, me: Identity, family: int, warnings: list) -> FamilyPlan:
    mine = me.address(family)
    if mine is None:
        return FamilyPlan(family, None, False, None, ())

    own_entry = next((r for r in snapshot.reflectors(family) if r.ip == mine), None)
    cluster_id = own_entry.cluster_id if own_entry else None
    sessions: dict[IPAddress, Session] = {}

    if own_entry is not None:
        for reflector in snapshot.reflectors(family):
            if reflector.ip == mine:
                continue
            sessions[reflector.ip] = Session(
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
    clients: dict[IPAddress, list[tuple[Node, Optional[int]]]] = {}
    for node in snapshot.nodes:
        address = node.address(family)
        if address is None:
            continue
        own_peer = next((p for p in node.peers(family) if p.ip == mine), None)
        if own_peer is None and global_peer is None:
            continue
        # The node's own peer entry is the more specific one, so its AS wins.
        peer_as = own_peer.as_num if own_peer is not None else global_peer.as_num
        clients.setdefault(address, []).append((node, peer_as))

    for address, claimants in sorted(clients.items()):
        names = ", ".join(node.name for node, _ in claimants)
        if address == mine:
            warnings.append(f"node {names} has this reflector's own address {address}; no session to self")
            continue
        if address in sessions:
            continue  # a reflector that is also listed as a node: the mesh session covers it
        node, peer_as = claimants[0]
        if len(claimants) > 1:
            warnings.append(f"nodes {names} share the address {address}; one session, settings of {node.name}")
        neighbor_as = node.as_num if node.as_num is not None else snapshot.global_as
        local_as = peer_as if peer_as is not None else neighbor_as
        internal = local_as == neighbor_as
        sessions[address] = Session(
            name=protocol_name(CLIENT, address),
            role=CLIENT,
            neighbor=address,
            local_as=local_as,
            neighbor_as=neighbor_as,
            # BIRD refuses `rr client` on an eBGP session; such a node is a plain peer.
            rr_client=internal,
            cluster_id=cluster_id if internal else None,
            description=names,
        )

    ordered = tuple(sorted(sessions.values(), key=lambda s: (s.role != MESH, s.neighbor)))
    return FamilyPlan(family, mine, own_entry is not None, cluster_id, ordered)
