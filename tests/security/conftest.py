"""Fixtures of the security tests; the helpers are in security_helpers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.lab import Lab, sweep  # noqa: E402
from tests.faults.figures import figures, pytest_runtest_makereport  # noqa: E402,F401
from tests.security.security_helpers import lab_or_skip  # noqa: E402


@pytest.fixture(scope="module")
def lab():
    lab_or_skip()
    sweep()
    with Lab(keep_tmp=bool(os.environ.get("RRLAB_KEEP"))) as the_lab:
        yield the_lab
