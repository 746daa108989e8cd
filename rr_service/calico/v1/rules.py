"""The legacy rules (`/calico/bgp/v1`): who this reflector peers with, per address family. Pure.

The original calico/routereflector image's rules, with its known bugs fixed (IPv6 names with
':', IPv6 node peers compared against the IPv4 address, duplicate sessions to one
neighbour). Per family (IPv4 → bird.conf, IPv6 → bird6.conf), "me" being this reflector's
address:

| rule | result |
|---|---|
| `rr_v4/<me>` exists | mesh member: one iBGP session (`Mesh_<addr>`, not an rr client) to every other `rr_v4` entry, AS = `global/as_num` (default 64512); `rr cluster id` = my entry's `cluster_id` if set |
| no `rr_v4/<me>` | standalone: clients only, no mesh, no cluster id |
| `global/peer_v4/<me>` exists | every node with an IPv4 address is my client |
| `host/<name>/peer_v4/<me>` exists | that node is my client |
| client session | `Client_<addr>`, local AS = the peer entry's `as_num` (else the node's, else the global AS), neighbour AS = the node's `as_num` (else the global AS), `rr client` |
| node in another AS than the peer entry | a plain eBGP session: BIRD does not allow `rr client` on eBGP |
| same neighbour twice | exactly one session: mesh wins over client; a node-specific peer entry wins over the global one; a node with my own address gets none |
| two nodes, one address | one session: the node whose session runs keeps it, else the earliest claim (etcd's create_revision of its `ip_addr_v4` key), never the first name; a warning names the others |
"""

from __future__ import annotations

from typing import Mapping, Optional

from rr_service.core.plan import (
    CLIENT,
    MESH,
    ROLE_ORDER,
    FamilyPlan,
    Identity,
    Plan,
    Planned,
    Session,
    protocol_name,
)
from rr_service.core.slots import Slots
from rr_service.core.values import IPAddress, outermost, shown_key
from rr_service.calico.v1.keys import Node
from rr_service.calico.v1.snapshot import Parsed, Snapshot

# Nodes claiming one address (400 nodes that autodetected docker0's 172.17.0.1, or a node
# squatting on another's address): the warning names a few of them, with the count of the
# rest, so it does not grow with the cluster.
WARNING_NAMES = 10
_NODE_PEER_ORIGIN = {4: "host/<name>/peer_v4", 6: "host/<name>/peer_v6"}
_GLOBAL_PEER_ORIGIN = {4: "global/peer_v4", 6: "global/peer_v6"}


def plan(snapshot: Snapshot, me: Identity, memo: Optional[dict] = None) -> Plan:
    """The sessions this reflector runs. `memo` (a dict the caller keeps between calls) lets
    a node that is the same object as last time skip its work; the result is the same."""
    memo = {} if memo is None else memo
    for family in (4, 6):
        memo[family] = _FamilyState(snapshot, me, family, memo.get(family))
    return _assemble(snapshot, me, memo)



class Planner:
    """plan() kept up to date change by change, for the daemon: a changed node costs a few
    bisects, not a walk over every node. A change of what every session rests on (reflectors,
    global peers, global_as) plans over from the snapshot, as plan() does. Same Plan as
    plan() on the same snapshot (tests/test_pipeline.py)."""

    def __init__(self, me: Identity, running: Optional[dict] = None):
        """`running`: who holds each neighbour in the configs BIRD runs (core/running.py),
        until this planner has a plan of its own."""
        self.me = me
        self._states: dict = {}
        self._running = running or {}

    def update(self, parsed: Parsed) -> Planned:
        if parsed.globals_changed or not self._states:
            for family in (4, 6):
                self._states[family] = _FamilyState(parsed.snapshot, self.me, family, self._states.get(family),
                                                    self._running.get(family))
            changed: dict = {4: None, 6: None}
        else:
            # Only client sessions change in place (the mesh rests on global data); keyed as
            # core.plan.session_key keys them.
            client = ROLE_ORDER[CLIENT]
            changed = {family: {(client, key, 0): session for key, session in state.update(parsed.nodes).items()}
                       for family, state in self._states.items()}
        return Planned(_assemble(parsed.snapshot, self.me, self._states), changed)


