"""A missing prerequisite: a skip on a developer's machine, a failure under `make test`.

`make test` installs everything the suite needs and sets RR_REQUIRE_ALL=1. A test that
cannot run there (BIRD 2 not unpacked, no etcd, not root) must fail: a skip would let CI go
green with that part unproven. Every skip for a missing tool, package or privilege goes
through `missing()`; skips that are part of a test's meaning (a check that only makes sense
as non-root) stay plain pytest.skip.
"""

from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path
from typing import NoReturn, Optional

import pytest

REQUIRE_ALL = "RR_REQUIRE_ALL"
REPO = Path(__file__).resolve().parent.parent
# BIRD 2 conflicts with Debian's BIRD 1.6 package: tools/fetch-bird2 unpacks it here.
BIRD2 = REPO / ".cache" / "bird2" / "usr" / "sbin" / "bird"


def required() -> bool:
    """True when every prerequisite must be there (RR_REQUIRE_ALL set, and not to 0)."""
    return os.environ.get(REQUIRE_ALL, "") not in ("", "0")


def missing(reason: str) -> NoReturn:
    """Skip (or, with RR_REQUIRE_ALL=1, fail) because reason; also at module level."""
    if required():
        pytest.fail(f"prerequisite missing and {REQUIRE_ALL}=1: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need(reason: Optional[str]) -> None:
    """missing(reason) when there is a reason: for helpers that answer "why not, or None"."""
    if reason:
        missing(reason)


def bird2_binary() -> Optional[str]:
    """The unpacked BIRD 2 (unpacked now by tools/fetch-bird2 if need be), or None."""
    if not BIRD2.exists():
        try:
            subprocess.run([str(REPO / "tools" / "fetch-bird2")], capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return None
    return str(BIRD2) if BIRD2.exists() else None


def bird2_or_missing() -> str:
    return bird2_binary() or missing("BIRD 2 could not be unpacked (tools/fetch-bird2)")


def import_or_missing(module: str, reason: str):
    """pytest.importorskip, under the same rule."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(reason)


def partly(available: bool, reason: str) -> None:
    """A test that still proves something without this part (one BIRD of two): it goes on
    here, but fails under RR_REQUIRE_ALL=1."""
    if not available and required():
        missing(reason)
