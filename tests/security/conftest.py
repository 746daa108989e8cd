"""Fixtures of the security tests; the helpers are in security_helpers.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.lab import Lab, sweep  # noqa: E402
from tests.security.security_helpers import FIGURES, lab_or_skip  # noqa: E402


@pytest.fixture(scope="module")
def lab():
    lab_or_skip()
    sweep()
    with Lab(keep_tmp=bool(os.environ.get("RRLAB_KEEP"))) as the_lab:
        yield the_lab


# -- figures -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def figures():
    """record(fault, what, figure): one row of `.cache/reliability/security.json`, replacing a
    row with the same fault and what (a rerun updates its row)."""

    def record(fault: str, what: str, figure: str) -> None:
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        try:
            rows = json.loads(FIGURES.read_text())
        except (OSError, ValueError):
            rows = []
        rows = [r for r in rows if (r.get("fault"), r.get("what")) != (fault, what)]
        rows.append({"fault": fault, "what": what, "figure": figure})
        tmp = FIGURES.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rows, indent=2) + "\n")
        os.replace(tmp, FIGURES)

    return record
