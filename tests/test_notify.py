"""sd_notify messages, read from our own AF_UNIX datagram socket as systemd would."""

import os
import socket

import pytest

from rr_service.app.notify import Notifier, watchdog_interval


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def receive_all(sock):
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    return messages


def test_ready_status_watchdog_stopping(notify_socket):
    now = [100.0]
    notifier = Notifier({"WATCHDOG_USEC": "2000000"}, clock=lambda: now[0])
    assert notifier.watchdog_every == 1.0
    notifier.status("etcd ok\n 3 clients")
    notifier.status("etcd ok 3 clients")  # unchanged: not re-sent
    notifier.ready()
    notifier.ready()  # once only
    notifier.watchdog()
    now[0] += 0.5
    notifier.watchdog()  # too soon
    now[0] += 0.6
    notifier.watchdog()
    notifier.stopping()
    assert receive_all(notify_socket) == [
        "STATUS=etcd ok 3 clients",
        "READY=1",
        "WATCHDOG=1",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_reloading_then_ready_again(notify_socket):
    notifier = Notifier({})
    notifier.ready()
    notifier.reloading()
    notifier.ready()
    messages = receive_all(notify_socket)
    assert messages[0] == "READY=1"
    assert messages[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert messages[2] == "READY=1"


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "nonsense"}, None),
    ],
)
def test_watchdog_interval(environ, expected):
    assert watchdog_interval(environ) == expected


def test_without_notify_socket_nothing_breaks(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier({})
    notifier.ready()
    notifier.status("x")
    notifier.stopping()