def _assemble(snapshot: Snapshot, me: Identity, states: dict) -> Plan:
    v4, v6 = states[4], states[6]
    return Plan(router_id=me.ipv4, v4=v4.family_plan(), v6=v6.family_plan(),
                warnings=(*v4.warnings.values, *v6.warnings.values), error=_plan_error(snapshot, me))


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


def _some_names(names: list, limit: int) -> str:
    shown = names[:limit]
    if len(names) > limit:
        shown.append(f"and {len(names) - limit} more")
    return ", ".join(shown)


def _nobody(key) -> None:
    return None


def claim_warning(count: int, address, winner: str, others: str) -> str:
    # The same words whichever rule picked the winner: a warning is kept until its address
    # changes again, and must not go stale.
    return (f"{count} nodes claim the address {address}: node {winner} keeps its session (the running "
            f"session, else the earliest claim); ignored: {others}")


def _claimed(claimants: dict, key: int) -> tuple:
    """The candidate sessions claiming `key`."""
    held = claimants.get(key)
    if held is None:
        return ()
    return held if isinstance(held, tuple) else (held,)


def _claim(claimants: dict, key: int, session: Session) -> None:
    # One claimant, the usual case, is kept bare: a list per address cost ~1.1 MB at 10,000
    # nodes, a share of the daemon's whole kept state.
    held = _claimed(claimants, key)
    claimants[key] = (*held, session) if held else session


def _unclaim(claimants: dict, key: int, name: str) -> None:
    rest = tuple(s for s in _claimed(claimants, key) if s.node != name)
    if not rest:
        del claimants[key]
    else:
        claimants[key] = rest if len(rest) > 1 else rest[0]


