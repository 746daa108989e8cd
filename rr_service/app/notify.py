"""systemd's notify protocol: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

A thin wrapper over `sdnotify`, which silently does nothing without NOTIFY_SOCKET, so the
daemon runs the same way under systemd, in a terminal and in tests.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Mapping, Optional

import sdnotify

log = logging.getLogger(__name__)


def watchdog_interval(environ: Mapping[str, str]) -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None without a watchdog."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # the watchdog is meant for another process
    try:
        return max(int(usec) / 2_000_000, 0.05)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)
        return None


class Notifier:
    def __init__(
        self,
        environ: Optional[Mapping[str, str]] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        environ = os.environ if environ is None else environ
        self._notifier = sdnotify.SystemdNotifier()
        self._clock = clock
        self.watchdog_every = watchdog_interval(environ)
        self._last_ping = float("-inf")
        self._last_status: Optional[str] = None
        self.is_ready = False

    def _send(self, text: str) -> None:
        self._notifier.notify(text)

    def ready(self) -> None:
        if not self.is_ready:
            self.is_ready = True
            self._send("READY=1")

    def status(self, text: str) -> None:
        text = " ".join(text.split())  # one line: systemctl shows STATUS= verbatim
        if text != self._last_status:
            self._last_status = text
            self._send(f"STATUS={text}")

    def watchdog(self) -> None:
        if self.watchdog_every is None:
            return
        now = self._clock()
        if now - self._last_ping >= self.watchdog_every:
            self._last_ping = now
            self._send("WATCHDOG=1")

    def reloading(self) -> None:
        # systemd 252 has no Type=notify-reload, but honours RELOADING=1 ... READY=1 so
        # `systemctl reload` waits until the new settings are in effect.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")
        self.is_ready = False

    def stopping(self) -> None:
        self._send("STOPPING=1")
