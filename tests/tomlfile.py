"""calico-routereflector settings files for the tests: one writer, TOML quoted right."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def settings_toml(sections: Mapping[str, Mapping[str, object]]) -> str:
    """`{"reflector": {"ip": "192.0.2.10"}, "etcd": {...}}` as a settings file; a None value
    leaves the key out (its default applies)."""
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {_value(value)}" for key, value in values.items() if value is not None)
        out.append("")
    return "\n".join(out)


def write_settings(path: Path, sections: Mapping[str, Mapping[str, object]]) -> str:
    Path(path).write_text(settings_toml(sections))
    return str(path)
