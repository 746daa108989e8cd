"""Summarize a `py-spy record --format raw --threads` file of the daemon into phases: the
daemon's CPU per change by phase (py-spy leaves out threads that wait, so BIRD's own work
behind `configure` does not show here; the in-process breakdown has the wall time)."""

from __future__ import annotations

import re
from pathlib import Path

# (function, file) markers; the deepest marker in a stack names its phase.
MARKERS = [
    ("run", "rr_service/app/daemon.py", "loop (other)"),
    ("_perform", "rr_service/app/daemon.py", "loop: performing actions"),
    ("program", "rr_service/loop/program.py", "loop: decisions"),
    ("_wait", "rr_service/app/daemon.py", "watch events: bookkeeping"),
    ("changes", "rr_service/sources/etcd/source.py", "watch events: source"),
    ("next_changes", "rr_service/sources/etcd/client.py", "watch events: queue"),
    ("_run", "rr_service/sources/etcd/watch.py", "etcd watch thread (gRPC, protobuf)"),
    ("_apply", "rr_service/app/daemon.py", "apply (other)"),
    ("_compute", "rr_service/app/daemon.py", "compute (other)"),
    ("compute", "rr_service/core/pipeline.py", "pipeline (other)"),
    ("apply", "rr_service/calico/v1/snapshot.py", "parse"),
    ("apply", "rr_service/calico/v3/table.py", "parse"),
    ("update", "rr_service/calico/v1/rules.py", "plan"),
    ("update", "rr_service/calico/v3/planner.py", "plan"),
    ("render", "rr_service/core/render.py", "render"),
    ("check", "rr_service/core/safety.py", "drop guard"),
    ("_read", "rr_service/bird/apply.py", "read + compare the file on disk"),
    ("apply", "rr_service/bird/apply.py", "apply (other)"),
    ("_write_temp", "rr_service/bird/apply.py", "write + fsync"),
    ("configure", "rr_service/bird/control.py", "BIRD configure (socket)"),
    ("_rename", "rr_service/bird/apply.py", "rename + fsync dir"),
    ("_check", "rr_service/bird/apply.py", "bird -p"),
    ("status_line", "rr_service/loop/status.py", "STATUS= line"),
    ("emit", "logging/__init__.py", "logging"),
]

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def classify(frames: list[str]) -> str:
    phase = "other (outside the daemon's code)"
    for frame in frames:
        m = _FRAME.match(frame.strip())
        if not m:
            continue
        for func, file, name in MARKERS:
            f = m.group("func")
            if (f == func or f.endswith("." + func)) and m.group("file").endswith(file):
                phase = name
    return phase


def summarize(path: Path, changes: int, cpu_ms_per_change: float, rate: int = 1000) -> dict:
    """Shares of the samples by phase; ms per change = share x the CPU per change measured
    from /proc (py-spy's own sample count drifts from its nominal rate)."""
    totals: dict = {}
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        phase = classify(frames)
        totals[phase] = totals.get(phase, 0) + int(count)
        samples += int(count)
    per_change = {k: cpu_ms_per_change * v / max(1, samples)
                  for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    return {"samples": samples, "rate_hz": rate, "changes": changes,
            "per_change_ms": per_change, "share_pct": {k: 100.0 * v / max(1, samples) for k, v in totals.items()}}
