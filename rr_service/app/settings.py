"""Settings for calico-routereflector.

Settings come from a TOML file (default ``/etc/calico-routereflector/config.toml``)
and are overridden by the environment variables the original calico/routereflector
container image understood (``IP``, ``IP6``, ``ETCD_ENDPOINTS``, ...).

The schema is one table, ``SCHEMA``: one row per setting with its section, key,
type, default, validator, overriding environment variable and whether it is a
secret.  To add a setting, add a row there and the matching field to the
section's dataclass below (an import-time check keeps the two in step).

Every problem is reported as a ``SettingsError`` whose message names the
setting (``[etcd] endpoints`` or ``environment variable ETCD_ENDPOINTS``) and
the settings file.  Secret values (the etcd password) never appear in error
messages or in ``repr()``.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    import tomli as _toml  # type: ignore[no-redef]

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MAX_CONFIG_BYTES",
    "SCHEMA",
    "SettingsError",
    "ReflectorSettings",
    "EtcdSettings",
    "BirdSettings",
    "LogSettings",
    "Settings",
    "load_settings",
]

DEFAULT_CONFIG_PATH = "/etc/calico-routereflector/config.toml"

# A real settings file is a few KiB; anything much bigger is a mistake (or an attack).
MAX_CONFIG_BYTES = 1024 * 1024


class SettingsError(Exception):
    """The settings are unusable.  ``str(exc)`` is a complete message for the user.

    ``setting`` is what the problem is about (e.g. ``"[etcd] endpoints"`` or
    ``"environment variable ETCD_ENDPOINTS"``), or None for file-level problems;
    ``path`` is the settings file involved.
    """

    def __init__(self, message: str, setting: Optional[str] = None, path: Optional[str] = None):
        super().__init__(message)
        self.setting = setting
        self.path = path


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ReflectorSettings:
    ip: str  # "" only when load_settings(require_ip=False) found none
    ip6: str  # "" means: no IPv6 sessions
    node_name: str = ""  # Calico v3: our Node resource's name; "" means the host name


@dataclass(frozen=True, repr=False)
class EtcdSettings:
    endpoints: Tuple[str, ...]
    prefix: str
    ca_cert: str
    cert: str
    key: str
    username: str
    password: str
    schema: str = "auto"  # auto | v1 | v3: which Calico data model to read

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS.get("etcd", ()):
                shown = "'***'" if value else "''"
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__


@dataclass(frozen=True)
class BirdSettings:
    flavour: str  # auto | bird1 | bird2
    config: str
    config6: str
    socket: str
    socket6: str
    binary: str
    binary6: str
    burst_settle_seconds: float = 0.1  # during a burst of changes: reload once they pause this long
    burst_max_delay_seconds: float = 0.5  # ... or at the latest this long after gathering began


@dataclass(frozen=True)
class LogSettings:
    level: str  # debug | info | warning | error


@dataclass(frozen=True)
class SafetySettings:
    max_drop_share: float  # a render dropping more than this share of sessions at once is held
    hold_seconds: float  # ... until it has held this long, or `calico-rr accept`
    state_dir: str  # where the daemon publishes a held render and reads the operator's accept


@dataclass(frozen=True)
class Settings:
    reflector: ReflectorSettings
    etcd: EtcdSettings
    bird: BirdSettings
    log: LogSettings
    safety: SafetySettings
    source: str  # the file read, or "(defaults)" when none was


_SECTION_CLASSES: Dict[str, type] = {
    "reflector": ReflectorSettings,
    "etcd": EtcdSettings,
    "bird": BirdSettings,
    "log": LogSettings,
    "safety": SafetySettings,
}

# --------------------------------------------------------------------------- validators
# A validator takes the (type-checked) value and returns the normalised value,
# or raises ValueError with a message that does not start with the setting name.
# Validators of secret settings must not put the value in their message.

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DNS_NAME_RE = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _safe_repr(value: Any, limit: int = 80) -> str:
    """repr() that cannot flood or mess up a terminal (repr escapes non-printables)."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _has_control(value: str) -> bool:
    return not value.isprintable() or _CONTROL_RE.search(value) is not None


