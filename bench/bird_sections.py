"""The sections of docs/benchmarks.md about the reflector's BIRD, each from the newest results
of its own run: route propagation (bench/propagation.py, propagation-*.json) and BIRD 1.6 / 2 / 3
side by side (bench/flavours.py, flavours-*.json). Each run puts its section into the page;
bench/report.py, which rewrites the page, puts both back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

RESULTS = Path(__file__).resolve().parent / "results"
HEADING = "## Route propagation through the reflector"
FLAVOURS_HEADING = "## BIRD 1.6, 2 and 3 under the reflector"
NAMES = {"bird1": "BIRD 1.6", "bird2": "BIRD 2", "bird3": "BIRD 3"}


def latest(kind: str) -> Optional[tuple[str, dict]]:
    """(its name under bench/results, the results) of the newest `kind` run (propagation,
    flavours); None before the first."""
    files = sorted(RESULTS.glob(f"{kind}-*.json"))
    return (files[-1].name, json.loads(files[-1].read_text())) if files else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def propagation(source: str, results: dict) -> list[str]:
    cases = results["cases"]
    m = cases[0]["burst_routes"]
    out = [HEADING, "",
           f"`make bench-propagation` (`bench/results/{source}`; {results['when']}, load average at the end "
           f"{', '.join(f'{x:.2f}' for x in results['machine']['load'])}). The real daemon configures the "
           "reflector's BIRD from the v1 keys of N nodes; one BIRD 1.6 (the farm) holds the N client "
           "sessions from N addresses, a second node (the origin) announces the routes. Times run from "
           "the origin's `enable` of a static protocol to the farm's table holding the route from the "
           f"first, the median and the last of the N sessions (polled every {_ms(cases[0]['poll_s'])}: "
           f"no figure is finer than that); the burst is {m} /26s at once (a node restart), until half "
           f"and all of them are in from every 10th session (the farm keeps the burst from those only: "
           "BIRD's cost of N copies of one net grows as N², and the farm, not the reflector, would be "
           "measured; its table is counted every 0.1 s). "
           f"Each figure is the median of {cases[0]['repeat']} "
           "rounds. The farm's own work (it takes in every route from every session) is in every figure "
           "and the same for each reflector flavour; for one route at 5,000 sessions it is most of the "
           "figure (the farm inserts 5,000 copies of one net, each insertion walking the copies before "
           "it), which is why the reflector's own CPU is given beside the burst.", "",
           "| N | reflector | one route: first / median / last client | withdrawn everywhere | "
           f"burst of {m}: half / all sampled clients | burst withdrawn everywhere | reflector BIRD CPU during the burst "
           "| reflector BIRD RSS | N sessions Established after |",
           "|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        s, b = c["single"], c["burst"]
        out.append(f"| {c['n']:,} | {NAMES.get(c['flavour'], c['flavour'])} ({c['rr_bird_version']}) "
                   f"| {_ms(s['first'])} / {_ms(s['median'])} / {_ms(s['all'])} "
                   f"| {_ms(c['single_withdrawn']['all'])} | {_ms(b['half'])} / {_ms(b['all'])} "
                   f"| {_ms(c['burst_withdrawn']['all'])} | {c['rr_bird_cpu_during_burst_s']:.2f} s "
                   f"| {c['rr_bird_rss_mb']:.1f} MB | {c['sessions_up_s']:.0f} s |")
    out += [""] + advice(cases) + [""]
    return out


def advice(cases: list[dict]) -> list[str]:
    """What these figures say about the choice of BIRD at each size."""
    lines = ["What this says about the choice of BIRD:", ""]
    for n in sorted({c["n"] for c in cases}):
        at = sorted((c for c in cases if c["n"] == n), key=lambda c: c["burst"]["all"])
        if len(at) < 2:
            continue
        fastest, slowest = at[0]["burst"]["all"], at[-1]["burst"]["all"]
        spread = (slowest - fastest) / fastest
        times = ", ".join(f"{NAMES[c['flavour']]} {_ms(c['burst']['all'])} (its own CPU "
                          f"{c['rr_bird_cpu_during_burst_s']:.2f} s)" for c in at)
        if spread < 0.15:
            lines.append(f"- N = {n:,}: the burst reached every client in about the same time with each "
                         f"BIRD ({times}): within {spread:.0%} of each other, so here the clients' side (one "
                         "BIRD 1.6 holding all N sessions) sets the pace, not the reflector.")
        else:
            thrifty = min(at, key=lambda c: c["rr_bird_cpu_during_burst_s"])
            small = min(at, key=lambda c: c["rr_bird_rss_mb"])
            lines.append(f"- N = {n:,}: {NAMES[at[0]['flavour']]} brought the burst to every client first "
                         f"({times}); {NAMES[thrifty['flavour']]} spent the least CPU on it and "
                         f"{NAMES[small['flavour']]} held the least memory ({small['rr_bird_rss_mb']:.0f} MB).")
    lines.append("- From 5,000 clients per reflector, pick BIRD 2: trixie's BIRD 3.1.8 can crash on a reload that adds that many sessions, and under reloads at 5,000 (see "
                 "\"What trixie's BIRD 3.1.8 did\" in the section above), and BIRD 1.6 exists on bookworm only.")
    return lines


def flavours(source: str, results: dict) -> list[str]:
    cases = results["cases"]
    out = [FLAVOURS_HEADING, "",
           f"`make bench-flavours` (`bench/results/{source}`; {results['when']}, load average at the end "
           f"{', '.join(f'{x:.2f}' for x in results['machine']['load'])}): the same daemon and v1 data on "
           "each BIRD; its N client sessions wait in Connect (nobody answers). Cold start runs from "
           "starting `calico-rr run` to BIRD showing the last session; a change from the etcd put "
           "(or delete) of one node to BIRD showing (or no longer showing) its session. The cold starts "
           "here are several times `make bench`'s on BIRD 1.6 with the same daemon and data (0.80 s at "
           "10,000 there); the cause, somewhere in how the lab starts the daemon and BIRD, is not found "
           "yet: compare the flavours with each other, not with the sections above.", "",
           "| N | BIRD | cold start to all sessions configured | change p50 | change p99 | BIRD RSS "
           "| BIRD CPU during changes | BIRD CPU idle |", "|---|---|---|---|---|---|---|---|"]
    for c in cases:
        out.append(f"| {c['n']:,} | {NAMES.get(c['flavour'], c['flavour'])} ({c['bird_version']}) "
                   f"| {c['configured_s']:.2f} s | {c['change']['p50']:.1f} ms | {c['change']['p99']:.1f} ms "
                   f"| {c['bird_rss_mb']:.1f} MB | {c['bird_cpu_during_changes_pct']:.1f} % "
                   f"| {c['bird_cpu_idle_pct']:.1f} % |")
    for f in results.get("failed", []):
        out.append(f"| {f['n']:,} | {NAMES.get(f['flavour'], f['flavour'])} | failed: {f['error'].split(';')[0][:200]} | | | | | |")
    out.append("")
    for n in sorted({c["n"] for c in cases}):
        at = [c for c in cases if c["n"] == n]
        if len(at) > 1:
            quick = min(at, key=lambda c: c["change"]["p50"])
            small = min(at, key=lambda c: c["bird_rss_mb"])
            out.append(f"- N = {n:,}: the quickest change with {NAMES[quick['flavour']]} "
                       f"({quick['change']['p50']:.1f} ms p50), the least memory with {NAMES[small['flavour']]} "
                       f"({small['bird_rss_mb']:.1f} MB).")
    if any(c["flavour"] == "bird3" for c in cases) or any(f["flavour"] == "bird3" for f in results.get("failed", [])):
        out += ["", *BIRD3_FAULTS]
    return out + [""]


# Reproduced outside the bench (one BIRD 3.1.8 in a namespace, configs from calico-rr's
# renderer, birdc alone), so they stand beside whatever a run above shows.
BIRD3_FAULTS = [
    "What trixie's BIRD 3.1.8 did under many sessions, reproduced outside the bench with BIRD alone "
    "(`birdc configure`, configs from calico-rr's renderer, sessions to neighbours that never answer):",
    "",
    "- **One `configure` that adds more than about 5,000 sessions can crash it** (SIGSEGV, a NULL "
    "pointer in a worker thread). From its minimal config: 0 of 5 crashed at 5,000, 4 of 5 at 5,500, "
    "2 of 2 at 6,000. Adding them in steps crashed as well, between 5,000 and 8,000 sessions "
    "(2,500 at a time: 3 of 7 runs; 1,000 at a time, each step finished first: 3 of 3). Starting BIRD 3 on a file that already holds 10,000 "
    "sessions did not crash (3 of 3). So a reflector on BIRD 3 with more than 5,000 clients "
    "survives a restart or reboot (BIRD reads its file at start) but may crash when it goes from "
    "few sessions to many in one reload; that is the 10,000 failure above. Use BIRD 2 there.",
    "- **Reloads one after another can crash it while many sessions fail their connects** (no "
    "route to the neighbours, so each connect fails at once). A reconfiguration BIRD answered "
    "\"in progress\" stayed so until something woke BIRD, and the next `configure` was queued "
    "behind it. With one change every 0.3 to 1.5 s and nothing else asking BIRD anything, it died "
    "(SIGABRT) at 5,000 and at 10,000 sessions, every time, after about 15 changes. calico-rr now "
    "waits out every reconfiguration BIRD answers \"in progress\" (it asks `show status` every "
    "20 ms, which also wakes BIRD) before it sends the next. That helped but did not cure it: "
    "of 15 runs with the wait (20 to 60 changes each, at 5,000 or 10,000 sessions), 13 survived "
    "and 2 crashed. With the sessions waiting in Connect instead (a next hop that never answers), 2 of 2 "
    "runs of 30 changes survived even without the wait. The wait costs time on BIRD 3: after a "
    "dozen changes at 5,000 sessions, each removal took it 1.2 to 4.3 s to finish (BIRD 1.6 and 2 "
    "answer most changes \"Reconfigured\" at once). The bench above polls `show protocols` every "
    "2 ms, which woke BIRD too, and its sessions wait in Connect: that is why its changes never "
    "showed this.",
]


def both() -> list[str]:
    """Both sections from their newest results, for bench/report.py."""
    out = []
    for kind, render in (("flavours", flavours), ("propagation", propagation)):
        found = latest(kind)
        if found:
            out += render(*found)
    return out


def splice(doc: Path, lines: list[str], heading: str) -> None:
    """Put a section into the page: in place of the one under `heading`, or before
    `## Render time`."""
    text = doc.read_text()
    block = "\n".join(lines) + "\n"
    old = re.search(rf"^{re.escape(heading)}.*?(?=^## |\Z)", text, flags=re.S | re.M)
    if old:
        text = text[:old.start()] + block + text[old.end():]
    elif "\n## Render time" in text:
        at = text.index("\n## Render time") + 1
        text = text[:at] + block + "\n" + text[at:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    doc.write_text(text)
