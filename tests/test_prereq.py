"""RR_REQUIRE_ALL=1 (set by `make test`) turns a skip for a missing prerequisite into a failure."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CASE = '''
from tests import prereq

def test_needs_a_tool():
    prereq.missing("the frobnicator is not installed")

def test_one_of_two_birds():
    prereq.partly(False, "BIRD 2 could not be unpacked")  # goes on here: BIRD 1.6 still proves something
'''


@pytest.mark.parametrize("require, outcome", [("", "1 passed, 1 skipped"), ("0", "1 passed, 1 skipped"), ("1", "2 failed")])
def test_missing_prerequisite_skips_or_fails(tmp_path, require, outcome):
    case = tmp_path / "test_case.py"
    case.write_text(CASE)
    env = {**os.environ, "RR_REQUIRE_ALL": require, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider", str(case)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "the frobnicator is not installed" in result.stdout
    if require == "1":
        assert "prerequisite missing and RR_REQUIRE_ALL=1" in result.stdout