def _ipv4(value: str) -> str:
    if value == "":
        return ""  # unset; load_settings(require_ip=True) reports it
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{_safe_repr(value)} is not an IPv4 address") from None
    if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"{_safe_repr(value)} cannot be used as this host's address")
    return str(addr)


def _ipv6(value: str) -> str:
    if value == "":
        return ""
    if "%" in value:
        raise ValueError(f"{_safe_repr(value)}: scoped (%zone) addresses are not supported")
    try:
        addr = ipaddress.IPv6Address(value)
    except ValueError:
        raise ValueError(f"{_safe_repr(value)} is not an IPv6 address") from None
    if addr.is_unspecified or addr.is_multicast or addr.ipv4_mapped is not None:
        raise ValueError(f"{_safe_repr(value)} cannot be used as this host's address")
    return str(addr)  # canonical (compressed, lower-case) form


def _endpoint(value: str) -> str:
    """One etcd endpoint URL -> normalised 'scheme://host:port'."""
    shown = _safe_repr(value)
    if value == "":
        raise ValueError("empty URL")
    if _has_control(value) or any(c.isspace() for c in value):
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
            host = f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            raise ValueError(f"{shown}: the host in brackets is not an IPv6 address") from None
    else:
        if ":" in netloc:
            host, _, port = netloc.rpartition(":")
        else:
            host, port = netloc, None
        if ":" in host:
            raise ValueError(f"{shown}: IPv6 addresses must be in brackets, e.g. http://[2001:db8::1]:2379")
        if host == "":
            raise ValueError(f"{shown} has no host")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise ValueError(f"{shown}: the host is not a valid IPv4 address") from None
        elif not _DNS_NAME_RE.fullmatch(host):
            raise ValueError(f"{shown}: the host is not a valid host name")
        host = host.lower()
    if port is None or port == "":
        raise ValueError(f"{shown} has no port; write it like {scheme}://host:2379")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{shown}: the port must be a number from 1 to 65535")
    return f"{scheme}://{host}:{int(port)}"


def _endpoints(values: List[str]) -> Tuple[str, ...]:
    if not values:
        raise ValueError("needs at least one URL")
    result: List[str] = []
    for value in values:
        url = _endpoint(value)
        if url in result:
            raise ValueError(f"{_safe_repr(value)} is listed twice")
        result.append(url)
    schemes = {url.split(":", 1)[0] for url in result}
    if len(schemes) > 1:
        raise ValueError("mixes http:// and https:// URLs; use one or the other")
    return tuple(result)


def _prefix(value: str) -> str:
    shown = _safe_repr(value)
    if not value.startswith("/"):
        raise ValueError(f"{shown} must start with '/'")
    if _has_control(value) or any(c.isspace() for c in value):
        raise ValueError(f"{shown} contains whitespace or control characters")
    stripped = value.rstrip("/")
    if stripped == "":
        raise ValueError(f"{shown} must not be just '/'")
    if "//" in stripped:
        raise ValueError(f"{shown} contains an empty path component ('//')")
    return stripped


def _path(value: str, optional: bool) -> str:
    if value == "":
        if optional:
            return ""
        raise ValueError("must not be empty")
    shown = _safe_repr(value)
    if _has_control(value):
        raise ValueError(f"{shown} contains control characters or line breaks")
    if not value.startswith("/"):
        raise ValueError(f"{shown} must be an absolute path (start with '/')")
    if value.endswith("/"):
        raise ValueError(f"{shown} must name a file, not a directory")
    return value


def _file(value: str) -> str:
    return _path(value, optional=False)


def _optional_file(value: str) -> str:
    return _path(value, optional=True)


def _username(value: str) -> str:
    if _has_control(value):
        raise ValueError(f"{_safe_repr(value)} contains control characters or line breaks")
    return value


def _password(value: str) -> str:
    # Never echo the value.  Line breaks would break the gRPC metadata it is sent in.
    if _has_control(value):
        raise ValueError("contains control characters or line breaks")
    return value


