"""The daemon's loop in this process, against a real etcd and a real BIRD 1.6 in a network
namespace, read through our own NOTIFY_SOCKET: when READY=1 goes out, what STATUS= says,
what a reload re-reads. (tests/faults drives the daemon as a subprocess, under faults.)"""

from __future__ import annotations

import grp
import logging
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

import birdproc
from rr_service.app import cli
from rr_service.app.daemon import Daemon
from rr_service.app.notify import Notifier
from rr_service.app.settings import load_settings
from tests import prereq
from tests.etcdproc import free_port, hanging_endpoints, throwaway_etcd
from tests.lab.notify import NotifySocket
from tests.polling import wait_for
from tests.tomlfile import write_settings

REPO = Path(__file__).resolve().parent.parent
BASE = "router id 192.0.2.1;\nprotocol device { }\n"
DEADLINE = 30.0
WATCHDOG_USEC = "200000"  # a ping every 0.1 s: each loop pass shows up as a WATCHDOG=1


def settings_file(folder, *, endpoints, prefix="/calico/bgp/v1", config, socket_path,
                  config6=None, socket6=None, flavour="bird1", binary="/usr/sbin/bird", level="info", metrics=None):
    return write_settings(Path(folder) / "rr.toml", {
        "reflector": {"ip": "192.0.2.10"},
        "etcd": {"endpoints": list(endpoints), "prefix": prefix, "schema": "v1"},
        "bird": {"flavour": flavour, "binary": str(binary), "config": str(config), "socket": str(socket_path),
                 "config6": str(config6 or Path(folder) / "bird6.conf"),
                 "socket6": str(socket6 or Path(folder) / "no-bird6.ctl")},
        "log": {"level": level},
        "safety": {"state_dir": str(Path(folder) / "state")},
        "metrics": {"listen": metrics},
    })


@pytest.fixture
def notify(tmp_path, monkeypatch):
    sock = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def etcd():
    with throwaway_etcd() as server:
        yield server


@pytest.fixture
def prefix(request):
    return f"/t/{request.node.name}/calico/bgp/v1"


def put(etcd, prefix, key, value):
    etcd.ctl("put", f"{prefix}/{key}", value)


def node_data(etcd, prefix, nodes=("a",)):
    put(etcd, prefix, "global/peer_v4/192.0.2.10", '{"ip": "192.0.2.10"}')
    for i, name in enumerate(nodes):
        put(etcd, prefix, f"host/{name}/ip_addr_v4", f"192.0.2.{21 + i}")


@contextmanager
def bird_and_daemon(config_text, endpoints, prefix="/calico/bgp/v1", metrics=None):
    """BIRD running config_text from <dir>/bird.conf, and the daemon configuring that file."""
    birdproc.skip_unless_possible()
    with birdproc.running_bird(config_text) as ns:
        conf = os.path.join(ns.workdir, "bird.conf")
        path = settings_file(ns.workdir, endpoints=endpoints, prefix=prefix, config=conf,
                             socket_path=ns.socket_path, metrics=metrics)
        with daemon_running(path):
            yield ns, Path(conf)


def last_status_before(notify, index):
    return [m for m in lines(notify)[:index] if m.startswith("STATUS=")][-1]


