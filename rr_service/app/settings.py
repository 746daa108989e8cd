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
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from rr_service.app import setting_values as values
from rr_service.app import settings_file


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
MAX_CONFIG_BYTES = settings_file.MAX_CONFIG_BYTES


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
    flavour: str  # auto | bird1 | bird2 | bird3
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
class MetricsSettings:
    listen: str = ""  # HOST:PORT of the Prometheus endpoint; "" = no metrics


@dataclass(frozen=True)
class FilterSettings:
    # pools: a client may announce only its cluster's IP pools and service ranges (limits
    # only while the data names no pool); limits-only: anything but a default route, up to
    # the limit; off: everything (the original image's `import all`).
    mode: str = "pools"
    import_limit: int = 1000  # routes a client session may hold (0: no limit)


@dataclass(frozen=True)
class DatastoreSettings:
    # etcdv3: Calico's etcd (v1 keys or v3 resources, [etcd]); kubernetes: the Kubernetes API
    # ([kubernetes]). Calico's DATASTORE_TYPE spellings.
    type: str = "etcdv3"


@dataclass(frozen=True)
class KubernetesSettings:
    kubeconfig: str = ""  # "" = the pod's service account (in-cluster)
    secret_namespace: str = "kube-system"  # where calico-node reads BGP passwords


@dataclass(frozen=True)
class Settings:
    reflector: ReflectorSettings
    etcd: EtcdSettings
    bird: BirdSettings
    log: LogSettings
    safety: SafetySettings
    source: str  # the file read, or "(defaults)" when none was
    metrics: MetricsSettings = MetricsSettings()
    filters: FilterSettings = FilterSettings()
    datastore: DatastoreSettings = DatastoreSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()


_SECTION_CLASSES: Dict[str, type] = {
    "reflector": ReflectorSettings,
    "etcd": EtcdSettings,
    "bird": BirdSettings,
    "log": LogSettings,
    "safety": SafetySettings,
    "metrics": MetricsSettings,
    "filters": FilterSettings,
    "datastore": DatastoreSettings,
    "kubernetes": KubernetesSettings,
}

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
    Setting("reflector", "ip",       "str",       None,                        values.ipv4,                             "IP"),
    Setting("reflector", "ip6",      "str",       "",                          values.ipv6,                             "IP6"),
    Setting("reflector", "node_name", "str",      "",                          values.node_name),
    Setting("etcd",      "endpoints", "list[str]", ("http://127.0.0.1:2379",), values.endpoints,                        "ETCD_ENDPOINTS"),
    Setting("etcd",      "prefix",   "str",       "/calico/bgp/v1",            values.prefix),
    Setting("etcd",      "ca_cert",  "str",       "",                          values.optional_file,                    "ETCD_CA_CERT_FILE"),
    Setting("etcd",      "cert",     "str",       "",                          values.optional_file,                    "ETCD_CERT_FILE"),
    Setting("etcd",      "key",      "str",       "",                          values.optional_file,                    "ETCD_KEY_FILE"),
    Setting("etcd",      "username", "str",       "",                          values.username,                         "ETCD_USERNAME"),
    Setting("etcd",      "password", "str",       "",                          values.password,                         "ETCD_PASSWORD",     True),
    Setting("etcd",      "schema",   "str",       "auto",                      values.choice("auto", "v1", "v3")),
    Setting("bird",      "flavour",  "str",       "auto",                      values.choice("auto", "bird1", "bird2", "bird3")),
    Setting("bird",      "config",   "str",       "/etc/bird/bird.conf",       values.file),
    Setting("bird",      "config6",  "str",       "/etc/bird/bird6.conf",      values.file),
    Setting("bird",      "socket",   "str",       "/run/bird/bird.ctl",        values.file),
    Setting("bird",      "socket6",  "str",       "/run/bird/bird6.ctl",       values.file),
    Setting("bird",      "binary",   "str",       "/usr/sbin/bird",            values.file),
    Setting("bird",      "binary6",  "str",       "/usr/sbin/bird6",           values.file),
    Setting("bird",      "burst_settle_seconds", "number", 0.1,                values.short_seconds),
    Setting("bird",      "burst_max_delay_seconds", "number", 0.5,             values.short_seconds),
    Setting("log",       "level",    "str",       "info",                      values.choice("debug", "info", "warning", "error")),
    Setting("safety",    "max_drop_share", "number", 0.5,                      values.share),
    Setting("safety",    "hold_seconds", "number", 300.0,                      values.seconds),
    Setting("safety",    "state_dir", "str",      "/run/calico-routereflector", values.file),
    Setting("metrics",   "listen",   "str",       "",                          values.listen_address),
    Setting("filters",   "mode",     "str",       "pools",                     values.choice("pools", "limits-only", "off")),
    Setting("filters",   "import_limit", "number", 1000,                       values.route_limit),
    Setting("datastore", "type",     "str",       "etcdv3",                    values.choice("etcdv3", "kubernetes"),   "DATASTORE_TYPE"),
    Setting("kubernetes", "kubeconfig", "str",    "",                          values.kubeconfig,                       "KUBECONFIG"),
    Setting("kubernetes", "secret_namespace", "str", "kube-system",            values.namespace),
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
    return text if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text) else values.safe_repr(text)


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
        try:
            doc = settings_file.read_file(path)
        except settings_file.FileProblem as exc:
            raise SettingsError(f"{path}: {exc}", path=path) from None
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
            raise fail(f"[{section}]", f"must be a table (a [{section}] header), not {settings_file.toml_type(table)}")
        for key, value in table.items():
            if key not in _SECTIONS[section]:
                raise fail(_label(section, _name(key)), f"unknown setting{_suggest_key(section, key)}")
            setting = _BY_NAME[(section, key)]
            label = _label(section, key)
            problem = settings_file.check_type(setting, value)
            if problem:
                raise fail(label, problem)
            values[(section, key)] = value
            origin[(section, key)] = label

    # 2. Environment overrides (set-but-empty counts as set).
    for setting in SCHEMA:
        if setting.env is not None and setting.env in environ:
            label = f"environment variable {setting.env}"
            try:
                values[(setting.section, setting.key)] = settings_file.from_env(setting, environ[setting.env])
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
            f"[reflector] ip is not set (set it in {path} or the IP environment variable)",
            setting="[reflector] ip",
            path=path,
        )
    if final[("datastore", "type")] == "etcdv3" and not final[("etcd", "endpoints")]:
        raise fail(origin.get(("etcd", "endpoints"), _label("etcd", "endpoints")),
                   "needs at least one URL (the Kubernetes datastore needs none)")
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
