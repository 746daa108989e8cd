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
# BIRD 3 is trixie's, linked against trixie's glibc: tools/fetch-bird3 debootstraps a minimal
# trixie tree beside it and writes this wrapper, which runs that tree's bird with its libraries.
BIRD3 = REPO / ".cache" / "bird3" / "bird"
# trixie's prometheus-bird-exporter 1.4.2, from the same tree (a static binary)
BIRD_EXPORTER_142 = REPO / ".cache" / "bird3-trixie" / "usr" / "bin" / "prometheus-bird-exporter"


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


def _fetched(path: Path, tool: str, timeout: float) -> Optional[str]:
    if not path.exists():
        try:
            subprocess.run([str(REPO / "tools" / tool)], capture_output=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
    return str(path) if path.exists() else None


def bird2_binary() -> Optional[str]:
    """The unpacked BIRD 2 (unpacked now by tools/fetch-bird2 if need be), or None."""
    return _fetched(BIRD2, "fetch-bird2", 300)


def bird2_or_missing() -> str:
    return bird2_binary() or missing("BIRD 2 could not be unpacked (tools/fetch-bird2)")


def bird3_binary() -> Optional[str]:
    """Trixie's BIRD 3 (its tree debootstrapped now by tools/fetch-bird3 if need be: root,
    about 30 s and 60 MB), or None."""
    return _fetched(BIRD3, "fetch-bird3", 900)


def bird3_or_missing() -> str:
    return bird3_binary() or missing("BIRD 3 could not be fetched (tools/fetch-bird3: needs root)")


def bird_exporter_142_or_missing() -> str:
    """trixie's prometheus-bird-exporter 1.4.2 (tools/fetch-bird3 fetches it with BIRD 3)."""
    return _fetched(BIRD_EXPORTER_142, "fetch-bird3", 900) or missing(
        "prometheus-bird-exporter 1.4.2 could not be fetched (tools/fetch-bird3: needs root)")


def bird_binary_or_missing(flavour: str) -> Optional[str]:
    """The BIRD binary a reflector of this flavour runs: None for Debian's BIRD 1.6 pair."""
    return {"bird2": bird2_or_missing, "bird3": bird3_or_missing}.get(flavour, lambda: None)()


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
