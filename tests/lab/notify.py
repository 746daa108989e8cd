"""Our own NOTIFY_SOCKET: what systemd would read from the daemon (READY=1, STATUS=, ...).

An AF_UNIX datagram socket at a path (paths work across network namespaces), drained by a
thread the way systemd drains its own: a socket nobody reads fills up, and then sd_notify
blocks the daemon. Used by the fault, model-based and security tests and by the bench.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

from .netns import wait_for


class NotifySocket:
    def __init__(self, path: Path):
        self.path = str(path)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)  # a daemon running as another user must be able to send
        self.sock.settimeout(0.2)
        self.messages: List[tuple] = []  # (time.monotonic(), one "KEY=value" line)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="notify-socket")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._lock:
                for line in data.decode(errors="replace").splitlines():
                    self.messages.append((now, line))

    def first(self, line: str) -> Optional[float]:
        """When `line` (e.g. READY=1) first arrived, or None."""
        with self._lock:
            return next((t for t, m in self.messages if m == line), None)

    def statuses(self, since: float = float("-inf")) -> List[str]:
        with self._lock:
            return [m[len("STATUS="):] for t, m in self.messages if t >= since and m.startswith("STATUS=")]

    def status(self) -> str:
        found = self.statuses()
        return found[-1] if found else ""

    def wait_status(self, pred: Callable[[str], bool], timeout: float = 60.0,
                    what: str = "a STATUS=", since: float = float("-inf")) -> str:
        """Wait until a STATUS= sent after `since` satisfies pred; returns it."""
        def check():
            for text in reversed(self.statuses(since)):
                if pred(text):
                    return text
            return None
        return wait_for(check, timeout, interval=0.05, what=what,
                        describe=lambda: "\n".join(self.statuses()[-8:]))

    def close(self) -> None:
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._thread.join(timeout=2)
        try:
            os.unlink(self.path)
        except OSError:
            pass
