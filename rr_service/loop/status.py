"""The loop's state, and the STATUS= line and summaries made from it. Pure."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from rr_service.core.plan import CLIENT, MESH, Plan
from rr_service.loop.events import BACKOFF_FIRST

# -- the state ---------------------------------------------------------------------------

@dataclass
class Settings:
    source: str = "etcd"  # the datastore's kind, for the status line
    max_drop_share: float = 0.5
    hold_seconds: float = 300.0
    burst_settle_seconds: float = 0.1
    burst_max_delay_seconds: float = 0.5


@dataclass
class State:
    need_snapshot: bool = True
    dirty: bool = False
    position: str = ""
    problem: Optional[str] = None  # why the datastore cannot be used now
    down_since: Optional[float] = None  # wall time
    plan: Optional[Plan] = None
    plan_summary: tuple = ()
    bird_summary: str = "not configured yet"
    retry_apply_at: Optional[float] = None
    held: Optional[str] = None
    blocked: Optional[str] = None
    last_apply: Optional[str] = None
    next_bird_check: float = 0.0
    backoff: float = BACKOFF_FIRST
    running_names: dict = field(default_factory=dict)  # target -> names BIRD runs (known)
    rejected_text: dict = field(default_factory=dict)  # target -> the text BIRD refused last
    accepted_at: dict = field(default_factory=dict)  # target -> "HH:MM:SS"
    seen_problems: set = field(default_factory=set)


def status_line(state: State, settings: Settings) -> str:
    parts = []
    if state.problem:
        since = time.strftime("%H:%M:%S", time.localtime(state.down_since))
        parts.append(f"{settings.source} unreachable since {since}, BIRD keeps the last config")
    else:
        parts.append(f"{settings.source} ok at {state.position}")
    parts.extend(state.plan_summary)
    if state.blocked:
        parts.append(f"NOT APPLIED: {state.blocked}")
    if state.held:
        parts.append(f"HELD BACK: {state.held}")
    parts.append(f"BIRD: {state.bird_summary}")
    return " | ".join(parts)


def union(sets) -> frozenset:
    """The union of frozensets, without copying the only non-empty one (bird6's is mostly
    empty, and a copy of 10,000 names is half a megabyte on every change)."""
    present = [names for names in sets if names]
    return present[0] if len(present) == 1 else frozenset().union(*present)


def modes(the_plan: Plan) -> tuple:
    """What makes us a reflector, per family (Calico v3): logged when it changes."""
    return tuple((f.family, f.mode) for f in (the_plan.v4, the_plan.v6) if f.mode)


def plan_summary(the_plan: Plan) -> tuple:
    """The plan's part of STATUS=. Counted when the plan changes, not on every pass: the
    status line is rebuilt each second, and counting 10,000 sessions each time showed up as
    the daemon's idle CPU."""
    parts = []
    if the_plan.warnings:
        parts.append(f"{len(the_plan.warnings)} warning(s), see the log")
    for family_plan in (the_plan.v4, the_plan.v6):
        if family_plan.local_address is None:
            continue
        mesh, clients = family_plan.count(MESH), family_plan.count(CLIENT)
        others = len(family_plan.sessions) - mesh - clients
        parts.append(f"IPv{family_plan.family}: {mesh} reflector peers, {clients} clients"
                     + (f", {others} other peers" if others else ""))
    return tuple(parts)
