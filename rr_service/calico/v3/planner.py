"""The Calico v3 rules (rules.py) kept up to date change by change. Pure.

Per family, every neighbour (address and port) has its candidates in rank order; the first
one gives the session, the others at most a warning. A changed Node re-computes its own
candidates only (a few selector matches) and re-decides the neighbours it left or took: at
10,000 Nodes that is a few bisects, not a walk over every node. A change of what every node
rests on (a BGPPeer, a BGPConfiguration, our own Node) builds a new Context and plans over,
reusing every Session that stays equal, so the renderer re-renders only what changed.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Collection, Optional

from rr_service.calico.v3 import rules
from rr_service.calico.v3.rules import Candidate, Context, FamilyContext
from rr_service.calico.v3.table import Parsed
from rr_service.core.plan import FamilyPlan, Identity, Plan, Planned, Session, session_key
from rr_service.core.slots import Slots


def _rank(candidate: Candidate) -> tuple:
    return candidate.rank


def _claim_key(candidate: Candidate) -> tuple:
    target = candidate.target
    return (int(target.address), target.port or 0)


class _Family:
    """One family's neighbours: `claims` their candidates in rank order, `winners` the session
    each gives, `sessions` the same by core.plan.session_key (the plan's order), `conflicts`
    the warnings about the candidates that lost."""

    def __init__(self, ctx: Context, fam: FamilyContext, previous: Optional["_Family"], running: Optional[dict] = None,
                 changed: Collection[str] = ()):
        """`changed`: the Nodes that differ from what `previous` planned (the rest it planned
        as the very objects `ctx` holds now)."""
        self.ctx, self.fam = ctx, fam
        self.by_node: dict[str, tuple] = {}
        self.claims: dict[tuple, list] = {}
        self.winners: dict[tuple, Session] = {}
        self.sessions = Slots()
        self.conflicts = Slots()
        if fam.mine is None:
            return
        claims, by_node = self.claims, self.by_node
        for candidate in fam.globals:
            if candidate.target.address != fam.mine:
                claims.setdefault(_claim_key(candidate), []).append(candidate)
        # A node planned under the previous Context, unchanged since, keeps the answers of the
        # BGPPeers both Contexts share (rules.node_candidates).
        reuse = previous is not None and previous.fam.mine == fam.mine and previous.ctx.node_name == ctx.node_name
        old_ctx, old_by_node = (previous.ctx, previous.by_node) if reuse else (None, {})
        for node in ctx.data.nodes:
            before = (old_ctx, old_by_node.get(node.name, ())) if reuse and node.name not in changed else None
            found = rules.node_candidates(ctx, fam, node, before)
            if found:
                by_node[node.name] = found
                for candidate in found:
                    claims.setdefault(_claim_key(candidate), []).append(candidate)
        old = previous.winners if previous is not None else {}
        # Without a plan of our own, who holds what in the configs BIRD runs (core/running.py).
        running = running if previous is None and running else {}
        settled = []
        for key, found in claims.items():
            if len(found) > 1:
                found.sort(key=_rank)
            kept = old.get(key)
            session, warnings = self._settle(key, kept.node if kept is not None else running.get(key))
            kept = old.get(key)
            if kept is not None and kept == session:
                session = kept  # the same object: the renderer keeps its block
            self.winners[key] = session
            settled.append((session_key(session), session, key, warnings))
        settled.sort(key=_first)
        for order, session, key, warnings in settled:
            self.sessions.append(order, session)
        for order, session, key, warnings in sorted(settled, key=_third):
            if warnings:
                self.conflicts.append(key, warnings)

    def _settle(self, key: tuple, running: Optional[str]) -> tuple[Optional[Session], tuple]:
        found = self.claims.get(key)
        if not found:
            return None, ()
        if len(found) == 1:
            return rules.session(self.fam, found[0].target), ()
        winner, warnings = rules.settle(self.fam, found, running)
        return rules.session(self.fam, winner), tuple(warnings)

    def update(self, nodes: dict) -> dict:
        """Take in the changed nodes (name -> CalicoNode, None: gone); returns the sessions
        that differ, by session_key (the new Session, None: none there any more)."""
        if self.fam.mine is None:
            return {}
        touched = set()
        for name, node in nodes.items():
            old = self.by_node.pop(name, ())
            new = rules.node_candidates(self.ctx, self.fam, node) if node is not None else ()
            if new:
                self.by_node[name] = new
            if old == new:
                continue
            for candidate in old:
                key = _claim_key(candidate)
                found = self.claims[key]
                del found[bisect_left(found, candidate.rank, key=_rank)]
                if not found:
                    del self.claims[key]
                touched.add(key)
            for candidate in new:
                key = _claim_key(candidate)
                insort(self.claims.setdefault(key, []), candidate, key=_rank)
                touched.add(key)
        changed: dict = {}
        for key in touched:
            old_session = self.winners.get(key)
            session, warnings = self._settle(key, old_session.node if old_session is not None else None)
            self.conflicts.put(key, warnings or None)
            if session is not None and session == old_session:
                continue
            if old_session is not None:
                old_order = session_key(old_session)
                self.sessions.put(old_order, None)
                changed[old_order] = None
                del self.winners[key]
            if session is not None:
                order = session_key(session)
                self.sessions.put(order, session)
                changed[order] = session
                self.winners[key] = session
        return changed

    def family_plan(self) -> FamilyPlan:
        fam = self.fam
        return FamilyPlan(fam.family, fam.mine, fam.registered, fam.cluster_id, tuple(self.sessions.values),
                          fam.reason, fam.mode, fam.client_prefixes)

    def warnings(self) -> list:
        return [*self.fam.warnings, *(w for found in self.conflicts.values for w in found)]


def _first(item: tuple):
    return item[0]


def _third(item: tuple):
    return item[2]


class V3Planner:
    """plan_v3() change by change, for the daemon: the same Plan for the same data."""

    def __init__(self, me: Identity, running: Optional[dict] = None):
        """`running`: who holds each neighbour in the configs BIRD runs (core/running.py),
        until this planner has a plan of its own."""
        self.me = me
        self._ctx: Optional[Context] = None
        self._families: dict[int, _Family] = {}
        self._running = running or {}

    def update(self, parsed: Parsed) -> Planned:
        if self._ctx is None or parsed.globals_changed or self.me.node_name in parsed.nodes:
            self._ctx = ctx = rules.context(parsed.data, self.me)
            self._families = {family: _Family(ctx, ctx.families[family], self._families.get(family),
                                              self._running.get(family), parsed.nodes)
                              for family in (4, 6)}
            changed: dict = {4: None, 6: None}
        else:
            self._ctx.data = parsed.data  # the same globals; the nodes are the table's now
            changed = {family: state.update(parsed.nodes) for family, state in self._families.items()}
        return Planned(self._plan(), changed)

    def _plan(self) -> Plan:
        ctx, v4, v6 = self._ctx, self._families[4], self._families[6]
        return Plan(router_id=self.me.ipv4, v4=v4.family_plan(), v6=v6.family_plan(),
                    warnings=(*ctx.warnings, *v4.warnings(), *v6.warnings()), error=ctx.error, schema="v3",
                    listen_port=ctx.listen_port)


def plan_v3(data, node_name: str, me: Identity) -> Plan:
    """The Plan for one data set (`render`, `status`, tests): the planner, run once."""
    from dataclasses import replace

    from rr_service.calico.v3.table import Parsed as _Parsed

    return V3Planner(replace(me, node_name=node_name)).update(_Parsed(data, {}, True)).plan
