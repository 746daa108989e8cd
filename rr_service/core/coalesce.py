"""When to reload BIRD at once and when to gather a burst of changes first.

A single change (a node added, a peer removed) is applied the moment its watch event
arrives. A burst (a cluster scaling up, a bulk import, a restore) would otherwise cost a
BIRD reload for every few keys; while one is under way the daemon keeps gathering changes
until they pause for `settle` seconds, or for at most `max_delay` seconds, then applies
them in one reload. A burst is "more than BURST_KEYS keys changed within the last
BURST_WINDOW seconds": one node's registration writes a handful of keys, far below it.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Optional

BURST_KEYS = 100
BURST_WINDOW = 1.0


class BurstDetector:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 keys: int = BURST_KEYS, window: float = BURST_WINDOW):
        self._clock = clock
        self._keys = keys
        self._window = window
        self._recent: deque[tuple[float, int]] = deque()  # (when, how many keys changed)
        self._count = 0

    def note(self, changed_keys: int, now: Optional[float] = None) -> bool:
        """Record a batch of changed keys (at `now`, else the clock's time); True while a
        burst is under way."""
        now = self._clock() if now is None else now
        if changed_keys:
            self._recent.append((now, changed_keys))
            self._count += changed_keys
        while self._recent and now - self._recent[0][0] > self._window:
            self._count -= self._recent.popleft()[1]
        return self._count > self._keys