def _share(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{_safe_repr(value)} is not a share between 0 (exclusive) and 1 (1 = never hold)")
    return float(value)


def _seconds(value: float) -> float:
    if not 0.0 <= value <= 86400.0:
        raise ValueError(f"{_safe_repr(value)} is not a number of seconds between 0 and 86400")
    return float(value)


def _short_seconds(value: float) -> float:
    # A reload held back longer than this would look like a hang to whoever made the change.
    if not 0.0 <= value <= 10.0:
        raise ValueError(f"{_safe_repr(value)} is not a number of seconds between 0 and 10")
    return float(value)


def _node_name(value: str) -> str:
    """A Calico node name (a Kubernetes DNS-1123 subdomain, '_' tolerated); "" = host name."""
    if value == "":
        return ""
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?", value):
        raise ValueError(f"{_safe_repr(value)} is not a valid Calico node name")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value.lower() in choices:
            return value.lower()
        hint = difflib.get_close_matches(value.lower(), choices, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"{_safe_repr(value)} is not one of {', '.join(choices)}{extra}")

    return check


# --------------------------------------------------------------------------- schema


class Setting(NamedTuple):
    section: str
    key: str
    type: str  # "str", "list[str]" or "number" (TOML integer or float)
    default: Any  # None: no default (required unless require_ip=False)
    validator: Callable[[Any], Any]
    env: Optional[str] = None  # environment variable that overrides the file
    secret: bool = False  # never show the value


# fmt: off
SCHEMA: Tuple[Setting, ...] = (
    #       section      key         type         default                      validator                          env                  secret
    Setting("reflector", "ip",       "str",       None,                        _ipv4,                             "IP"),
    Setting("reflector", "ip6",      "str",       "",                          _ipv6,                             "IP6"),
    Setting("reflector", "node_name", "str",      "",                          _node_name),
    Setting("etcd",      "endpoints", "list[str]", ("http://127.0.0.1:2379",), _endpoints,                        "ETCD_ENDPOINTS"),
    Setting("etcd",      "prefix",   "str",       "/calico/bgp/v1",            _prefix),
    Setting("etcd",      "ca_cert",  "str",       "",                          _optional_file,                    "ETCD_CA_CERT_FILE"),
    Setting("etcd",      "cert",     "str",       "",                          _optional_file,                    "ETCD_CERT_FILE"),
    Setting("etcd",      "key",      "str",       "",                          _optional_file,                    "ETCD_KEY_FILE"),
    Setting("etcd",      "username", "str",       "",                          _username,                         "ETCD_USERNAME"),
    Setting("etcd",      "password", "str",       "",                          _password,                         "ETCD_PASSWORD",     True),
    Setting("etcd",      "schema",   "str",       "auto",                      _choice("auto", "v1", "v3")),
    Setting("bird",      "flavour",  "str",       "auto",                      _choice("auto", "bird1", "bird2")),
    Setting("bird",      "config",   "str",       "/etc/bird/bird.conf",       _file),
    Setting("bird",      "config6",  "str",       "/etc/bird/bird6.conf",      _file),
    Setting("bird",      "socket",   "str",       "/run/bird/bird.ctl",        _file),
    Setting("bird",      "socket6",  "str",       "/run/bird/bird6.ctl",       _file),
    Setting("bird",      "binary",   "str",       "/usr/sbin/bird",            _file),
    Setting("bird",      "binary6",  "str",       "/usr/sbin/bird6",           _file),
    Setting("bird",      "burst_settle_seconds", "number", 0.1,                _short_seconds),
    Setting("bird",      "burst_max_delay_seconds", "number", 0.5,             _short_seconds),
    Setting("log",       "level",    "str",       "info",                      _choice("debug", "info", "warning", "error")),
    Setting("safety",    "max_drop_share", "number", 0.5,                      _share),
    Setting("safety",    "hold_seconds", "number", 300.0,                      _seconds),
    Setting("safety",    "state_dir", "str",      "/run/calico-routereflector", _file),
)
# fmt: on

# Settings that must be given together (both set or both empty).
_PAIRS: Tuple[Tuple[Tuple[str, str], Tuple[str, str]], ...] = (
    (("etcd", "cert"), ("etcd", "key")),
    (("etcd", "username"), ("etcd", "password")),
)

_BY_NAME: Dict[Tuple[str, str], Setting] = {(s.section, s.key): s for s in SCHEMA}
_SECTIONS: Dict[str, List[str]] = {}
for _s in SCHEMA:
    _SECTIONS.setdefault(_s.section, []).append(_s.key)
_SECRET_FIELDS: Dict[str, Tuple[str, ...]] = {
    sec: tuple(s.key for s in SCHEMA if s.section == sec and s.secret) for sec in _SECTIONS
}


def _check_schema() -> None:
    assert set(_SECTIONS) == set(_SECTION_CLASSES), "SCHEMA sections != dataclasses"
    for section, cls in _SECTION_CLASSES.items():
        fields = [f.name for f in dataclasses.fields(cls)]
        assert fields == _SECTIONS[section], f"SCHEMA [{section}] keys {_SECTIONS[section]} != {cls.__name__} fields {fields}"
    for s in SCHEMA:
        assert s.type in ("str", "list[str]", "number"), s
        if s.secret:
            assert s.section == "etcd", "only EtcdSettings.__repr__ hides secrets; extend the other dataclasses"


_check_schema()

# --------------------------------------------------------------------------- loading


def _name(text: str) -> str:
    """A section or key name as it may be shown to the user."""
    return text if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text) else _safe_repr(text)


