"""How to reach etcd: endpoint URLs and credentials, checked once. Imports no etcd client.

`parse_endpoint` is the one rule for an endpoint URL: the settings file, the environment
(ETCD_ENDPOINTS) and the etcd client all go through it, so what the settings accept is what
the client can connect to.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from rr_service.core.values import show
from rr_service.sources.base import DatastoreConfigError

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DNS_NAME_RE = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


@dataclass(frozen=True)
class Endpoint:
    url: str  # normalised `scheme://host:port`, for messages
    host: str  # gRPC target without the port: "ipv4:…", "ipv6:[…]" or "dns:///…"
    port: int
    tls: bool


def parse_endpoint(value: str) -> Endpoint:
    """`http(s)://host:port`, host an IPv4 address, a bracketed IPv6 address or a DNS name.

    Raises ValueError with a message that names the value, not the setting. A DNS name is
    resolved by gRPC each time a client is built (after every failure) and all its
    addresses are tried; with TLS, the certificate must name it.
    """
    shown = show(value, 80)
    if value == "":
        raise ValueError("empty URL")
    if not value.isprintable() or _CONTROL_RE.search(value) or any(c.isspace() for c in value):
        raise ValueError(f"{shown} contains whitespace or control characters")
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(/?)", value)
    if m is None:
        if "://" not in value:
            raise ValueError(f"{shown} is not a URL like http://127.0.0.1:2379")
        raise ValueError(f"{shown} must not have a path, query or fragment")
    scheme, netloc = m.group(1).lower(), m.group(2)
    if scheme not in ("http", "https"):
        raise ValueError(f"{shown} must start with http:// or https://")
    if "@" in netloc:
        raise ValueError(f"{shown} must not contain credentials; use [etcd] username and password")
    if re.search(r"[^A-Za-z0-9.:\[\]-]", netloc):
        raise ValueError(f"{shown}: the host and port contain invalid characters")
    if netloc.startswith("["):
        m6 = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", netloc)
        if m6 is None:
            raise ValueError(f"{shown} has a malformed [IPv6] host")
        host, port = m6.group(1), m6.group(2)
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{shown}: the host in brackets is not an IPv6 address") from None
        host, target = f"[{address}]", f"ipv6:[{address}]"
    else:
        host, sep, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", None)
        if ":" in host:
            raise ValueError(f"{shown}: IPv6 addresses must be in brackets, e.g. http://[2001:db8::1]:2379")
        if host == "":
            raise ValueError(f"{shown} has no host")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise ValueError(f"{shown}: the host is not a valid IPv4 address") from None
            target = f"ipv4:{host}"
        elif not _DNS_NAME_RE.fullmatch(host):
            raise ValueError(f"{shown}: the host is not a valid host name")
        else:
            host = host.lower()
            target = f"dns:///{host}"
    if port is None or port == "":
        raise ValueError(f"{shown} has no port; write it like {scheme}://host:2379")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{shown}: the port must be a number from 1 to 65535")
    return Endpoint(url=f"{scheme}://{host}:{int(port)}", host=target, port=int(port), tls=scheme == "https")


@dataclass(frozen=True)
class EtcdConfig:
    """How to reach etcd. Checked when built: errors name the setting.

    ``endpoints`` are URLs (a comma-separated string is accepted too), all http
    or all https. With https, ``ca_cert`` defaults to Debian's system CA store;
    ``cert`` and ``key`` (client certificate) go together, as do ``username``
    and ``password``. ``timeout`` bounds every call, in seconds.
    """

    endpoints: tuple[str, ...]
    ca_cert: str = ""
    cert: str = ""
    key: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 5.0

    def __post_init__(self) -> None:
        endpoints = self.endpoints
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        endpoints = tuple(e.strip() for e in endpoints if e and e.strip())
        object.__setattr__(self, "endpoints", endpoints)
        if not endpoints:
            raise DatastoreConfigError("etcd endpoints: at least one URL is needed")
        parsed = self.parsed_endpoints()
        if len({e.tls for e in parsed}) > 1:
            raise DatastoreConfigError(
                "etcd endpoints mix http:// and https:// URLs: use one scheme for all "
                f"({', '.join(endpoints)})")
        if bool(self.cert) != bool(self.key):
            raise DatastoreConfigError("etcd cert and key must be set together (client certificate)")
        tls_files = [name for name in ("ca_cert", "cert", "key") if getattr(self, name)]
        if tls_files and not parsed[0].tls:
            raise DatastoreConfigError(
                f"etcd {', '.join(tls_files)} set but the etcd endpoints use http://: "
                "use https:// URLs or remove the TLS settings")
        if bool(self.username) != bool(self.password):
            raise DatastoreConfigError("etcd username and password must be set together")
        if not self.timeout > 0:
            raise DatastoreConfigError(f"etcd timeout must be > 0 seconds, not {self.timeout!r}")

    def parsed_endpoints(self) -> list[Endpoint]:
        try:
            return [parse_endpoint(url) for url in self.endpoints]
        except ValueError as exc:
            raise DatastoreConfigError(f"etcd endpoints: {exc}") from None
