"""`calico-rr render` and `calico-rr run` as a user runs them (`python3 -m rr_service`), against
a real etcd: the flavour they accept, what they print and log, and when they exit 1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rr_service.bird.version import bird_version
from tests import prereq
from tests.etcdproc import throwaway_etcd
from tests.tomlfile import write_settings

pytestmark = pytest.mark.integration  # a real etcd (and the BIRD binary)

REPO = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"
BIRD1 = "/usr/sbin/bird"


@pytest.fixture(scope="module")
def etcd():
    with throwaway_etcd() as server:
        yield server


@pytest.fixture
def prefix(request, etcd):
    prefix = f"/t/{request.node.name}/calico/bgp/v1"
    etcd.ctl("put", f"{prefix}/global/peer_v4/192.0.2.10", '{"ip": "192.0.2.10"}')
    etcd.ctl("put", f"{prefix}/host/a/ip_addr_v4", "192.0.2.21")
    return prefix


def bird1_host() -> str:
    if not os.access(BIRD1, os.X_OK):
        prereq.missing(f"BIRD 1.6 is not installed ({BIRD1})")
    version = bird_version(BIRD1)
    assert version.startswith("1."), f"this test wants a BIRD 1.6 host, {BIRD1} is BIRD {version}"
    return version


def calico_rr(tmp_path, *args, endpoint="http://127.0.0.1:1", prefix="/calico/bgp/v1", flavour="auto"):
    config = write_settings(tmp_path / "rr.toml", {
        "reflector": {"ip": "192.0.2.10"},
        "etcd": {"endpoints": [endpoint], "prefix": prefix, "schema": "v1"},
        "bird": {"flavour": flavour, "config": str(tmp_path / "bird.conf"), "config6": str(tmp_path / "bird6.conf"),
                 "socket": str(tmp_path / "bird.ctl"), "socket6": str(tmp_path / "bird6.ctl")},
        "safety": {"state_dir": str(tmp_path / "state")},
    })
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "IP", "IP6")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([PYTHON, "-m", "rr_service", "--config", str(config), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)


def test_render_flavour_bird2_on_a_bird16_host(tmp_path, etcd, prefix):
    bird1_host()
    result = calico_rr(tmp_path, "render", "--flavour", "bird2", endpoint=etcd.url, prefix=prefix)
    assert result.returncode == 0, result.stderr
    assert "template bgp bgp_template_v4 {" in result.stdout and "  ipv4 {\n" in result.stdout
    assert "protocol bgp Client_192_0_2_21 from bgp_client_template_v4 {" in result.stdout
    assert "###" not in result.stdout  # BIRD 2: one file
    assert not (tmp_path / "bird.conf").exists()  # render writes nothing


def test_run_with_a_flavour_the_installed_bird_contradicts_exits_1(tmp_path):
    version = bird1_host()
    result = calico_rr(tmp_path, "run", flavour="bird2")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"[bird] flavour = 'bird2', but {BIRD1} is BIRD {version}" in result.stderr
    assert not (tmp_path / "bird.conf").exists()


def test_render_logs_a_hostile_key_on_one_line(tmp_path, etcd, prefix):
    bird1_host()
    etcd.ctl("put", f"{prefix}/host/a\nWARNING all is fine/ip_addr_v4", "192.0.2.99")
    result = calico_rr(tmp_path, "render", endpoint=etcd.url, prefix=prefix)
    assert result.returncode == 0, result.stderr
    assert "ignoring etcd key 'host/a\\nWARNING all is fine/ip_addr_v4': host name" in result.stderr
    assert not any(line.startswith("WARNING all is fine") for line in result.stderr.splitlines()), result.stderr
    assert "protocol bgp Client_192_0_2_21 from" in result.stdout


def test_render_refuses_a_plan_on_an_invalid_global_as(tmp_path, etcd, prefix):
    bird1_host()
    etcd.ctl("put", f"{prefix}/global/as_num", "65000;")
    result = calico_rr(tmp_path, "render", endpoint=etcd.url, prefix=prefix)
    assert result.returncode == 1
    assert "etcd key global/as_num is invalid (AS number '65000;' is not a number)" in result.stderr
    assert "`run` would not apply these configs" in result.stderr
    assert result.stdout == ""


def test_status_with_etcd_down_shows_what_bird_runs_and_exits_1(etcd, prefix):
    """Exactly when etcd is down an operator needs BIRD's view: `status` gives it, says the
    datastore is unreachable, and exits 1; `--json` carries the same for scripts."""
    import birdproc
    import json

    bird1_host()
    with birdproc.short_tmpdir() as folder:
        folder = Path(folder)
        render = calico_rr(folder, "render", "--only", "bird", endpoint=etcd.url, prefix=prefix)
        assert render.returncode == 0, render.stderr
        (folder / "bird.conf").write_text(render.stdout)
        with birdproc.BirdNetns(str(folder)) as bird:
            bird.start(str(folder / "bird.conf"))  # its socket is folder/bird.ctl, where our settings look
            down = calico_rr(folder, "status", endpoint="http://127.0.0.1:1", prefix=prefix)
            assert down.returncode == 1, down.stderr
            first = down.stdout.splitlines()[0]
            assert first.startswith("datastore unreachable: etcd http://127.0.0.1:1: connection refused"), down.stdout
            row = next(line.split() for line in down.stdout.splitlines() if " Client_192_0_2_21 " in line)
            assert row[:4] == ["-", "-", "Client_192_0_2_21", "?"], down.stdout
            as_json = calico_rr(folder, "status", "--json", endpoint="http://127.0.0.1:1", prefix=prefix)
            assert as_json.returncode == 1
            report = json.loads(as_json.stdout)
            assert report["datastore"]["reachable"] is False and "connection refused" in report["datastore"]["error"]
            assert [s["protocol"] for s in report["sessions"]] == ["Client_192_0_2_21"]
            up = calico_rr(folder, "status", "--json", endpoint=etcd.url, prefix=prefix)
            assert up.returncode == 0, up.stderr
            report = json.loads(up.stdout)
            assert report["datastore"] == {"reachable": True, "error": None}
            assert [(s["protocol"], s["wanted"]) for s in report["sessions"]] == [("Client_192_0_2_21", "yes")]


def test_global_options_work_after_the_command_and_messages_do_not_stutter(tmp_path):
    result = calico_rr(tmp_path, "render", "--log-level", "error", endpoint="http://127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.strip() == "calico-rr: etcd http://127.0.0.1:1: connection refused"


def test_accept_needs_neither_the_reflector_address_nor_the_datastore(tmp_path):
    config = write_settings(tmp_path / "rr.toml", {"safety": {"state_dir": str(tmp_path / "state")}})
    env = {k: v for k, v in os.environ.items() if k not in ("IP", "IP6", "ETCD_ENDPOINTS")}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([PYTHON, "-m", "rr_service", "accept", "--config", config], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no config is held back; nothing to accept"
