"""The machinery behind docs/reliability.md, without root: rows are written only for a passing
test, each with its run and commit; the report refuses a missing or stale figure; and the
parser of BIRD's `show protocols all` that the model-based test compares with."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.faults import figures as figures_module
from tests.faults.model_helpers import BirdSession, bird_sessions

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"


def _report_module():
    spec = importlib.util.spec_from_file_location("reliability_report", REPO_ROOT / "tools" / "reliability_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


report = _report_module()
DOC = f"# Reliability\n\nprose\n\n{report.BEGIN}\nold tables\n{report.END}\n\nmore prose\n"


def _write_all(folder: Path, run: str = "20260101T000000Z-1", skip=(), stale=()) -> None:
    for table in report.TABLES:
        rows = {key: {"class": f"class {key}", "done": f"done {key}", "figure": f"figure {key}",
                      "test": f"tests/x.py::test_{key}", "commit": "c0ffee" * 7, "recorded": "2026-01-01T00:00:01Z",
                      "run": "20250101T000000Z-9" if key in stale else run}
                for key in table.keys if key not in skip}
        (folder / f"{table.name}.json").write_text(json.dumps({"rows": rows}))


def _run_report(folder: Path, doc: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(REPO_ROOT / "tools" / "reliability_report.py"), "--dir", str(folder),
                           "--update", str(doc)], capture_output=True, text=True, timeout=60)


def test_report_writes_the_tables_of_one_complete_run(tmp_path):
    _write_all(tmp_path)
    doc = tmp_path / "reliability.md"
    doc.write_text(DOC)
    res = _run_report(tmp_path, doc)
    assert res.returncode == 0, res.stderr
    text = doc.read_text()
    assert "old tables" not in text and text.startswith("# Reliability\n\nprose") and text.endswith("more prose\n")
    for table in report.TABLES:
        assert f"### {table.title}" in text
        for key in table.keys:
            assert f"| class {key} | done {key} | figure {key} |" in text
    assert "one passing run (`20260101T000000Z-1`) at commit `c0ffeec0ffee`" in text


@pytest.mark.parametrize("how", ["missing", "stale"])
def test_report_refuses_a_missing_or_stale_figure(tmp_path, how):
    key = report.TABLES[0].keys[1]
    _write_all(tmp_path, **({"skip": {key}} if how == "missing" else {"stale": {key}}))
    doc = tmp_path / "reliability.md"
    doc.write_text(DOC)
    res = _run_report(tmp_path, doc)
    assert res.returncode == 1
    assert f"{report.TABLES[0].name}/{key}: {how}" in res.stderr, res.stderr
    assert doc.read_text() == DOC  # untouched


def test_record_stamps_run_commit_and_time_into_the_chosen_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RR_RELIABILITY_DIR", str(tmp_path / "figs"))
    path = figures_module.record("faults", "etcd_down", fault="f", done="d", figure="x", measured={"s": 1.23456})
    assert path == tmp_path / "figs" / "faults.json"
    row = json.loads(path.read_text())["rows"]["etcd_down"]
    assert row["run"] == figures_module.RUN and row["commit"] == figures_module.COMMIT
    assert row["recorded"].endswith("Z") and row["measured"] == {"s": 1.235}
    with pytest.raises(ValueError):
        figures_module.record("no-such-table", "k", fault="f", done="d", figure="x")


def test_only_a_passing_test_records_its_figure(tmp_path):
    """The `figures` fixture: a row staged by a test that then fails is never written."""
    (tmp_path / "conftest.py").write_text(
        "from tests.faults.figures import figures, pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_rows.py").write_text(textwrap.dedent("""\
        def test_passes(figures):
            figures.add("faults", "good", fault="f", done="d", figure="passed")

        def test_fails(figures):
            figures.add("faults", "bad", fault="f", done="d", figure="0 sessions dropped")
            assert False, "the product misbehaved"
    """))
    folder = tmp_path / "figs"
    res = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT),
                              "RR_RELIABILITY_DIR": str(folder), "RR_RELIABILITY_RUN": "run-1"})
    assert "1 failed, 1 passed" in res.stdout, res.stdout + res.stderr
    rows = json.loads((folder / "faults.json").read_text())["rows"]
    assert set(rows) == {"good"} and rows["good"]["run"] == "run-1"
    assert rows["good"]["test"].endswith("test_rows.py::test_passes")


BIRD1_ALL = """\
BIRD 1.6.8 ready.
name     proto    table    state  since       info
device1  Device   master   up     21:43:15
  Preference:     240
  Input filter:   ACCEPT

Client_192_0_2_21 BGP      master   start  21:43:15    Active
  Preference:     100
  Routes:         0 imported, 0 exported, 0 preferred
  Route change stats:     received   rejected   filtered    ignored   accepted
    Import updates:              0          0          0          0          0
  BGP state:          Active
    Neighbor address: 192.0.2.21
    Neighbor AS:      64512
    Connect delay:    3/5

Mesh_192_0_2_11 BGP      master   up     21:43:15    Established
  BGP state:          Established
    Neighbor address: 192.0.2.11
    Neighbor AS:      65001
    Neighbor ID:      192.0.2.11
"""

BIRD2_ALL = """\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     21:43:16.287

Client_192_0_2_21 BGP        ---        start  21:43:16.287  Active
  BGP state:          Active
    Neighbor address: 192.0.2.21
    Neighbor AS:      64512
    Local AS:         64512
    Connect delay:    3.434/5
  Channel ipv4
    State:          DOWN

Mesh_2001_db8__11 BGP        ---        start  21:43:16.287  Active
  BGP state:          Active
    Neighbor address: 2001:db8::11
    Neighbor AS:      64512
    Local AS:         65001
  Channel ipv6
    State:          DOWN
"""


def test_bird_sessions_reads_both_birds():
    assert bird_sessions(BIRD1_ALL) == {"Client_192_0_2_21": BirdSession("192.0.2.21", 64512, None),
                                        "Mesh_192_0_2_11": BirdSession("192.0.2.11", 65001, None)}
    assert bird_sessions(BIRD2_ALL) == {"Client_192_0_2_21": BirdSession("192.0.2.21", 64512, 64512),
                                        "Mesh_2001_db8__11": BirdSession("2001:db8::11", 64512, 65001)}
