"""Which client sessions sit at their import limit, said once when it starts and once when it
ends: the daemon's log names the node that floods, `status` shows it (core/status.py) with the
same words. Pure: BIRD's counts come in, log lines go out."""

from __future__ import annotations

from typing import Mapping, Optional

from rr_service.core.plan import Plan


def limit_hit_note(label: str, name: str, who: str) -> str:
    return f"{label} {name} ({who}): import limit hit, its further routes are ignored; other sessions carry on"


def limit_news(plan: Optional[Plan], family_targets: Mapping[int, str], hit_before: frozenset,
               counts: Mapping[str, Mapping]) -> tuple[frozenset, list[tuple[str, str]]]:
    """`counts`: each BIRD's RouteCounts by protocol name (targets not answering left out, so
    their sessions keep their last known state). Returns the (target, protocol) pairs at their
    limit now and the (level, line) pairs to log."""
    hit_now = {(target, name) for target, by_name in counts.items()
               for name, count in by_name.items() if count.limit_hit}
    hit_now |= {pair for pair in hit_before if pair[0] not in counts}
    started, ended = hit_now - hit_before, hit_before - hit_now
    lines: list[tuple[str, str]] = []
    if started or ended:
        sessions = _sessions_by_name(plan, family_targets)
        for target, name in sorted(started):
            label, who = sessions.get((target, name), (target, "no longer planned"))
            lines.append(("warning", limit_hit_note(label, name, who)))
        for target, name in sorted(ended):
            label, who = sessions.get((target, name), (target, "no longer planned"))
            lines.append(("info", f"{label} {name} ({who}): below its import limit again"))
    return frozenset(hit_now), lines


def _sessions_by_name(plan: Optional[Plan], family_targets: Mapping[int, str]) -> dict:
    if plan is None:
        return {}
    return {(family_targets[fp.family], s.name): (f"IPv{fp.family}", s.node or str(s.neighbor))
            for fp in (plan.v4, plan.v6) for s in fp.sessions}
