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
    assert "protocol bgp Client_192_0_2_21 from bgp_template_v4 {" in result.stdout
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
