"""BIRD's metrics through Debian's prometheus-bird-exporter, run the way the package runs it
(packaging/exporter: the wrapper that picks the flags for the installed BIRD, under the
exporter's unit), against the lab's reflector on BIRD 1.6 and on BIRD 2 with Established
client sessions: every session has its series, labelled with the role and Calico node our
configs put in each session's description. And the two new lines of the configs (timeformat,
description) restart no session when a reflector is upgraded to them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import birdproc, prereq
from tests.etcdproc import free_port
from tests.lab import wait_for
from tests.lab.netns import REPO_ROOT
from tests.lab.world import NODES

pytestmark = pytest.mark.integration

WRAPPER = REPO_ROOT / "packaging" / "exporter" / "prometheus-bird-exporter"
EXPORTER = "/usr/bin/prometheus-bird-exporter"
TIMEOUT = 60


def exporter_or_missing() -> str:
    if shutil.which(EXPORTER) is None:
        prereq.missing("prometheus-bird-exporter is not installed (apt install prometheus-bird-exporter)")
    return EXPORTER


def scrape(host, port: int) -> str:
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', timeout=5).read().decode())"
    return host.run(["/usr/bin/python3", "-c", code]).stdout


def up_series(text: str) -> dict:
    """name -> labels of every bird_protocol_up series."""
    found = {}
    for match in re.finditer(r"^bird_protocol_up\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        found[labels["name"]] = {**labels, "value": float(match.group(2))}
    return found


def test_per_session_series_with_role_and_node(world, flavour):
    exporter_or_missing()
    rr = world.rr1
    # protocol -> (IP version, Calico node)
    sessions = {"Client_192_0_2_21": ("4", "a"), "Client_2001_db8__21": ("6", "a"),
                "Client_192_0_2_22": ("4", "b"), "Client_2001_db8__22": ("6", "b")}
    rr.wait_established([n for n, (v, _) in sessions.items() if v == "4"], 4, TIMEOUT)
    rr.wait_established([n for n, (v, _) in sessions.items() if v == "6"], 6, TIMEOUT)
    port = free_port()
    env = {"BIRD_BINARY": rr.settings["bird"]["binary"], "BIRD_SOCKET": str(rr.sock), "BIRD6_SOCKET": str(rr.sock6)}
    proc = rr.host.popen(["env", *(f"{k}={v}" for k, v in env.items()), str(WRAPPER),
                          "-web.listen-address", f"127.0.0.1:{port}"], name=f"{rr.host.name}-exporter")
    try:
        def scraped():
            series = up_series(scrape(rr.host, port))
            return series if all(series.get(n, {}).get("value") == 1 for n in sessions) else None
        series = wait_for(scraped, TIMEOUT, what="the exporter's series of both families",
                          describe=lambda: proc.log()[-2000:])
    finally:
        proc.stop()
    for name, (ip_version, node) in sessions.items():
        labels = series[name]
        assert labels["value"] == 1 and labels["state"] == "Established", labels
        assert labels["role"] == "client" and labels["node"] == node, labels
        assert labels["proto"] == "BGP" and labels["ip_version"] == ip_version, labels


def test_the_new_config_lines_restart_no_session(world, flavour):
    """Measured on the real BIRD: a config without `timeformat` and the per-session
    `description` (what the previous version wrote), sessions Established, then the current
    one: BIRD reconfigures without restarting any session."""
    rr = world.rr1
    bird = rr.bird
    rr.stop()  # the daemon would put the current config back at once
    try:
        current = bird.config_path.read_text()
        old = "".join(line + "\n" for line in current.splitlines()
                      if not line.startswith(("timeformat", "  description \"role=", "# Session times")))
        assert old != current and "description \"role=" in current and "timeformat protocol iso long;" in current
        bird.reconfigure(old)
        names = [f"Client_{NODES[n].ipv4.replace('.', '_')}" for n in ("a", "b")]
        before = bird.wait_established(names, TIMEOUT)
        bird.reconfigure(current)
        after = bird.protocols()
        for name in names:
            assert after[name].established and after[name].same_run_as(before[name]), (before[name], after[name])
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", after[names[0]].since), after[names[0]].since
    finally:
        rr.start()


# -- Debian 13's exporter (1.4.2) against trixie's BIRD 3 ----------------------------------

CONF3 = """\
router id 192.0.2.1;
timeformat protocol iso long;
protocol device { }
protocol bgp Client_192_0_2_21 {
  description "role=client node=a";
  local as 64512; neighbor 192.0.2.21 as 64512; ipv4 { import all; export all; };
}
"""


def trixie_exporter_or_missing(tmp_path) -> str:
    """Trixie's prometheus-bird-exporter 1.4.2, unpacked from the .deb that the Ansible test's
    trixie tree pre-downloads (a static Go binary: it runs on a bookworm host)."""
    cache = Path(os.environ.get("CALICO_RR_TEST_CACHE", "/var/cache/calico-rr-test"))
    debs = sorted(cache.glob("*/var/cache/apt/archives/prometheus-bird-exporter_1.4.2*_amd64.deb"))
    if not debs:
        prereq.missing(f"trixie's prometheus-bird-exporter 1.4.2 is not cached under {cache} "
                       "(the Ansible test's trixie tree downloads it: tests/ansible)")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tmp_path / "exporter")], check=True, timeout=60)
    return str(tmp_path / "exporter/usr/bin/prometheus-bird-exporter")


def test_trixies_exporter_says_whether_its_socket_query_worked(tmp_path):
    """Exporter 1.4.2 through the package's wrapper on BIRD 3: bird_socket_query_success 1 with
    the session's series (role and node labels), 0 once BIRD is gone; the series that alert
    CalicoRRBirdSocketQueryFailing reads (packaging/prometheus)."""
    exporter = trixie_exporter_or_missing(tmp_path)
    binary = prereq.bird3_or_missing()
    birdproc.skip_unless_possible(binary)
    with birdproc.running_bird(CONF3, binary=binary) as ns:
        port = free_port()
        env = {"BIRD_BINARY": binary, "BIRD_SOCKET": ns.socket_path, "BIRD_EXPORTER": exporter}
        log = open(tmp_path / "exporter.log", "w")
        proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "env",
                                 *(f"{k}={v}" for k, v in env.items()), str(WRAPPER),
                                 "-web.listen-address", f"127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            def scraped():
                code = (f"import urllib.request; print(urllib.request.urlopen("
                        f"'http://127.0.0.1:{port}/metrics', timeout=5).read().decode())")
                p = subprocess.run(["ip", "netns", "exec", ns.name, "/usr/bin/python3", "-c", code],
                                   capture_output=True, text=True, timeout=30)
                return p.stdout if p.returncode == 0 else None
            text = wait_for(scraped, TIMEOUT, what="the exporter's metrics")
            assert re.search(r"^bird_socket_query_success 1$", text, re.M), text
            up = up_series(text)["Client_192_0_2_21"]
            assert (up["proto"], up["role"], up["node"], up["value"]) == ("BGP", "client", "a", 0.0), up
            ns.stop()
            text = scraped()
            assert re.search(r"^bird_socket_query_success 0$", text, re.M), text
            assert "bird_protocol_up{" not in text, text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
