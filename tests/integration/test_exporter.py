"""BIRD's metrics through Debian's prometheus-bird-exporter (bookworm's 1.4.1 and trixie's
1.4.2), run the way the package runs it (packaging/exporter: the wrapper that picks the flags
for the installed BIRD, under the exporter's unit), against the lab's reflector on BIRD 1.6,
2 and 3 with Established client sessions: every session has its series, labelled with the
role and Calico node our configs put in each session's description; 1.4.2 also says whether
its socket queries work (the alert rules rely on it). And the two new lines of the configs
(timeformat, description) restart no session when a reflector is upgraded to them."""

from __future__ import annotations

import re
import shutil

import pytest

from tests import prereq
from tests.etcdproc import free_port
from tests.lab import wait_for
from tests.lab.netns import REPO_ROOT
from tests.lab.world import NODES

pytestmark = pytest.mark.integration

WRAPPER = REPO_ROOT / "packaging" / "exporter" / "prometheus-bird-exporter"
EXPORTER = "/usr/bin/prometheus-bird-exporter"
TIMEOUT = 60


def exporter_or_missing(version: str = "1.4.1") -> str:
    if version == "1.4.2":
        return prereq.bird_exporter_142_or_missing()
    if shutil.which(EXPORTER) is None:
        prereq.missing("prometheus-bird-exporter is not installed (apt install prometheus-bird-exporter)")
    return EXPORTER


def start_exporter(rr, binary: str, port: int, **sockets):
    """The package's wrapper around `binary`, on this reflector's sockets (or those given)."""
    env = {"BIRD_BINARY": rr.settings["bird"]["binary"], "BIRD_SOCKET": str(rr.sock),
           "BIRD6_SOCKET": str(rr.sock6), "BIRD_EXPORTER": binary, **sockets}
    return rr.host.popen(["env", *(f"{k}={v}" for k, v in env.items()), str(WRAPPER),
                          "-web.listen-address", f"127.0.0.1:{port}"], name=f"{rr.host.name}-exporter")


def socket_query_success(text: str):
    """bird_exporter 1.4.2's bird_socket_query_success (None: not exposed, as by 1.4.1)."""
    match = re.search(r"^bird_socket_query_success (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


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


@pytest.mark.parametrize("version", ["1.4.1", "1.4.2"])
def test_per_session_series_with_role_and_node(world, flavour, version):
    binary = exporter_or_missing(version)
    rr = world.rr1
    # protocol -> (IP version, Calico node)
    sessions = {"Client_192_0_2_21": ("4", "a"), "Client_2001_db8__21": ("6", "a"),
                "Client_192_0_2_22": ("4", "b"), "Client_2001_db8__22": ("6", "b")}
    rr.wait_established([n for n, (v, _) in sessions.items() if v == "4"], 4, TIMEOUT)
    rr.wait_established([n for n, (v, _) in sessions.items() if v == "6"], 6, TIMEOUT)
    port = free_port()
    proc = start_exporter(rr, binary, port)
    try:
        def scraped():
            text = scrape(rr.host, port)
            series = up_series(text)
            return (series, text) if all(series.get(n, {}).get("value") == 1 for n in sessions) else None
        series, text = wait_for(scraped, TIMEOUT, what="the exporter's series of both families",
                                describe=lambda: proc.log()[-2000:])
    finally:
        proc.stop()
    assert socket_query_success(text) == (1.0 if version == "1.4.2" else None), text[-2000:]
    for name, (ip_version, node) in sessions.items():
        labels = series[name]
        assert labels["value"] == 1 and labels["state"] == "Established", labels
        assert labels["role"] == "client" and labels["node"] == node, labels
        assert labels["proto"] == "BGP" and labels["ip_version"] == ip_version, labels


def test_exporter_1_4_2_says_when_a_socket_cannot_be_queried(world, flavour, tmp_path):
    """What CalicoRRBirdSocketUnreadable relies on: with one socket it cannot query (BIRD 1.6:
    bird6's; BIRD 2 and 3: the one), 1.4.2 exposes bird_socket_query_success 0 and no
    protocol at all."""
    binary = exporter_or_missing("1.4.2")
    rr = world.rr1
    missing = str(tmp_path / "no-such.ctl")
    port = free_port()
    proc = start_exporter(rr, binary, port, **({"BIRD6_SOCKET": missing} if flavour == "bird1"
                                                else {"BIRD_SOCKET": missing}))
    try:
        text = wait_for(lambda: (lambda t: t if socket_query_success(t) is not None else None)(scrape(rr.host, port)),
                        TIMEOUT, what="a scrape of the exporter", describe=lambda: proc.log()[-2000:])
    finally:
        proc.stop()
    assert socket_query_success(text) == 0.0 and not up_series(text), text[-2000:]


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
