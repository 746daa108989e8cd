"""The checks of single setting values: each takes the (type-checked) value and returns it
normalised, or raises ValueError with a message that does not start with the setting's name
(settings.py adds it). Checks of secret settings never put the value in their message."""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any, Callable, List, Tuple

from rr_service.sources.etcd.config import parse_endpoint

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
def safe_repr(value: Any, limit: int = 80) -> str:
    """repr() that cannot flood or mess up a terminal (repr escapes non-printables)."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def has_control(value: str) -> bool:
    return not value.isprintable() or _CONTROL_RE.search(value) is not None


def ipv4(value: str) -> str:
    if value == "":
        return ""  # unset; load_settings(require_ip=True) reports it
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        if ":" in value:
            try:
                ipaddress.IPv6Address(value.split("%")[0])
            except ValueError:
                pass
            else:
                raise ValueError(f"{safe_repr(value)} is an IPv6 address: IPv6 goes in [reflector] ip6 "
                                 "(environment variable IP6)") from None
        raise ValueError(f"{safe_repr(value)} is not an IPv4 address") from None
    if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"{safe_repr(value)} cannot be used as this host's address")
    return str(addr)


def ipv6(value: str) -> str:
    if value == "":
        return ""
    if "%" in value:
        raise ValueError(f"{safe_repr(value)}: scoped (%zone) addresses are not supported")
    try:
        addr = ipaddress.IPv6Address(value)
    except ValueError:
        raise ValueError(f"{safe_repr(value)} is not an IPv6 address") from None
    if addr.is_unspecified or addr.is_multicast or addr.ipv4_mapped is not None:
        raise ValueError(f"{safe_repr(value)} cannot be used as this host's address")
    return str(addr)  # canonical (compressed, lower-case) form


def endpoint(value: str) -> str:
    """One etcd endpoint URL -> normalised 'scheme://host:port' (the etcd client's own rule)."""
    return parse_endpoint(value).url


def endpoints(values: List[str]) -> Tuple[str, ...]:
    """Empty is allowed here: only the etcd datastore needs one (settings.py checks that)."""
    result: List[str] = []
    for value in values:
        url = endpoint(value)
        if url in result:
            raise ValueError(f"{safe_repr(value)} is listed twice")
        result.append(url)
    schemes = {url.split(":", 1)[0] for url in result}
    if len(schemes) > 1:
        raise ValueError("mixes http:// and https:// URLs; use one or the other")
    return tuple(result)


def prefix(value: str) -> str:
    shown = safe_repr(value)
    if not value.startswith("/"):
        raise ValueError(f"{shown} must start with '/'")
    if has_control(value) or any(c.isspace() for c in value):
        raise ValueError(f"{shown} contains whitespace or control characters")
    stripped = value.rstrip("/")
    if stripped == "":
        raise ValueError(f"{shown} must not be just '/'")
    if "//" in stripped:
        raise ValueError(f"{shown} contains an empty path component ('//')")
    return stripped


def path(value: str, optional: bool) -> str:
    if value == "":
        if optional:
            return ""
        raise ValueError("must not be empty")
    shown = safe_repr(value)
    if has_control(value):
        raise ValueError(f"{shown} contains control characters or line breaks")
    if not value.startswith("/"):
        raise ValueError(f"{shown} must be an absolute path (start with '/')")
    if value.endswith("/"):
        raise ValueError(f"{shown} must name a file, not a directory")
    return value


def file(value: str) -> str:
    return path(value, optional=False)


def optional_file(value: str) -> str:
    return path(value, optional=True)


def username(value: str) -> str:
    if has_control(value):
        raise ValueError(f"{safe_repr(value)} contains control characters or line breaks")
    return value


def password(value: str) -> str:
    # Never echo the value.  Line breaks would break the gRPC metadata it is sent in.
    if has_control(value):
        raise ValueError("contains control characters or line breaks")
    return value


def share(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{safe_repr(value)} is not a share between 0 (exclusive) and 1 (1 = never hold)")
    return float(value)


def seconds(value: float) -> float:
    if not 0.0 <= value <= 86400.0:
        raise ValueError(f"{safe_repr(value)} is not a number of seconds between 0 and 86400")
    return float(value)


def short_seconds(value: float) -> float:
    # A reload held back longer than this would look like a hang to whoever made the change.
    if not 0.0 <= value <= 10.0:
        raise ValueError(f"{safe_repr(value)} is not a number of seconds between 0 and 10")
    return float(value)


def route_limit(value: float) -> int:
    """Routes one client session may hold; 0 = no limit."""
    if value != int(value) or not 0 <= value <= 1_000_000:
        raise ValueError(f"{safe_repr(value)} is not a whole number of routes between 0 (no limit) and 1000000")
    return int(value)


def node_name(value: str) -> str:
    """A Calico node name (a Kubernetes DNS-1123 subdomain, '_' tolerated); "" = host name."""
    if value == "":
        return ""
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?", value):
        raise ValueError(f"{safe_repr(value)} is not a valid Calico node name")
    return value


def choice(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value.lower() in choices:
            return value.lower()
        hint = difflib.get_close_matches(value.lower(), choices, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"{safe_repr(value)} is not one of {', '.join(choices)}{extra}")

    return check


def listen_address(value: str) -> str:
    """`127.0.0.1:9824`, `[::1]:9824` or `0.0.0.0:9824`: an IP address and a port; "" = off."""
    if value == "":
        return ""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{safe_repr(value)} is not an address:port like 127.0.0.1:9824")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{safe_repr(value)}: {safe_repr(host)} is not an IP address "
                         "(IPv6 in brackets: [::1]:9824)") from None
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{safe_repr(value)}: the port must be a number from 1 to 65535")
    return f"[{address}]:{int(port)}" if address.version == 6 else f"{address}:{int(port)}"


def kubeconfig(value: str) -> str:
    """A kubeconfig path, or a KUBECONFIG list `a:b` that is merged as kubectl merges it."""
    parts = [part for part in value.split(":") if part]
    for part in parts:
        path(part, optional=False)
    return ":".join(parts)


def namespace(value: str) -> str:
    """A Kubernetes namespace name (a DNS-1123 label)."""
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", value):
        raise ValueError(f"{safe_repr(value)} is not a valid Kubernetes namespace name")
    return value
