"""Measured figures of the reliability tests, kept as JSON under `.cache/reliability/`
(or $RR_RELIABILITY_DIR): one file per table of docs/reliability.md, which
`tools/reliability_report.py` renders.

    {"rows": {"<key>": {"class": "etcd down", "done": "what was done", "figure": "what was measured",
                        "measured": {...raw numbers...}, "test": "tests/...::test_x",
                        "run": "20260101T100000Z-4242", "commit": "<sha>", "recorded": "2026-01-01T10:02:13Z"}}}

One helper writes them all (fault, model-based, hostile-input and security tests), and only
for a test that passed:

* pytest tests use the `figures` fixture: `figures.add(table, key, ...)` stages a row anywhere
  in the test, and the row is written when the test's call phase passed; a failing or skipped
  test writes nothing, so its old row keeps its old run and the report calls it stale;
* code that is no pytest test of its own (a module's total over several tests) calls
  `record()` itself, after every assertion it depends on.

`run` is the same for every row one pytest process writes (its start time and pid, or
$RR_RELIABILITY_RUN), `commit` the checkout's HEAD when that process started: the report
takes its tables from one run only.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, List, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLES = ("faults", "kubernetes", "model", "hostile", "security")  # the files; their titles are the report's


def _utc(seconds: Optional[float] = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _head() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


_STARTED = time.time()
RUN = os.environ.get("RR_RELIABILITY_RUN") or f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(_STARTED))}-{os.getpid()}"
COMMIT = _head()


def results_dir() -> Path:
    """Read at each call: a test (or a run) may point RR_RELIABILITY_DIR elsewhere."""
    return Path(os.environ.get("RR_RELIABILITY_DIR") or REPO_ROOT / ".cache" / "reliability")


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


def record(table: str, key: str, *, fault: str, done: str, figure: str,
           measured: Optional[dict] = None, test: str = "") -> Path:
    """Merge one row into <results_dir>/<table>.json under a lock; returns the file's path.
    Call it only once the assertions behind the figure have passed."""
    if table not in TABLES:
        raise ValueError(f"unknown figures table {table!r} (one of {', '.join(TABLES)})")
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{table}.json"
    with open(folder / f".{table}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            rows = json.loads(path.read_text()).get("rows")
        except (OSError, ValueError, AttributeError):
            rows = None
        rows = rows if isinstance(rows, dict) else {}
        rows[key] = {"class": fault, "done": done, "figure": figure, "measured": _round(measured or {}),
                     "test": test, "run": RUN, "commit": COMMIT, "recorded": _utc()}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"rows": dict(sorted(rows.items()))}, indent=2) + "\n")
        os.replace(tmp, path)
    return path


class StagedFigures:
    """Rows of one test, written by commit() (the fixture calls it when the test passed)."""

    def __init__(self, test: str):
        self.test = test
        self.rows: List[tuple] = []

    def add(self, table: str, key: str, *, fault: str, done: str, figure: str,
            measured: Optional[dict] = None) -> None:
        if table not in TABLES:
            raise ValueError(f"unknown figures table {table!r}")
        self.rows.append((table, key, dict(fault=fault, done=done, figure=figure, measured=measured)))

    def commit(self) -> None:
        for table, key, cells in self.rows:
            record(table, key, test=self.test, **cells)


# -- pytest glue: conftest.py files import these two names ---------------------------------

@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def figures(request):
    """Stage rows with figures.add(...); they are written only if the test passed."""
    staged = StagedFigures(request.node.nodeid)
    yield staged
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed:
        staged.commit()
