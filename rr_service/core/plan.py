"""What this reflector runs, per address family: the shared result of every rule set. Pure.

A rule set (calico/v1, calico/v3) turns the data into a Plan; render turns a Plan into BIRD's
config text; the drop guard and `calico-rr status` read it. Protocol names come from one
function, so a session keeps its name (and BIRD its session) for as long as its role,
neighbour and port stay the same.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional

from rr_service.core.values import IPAddress

MESH = "mesh"  # a reflector of the same mesh (v1 rr_vN entries, v3 declared reflectors, Calico's node mesh)
CLIENT = "client"  # a route-reflector client (v1: every node that names us, also in another AS)
PEER = "peer"  # any other session: another reflector of our cluster, a router, an eBGP node
_NAME_PREFIX = {MESH: "Mesh", CLIENT: "Client", PEER: "Peer"}
# Sessions are kept and rendered in this order: the mesh, then peers, then clients, each by
# neighbour address and port.
ROLE_ORDER = {MESH: 0, PEER: 1, CLIENT: 2}



@dataclass(frozen=True)
class Identity:
    """This reflector: its IPv4 address (also the router id), optional IPv6 address, and the
    name Calico v3 data knows it by (its Node, its BGPPeers)."""

    ipv4: ipaddress.IPv4Address
    ipv6: Optional[ipaddress.IPv6Address] = None
    node_name: str = ""

    def address(self, family: int) -> Optional[IPAddress]:
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True, slots=True)
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
    # Which rule gave this session (`calico-rr status` shows it): never rendered into BIRD's
    # config, so it may name a key or a resource.
    origin: str = ""
    # The Calico node (or declared reflector) behind the neighbour, "" for a router given by
    # address: with the role it becomes the protocol's `description "role=client node=a"`,
    # which prometheus-bird-exporter turns into labels. Validated like a host name.
    node: str = ""
    # The BGP (TCP MD5) password, already checked safe for BIRD's quoted string; None: none.
    # Never in repr, so a logged Session cannot show it; `render` output masks it.
    password: Optional[str] = field(default=None, repr=False)


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
    # What makes us a reflector of this family, in words (Calico v3: our Node, BGPPeers that
    # name our address); None: the legacy wording (mesh member / standalone).
    mode: Optional[str] = None
    # What a client (a Calico node) may announce: each of these networks and everything in
    # it, in order (its IP pools' blocks and borrowed addresses, the service ranges Calico
    # advertises). None: the data names no IP pool at all, so only limits apply.
    client_prefixes: Optional[tuple] = None

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



def protocol_name(role: str, address: IPAddress, port: Optional[int] = None) -> str:
    """`Mesh_192_0_2_11`, `Client_2001_db8__21`, `Peer_ac13__57_port_50`: a valid BIRD symbol
    for both families.

    The compressed form is canonical, so the name is a function of role, address and port
    alone and never changes between renders (a changed name would restart the session).
    """
    token = str(address).replace(".", "_").replace(":", "_")
    return f"{_NAME_PREFIX[role]}_{token}" + (f"_port_{port}" if port else "")


def session_key(session: Session) -> tuple:
    """Where a session sits in its family's list (ROLE_ORDER, then address and port)."""
    return (ROLE_ORDER[session.role], int(session.neighbor), session.port or 0)


@dataclass(frozen=True)
class Planned:
    """What one incremental planning step did: the new Plan and, per family, the sessions
    that differ, by session_key (the new Session, None: no session there any more); None for
    a family planned over, where anything may differ."""

    plan: Plan
    changed: dict
