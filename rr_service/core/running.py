"""Who holds each neighbour in the configs BIRD runs: the record that a node's running session
keeps its address when another node claims it too. Pure.

The daemon keeps that record in its planner while it runs; this reads it back from the config
files it wrote (each session's `description "role=... node=..."`), so that a restarted
daemon, `calico-rr render` and `calico-rr status` give an address to the same node as the
daemon that wrote them, not to whichever claimant the data alone would pick.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

# A session block as core/render writes it: the description comes before the neighbour.
_SESSION_RE = re.compile(
    r'^protocol bgp \w+ from \w+ \{\n'
    r'  description "role=\w+ node=(?P<node>[A-Za-z0-9_.-]+)";\n'
    r'(?:  [^\n]*\n)*?'
    r'  neighbor (?P<address>[0-9A-Fa-f:.]+)(?: port (?P<port>\d+))? as \d+;\n',
    re.M)

Claims = dict  # family -> {(int(address), port or 0): node name}


def running_claims(configs: Iterable[str]) -> Claims:
    """The node behind each neighbour in these config texts; sessions without a node (a
    router given by its address) are not claims."""
    claims: Claims = {4: {}, 6: {}}
    for text in configs:
        for match in _SESSION_RE.finditer(text):
            try:
                address = ipaddress.ip_address(match["address"])
            except ValueError:  # not a file we wrote: nothing to learn from it
                continue
            claims[address.version][(int(address), int(match["port"] or 0))] = match["node"]
    return claims


def read_claims(paths: Iterable[str]) -> Claims:
    """running_claims() of the config files there are (a missing or unreadable one holds none)."""
    texts = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts.append(handle.read())
        except OSError:
            continue
    return running_claims(texts)