class _FamilyState:
    """One family's plan, kept in the shape a changed node updates in place.

    `claimants`: the candidate session of every node with an address, by address as an int:
    a Session, or a tuple of them when several nodes claim the address. One of them gets it:
    the node whose session runs (the incumbent), else the earliest claim (`_claim_order`), so
    a node can never take over another's running session by writing its address.
    `clients` and `warnings`: what each address gives, in address order. The mesh sessions
    depend on global data only: they change with a new state, never in place.
    """

    def __init__(self, snapshot: Snapshot, me: Identity, family: int, previous: Optional["_FamilyState"] = None,
                 running: Optional[dict] = None):
        self.family = family
        self.mine = mine = me.address(family)
        self.own_entry = None
        self.cluster_id: Optional[str] = None
        self.mesh: dict[int, Session] = {}
        self.mesh_sessions: list[Session] = []
        self.candidates: dict[str, tuple] = {}  # node name -> (node, address int, session) or (node, None, None)
        self.claimants: dict[int, Session | tuple[Session, ...]] = {}
        self.clients = Slots()
        self.warnings = Slots()
        # Calico's pools of this family (all of them: the legacy pools have no
        # disableBGPExport); None without any pool key.
        self.client_prefixes = None if snapshot.pools is None else outermost(list(snapshot.pools), family)
        if mine is None:
            self.context: Optional[tuple] = None
            return
        self.mine_key = int(mine)
        self.own_entry = next((r for r in snapshot.reflectors(family) if r.ip == mine), None)
        self.cluster_id = self.own_entry.cluster_id if self.own_entry else None
        if self.own_entry is not None:
            for reflector in snapshot.reflectors(family):
                if reflector.ip == mine:
                    continue
                self.mesh[int(reflector.ip)] = Session(
                    name=protocol_name(MESH, reflector.ip),
                    role=MESH,
                    neighbor=reflector.ip,
                    local_as=snapshot.global_as,
                    neighbor_as=snapshot.global_as,
                    rr_client=False,
                    cluster_id=None,
                    description="reflector",
                    origin=f"rr_v{family} entry",
                )
            self.mesh_sessions = [self.mesh[key] for key in sorted(self.mesh)]
        global_peer = next((p for p in snapshot.global_peers(family) if p.ip == mine), None)
        self.context = (mine, global_peer, snapshot.global_as, self.cluster_id)
        # What runs now decides a shared address (see _settle), also when planning over: the
        # previous plan's, else the one read back from BIRD's configs.
        if previous is not None and previous.mine == mine:
            self._running_node = previous._node_at
        elif running:
            self._running_node = lambda key: running.get((key, 0))
        else:
            self._running_node = _nobody
        # A candidate depends on its node and the context only: reuse what did not change.
        reuse = previous.candidates if previous is not None and previous.context == self.context else {}
        candidates, claimants = self.candidates, self.claimants
        for node in snapshot.nodes:
            cached = reuse.get(node.name)
            if cached is None or cached[0] is not node:
                cached = (node, *self._candidate(node))
            candidates[node.name] = cached
            if cached[1] is not None:
                _claim(claimants, cached[1], cached[2])
        # Addresses as ints: sorting and hashing ipaddress objects is Python-level and dominated
        # the planner at 10,000 nodes.
        mine_key, mesh, clients = self.mine_key, self.mesh, self.clients
        for key in sorted(claimants):
            found = claimants[key]
            if not isinstance(found, tuple) and key != mine_key and key not in mesh:
                clients.append(key, found)  # _settle's usual answer, without 10,000 calls
                continue
            session, warning = self._settle(key)
            if session is not None:
                clients.append(key, session)
            if warning is not None:
                self.warnings.append(key, warning)
        self._running_node = self._node_at  # from here on, self.clients is what runs

    def _candidate(self, node: Node) -> tuple:
        """(address as an int, Session) of the node's client session, or (None, None)."""
        return _client_candidate(node, self.family, self.mine, *self.context[1:]) or (None, None)

    def _settle(self, key: int) -> tuple[Optional[Session], Optional[str]]:
        """The session (if any) and the warning (if any) that the nodes claiming `key` give."""
        claimants = _claimed(self.claimants, key)
        if not claimants:
            return None, None
        if key == self.mine_key:
            names = _some_names(sorted(s.node for s in claimants), WARNING_NAMES)
            return None, f"node {names} has this reflector's own address {self.mine}; no session to self"
        if key in self.mesh:
            return None, None  # a reflector that is also listed as a node: the mesh session covers it
        if len(claimants) == 1:
            return claimants[0], None
        ordered = sorted(claimants, key=self._claim_order)
        running = self._running_node(key)
        winner = next((s for s in ordered if s.node == running), ordered[0])
        others = [s.node for s in ordered if s is not winner]
        return winner, claim_warning(len(claimants), winner.neighbor, winner.node, _some_names(others, WARNING_NAMES))

    def _node_at(self, key: int) -> Optional[str]:
        session = self.clients.get(key)
        return session.node if session is not None else None

    def _claim_order(self, session: Session) -> tuple:
        """Earlier claims first: the datastore's creation order of the node's address key,
        then the name (only for keys without one: etcd gives every key its own)."""
        return (self.candidates[session.node][0].created(self.family), session.node)

    def update(self, nodes: Mapping[str, Optional[Node]]) -> dict:
        """Take in the changed nodes (name -> Node, None: gone); returns the client sessions
        that differ, by address (the new Session, None: none there any more)."""
        if self.mine is None:
            return {}
        touched: set = set()
        for name, node in nodes.items():
            old = self.candidates.pop(name, None)
            new = (node, *self._candidate(node)) if node is not None else (None, None, None)
            if node is not None and old is not None and old[1] == new[1] and old[2] == new[2]:
                self.candidates[name] = (node, old[1], old[2])  # the same session: keep its object
                continue
            if old is not None and old[1] is not None:
                _unclaim(self.claimants, old[1], name)
                touched.add(old[1])
            if node is None:
                continue
            self.candidates[name] = new
            if new[1] is not None:
                _claim(self.claimants, new[1], new[2])
                touched.add(new[1])
        changed = {}
        for key in touched:
            session, warning = self._settle(key)
            self.warnings.put(key, warning)
            if self.clients.put(key, session) is not session:
                changed[key] = session
        return changed

    def family_plan(self) -> FamilyPlan:
        return FamilyPlan(self.family, self.mine, self.own_entry is not None, self.cluster_id,
                          (*self.mesh_sessions, *self.clients.values), client_prefixes=self.client_prefixes)


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
        node=node.name,
        # Shared constant strings: one per node would cost ~0.6 MB at 10,000 nodes.
        origin=_NODE_PEER_ORIGIN[family] if own_peer is not None else _GLOBAL_PEER_ORIGIN[family],
    )
