"""The `calico-rr status` table: the sessions etcd calls for against what BIRD runs. Pure."""

from __future__ import annotations

from typing import Mapping, Sequence

from rr_service.core.plan import Plan

HEADER = ("FAMILY", "ROLE", "PROTOCOL", "NEIGHBOR", "AS", "IN ETCD", "BIRD STATE", "SINCE", "INFO", "RULE")


def status_table(
    plan: Plan,
    family_targets: Mapping[int, str],
    bird_protocols: Mapping[str, Sequence],
    bird_errors: Mapping[str, str],
) -> str:
    """`family_targets` says which BIRD (`bird`, `bird6`) carries each family;
    `bird_protocols` and `bird_errors` are what each BIRD's socket answered."""
    rows = []
    notes = []
    running = {
        target: {p.name: p for p in protocols if p.proto.upper() == "BGP"}
        for target, protocols in bird_protocols.items()
    }
    if plan.error:
        # The daemon does not apply such a plan: the rows below are what etcd asks for, BIRD
        # keeps running what it has.
        notes.append(f"NOT APPLIED: {plan.error}")
    for target, error in sorted(bird_errors.items()):
        notes.append(f"{target}: control socket not answering: {error}")
    for family_plan in (plan.v4, plan.v6):
        label = f"IPv{family_plan.family}"
        if family_plan.local_address is None:
            # The planner says why when the data leaves a configured family out (v3: our Node).
            reason = family_plan.unconfigured_reason or "no address configured for this reflector"
            notes.append(f"{label}: {reason}")
            continue
        target = family_targets[family_plan.family]
        in_bird = running.get(target, {})
        for session in family_plan.sessions:
            proto = in_bird.pop(session.name, None)
            if proto is not None:
                state, since, info = proto.state, proto.since, proto.info
            else:
                state, since, info = ("?" if target in bird_errors else "missing"), "", ""
            rows.append((label, session.role, session.name, str(session.neighbor), str(session.neighbor_as), "yes",
                         state, since, info, session.origin))
        role = family_plan.mode or f"{family_plan.local_address} {_registration(family_plan.registered)}"
        cluster = f", cluster id {family_plan.cluster_id}" if family_plan.cluster_id else ""
        port = f", listening on port {plan.listen_port}" if plan.listen_port else ""
        notes.append(f"{label}: {role}{cluster}{port}")
    for target in sorted(running):
        for name, proto in sorted(running[target].items()):
            rows.append(("-", "-", name, "", "", "no", proto.state, proto.since, proto.info, ""))
    return "\n".join(notes + [""] + _columns([HEADER] + rows))


def _registration(registered: bool) -> str:
    """The legacy data's wording; Calico v3 plans say it themselves (FamilyPlan.mode)."""
    return "member of the reflector mesh" if registered else "standalone (no rr entry of its own)"


def _columns(rows: list) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
