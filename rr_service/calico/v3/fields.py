"""The fields of Calico's v3 resources, one value at a time: names, addresses, ports,
durations, selectors, labels. Pure. Each raises InvalidValue with the reason."""

from __future__ import annotations

import ipaddress
import re
import sys
from typing import Optional

from rr_service.calico.v3.selector import MAX_SELECTOR_CHARS, Selector, SelectorError, parse_selector
from rr_service.core.values import HOSTNAME_RE, IPAddress, InvalidValue, check_neighbour, parse_as_number, show

MAX_LABELS = 256
LABEL_KEY_RE = re.compile(r"[A-Za-z0-9_./-]{1,317}")
_LABEL_VALUE_MAX = 1024
_CONTROL_RE = re.compile(r"[\x00-\x1f]")
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_name(value: object) -> str:
    if not isinstance(value, str) or not HOSTNAME_RE.fullmatch(value):
        raise InvalidValue(f"name {show(value)} is not a valid resource name")
    return value


def parse_cidr_address(value: object, family: int) -> IPAddress:
    """`10.192.0.2/16` (how Calico stores it) or a bare address."""
    if not isinstance(value, str):
        raise InvalidValue(f"address must be a string, not {type(value).__name__}")
    text, slash, length = value.strip().partition("/")
    try:
        # One parse of the address (ip_interface would also build the network: twice the time
        # at 10,000 Nodes); a zone (%eth0) survives it, for the neighbour check to refuse.
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidValue(f"{show(value)} is not an address in CIDR notation") from None
    if slash and not (length.isascii() and length.isdigit() and int(length) <= address.max_prefixlen):
        raise InvalidValue(f"{show(value)} is not an address in CIDR notation") from None
    if address.version != family:
        raise InvalidValue(f"{address} is an IPv{address.version} address, expected IPv{family}")
    check_neighbour(address, value)
    return address


def parse_peer_ip(value: object) -> tuple[IPAddress, Optional[int]]:
    """`ip`, `ip:port`, `[ipv6]:port` (and a bare IPv6 address)."""
    if not isinstance(value, str):
        raise InvalidValue(f"peerIP must be a string, not {type(value).__name__}")
    text = value.strip()
    port_text = None
    if text.startswith("["):
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})", text)
        if not match:
            raise InvalidValue(f"peerIP {show(value)} is not [ipv6]:port")
        text, port_text = match.group(1), match.group(2)
    elif text.count(":") == 1:
        text, port_text = text.split(":")
        if not re.fullmatch(r"[0-9]{1,5}", port_text):
            raise InvalidValue(f"peerIP {show(value)} has a bad port")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidValue(f"peerIP {show(value)} is not an IP address") from None
    if port_text is not None and address.version == 6 and not value.strip().startswith("["):
        raise InvalidValue(f"peerIP {show(value)}: write an IPv6 address with a port as [ipv6]:port")
    check_neighbour(address, value)
    return address, (None if port_text is None else parse_port(int(port_text), "peerIP port"))


def parse_port(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidValue(f"{what} {show(value)} is not a port number 1-65535")
    return value


# BGP's graceful-restart time is a 12-bit field (RFC 4724): BIRD sends 4096 s as 0, 7200 s as
# 3104, and 65535 s sets the Restart State flag (captured from BIRD 1.6's and 2's OPEN messages).
MAX_RESTART_SECONDS = 4095


def parse_duration_seconds(value: object) -> Optional[int]:
    """A Go duration ("120s", "2m0s", "1h") as whole seconds; 0 or empty means unset."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, str) or len(value) > 64:
        raise InvalidValue(f"maxRestartTime {show(value)} is not a duration like \"120s\"")
    pos, total = 0, 0.0
    while pos < len(value):
        match = _DURATION_RE.match(value, pos)
        if not match:
            raise InvalidValue(f"maxRestartTime {show(value)} is not a duration like \"120s\"")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    seconds = int(total)
    return seconds or None


def parse_selector_field(value: object, what: str) -> Optional[Selector]:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > MAX_SELECTOR_CHARS:
        raise InvalidValue(f"{what} is longer than {MAX_SELECTOR_CHARS} characters")
    try:
        return parse_selector(value)
    except SelectorError as exc:
        raise InvalidValue(f"{what} {show(value)} does not parse: {exc}") from None


def parse_labels(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidValue(f"metadata.labels must be an object, not {type(value).__name__}")
    if len(value) > MAX_LABELS:
        raise InvalidValue(f"more than {MAX_LABELS} labels")
    labels = {}
    for key, text in value.items():
        if not LABEL_KEY_RE.fullmatch(key):
            raise InvalidValue(f"label key {show(key)} is not a valid label key")
        if not isinstance(text, str):
            raise InvalidValue(f"label {key} must be a string, not {type(text).__name__} (calicoctl stores strings)")
        if len(text) > _LABEL_VALUE_MAX or _CONTROL_RE.search(text):
            raise InvalidValue(f"label {key} has a value that is too long or has control characters")
        # Interned: Nodes share most label keys and many values (kubernetes.io/os: linux), and
        # at 10,000 Nodes a copy of each per Node was ~7 MB of the reflector's memory.
        labels[sys.intern(key)] = sys.intern(text)
    return labels


def json_object(value: object, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidValue(f"{what} must be an object, not {type(value).__name__}")
    return value


def flag(value: object, what: str) -> Optional[bool]:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidValue(f"{what} must be true or false, not {show(value)}")
    return value


def optional_as(value: object) -> Optional[int]:
    return None if value is None or value == "" or value == 0 else parse_as_number(value)


# A Kubernetes Secret name is a DNS subdomain; a data key is [-._a-zA-Z0-9]+.
_SECRET_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_SECRET_KEY_RE = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def parse_password_ref(value: object) -> Optional[tuple[str, str]]:
    """spec.password of a BGPPeer: `{secretKeyRef: {name, key}}` -> (name, key); None when
    unset. Only the reference is here: the value lives in a Secret, read by the source."""
    if value in (None, {}):
        return None
    ref = json_object(json_object(value, "password").get("secretKeyRef"), "password.secretKeyRef")
    name, key = ref.get("name"), ref.get("key")
    if not isinstance(name, str) or not _SECRET_NAME_RE.fullmatch(name):
        raise InvalidValue(f"password.secretKeyRef.name {show(name)} is not a Secret name")
    if not isinstance(key, str) or not _SECRET_KEY_RE.fullmatch(key):
        raise InvalidValue(f"password.secretKeyRef.key {show(key)} is not a Secret key")
    return name, key