def _label(section: str, key: str) -> str:
    return f"[{section}] {key}"


def _suggest_key(section: str, key: str) -> str:
    close = difflib.get_close_matches(key, _SECTIONS[section], n=1)
    if close:
        return f" (did you mean {_label(section, close[0])}?)"
    elsewhere = [sec for sec, keys in _SECTIONS.items() if key in keys]
    if elsewhere:
        return f" (did you mean {_label(elsewhere[0], key)}?)"
    return ""


def _read_file(path: str) -> Dict[str, Any]:
    """Read and parse the TOML file; every failure is a SettingsError."""

    def fail(problem: str) -> SettingsError:
        return SettingsError(f"{path}: {problem}", path=path)

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise fail("not a regular file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except SettingsError:
        raise
    except FileNotFoundError:
        raise fail("no such file") from None
    except PermissionError:
        raise fail("permission denied (the file is meant to be readable by root and group bird)") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise fail(f"file is too large (over {MAX_CONFIG_BYTES // 1024} KiB)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (invalid byte at offset {exc.start})") from None
    try:
        doc = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)" or "(at end of document)".
        raise fail(f"TOML syntax error: {exc}") from None
    except RecursionError:
        raise fail("TOML syntax error: values are nested too deeply") from None
    return doc


def _check_type(setting: Setting, value: Any) -> Optional[str]:
    """Return a problem description, or None if value has the setting's type."""
    if setting.type == "str":
        if not isinstance(value, str):
            return f"must be a string, not {_toml_type(value)}"
    elif setting.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return f"must be a number, not {_toml_type(value)}"
    elif setting.type == "list[str]":
        if isinstance(value, str):
            return 'must be a list of strings, e.g. ["http://127.0.0.1:2379"], not a single string'
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"must be a list of strings, not {_toml_type(value)}"
    return None


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list containing non-strings" if value and not all(isinstance(v, str) for v in value) else "a list"
    return "a date/time"


def _from_env(setting: Setting, raw: str) -> Any:
    if setting.type == "list[str]":
        items = [item.strip() for item in raw.split(",")]
        for i, item in enumerate(items):
            if item == "":
                raise ValueError(f"item {i + 1} of the comma-separated list is empty")
        return items
    return raw


