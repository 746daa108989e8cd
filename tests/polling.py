"""Waiting for a state with a deadline: the tests' one polling loop (never a fixed sleep)."""

from __future__ import annotations

import time
from typing import Callable, Optional


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition",
             interval: float = 0.05, describe: Optional[Callable[[], str]] = None, retry_on: tuple = ()):
    """Poll predicate() until it returns something truthy and return that; TimeoutError after
    `timeout` seconds, naming `what` was awaited, with `describe()` (the state seen last).
    Exceptions of the `retry_on` types count as "not yet"; the last one is reported."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            result = predicate()
            if result:
                return result
            last_exc = None
        except retry_on as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = ""
            if describe is not None:
                try:
                    detail = "\nlast state:\n" + describe()
                except Exception as exc:  # diagnostics only
                    detail = f"\n(could not describe state: {exc})"
            if last_exc is not None:
                detail += f"\nlast error: {last_exc!r}"
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


def becomes_true(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Whether predicate() turns truthy within `timeout` seconds: for an assert on a state that
    follows the one a test just waited for by a few milliseconds."""
    try:
        wait_for(predicate, timeout, interval=interval)
    except TimeoutError:
        return False
    return True
