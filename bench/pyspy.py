"""Summarize a `py-spy record --format raw --threads` file of the daemon into phases: the
daemon's CPU per change by phase (py-spy leaves out threads that wait, so BIRD's own work
behind `configure` does not show here; the in-process breakdown has the wall time)."""

from __future__ import annotations

import re
from pathlib import Path

# (function, file) markers; the deepest marker in a stack names its phase.
MARKERS = [
    ("run", "rr_service/daemon.py", "loop (other)"),
    ("_wait_for_changes", "rr_service/daemon.py", "watch events: bookkeeping"),
    ("next_changes", "rr_service/datastore/etcd.py", "watch events: queue"),
    ("_run", "rr_service/datastore/etcd.py", "etcd watch thread (gRPC, protobuf)"),
    ("_apply", "rr_service/daemon.py", "apply (other)"),
    ("compute", "rr_service/pipeline.py", "pipeline (other)"),
    ("update", "rr_service/model.py", "parse"),
    ("plan", "rr_service/plan.py", "plan"),
    ("render", "rr_service/render.py", "render"),
    ("_guard_allows", "rr_service/daemon.py", "drop guard"),
    ("_read", "rr_service/apply.py", "read + compare the file on disk"),
    ("apply", "rr_service/apply.py", "apply (other)"),
    ("_write_temp", "rr_service/apply.py", "write + fsync"),
    ("configure", "rr_service/bird_socket.py", "BIRD configure (socket)"),
    ("_rename", "rr_service/apply.py", "rename + fsync dir"),
    ("_check", "rr_service/apply.py", "bird -p"),
    ("_publish_status", "rr_service/daemon.py", "STATUS= line"),
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
