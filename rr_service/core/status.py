"""`calico-rr status`: the sessions the data calls for against what BIRD runs. Pure.

`status_report()` builds one document (notes, families, sessions, BIRD's answers, the
datastore's); `status_table()` prints it for a person, `--json` as JSON for scripts (the
Ansible role's checks). Without the datastore (unreachable) there is no plan: BIRD's own
sessions are still listed, each as not known to be wanted.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from rr_service.core.limits import limit_hit_note
from rr_service.core.plan import Plan

HEADER = ("FAMILY", "ROLE", "PROTOCOL", "NEIGHBOR", "AS", "WANTED", "BIRD STATE", "SINCE", "INFO", "ROUTES", "RULE")
_FIELDS = ("family", "role", "protocol", "neighbor", "as", "wanted", "state", "since", "info", "routes", "rule")


def status_report(
    plan: Optional[Plan],
    family_targets: Mapping[int, str],
    bird_protocols: Mapping[str, Sequence],
    bird_errors: Mapping[str, str],
    datastore_error: Optional[str] = None,
    held: Optional[str] = None,
    client_routes: Optional[Mapping[str, Mapping]] = None,
) -> dict:
    """`family_targets` says which BIRD (`bird`, `bird6`) carries each family;
    `bird_protocols` and `bird_errors` are what each BIRD's socket answered; `plan` is None
    when the datastore could not be read (`datastore_error` says why); `client_routes` what
    each BIRD's clients announced (bird.control.RouteCounts by protocol)."""
    notes, sessions, families = [], [], []
    running = {target: {p.name: p for p in protocols if p.proto.upper() == "BGP"}
               for target, protocols in bird_protocols.items()}
    if datastore_error:
        notes.append(f"datastore unreachable: {datastore_error}; BIRD's sessions below are what it runs now")
    if held:
        notes.append(f"HELD BACK by the running daemon: {held}")
    if plan is not None and plan.error:
        # The daemon does not apply such a plan: the rows below are what the data asks for,
        # BIRD keeps running what it has.
        notes.append(f"NOT APPLIED: {plan.error}")
    for target, error in sorted(bird_errors.items()):
        notes.append(f"{target}: control socket not answering: {error}")
    for family_plan in (plan.v4, plan.v6) if plan is not None else ():
        label = f"IPv{family_plan.family}"
        if family_plan.local_address is None:
            # The planner says why when the data leaves a configured family out (v3: our Node).
            reason = family_plan.unconfigured_reason or "no address configured for this reflector"
            notes.append(f"{label}: {reason}")
            families.append({"family": family_plan.family, "address": None, "reason": reason})
            continue
        target = family_targets[family_plan.family]
        in_bird = running.get(target, {})
        counted = (client_routes or {}).get(target, {})
        for session in family_plan.sessions:
            proto = in_bird.pop(session.name, None)
            if proto is not None:
                state, since, info = proto.state, proto.since, proto.info
            else:
                state, since, info = ("?" if target in bird_errors else "missing"), "", ""
            row = dict(zip(_FIELDS, (label, session.role, session.name, str(session.neighbor),
                                     str(session.neighbor_as), "yes", state, since, info, None, session.origin)))
            counts = counted.get(session.name)
            if counts is not None:
                row["routes"] = {"imported": counts.imported, "filtered": counts.filtered,
                                 "limit_hit": counts.limit_hit}
                if counts.limit_hit:
                    notes.append(limit_hit_note(label, session.name, session.node or str(session.neighbor)))
            sessions.append(row)
        role = family_plan.mode or f"{family_plan.local_address} {_registration(family_plan.registered)}"
        cluster = f", cluster id {family_plan.cluster_id}" if family_plan.cluster_id else ""
        port = f", listening on port {plan.listen_port}" if plan.listen_port else ""
        notes.append(f"{label}: {role}{cluster}{port}")
        families.append({"family": family_plan.family, "address": str(family_plan.local_address),
                         "mode": role, "cluster_id": family_plan.cluster_id, "listen_port": plan.listen_port,
                         "sessions": len(family_plan.sessions)})
    wanted = "?" if plan is None else "no"
    for target in sorted(running):
        for name, proto in sorted(running[target].items()):
            sessions.append(dict(zip(_FIELDS, ("-", "-", name, "", "", wanted, proto.state, proto.since, proto.info,
                                               None, ""))))
    return {
        "datastore": {"reachable": datastore_error is None, "error": datastore_error},
        "held": held,
        "not_applied": plan.error if plan is not None else None,
        "warnings": list(plan.warnings) if plan is not None else [],
        "families": families,
        "bird": {target: {"answering": target not in bird_errors, "error": bird_errors.get(target)}
                 for target in sorted({*bird_protocols, *bird_errors})},
        "sessions": sessions,
        "notes": notes,
    }


def status_table(plan: Optional[Plan], family_targets: Mapping[int, str], bird_protocols: Mapping[str, Sequence],
                 bird_errors: Mapping[str, str], datastore_error: Optional[str] = None,
                 held: Optional[str] = None, client_routes: Optional[Mapping[str, Mapping]] = None) -> str:
    report = status_report(plan, family_targets, bird_protocols, bird_errors, datastore_error, held, client_routes)
    rows = [tuple(_cell(row[field]) for field in _FIELDS) for row in report["sessions"]]
    return "\n".join(report["notes"] + [""] + _columns([HEADER] + rows))


def _cell(value) -> str:
    """A ROUTES cell: `3`, `3 (2 filtered)`, `1000 (5 filtered, limit hit)`; "" when not counted."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        return value
    extra = [f"{value['filtered']} filtered"] if value["filtered"] else []
    extra += ["limit hit"] if value["limit_hit"] else []
    return f"{value['imported']} ({', '.join(extra)})" if extra else str(value["imported"])


def _registration(registered: bool) -> str:
    """The legacy data's wording; Calico v3 plans say it themselves (FamilyPlan.mode)."""
    return "member of the reflector mesh" if registered else "standalone (no rr entry of its own)"


def _columns(rows: list) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
