"""The shared vocabulary of validated values: addresses, AS numbers, cluster ids, names. Pure.

Every value from a datastore is validated once, by the rule set that reads it, with these
functions. A bad value raises InvalidValue with the reason shown to the operator; the
entry it came from becomes a `Rejected(key, reason)` and the rest of the data set still
counts. Nothing downstream (plan, render) re-checks what these guarantee: addresses are
`ipaddress` objects of the right family, AS numbers are in range, cluster IDs are dotted
quads and names match a strict pattern.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Optional, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

DEFAULT_AS = 64512  # Calico's default AS when the data sets none
AS_MAX = 4294967295
# RFC 1123 labels, plus '_' which Calico tolerates in node names; no quotes, spaces or
# control characters, so a name is safe to show in a BIRD comment or a log line.
HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?")
_ASDOT_RE = re.compile(r"([0-9]{1,5})\.([0-9]{1,5})")
_ASPLAIN_RE = re.compile(r"[0-9]{1,10}")


class InvalidValue(ValueError):
    """A value that cannot be used; the message is the reason shown to the operator."""


@dataclass(frozen=True)
class Rejected:
    key: str
    reason: str


SHOWN_KEY_CHARS = 200


def shown_key(key: str) -> str:
    """A datastore key as a log line shows it: repr'd when it holds control characters (a
    newline, an escape), so a key can neither span nor forge log lines, and cut short when
    long (etcd takes keys of 1.5 MB: one must not become a log line that size)."""
    shown = key if key.isprintable() else repr(key)
    if len(shown) <= SHOWN_KEY_CHARS:
        return shown
    return f"{shown[:SHOWN_KEY_CHARS - 40]}... ({len(key)} characters)"


def rejection_message(rejected: Rejected) -> str:
    """The one log line for a rejected key, the daemon's and `calico-rr render`'s alike."""
    return f"ignoring etcd key {shown_key(rejected.key)}: {rejected.reason}"



def parse_as_number(value: object) -> int:
    """An AS number from a JSON number, a decimal string or asdot ("1.10" = 65546)."""
    if isinstance(value, bool):  # JSON true is an int to Python, never an AS
        raise InvalidValue(f"AS number must be a number, not {show(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        dotted = _ASDOT_RE.fullmatch(text)
        if dotted:
            high, low = int(dotted.group(1)), int(dotted.group(2))
            if high > 65535 or low > 65535:
                raise InvalidValue(f"asdot AS number {show(value)} has a part above 65535")
            number = high * 65536 + low
        elif _ASPLAIN_RE.fullmatch(text):
            number = int(text)
        else:
            raise InvalidValue(f"AS number {show(value)} is not a number")
    else:
        raise InvalidValue(f"AS number must be a number or a string, not {type(value).__name__}")
    if not 1 <= number <= AS_MAX:
        raise InvalidValue(f"AS number {show(number)} is outside 1-{AS_MAX}")  # _show: 4000 digits fit in 4 KB
    return number


def parse_address(value: object, family: int) -> IPAddress:
    if not isinstance(value, str):
        raise InvalidValue(f"address must be a string, not {type(value).__name__}")
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidValue(f"{show(value)} is not an IP address") from None
    if address.version != family:
        raise InvalidValue(f"{address} is an IPv{address.version} address, expected IPv{family}")
    check_neighbour(address, value)
    return address


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def check_neighbour(address: IPAddress, value: object) -> None:
    """What an address must be to reach a BIRD config as a multihop BGP neighbour: one policy
    for every layout (v1 keys, v3 Nodes and BGPPeers). A datastore writer must not point a
    session at this host itself, at a group or at an address that only exists on one link."""
    if getattr(address, "scope_id", None) is not None:  # fe80::1%eth0: not a BIRD address
        raise InvalidValue(f"{show(value)} has a zone index (%...), which a BGP neighbour cannot have")
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            # BIRD 2 would dial the IPv4 address inside (::ffff:127.0.0.1 is this host).
            # Shown as written: Python 3.11 and 3.13 spell such an address differently.
            raise InvalidValue(f"{show(value)} is an IPv4-mapped IPv6 address; give {mapped} as an IPv4 address")
        if address in _IPV4_COMPATIBLE and not (address.is_unspecified or address.is_loopback):
            raise InvalidValue(f"{address} is an IPv4-compatible IPv6 address (deprecated), not a BGP neighbour")
    if address.is_unspecified or (address.version == 4 and address in _THIS_NETWORK):
        raise InvalidValue(f"{address} is unspecified, not a BGP neighbour")
    if address.is_loopback:
        raise InvalidValue(f"{address} is a loopback address (this host), not a BGP neighbour")
    if address.is_multicast or (address.version == 4 and address == _BROADCAST):
        raise InvalidValue(f"{address} is a {'multicast' if address.is_multicast else 'broadcast'} address, "
                           f"not a BGP neighbour")
    if address.is_link_local:
        # BIRD refuses the whole config for an IPv6 one (it needs an interface); neither
        # family's link-local addresses reach across the hops of a multihop session.
        raise InvalidValue(f"{address} is link-local, which a multihop BGP session cannot use")


# The widest network a pool or service range may be. Wider is no Calico pool (its blocks
# would be gigantic) but a way to let a node announce anything, `0.0.0.0/1` included.
MIN_PREFIX_LENGTH = {4: 8, 6: 16}


def parse_route_cidr(value: object, what: str) -> IPNetwork:
    """A network Calico nodes announce routes in (an IPPool's cidr, a service range)."""
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be a string, not {type(value).__name__}")
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise InvalidValue(f"{what} {show(value)} is not a network in CIDR notation") from None
    if network.prefixlen < MIN_PREFIX_LENGTH[network.version]:
        raise InvalidValue(f"{what} {network} is wider than /{MIN_PREFIX_LENGTH[network.version]}: "
                           f"no Calico pool is, and it would let a node announce almost anything")
    if network.is_multicast or network.is_loopback or (network.version == 6 and network.network_address.ipv4_mapped):
        raise InvalidValue(f"{what} {network} is not a range of unicast host addresses")
    return network


def outermost(networks: list, family: int) -> tuple:
    """The networks of `family` not inside another one, in order (`10.0.0.0/16+` already
    allows `10.0.1.0/24+`). Not collapsed: two /25 pools do not allow the /24 around them."""
    mine = sorted({n for n in networks if n.version == family}, key=lambda n: (n.prefixlen, n))
    kept: list = []
    for network in mine:
        if not any(network.subnet_of(outer) for outer in kept):
            kept.append(network)
    return tuple(sorted(kept))


def parse_cluster_id(value: object) -> Optional[str]:
    """Empty or missing means no cluster id; otherwise a dotted quad, as BIRD wants it."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"cluster_id must be a string, not {type(value).__name__}")
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise InvalidValue(f"cluster_id {show(value)} is not a dotted quad like 1.0.0.1") from None


def parse_hostname(name: str) -> str:
    if not HOSTNAME_RE.fullmatch(name):
        raise InvalidValue(f"host name {show(name)} is not a valid host name")
    return name


def show(value: object, limit: int = 60) -> str:
    """A value as it may appear in a log line: repr'd, so control characters stay inert."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."



def no_duplicate_fields(pairs: list) -> dict:
    """json.loads object_pairs_hook: a duplicated field means two writers disagree, and
    guessing which one wins is worse than refusing the entry."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _value in pairs:
            if key in seen:
                raise ValueError(f"duplicate field {show(key)}")
            seen.add(key)
    return result


# TCP MD5 keys are at most 80 bytes (TCP_MD5SIG_MAXKEYLEN); BIRD reads the value as a quoted
# string, where `"` and `\` would end or escape it, so only printable ASCII without those two.
MAX_PASSWORD_BYTES = 80
_SAFE_PASSWORD_RE = re.compile(r'[\x20-\x21\x23-\x5b\x5d-\x7e]{1,%d}' % MAX_PASSWORD_BYTES)


def password_problem(value: object) -> Optional[str]:
    """Why this password cannot be written into a BIRD config, in words that never quote
    it; None when it can."""
    if not isinstance(value, str) or value == "":
        return "the password is empty or not text"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        return f"the password is longer than {MAX_PASSWORD_BYTES} bytes (the TCP MD5 limit)"
    if not _SAFE_PASSWORD_RE.fullmatch(value):
        return ("the password holds a character BIRD's config cannot carry safely (a quote, a "
                "backslash, a control character or non-ASCII)")
    return None