def load_settings(
    path: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    require_ip: bool = True,
) -> Settings:
    """Load settings from ``path`` (TOML) overridden by ``environ``.

    ``path=None`` means DEFAULT_CONFIG_PATH, which may be missing (then only the
    defaults and the environment are used).  A path given explicitly must exist.
    ``environ=None`` means ``os.environ``.  With ``require_ip`` (the default), a
    missing ``[reflector] ip`` is an error.
    """
    if environ is None:
        environ = os.environ
    explicit = path is not None
    if path is None:
        path = DEFAULT_CONFIG_PATH
    if path == "":
        raise SettingsError("the settings file path is empty", path=path)

    source = path
    doc: Dict[str, Any] = {}
    if explicit or os.path.lexists(path):
        doc = _read_file(path)
    else:
        source = "(defaults)"

    def fail(label: str, problem: str) -> SettingsError:
        if source == path:
            message = f"{path}: {label}: {problem}"
        else:  # the default file is absent: say so rather than blame it
            message = f"{label}: {problem} (no settings file at {path})"
        return SettingsError(message, setting=label, path=path)

    # 1. Structure: known sections and keys only.
    values: Dict[Tuple[str, str], Any] = {}
    origin: Dict[Tuple[str, str], str] = {}
    for section, table in doc.items():
        if section not in _SECTIONS:
            if not isinstance(table, dict):
                top = [(sec, section) for sec, keys in _SECTIONS.items() if section in keys]
                hint = f" (did you mean to put it under [{top[0][0]}]?)" if top else ""
                raise fail(_name(section), f"unknown setting outside any section{hint}")
            close = difflib.get_close_matches(section, list(_SECTIONS), n=1)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            known = ", ".join(f"[{s}]" for s in _SECTIONS)
            raise fail(f"[{_name(section)}]", f"unknown section{hint}; known sections: {known}")
        if not isinstance(table, dict):
            raise fail(f"[{section}]", f"must be a table (a [{section}] header), not {_toml_type(table)}")
        for key, value in table.items():
            if key not in _SECTIONS[section]:
                raise fail(_label(section, _name(key)), f"unknown setting{_suggest_key(section, key)}")
            setting = _BY_NAME[(section, key)]
            label = _label(section, key)
            problem = _check_type(setting, value)
            if problem:
                raise fail(label, problem)
            values[(section, key)] = value
            origin[(section, key)] = label

    # 2. Environment overrides (set-but-empty counts as set).
    for setting in SCHEMA:
        if setting.env is not None and setting.env in environ:
            label = f"environment variable {setting.env}"
            try:
                values[(setting.section, setting.key)] = _from_env(setting, environ[setting.env])
            except ValueError as exc:
                raise fail(label, str(exc)) from None
            origin[(setting.section, setting.key)] = label

    # 3. Defaults and per-setting validation.
    final: Dict[Tuple[str, str], Any] = {}
    for setting in SCHEMA:
        name = (setting.section, setting.key)
        if name in values:
            value = values[name]
        elif setting.default is None:
            value = ""
        else:
            value = setting.default
        label = origin.get(name, _label(*name))
        try:
            final[name] = setting.validator(value)
        except ValueError as exc:
            raise fail(label, str(exc)) from None

    # 4. Cross-setting checks.
    if require_ip and final[("reflector", "ip")] == "":
        raise SettingsError(
            f"reflector.ip is not set (set it in {path} or the IP environment variable)",
            setting="[reflector] ip",
            path=path,
        )
    for a, b in _PAIRS:
        if bool(final[a]) != bool(final[b]):
            given, missing = (a, b) if final[a] else (b, a)
            raise fail(
                origin.get(given, _label(*given)),
                f"{_label(*a)} and {_label(*b)} must be given together, "
                f"but {_label(*missing)} is empty"
                + (f" (set by {origin[missing]})" if origin.get(missing, _label(*missing)) != _label(*missing) else ""),
            )

    sections = {
        section: cls(**{key: final[(section, key)] for key in _SECTIONS[section]})
        for section, cls in _SECTION_CLASSES.items()
    }
    return Settings(source=source, **sections)
