"""The prefix length of one of this host's addresses, for `register` (shell: runs `ip`)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Optional


def prefix_length(address: str) -> Optional[int]:
    """The prefix length this host has `address` with, or None if it is not found here."""
    wanted = ipaddress.ip_address(address)
    try:
        out = subprocess.run(["ip", "-j", "address", "show"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        links = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    for link in links if isinstance(links, list) else []:
        for info in link.get("addr_info", []) if isinstance(link, dict) else []:
            try:
                if ipaddress.ip_address(info.get("local", "")) == wanted:
                    return int(info["prefixlen"])
            except (ValueError, KeyError, TypeError):
                continue
    return None