@contextmanager
def daemon_running(path):
    settings = load_settings(path, environ={})
    daemon = Daemon(settings, reload_settings=lambda: load_settings(path, environ={}),
                    notifier=Notifier({"WATCHDOG_USEC": WATCHDOG_USEC}))
    thread = threading.Thread(target=daemon.run, name="daemon-under-test", daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the daemon did not stop"


def lines(notify):
    with notify._lock:
        return [line for _t, line in notify.messages]


def wait_line(notify, pred, what):
    """The index of the first message satisfying pred."""
    return wait_for(lambda: next((i for i, m in enumerate(lines(notify)) if pred(m)), None),
                    DEADLINE, what)


def no_ready_after(notify, index):
    """The loop pass that sent message `index` is over (a later WATCHDOG=1) without READY=1."""
    wait_for(lambda: "WATCHDOG=1" in lines(notify)[index + 1:], DEADLINE, "the next loop pass")
    assert "READY=1" not in lines(notify), lines(notify)


# -- READY=1 -----------------------------------------------------------------------------


@pytest.mark.integration
def test_ready_once_bird_accepted_the_config(etcd, prefix, notify):
    node_data(etcd, prefix)
    with bird_and_daemon(BASE, [etcd.url], prefix) as (ns, conf):
        ready = wait_line(notify, lambda m: m == "READY=1", "READY=1")
        status = last_status_before(notify, ready)
        assert "bird applied" in status and "bird6 not running, config written" in status
        assert "protocol bgp Client_192_0_2_21 " in conf.read_text()


@pytest.mark.integration
def test_no_ready_while_bird_refuses_then_ready_once_it_accepts(etcd, prefix, notify):
    # BIRD runs as nobody and cannot read a candidate we create root:root 0640 in a root
    # folder: a real refusal at `configure`.
    birdproc.skip_unless_possible()
    node_data(etcd, prefix)
    with birdproc.short_tmpdir() as d:
        start = os.path.join(d, "start.conf")
        Path(start).write_text(BASE)
        os.chmod(start, 0o644)
        conf = os.path.join(d, "bird.conf")
        with birdproc.BirdNetns(d) as ns:
            ns.start(start, user="nobody", group="nogroup")
            path = settings_file(d, endpoints=[etcd.url], prefix=prefix, config=conf,
                                 socket_path=ns.socket_path)
            with daemon_running(path):
                refused = wait_line(notify, lambda m: m.startswith("STATUS=") and "rejected by BIRD" in m,
                                    "STATUS= saying BIRD rejected the config")
                no_ready_after(notify, refused)
                assert not os.path.exists(conf)
                # BIRD can read what we write from now on; the next change is accepted.
                os.chown(d, -1, grp.getgrnam("nogroup").gr_gid)
                put(etcd, prefix, "host/b/ip_addr_v4", "192.0.2.22")
                ready = wait_line(notify, lambda m: m == "READY=1", "READY=1 once BIRD accepted a config")
                assert "bird applied" in last_status_before(notify, ready)
                assert "protocol bgp Client_192_0_2_22 " in Path(conf).read_text()


@pytest.mark.integration
def test_no_ready_after_a_render_failure(etcd, prefix, notify, tmp_path, monkeypatch):
    birdproc.skip_unless_possible()
    node_data(etcd, prefix)
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    (templates / "bird.conf.j2").write_text("router id {{ no_such_value }};\n")
    monkeypatch.setenv("CALICO_RR_TEMPLATES", str(templates))
    with bird_and_daemon(BASE, [etcd.url], prefix) as (ns, conf):
        failed = wait_line(notify, lambda m: m.startswith("STATUS=") and "render failed" in m,
                           "STATUS= saying the render failed")
        no_ready_after(notify, failed)
        assert conf.read_text() == BASE


@pytest.mark.integration
def test_ready_when_etcd_is_unreachable_at_start(notify):
    with bird_and_daemon(BASE, [f"http://127.0.0.1:{free_port()}"]) as (ns, conf):
        ready = wait_line(notify, lambda m: m == "READY=1", "READY=1")
        assert "etcd unreachable" in last_status_before(notify, ready)
        assert conf.read_text() == BASE


def restarted_daemon(notify, path, caplog):
    """Stop nothing but the daemon and start it again on the same settings; the STATUS= and
    log lines of the second run up to its READY=1."""
    with notify._lock:
        notify.messages.clear()
    caplog.clear()
    with daemon_running(path):
        ready = wait_line(notify, lambda m: m == "READY=1", "READY=1 of the second run")
        return last_status_before(notify, ready), [r.getMessage() for r in caplog.records]


@pytest.mark.integration
@pytest.mark.parametrize("bird_restarted", [False, True], ids=["bird-kept-running", "bird-restarted-meanwhile"])
def test_a_restart_of_the_daemon_alone_does_not_reload_bird(etcd, prefix, notify, caplog, bird_restarted):
    node_data(etcd, prefix)
    birdproc.skip_unless_possible()
    with birdproc.running_bird(BASE) as ns, caplog.at_level(logging.INFO, logger="calico-rr"):
        conf = os.path.join(ns.workdir, "bird.conf")
        path = settings_file(ns.workdir, endpoints=[etcd.url], prefix=prefix, config=conf, socket_path=ns.socket_path)
        with daemon_running(path):
            wait_line(notify, lambda m: m == "READY=1", "READY=1")
        assert os.path.exists(os.path.join(ns.workdir, "state", "handover.json"))
        if bird_restarted:
            ns.stop()
            ns.start(conf)
        status, logged = restarted_daemon(notify, path, caplog)
        taken_over = "bird runs %s as the previous calico-rr left it (same file, same BIRD process): no reload" % conf
        if bird_restarted:
            assert taken_over not in logged and "bird accepted %s" % conf in logged
            assert "bird applied before this start" not in status
        else:
            assert taken_over in logged and "bird accepted %s" % conf not in logged
            assert "bird applied before this start" in status
        assert "Client_192_0_2_21" in {p.name for p in ns.client().show_protocols()}


@pytest.mark.integration
def test_ready_while_the_drop_guard_holds(etcd, prefix, notify):
    running = BASE + "".join(f"protocol bgp Client_192_0_2_{i} {{ local as 64512; neighbor 192.0.2.{i} as 64512; }}\n"
                             for i in (21, 22, 23))
    put(etcd, prefix, "global/as_num", "64512")  # a data set that lost every node
    with bird_and_daemon(running, [etcd.url], prefix) as (ns, conf):
        ready = wait_line(notify, lambda m: m == "READY=1", "READY=1")
        assert "HELD BACK: the new data would drop 3 of 3" in last_status_before(notify, ready)
        assert conf.read_text() == running


@pytest.mark.integration
def test_invalid_global_as_keeps_the_running_config(etcd, prefix, notify, caplog):
    node_data(etcd, prefix)
    put(etcd, prefix, "global/as_num", "65000;")
    with caplog.at_level(logging.WARNING, logger="calico-rr"), \
            bird_and_daemon(BASE, [etcd.url], prefix) as (ns, conf):
        ready = wait_line(notify, lambda m: m == "READY=1", "READY=1")
        status = last_status_before(notify, ready)
        assert "NOT APPLIED: etcd key global/as_num is invalid (AS number '65000;' is not a number)" in status
        assert conf.read_text() == BASE
        assert {p.name for p in ns.client().show_protocols()} == {"device1"}
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("global/as_num" in e and "BIRD keeps the running ones" in e for e in errors), errors

        put(etcd, prefix, "global/as_num", "65000")  # fixed: applied at once
        applied = wait_line(notify, lambda m: m.startswith("STATUS=") and "bird applied" in m, "the fixed data applied")
        assert "NOT APPLIED" not in lines(notify)[applied]
        assert "local as 65000;" in conf.read_text()


# -- the watchdog while etcd is slow ------------------------------------------------------


@pytest.mark.integration
def test_watchdog_fed_while_every_etcd_endpoint_hangs(notify, tmp_path):
    """Two endpoints that accept TCP and never answer: each costs the full 5 s call timeout.
    The loop is healthy, so WATCHDOG=1 must keep coming during the read (systemd would kill
    a daemon that waits out a slow etcd in silence), not only once the read gave up."""
    with hanging_endpoints(2) as urls:
        path = settings_file(tmp_path, endpoints=urls, config=tmp_path / "bird.conf", socket_path=tmp_path / "no.ctl")
        with daemon_running(path):
            first_status = wait_line(notify, lambda m: m.startswith("STATUS="), "the first STATUS=")
            before = lines(notify)[:first_status]
            assert "etcd unreachable" in lines(notify)[first_status]
            assert before.count("WATCHDOG=1") >= 2, before  # the loop's own, and one mid-read


# -- SIGHUP -------------------------------------------------------------------------------


@pytest.fixture
def root_level():
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


@pytest.mark.integration  # runs the BIRD binaries
def test_reload_applies_log_level_and_asks_bird_its_version_again(tmp_path, root_level):
    bird1 = "/usr/sbin/bird"
    if not os.access(bird1, os.X_OK):
        prereq.missing(f"BIRD 1.6 is not installed ({bird1})")
    link = tmp_path / "bird"
    link.symlink_to(bird1)
    common = dict(endpoints=["http://127.0.0.1:1"], config=tmp_path / "bird.conf",
                  socket_path=tmp_path / "bird.ctl", flavour="auto", binary=link)
    path = settings_file(tmp_path, level="warning", **common)
    logging.getLogger().setLevel(logging.WARNING)
    daemon = Daemon(load_settings(path, environ={}), reload_settings=lambda: load_settings(path, environ={}))
    assert daemon.renderer.flavour == "bird1" and list(daemon.appliers) == ["bird", "bird6"]

    settings_file(tmp_path, level="debug", **common)
    link.unlink()
    link.symlink_to(prereq.bird2_or_missing())  # bird replaced by bird2
    daemon._reload.set()
    daemon._handle_reload()
    assert logging.getLogger().level == logging.DEBUG
    assert daemon.renderer.flavour == "bird2" and list(daemon.appliers) == ["bird"]
    daemon.source.close()


def test_log_level_option_survives_a_reload(tmp_path):
    path = settings_file(tmp_path, endpoints=["http://127.0.0.1:1"], config=tmp_path / "bird.conf",
                         socket_path=tmp_path / "bird.ctl", level="debug")
    args = cli.build_parser().parse_args(["--config", path, "--log-level", "error", "run"])
    assert cli._load(args).log.level == "error"
    args = cli.build_parser().parse_args(["--config", path, "run"])
    assert cli._load(args).log.level == "debug"


# -- metrics ----------------------------------------------------------------------------


def scrape(port: int) -> dict:
    """The endpoint's samples: `name{labels}` -> value."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.mark.integration
def test_metrics_say_what_the_daemon_does(etcd, prefix, notify):
    """[metrics] listen: the daemon's own health, as a scrape sees it, following a change
    and an etcd outage; counters without _created series."""
    port = free_port()
    node_data(etcd, prefix)
    with bird_and_daemon(BASE, [etcd.url], prefix, metrics=f"127.0.0.1:{port}"):
        wait_line(notify, lambda m: m == "READY=1", "READY=1")
        m = wait_for(lambda: (lambda s: s if s.get('calico_rr_sessions{family="ipv4",role="client"}') == 1 else None)(
            scrape(port)), DEADLINE, "one client in the metrics")
        assert m['calico_rr_build_info{datastore="etcd",flavour="bird1",version="0.1.0"}'] == 1
        assert m["calico_rr_datastore_connected"] == 1
        assert m['calico_rr_applies_total{config="bird",result="applied"}'] >= 1
        assert m['calico_rr_applies_total{config="bird6",result="error"}'] >= 1  # no bird6 here
        assert m["calico_rr_last_apply_success_timestamp_seconds"] == 0  # bird6 never got its config
        assert m["calico_rr_apply_duration_seconds_count"] >= 1
        assert m["calico_rr_config_rejected"] == 0 and m["calico_rr_drop_guard_holding"] == 0
        assert m["calico_rr_plan_blocked"] == 0 and m['calico_rr_sessions{family="ipv6",role="client"}'] == 0
        assert not any(name.endswith("_created") for name in m)
        events = m["calico_rr_datastore_events_total"]
        put(etcd, prefix, "host/b/ip_addr_v4", "192.0.2.22")
        m = wait_for(lambda: (lambda s: s if s.get('calico_rr_sessions{family="ipv4",role="client"}') == 2 else None)(
            scrape(port)), DEADLINE, "two clients in the metrics")
        assert m["calico_rr_datastore_events_total"] == events + 1
        put(etcd, prefix, "global/as_num", "65000;")
        wait_for(lambda: scrape(port)["calico_rr_plan_blocked"] == 1, DEADLINE, "plan_blocked 1")
        etcd.ctl("del", f"{prefix}/global/as_num")
        wait_for(lambda: scrape(port)["calico_rr_plan_blocked"] == 0, DEADLINE, "plan_blocked 0 again")


@pytest.mark.integration
def test_metrics_say_the_datastore_is_unreachable(notify, tmp_path):
    port = free_port()
    path = settings_file(tmp_path, endpoints=["http://127.0.0.1:1"], config=tmp_path / "bird.conf",
                         socket_path=tmp_path / "bird.ctl", metrics=f"127.0.0.1:{port}")
    with daemon_running(path):
        wait_line(notify, lambda m: m == "READY=1", "READY=1 (etcd unreachable at start)")
        m = scrape(port)
        assert m["calico_rr_datastore_connected"] == 0
        assert m["calico_rr_datastore_resyncs_total"] == 0 and m["calico_rr_datastore_events_total"] == 0


@pytest.mark.integration
def test_a_metrics_port_in_use_is_a_clear_start_error(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = settings_file(tmp_path, endpoints=["http://127.0.0.1:1"], config=tmp_path / "bird.conf",
                             socket_path=tmp_path / "bird.ctl", metrics=f"127.0.0.1:{port}")
        result = subprocess.run([sys.executable, "-m", "rr_service", "--config", path, "run"], cwd=REPO,
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": ""})
    assert result.returncode == 1
    assert result.stderr.strip() == (f"calico-rr: [metrics] listen = '127.0.0.1:{port}': cannot serve there: "
                                     "Address already in use")


@pytest.mark.integration
def test_a_reload_moves_the_metrics_endpoint_and_keeps_it_when_the_new_port_is_taken(notify, tmp_path, caplog):
    """SIGHUP with a new [metrics] listen: served at the new port, the old port let go; a new port in use is logged and the endpoint stays where it was."""
    import socket

    first, second = free_port(), free_port()
    common = dict(endpoints=["http://127.0.0.1:1"], config=tmp_path / "bird.conf", socket_path=tmp_path / "bird.ctl")
    path = settings_file(tmp_path, metrics=f"127.0.0.1:{first}", **common)
    with daemon_running(path) as daemon:
        wait_line(notify, lambda m: m == "READY=1", "READY=1")
        settings_file(tmp_path, metrics=f"127.0.0.1:{second}", **common)
        daemon._reload.set()
        wait_for(lambda: _answers(second), DEADLINE, f"metrics at port {second}")
        assert scrape(second)["calico_rr_datastore_connected"] == 0
        assert not _answers(first), f"port {first} still served after the move"
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            settings_file(tmp_path, metrics=f"127.0.0.1:{busy}", **common)
            daemon._reload.set()
            wait_for(lambda: any("cannot serve there" in r.getMessage() for r in caplog.records), DEADLINE,
                     "the taken port logged")
        message = next(r.getMessage() for r in caplog.records if "cannot serve there" in r.getMessage())
        assert message == (f"[metrics] listen = '127.0.0.1:{busy}': cannot serve there: Address already in use; "
                           f"the metrics stay at 127.0.0.1:{second}")
        assert _answers(second)


def _answers(port: int) -> bool:
    try:
        scrape(port)
        return True
    except OSError:
        return False
