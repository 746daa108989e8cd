"""Waiting for a state with a deadline: the tests' one polling loop (never a fixed sleep)."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll predicate() until it returns something truthy and return that; TimeoutError after
    `timeout` seconds, naming `what` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
