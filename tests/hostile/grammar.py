"""What a rendered config may contain, and BIRD's own parser on many configs at once.

`assert_only_allowed_lines(text, flavour)` extends tests/test_render.py's grammar of BIRD 1.6
lines with the lines of the BIRD 2 template: any other line is an injection or a bug.
`BirdChecker` runs `bird -p -c FILE` on many configs in a small thread pool, each distinct
text once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Optional

from tests.test_render import ALLOWED_LINES, COMMENT_BODY

REPO = Path(__file__).resolve().parents[2]
BIRD1 = {"bird": shutil.which("bird") or "/usr/sbin/bird", "bird6": shutil.which("bird6") or "/usr/sbin/bird6"}
BIRD2 = REPO / ".cache" / "bird2" / "usr" / "sbin" / "bird"

_ADDR = r"[0-9a-fA-F.:]+"
ALLOWED_LINES_BIRD2 = ALLOWED_LINES + [re.compile(p) for p in (
    r"template bgp bgp_template(_any_source)?_v[46] \{",
    r"protocol bgp (Mesh|Client|Peer)_[0-9a-f_]+(_port_[0-9]+)? from bgp_template(_any_source)?_v[46] \{",
    r"  ipv[46] \{",
    r"    import all;",
    r"    export all;",
    r"  \};",
    r"  ipv[46] \{ next hop keep; \};",
)]
COMMENT_BODY_BIRD2 = re.compile(r"# IPv[46]: [A-Za-z ,:();/.-]+")
PROTOCOL_RE = re.compile(r"protocol bgp ([A-Za-z0-9_]+) from ")
SYMBOL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def assert_only_allowed_lines(text: str, flavour: str = "bird1") -> None:
    allowed = ALLOWED_LINES if flavour == "bird1" else ALLOWED_LINES_BIRD2
    assert text.endswith("\n"), "a config ends with a newline"
    # split on "\n" only: a "\r", "\x0b", "\u2028" ... inside a line fails the grammar below
    for line in text[:-1].split("\n"):
        assert any(p.fullmatch(line) for p in allowed), f"unexpected line {line!r}"
        if line.startswith("#"):
            assert COMMENT_BODY.fullmatch(line) or (flavour == "bird2" and COMMENT_BODY_BIRD2.fullmatch(line)), \
                f"unexpected comment {line!r}"
    assert text.isascii(), "a rendered config is ASCII"


def session_blocks(text: str) -> dict[str, str]:
    """Each session's text by protocol name: its comment line, `protocol bgp` ... `}`."""
    blocks: dict[str, str] = {}
    lines = text.split("\n")
    for index, line in enumerate(lines):
        match = PROTOCOL_RE.match(line)
        if not match:
            continue
        end = lines.index("}", index)
        start = index - 1 if index and lines[index - 1].startswith("# ") else index
        name = match.group(1)
        assert name not in blocks, f"protocol {name} twice in one config"
        blocks[name] = "\n".join(lines[start:end + 1])
    return blocks


def bird2_binary() -> Optional[str]:
    """BIRD 2 unpacked by tools/fetch-bird2 (tests/test_bird2.py fetches it), or None."""
    if BIRD2.exists():
        return str(BIRD2)
    try:
        subprocess.run([str(REPO / "tools" / "fetch-bird2")], capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return str(BIRD2) if BIRD2.exists() else None


def bird1_available() -> bool:
    return all(os.access(path, os.X_OK) for path in BIRD1.values())


class BirdChecker:
    """`bird -p -c FILE` over many configs: each distinct (binary, text) once, `workers` at a time."""

    def __init__(self, workers: int = 2):
        self.workers = workers
        self._done: dict = {}  # (binary, sha256) -> error text or ""
        self._tmp = tempfile.TemporaryDirectory(prefix="rr-birdcheck-")
        self.runs = 0

    def close(self) -> None:
        self._tmp.cleanup()

    def _one(self, binary: str, text: str, digest: str) -> str:
        path = Path(self._tmp.name) / f"{digest}-{os.path.basename(binary)}{len(binary)}.conf"
        path.write_text(text)
        result = subprocess.run([binary, "-p", "-c", str(path)], capture_output=True, text=True, timeout=60)
        path.unlink()
        return "" if result.returncode == 0 else (result.stderr or result.stdout).strip() or f"exit {result.returncode}"

    def check(self, jobs: Iterable[tuple[str, str]]) -> dict:
        """jobs: (binary, text). Returns {(binary, text): error} for the configs BIRD refused."""
        todo: dict = {}
        texts: dict = {}
        for binary, text in jobs:
            digest = hashlib.sha256(text.encode()).hexdigest()
            texts[(binary, digest)] = text
            if (binary, digest) not in self._done:
                todo[(binary, digest)] = text
        if todo:
            with ThreadPoolExecutor(self.workers) as pool:
                results = pool.map(lambda item: self._one(item[0][0], item[1], item[0][1]), todo.items())
                for key, error in zip(todo, results):
                    self._done[key] = error
            self.runs += len(todo)
        return {(binary, texts[(binary, digest)]): self._done[(binary, digest)]
                for (binary, digest) in texts if self._done[(binary, digest)]}
