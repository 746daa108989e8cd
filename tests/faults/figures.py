"""Measured figures of the reliability tests, kept as JSON under `.cache/reliability/`.

Every file there is one table of docs/reliability.md (`tools/reliability_report.py` renders
them all). The format, shared with whoever adds a file (hostile.json, model.json, ...):

    {
      "title": "Faults survived",            # the table's heading (default: the file name)
      "intro": "one paragraph, optional",
      "rows": {                               # a dict (key: a stable id, e.g. the test) or a list
        "etcd_down": {
          "class":  "etcd down",              # fault or input class
          "done":   "etcd stopped for 60 s, ...",   # what was done
          "figure": "0 of 8 sessions dropped; change applied 0.4 s after etcd answered",
          "measured": {"sessions_dropped": 0, "apply_seconds": 0.41},   # raw numbers, optional
          "test": "tests/faults/test_etcd.py::test_etcd_down",          # optional
          "recorded": "2026-01-01T10:00:00Z"                             # optional
        }
      }
    }

`record()` merges one row into a file under a lock, so tests (and parallel runs) never lose
each other's rows.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = Path(os.environ.get("RR_RELIABILITY_DIR", REPO_ROOT / ".cache" / "reliability"))

FAULTS_TITLE = "Faults survived"
FAULTS_INTRO = ("Each row is one integration test in tests/faults: real etcd 3.4, real BIRD 1.6, "
                "the real daemon in the reflector's network namespace, Calico-like node BIRDs "
                "with Established IPv4 and IPv6 sessions. Times are measured on a shared 2-core "
                "machine; the limits the tests assert are in the figure column.")


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


def record(key: str, *, fault: str, done: str, figure: str, measured: Optional[dict] = None,
           test: str = "", file: str = "faults", title: str = FAULTS_TITLE,
           intro: str = FAULTS_INTRO) -> Path:
    """Merge one row into RESULTS_DIR/<file>.json; returns the file's path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{file}.json"
    lock = RESULTS_DIR / f".{file}.lock"
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data.setdefault("title", title)
        if intro:
            data.setdefault("intro", intro)
        rows = data.get("rows")
        if not isinstance(rows, dict):
            rows = {}
        rows[key] = {
            "class": fault,
            "done": done,
            "figure": figure,
            "measured": _round(measured or {}),
            "test": test,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        data["rows"] = dict(sorted(rows.items()))
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    return path
