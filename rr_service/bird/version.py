"""Which BIRD is installed: asks the binary itself (`bird --version`)."""

from __future__ import annotations

import re
import subprocess

_VERSION_RE = re.compile(r"BIRD version ([0-9]+)\.([0-9]+)(?:\.([0-9]+))?")


class BirdVersionError(Exception):
    """The BIRD binary could not be run or did not say its version."""


def bird_version(binary: str) -> str:
    """Asked anew on every call (a few ms, at start and on SIGHUP only): after bird is replaced
    by bird2, a reload must see the new binary, not a remembered answer."""
    try:
        result = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BirdVersionError(f"cannot run {binary} --version: {exc}") from None
    # BIRD 1.6 prints its version on stderr, BIRD 2 on stdout or stderr depending on release.
    match = _VERSION_RE.search(result.stdout + result.stderr)
    if not match:
        raise BirdVersionError(f"{binary} --version did not print a BIRD version")
    return match.group(0).split()[-1]


def flavour_of(version: str) -> str:
    """BIRD 1.x has one daemon per family (bird1); 2.x one daemon with channels (bird2); 3.x
    (and later) the same, multi-threaded (bird3)."""
    major = int(version.split(".")[0])
    return "bird1" if major <= 1 else "bird2" if major == 2 else "bird3"
