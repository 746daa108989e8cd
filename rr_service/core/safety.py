"""The drop guard: hold back a config that would drop most BGP sessions at once. Pure.

etcd can answer, and answer wrongly: a wiped data set, a wrong prefix, a restore gone wrong.
Rendering that faithfully would tear down every session of the cluster; the guard holds such
a render until it has stood for a while (etcd keeps saying so) or an operator accepts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional

_PROTOCOL_RE = re.compile(r"^protocol bgp ([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


def session_names(texts: Iterable[str]) -> frozenset[str]:
    """The BGP protocol names in BIRD config texts (ours: one `protocol bgp NAME` per line)."""
    return frozenset(name for text in texts for name in _PROTOCOL_RE.findall(text))


@dataclass(frozen=True)
class Verdict:
    apply: bool
    dropped: int = 0
    running: int = 0
    held_for: float = 0.0
    reason: Optional[str] = None  # why it is held, or why a hold ended


class DropGuard:
    def __init__(self, max_share: float, hold_seconds: float):
        self.max_share = max_share
        self.hold_seconds = hold_seconds
        self.held_since: Optional[float] = None

    def check(self, running: frozenset[str], new: frozenset[str], now: float, accepted: bool = False) -> Verdict:
        dropped = len(running - new)
        # One session is never held: removing a node takes its session down at once, also in
        # a cluster so small that one session is more than max_share of them. A wiped data
        # set drops many at once.
        if dropped <= 1 or dropped / len(running) <= self.max_share:
            ended = "the data recovered" if self.held_since is not None else None
            self.held_since = None
            return Verdict(True, dropped, len(running), reason=ended)
        if self.held_since is None:
            # The clock starts at the first alarming render and is not reset by later
            # changes: a trickle of writes must not hold a real removal forever.
            self.held_since = now
        held_for = now - self.held_since
        if accepted:
            self.held_since = None
            return Verdict(True, dropped, len(running), held_for, "accepted by the operator")
        if held_for >= self.hold_seconds:
            self.held_since = None
            return Verdict(True, dropped, len(running), held_for, f"held for {held_for:.0f} s, etcd still says so")
        share = dropped / len(running)
        return Verdict(
            False,
            dropped,
            len(running),
            held_for,
            f"the new data would drop {dropped} of {len(running)} BGP sessions ({share:.0%} > "
            f"{self.max_share:.0%}); held for up to {self.hold_seconds:.0f} s, `calico-rr accept` applies it now",
        )
