"""The `calico-rr status` table: the sessions etcd calls for against what BIRD runs. Pure."""

from __future__ import annotations

from typing import Mapping, Sequence

from .plan import Plan

HEADER = ("FAMILY", "ROLE", "PROTOCOL", "NEIGHBOR", "AS", "IN ETCD", "BIRD STATE", "SINCE", "INFO")


def status_table(plan: Plan, bird_protocols: Mapping[int, Sequence], bird_errors: Mapping[int, str]) -> str:
    rows = []
    notes = []
    for family_plan in (plan.v4, plan.v6):
        family = family_plan.family
        if family_plan.local_address is None:
            notes.append(f"IPv{family}: no address configured for this reflector")
            continue
        label = f"IPv{family}"
        if family in bird_errors:
            notes.append(f"{label}: BIRD not reachable: {bird_errors[family]}")
        running = {p.name: p for p in bird_protocols.get(family, ()) if p.proto.upper() == "BGP"}
        for session in family_plan.sessions:
            proto = running.pop(session.name, None)
            rows.append((
                label,
                session.role,
                session.name,
                str(session.neighbor),
                str(session.neighbor_as),
                "yes",
                _state(proto) if proto else ("?" if family in bird_errors else "missing"),
                proto.since if proto else "",
                proto.info if proto else "",
            ))
        for name, proto in sorted(running.items()):
            rows.append((label, "-", name, "", "", "no", _state(proto), proto.since, proto.info))
        role = "member of the reflector mesh" if family_plan.registered else "standalone (no rr entry of its own)"
        cluster = f", cluster id {family_plan.cluster_id}" if family_plan.cluster_id else ""
        notes.append(f"{label}: {family_plan.local_address} {role}{cluster}")
    return "\n".join(notes + [""] + _columns([HEADER] + rows))


def _state(proto) -> str:
    return proto.state


def _columns(rows: list) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
