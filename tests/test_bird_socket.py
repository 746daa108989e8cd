"""BirdClient against a real BIRD 1.6 in a network namespace.

Fakes appear only where real BIRD cannot produce the situation (a hung socket, BIRD 2 output,
garbled bytes); each says so.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager

import pytest

import birdproc
from rr_service.bird.control import (
    BirdClient,
    BirdCommandError,
    BirdReply,
    BirdSocketError,
    ProtocolInfo,
    parse_protocols,
)

CONF = """\
router id 192.0.2.1;
protocol device { }
protocol static st1 { route 10.0.0.0/24 blackhole; }
protocol bgp peer_down { local as 64512; neighbor 192.0.2.99 as 64512; }
"""


@pytest.fixture
def bird():
    birdproc.skip_unless_possible()
    with birdproc.running_bird(CONF) as ns:
        yield ns


# -- real BIRD -----------------------------------------------------------------------


@pytest.mark.integration
def test_command_framing_multiline_reply(bird):
    reply = bird.client().command("show status")
    assert reply.code == 13
    codes = [c for c, _ in reply.lines]
    assert codes[0] == 1000 and codes[-1] == 13
    # continuation lines (" Current server time ...") inherit the previous code
    assert any(c == 1011 and "server time" in t for c, t in reply.lines)
    assert reply.text.startswith("BIRD 1.6")
    assert "Daemon is up and running" in reply.text


@pytest.mark.integration
def test_show_status_and_is_running(bird):
    c = bird.client()
    assert c.is_running()
    assert "Router ID is 192.0.2.1" in c.show_status().text


@pytest.mark.integration
def test_show_protocols_parsed(bird):
    protos = {p.name: p for p in bird.client().show_protocols()}
    assert set(protos) == {"device1", "st1", "peer_down"}
    assert protos["st1"].proto == "Static"
    assert protos["st1"].table == "master"
    assert protos["st1"].state == "up"
    assert protos["peer_down"].proto == "BGP"
    assert protos["peer_down"].state == "start"  # 192.0.2.99 is unreachable: never up
    assert protos["peer_down"].info in ("Active", "Connect", "Idle")
    assert protos["peer_down"].since.count(":") == 2


@pytest.mark.integration
def test_unknown_command_is_a_command_error(bird):
    with pytest.raises(BirdCommandError) as ei:
        bird.client().command("frobnicate")
    assert ei.value.code == 9001


@pytest.mark.integration
def test_configure_success_reply_sequence(bird):
    conf = os.path.join(bird.workdir, "bird.conf")
    with open(conf, "a") as f:
        f.write("protocol static st2 { route 10.1.0.0/24 blackhole; }\n")
    reply = bird.client().configure(conf)
    assert reply.lines[0] == (2, f"Reading configuration from {conf}")
    assert reply.code in (3, 4)  # 0004 when protocols must shut down first
    assert "st2" in {p.name for p in bird.client().show_protocols()}
    # BIRD 1.6 answers 0003 even when nothing changed
    assert bird.client().configure().code == 3


@pytest.mark.integration
def test_configure_check(bird):
    conf = os.path.join(bird.workdir, "bird.conf")
    assert bird.client().configure_check(conf).code == 20


@pytest.mark.integration
def test_configure_broken_file_raises_with_location(bird):
    broken = os.path.join(bird.workdir, "broken.conf")
    with open(broken, "w") as f:
        f.write("router id 192.0.2.1;\nprotocol static s { route 10.0.0.0/24 blackhole }\n")
    with pytest.raises(BirdCommandError) as ei:
        bird.client().configure(broken)
    assert ei.value.code == 8002
    assert ei.value.message.startswith(f"{broken}:2:")
    assert "syntax error" in ei.value.message
    # still running the old config
    assert "st1" in {p.name for p in bird.client().show_protocols()}
    with pytest.raises(BirdCommandError):
        bird.client().configure_check(broken)


@pytest.mark.integration
def test_is_running_false_after_stop(bird):
    bird.stop()
    assert not bird.client().is_running()


# -- real BIRD 3 (trixie's, tools/fetch-bird3) -----------------------------------------

CONF3 = """\
router id 192.0.2.1;
timeformat protocol iso long;
protocol device { }
protocol static st1 { ipv4; route 10.0.0.0/24 blackhole; }
protocol bgp peer_down { local as 64512; neighbor 192.0.2.99 as 64512; ipv4 { import all; export all; }; }
"""


@pytest.fixture
def bird3():
    from tests import prereq

    binary = prereq.bird3_or_missing()
    birdproc.skip_unless_possible(binary)
    with birdproc.running_bird(CONF3, binary=binary) as ns:
        yield ns


@pytest.mark.integration
def test_bird3_speaks_the_same_protocol(bird3):
    """Measured on BIRD 3.1.8: the replies the apply path relies on are BIRD 1.6's and 2's."""
    client = bird3.client()
    status = client.show_status()
    assert status.code == 13 and status.lines[0][0] == 1000 and status.lines[0][1].startswith("BIRD 3."), status
    conf = os.path.join(bird3.workdir, "bird.conf")
    assert client.configure_check(conf).code == 20
    with open(conf, "a") as f:
        f.write("protocol static st2 { ipv4; route 10.1.0.0/24 blackhole; }\n")
    reply = client.configure(conf)
    assert reply.lines[0] == (2, f"Reading configuration from {conf}") and reply.code == 3, reply
    assert client.configure().code == 3  # nothing changed: still 0003, as BIRD 1.6
    rows = {p.name: p for p in client.show_protocols()}
    assert set(rows) == {"device1", "st1", "st2", "peer_down"}, rows
    assert rows["peer_down"].proto == "BGP" and rows["peer_down"].state == "start", rows["peer_down"]
    assert len(rows["st2"].since.split()) == 2 and rows["peer_down"].info == "Active", rows
    broken = os.path.join(bird3.workdir, "broken.conf")
    with open(broken, "w") as f:
        f.write("router id 192.0.2.1;\nprotocol static s { route 10.0.0.0/24 blackhole }\n")
    with pytest.raises(BirdCommandError) as ei:
        client.configure(broken)
    assert ei.value.code == 8002 and ei.value.message.startswith(f"{broken}:2:"), ei.value
    with pytest.raises(BirdCommandError) as ei:
        client.command("show nonsense")
    assert ei.value.code == 9001
    assert "st2" in {p.name for p in client.show_protocols()}  # the broken file changed nothing


# -- no BIRD at all ------------------------------------------------------------------


def test_missing_socket_fails_fast(tmp_path):
    c = BirdClient(str(tmp_path / "nope.ctl"), timeout=10)
    t0 = time.monotonic()
    with pytest.raises(BirdSocketError) as ei:
        c.command("show status")
    assert time.monotonic() - t0 < 1.0
    assert not isinstance(ei.value, BirdCommandError)
    assert "nope.ctl" in str(ei.value)
    assert not c.is_running()


def test_stale_socket_refused(tmp_path):
    path = str(tmp_path / "stale.ctl")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # bound, never listening: what a killed BIRD leaves behind
    with pytest.raises(BirdSocketError):
        BirdClient(path, timeout=5).command("show status")


@pytest.mark.parametrize("path", ['/tmp/a"b.conf', "/tmp/a\nb.conf"])
def test_unsafe_paths_rejected(path):
    with pytest.raises(ValueError):
        BirdClient("/nonexistent").configure(path)
    with pytest.raises(ValueError):
        BirdClient("/nonexistent").configure_check(path)


# -- fakes: situations a real BIRD 1.6 cannot be made to produce -------------------------


@contextmanager
def fake_bird(tmp_path, script: bytes | list | None, hello: bool = True, close: bool = False,
              heard: list | None = None):
    """A unix socket that talks like BIRD: hello, then `script` after the first command.

    script=None never answers the command; a list answers each connection with its next
    item (the last one again once they run out). The commands received go to `heard`. This
    is a fake because a hung or garbling BIRD cannot be produced on demand (SIGSTOP would
    also freeze the accept()).
    """
    scripts = list(script) if isinstance(script, list) else None
    path = str(tmp_path / "fake.ctl")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    stop = threading.Event()
    conns = []

    def serve():
        srv.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            conns.append(conn)
            if hello:
                conn.sendall(b"0001 BIRD 1.6.8 ready.\n")
            answer = script if scripts is None else (scripts.pop(0) if len(scripts) > 1 else scripts[0])
            if answer is not None:
                conn.settimeout(5)
                try:
                    command = conn.recv(4096)
                    if heard is not None:
                        heard.append(command.decode().strip())
                    conn.sendall(answer)
                    if close:
                        conn.close()
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield path
    finally:
        stop.set()
        t.join(5)
        for c in conns:
            c.close()
        srv.close()


def test_timeout_when_no_hello(tmp_path):
    with fake_bird(tmp_path, None, hello=False) as path:
        t0 = time.monotonic()
        with pytest.raises(BirdSocketError, match="timeout"):
            BirdClient(path, timeout=0.3).command("show status")
        assert time.monotonic() - t0 < 2.0


def test_timeout_when_command_never_answered(tmp_path):
    with fake_bird(tmp_path, None) as path:
        t0 = time.monotonic()
        with pytest.raises(BirdSocketError, match="timeout"):
            BirdClient(path, timeout=0.3).configure()
        assert time.monotonic() - t0 < 2.0


def test_timeout_is_one_deadline_not_per_line(tmp_path):
    # a reply that trickles must not extend the deadline forever: the answer never ends
    with fake_bird(tmp_path, b"1000-BIRD\n") as path:
        with pytest.raises(BirdSocketError, match="timeout"):
            BirdClient(path, timeout=0.3).command("show status")


def test_garbled_reply(tmp_path):
    with fake_bird(tmp_path, b"hello there\n") as path:
        with pytest.raises(BirdSocketError, match="garbled"):
            BirdClient(path, timeout=2).command("show status")


def test_connection_closed_mid_reply(tmp_path):
    with fake_bird(tmp_path, b"1000-BIRD 1.6.8\n", close=True) as path:
        with pytest.raises(BirdSocketError, match="closed"):
            BirdClient(path, timeout=5).command("show status")


def test_access_denied_8007_is_command_error(tmp_path):
    # fake: BIRD 1.6 gives 8007 only to a client that sent `restrict` first (birdc -r)
    with fake_bird(tmp_path, b"8007 Access denied\n") as path:
        with pytest.raises(BirdCommandError) as ei:
            BirdClient(path, timeout=2).configure()
    assert ei.value.code == 8007 and ei.value.message == "Access denied"


def test_no_client_protocols_is_no_route_counts(tmp_path):
    # fake, as BIRD 1.6, 2 and 3 answer a pattern no protocol matches (a reflector without clients)
    with fake_bird(tmp_path, b"8003 No protocols match\n") as path:
        assert BirdClient(path, timeout=2).client_routes() == {}


def test_busy_0025_is_not_success_nor_refusal(tmp_path):
    # fake: newer BIRD 2 answers 0025 "Reconfiguration rejected, another config not parsed
    # yet" -- a 0xxx code that means "try again later"
    reply = b"0025 Reconfiguration rejected, another config not parsed yet\n"
    with fake_bird(tmp_path, reply) as path:
        with pytest.raises(BirdSocketError) as ei:
            BirdClient(path, timeout=2).configure()
    assert not isinstance(ei.value, BirdCommandError)
    assert "busy" in str(ei.value)


def test_configure_in_progress_is_waited_out(tmp_path):
    # fake: BIRD answers 0004 and then shows "Reconfiguration in progress" for as long as it
    # shuts removed protocols down; how long cannot be chosen on a real BIRD
    heard = []
    busy = b"1000-BIRD 3.1.8\n0013 Reconfiguration in progress\n"
    with fake_bird(tmp_path, [b"0004 Reconfiguration in progress\n", busy, busy,
                              b"1000-BIRD 3.1.8\n0013 Daemon is up and running\n"], heard=heard) as path:
        client = BirdClient(path, timeout=2)
        reply = client.configure("/etc/bird/bird.conf")
        assert reply.code == 4
        assert client.settle(reply, timeout=5, interval=0.01)
    assert heard == ['configure "/etc/bird/bird.conf"'] + ["show status"] * 3


def test_configure_done_at_once_asks_nothing_more(tmp_path):
    heard = []
    with fake_bird(tmp_path, b"0003 Reconfigured\n", heard=heard) as path:
        client = BirdClient(path, timeout=2)
        assert client.settle(client.configure(), timeout=5)
    assert heard == ["configure"]


def test_settle_gives_up_after_its_timeout(tmp_path):
    # fake: a BIRD that never finishes; the apply must not hang on it
    with fake_bird(tmp_path, [b"0005 Reconfiguration already in progress, queueing new config\n",
                              b"0013 Reconfiguration in progress\n"]) as path:
        client = BirdClient(path, timeout=2)
        reply = client.configure()
        t0 = time.monotonic()
        assert not client.settle(reply, timeout=0.2, interval=0.01)
        assert time.monotonic() - t0 < 2.0


def test_async_lines_are_skipped(tmp_path):
    # fake: `+` spontaneous lines only appear with `echo` on, which we never enable
    script = b"+0002 log line\n0002-Reading configuration from /x\n0003 Reconfigured\n"
    with fake_bird(tmp_path, script) as path:
        assert BirdClient(path, timeout=2).configure().code == 3


# -- parsing of `show protocols` text that BIRD 1.6 here does not print -------------------


def _reply(*lines):
    return BirdReply(0, tuple(lines))


def test_parse_protocols_bird2_columns_and_long_names():
    rows = parse_protocols(_reply(
        (2002, "Name       Proto      Table      State  Since         Info"),
        (1002, "device1    Device     ---        up     09:20:11.123  "),
        (1002, "a_very_long_protocol_name BGP        ---        up     2026-11-24    Established   "),
        (1002, "iso        BGP        master4    start  2026-11-25 09:20:11  Active        Socket: x"),
        (0, ""),
    ))
    assert rows == [
        ProtocolInfo("device1", "Device", "---", "up", "09:20:11.123", ""),
        ProtocolInfo("a_very_long_protocol_name", "BGP", "---", "up", "2026-11-24", "Established"),
        ProtocolInfo("iso", "BGP", "master4", "start", "2026-11-25 09:20:11", "Active        Socket: x"),
    ]


@pytest.mark.integration
def test_bird6_same_protocol():
    birdproc.skip_unless_possible(birdproc.BIRD6)
    conf6 = ("router id 192.0.2.1;\nprotocol device { }\n"
             "protocol static st6 { route 2001:db8::/48 unreachable; }\n"
             "protocol bgp peer6 { local as 64512; neighbor 2001:db8::99 as 64512; }\n")
    with birdproc.running_bird(conf6, binary=birdproc.BIRD6) as ns:
        c = ns.client()
        assert "BIRD 1.6" in c.show_status().text
        protos = {p.name: p for p in c.show_protocols()}
        assert protos["st6"].state == "up" and protos["peer6"].proto == "BGP"
        assert c.configure().code in (3, 4)


def test_route_counts_of_clients_as_bird_1_6_and_2_print_them():
    """`show protocols all`, as captured from BIRD 1.6.8 and 2.0.12 with a client announcing 7
    routes through a filter and `import limit 3 action block` (2 filtered, 2 ignored)."""
    from rr_service.bird.control import BirdReply, RouteCounts, parse_route_counts

    bird1 = [(2002, "name     proto    table    state  since       info"),
             (1002, "Client_192_0_2_21 BGP      master   up     2026-12-05 01:17:35  Established   "),
             (1006, "  Description:    role=client node=a"), (1006, "  Input filter:   calico_client_import"),
             (1006, "  Import limit:   3 [HIT]"), (1006, "    Action:       block"),
             (1006, "  Routes:         3 imported, 0 exported, 3 preferred"),
             (1006, "  Route change stats:     received   rejected   filtered    ignored   accepted"),
             (1006, "    Import updates:              7          0          2          2          3"),
             (1006, "    Import withdraws:            0          0        ---          2          0"),
             (1002, "Client_192_0_2_22 BGP      master   start  2026-12-05 01:17:35  Connect"),
             (1006, "  Import limit:   3"), (1006, "  Routes:         0 imported, 0 exported, 0 preferred"),
             (0, "")]
    assert parse_route_counts(BirdReply(0, tuple(bird1))) == {
        "Client_192_0_2_21": RouteCounts(3, 2, True), "Client_192_0_2_22": RouteCounts(0, 0, False)}
    bird2 = [(1002, "Client_192_0_2_21 BGP        ---        up     2026-12-05 01:20:00  Established"),
             (1006, "  BGP state:          Established"), (1006, "  Channel ipv4"),
             (1006, "    Input filter:   calico_client_import_v4"), (1006, "    Import limit:   3 [HIT]"),
             (1006, "    Routes:         3 imported, 0 exported, 3 preferred"),
             (1006, "    Route change stats:     received   rejected   filtered    ignored   accepted"),
             (1006, "      Import updates:              7          0          2          2          3"),
             (0, "")]
    assert parse_route_counts(BirdReply(0, tuple(bird2))) == {"Client_192_0_2_21": RouteCounts(3, 2, True)}
