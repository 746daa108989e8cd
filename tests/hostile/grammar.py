"""What a rendered config may contain, and BIRD's own parser on many configs at once.

`assert_only_allowed_lines(text, flavour)`: the tests' one grammar of the lines a rendered
config may contain (BIRD 1.6, and BIRD 2's on top): any other line is an injection or a bug.
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
from typing import Iterable

from tests.prereq import bird2_binary  # noqa: F401  (the corpus and property tests use it from here)

BIRD1 = {"bird": shutil.which("bird") or "/usr/sbin/bird", "bird6": shutil.which("bird6") or "/usr/sbin/bird6"}

# Every line a rendered BIRD 1.6 config may contain. Anything else is an injection or a bug.
_ADDR = r"[0-9a-fA-F.:]+"
ALLOWED_LINES = [re.compile(p) for p in (
    r"",
    r"# .*",  # comments: generated header, role and validated node names
    rf"router id {_ADDR};",
    r"timeformat protocol iso long;",
    r"protocol device \{",
    r"  scan time 2;",
    r"template bgp bgp_template \{",
    r"  debug off;",
    r'  description "Connection to BGP peer";',
    r"  multihop;",
    r"  import all;",
    r"  export all;",
    rf"  source address {_ADDR};",
    r"  graceful restart;",
    r"template bgp bgp_template_any_source \{",  # Calico v3: peers with sourceAddress: None
    r"protocol bgp (Mesh|Client|Peer)_[0-9a-f_]+(_port_[0-9]+)? from bgp_(client_)?template(_any_source)? \{",
    r"  local as [0-9]+;",
    r'  description "role=(mesh|client|peer)( node=[A-Za-z0-9_.-]+)?";',
    rf"  neighbor {_ADDR}( port [0-9]+)? as [0-9]+;",
    r"  rr client;",
    rf"  rr cluster id {_ADDR};",
    r"  next hop keep;",
    r"  passive on;",
    r"  graceful restart time [0-9]+;",
    r"\}",
    # [filters]: what a client may announce (addresses and lengths only), its limit
    r"filter calico_client_import(_v[46])? \{",
    r"  if net.len = 0 then reject;",
    rf"  if net ~ \[ {_ADDR}/[0-9]+\+(, {_ADDR}/[0-9]+\+)* \] then accept;",
    r"  accept;",
    r"  reject;",
    r"template bgp bgp_client_template(_any_source)? from bgp_template(_any_source)? \{",
    r"  import filter calico_client_import;",
    r"  import limit [0-9]+ action block;",
)]
COMMENT_BODY = re.compile(r"# (?:(mesh|client|peer): [A-Za-z0-9_., -]+|[A-Za-z ,:();/.\[\]=-]+)")
ALLOWED_LINES_BIRD2 = ALLOWED_LINES + [re.compile(p) for p in (
    r"template bgp bgp_template(_any_source)?_v[46] \{",
    r"protocol bgp (Mesh|Client|Peer)_[0-9a-f_]+(_port_[0-9]+)? from bgp_(client_)?template(_any_source)?_v[46] \{",
    r"template bgp bgp_client_template(_any_source)?_v([46]) from bgp_template(_any_source)?_v\2 \{",
    r"  ipv[46] \{",
    r"    import all;",
    r"    export all;",
    r"  \};",
    r"  ipv[46] \{ next hop keep; \};",
    r"  ipv([46]) \{ import filter calico_client_import_v\1;( import limit [0-9]+ action block;)? \};",
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
            assert COMMENT_BODY.fullmatch(line) or (flavour != "bird1" and COMMENT_BODY_BIRD2.fullmatch(line)), \
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


def bird1_available() -> bool:
    return all(os.access(path, os.X_OK) for path in BIRD1.values())


class BirdChecker:
    """`bird -p -c FILE` over many configs, in a pool of `workers` threads: each distinct
    (binary, text) once. submit() returns at once (the check runs while the caller goes on
    rendering), wait() collects what BIRD refused; check() does both for a list."""

    def __init__(self, workers: int = 2):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="bird-p")
        self._done: dict = {}  # (binary, sha256) -> error text or ""
        self._pending: dict = {}  # (binary, sha256) -> (future, origin of the first submission)
        self._refused: dict = {}  # (binary, sha256) -> (error, origin), until wait() hands it out
        self._tmp = tempfile.TemporaryDirectory(prefix="rr-birdcheck-")
        self.submitted = 0  # configs handed in, repeats included
        self.runs = 0  # bird -p processes started: the distinct configs

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._tmp.cleanup()

    def _one(self, binary: str, text: str, digest: str) -> str:
        path = Path(self._tmp.name) / f"{digest}-{os.path.basename(binary)}{len(binary)}.conf"
        path.write_text(text)
        result = subprocess.run([binary, "-p", "-c", str(path)], capture_output=True, text=True, timeout=60)
        path.unlink()
        return "" if result.returncode == 0 else (result.stderr or result.stdout).strip() or f"exit {result.returncode}"

    def submit(self, binary: str, text: str, origin=None) -> None:
        """Have BIRD parse text, unless this text was parsed by this binary already; origin
        (anything) comes back with a refusal to say what rendered the text."""
        self.submitted += 1
        key = (binary, hashlib.sha256(text.encode()).hexdigest())
        if key in self._done or key in self._pending:
            return
        self._pending[key] = (self._pool.submit(self._one, binary, text, key[1]), origin)
        self.runs += 1

    def wait(self) -> dict:
        """Wait for every submitted check; {(binary, sha256): (error, origin)} of the configs
        BIRD refused since the last wait()."""
        for key, (future, origin) in list(self._pending.items()):
            error = future.result()
            self._done[key] = error
            if error:
                self._refused[key] = (error, origin)
            del self._pending[key]
        refused, self._refused = self._refused, {}
        return refused

    def check(self, jobs: Iterable[tuple[str, str]]) -> dict:
        """jobs: (binary, text). Returns {(binary, text): error} for the configs BIRD refused."""
        jobs = [(binary, text, hashlib.sha256(text.encode()).hexdigest()) for binary, text in jobs]
        for binary, text, _digest in jobs:
            self.submit(binary, text)
        self.wait()
        return {(binary, text): self._done[(binary, digest)] for binary, text, digest in jobs
                if self._done[(binary, digest)]}
