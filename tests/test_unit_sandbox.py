"""`make test-unit` keeps its word: it passes as an unprivileged user on a machine where BIRD
and etcd are missing (hidden in a mount namespace of its own), skipping nothing."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import prereq

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration  # needs root, to hide BIRD and etcd and to drop root


def test_make_test_unit_needs_no_root_no_etcd_no_bird():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        prereq.missing("needs root and unshare to build the sandbox")
    result = subprocess.run(["unshare", "-m", str(REPO / "tools" / "unit-sandbox"),
                             "make", "-s", "-C", str(REPO), "test-unit", "PYTEST_ARGS=-rs"],
                            capture_output=True, text=True, timeout=900)
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    summary = next(line for line in reversed(result.stdout.splitlines()) if " passed" in line)
    assert " passed" in summary and "skipped" not in summary and "error" not in summary, tail
