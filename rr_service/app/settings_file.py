"""Reading the settings file (TOML, at most 1 MiB, UTF-8) and the types of its values."""

from __future__ import annotations

import os
import stat
from typing import Any, Dict, Optional

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
    import tomli as _toml  # type: ignore[no-redef]

MAX_CONFIG_BYTES = 1024 * 1024


class FileProblem(Exception):
    """The file cannot be used; the message says why (settings.py names the file)."""


def read_file(path: str) -> Dict[str, Any]:
    """Read and parse the TOML file; every failure is a FileProblem."""

    def fail(problem: str) -> FileProblem:
        return FileProblem(problem)

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise fail("not a regular file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileProblem:
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


def check_type(setting, value: Any) -> Optional[str]:
    """Return a problem description, or None if value has the setting's type."""
    if setting.type == "str":
        if not isinstance(value, str):
            return f"must be a string, not {toml_type(value)}"
    elif setting.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return f"must be a number, not {toml_type(value)}"
    elif setting.type == "list[str]":
        if isinstance(value, str):
            return 'must be a list of strings, e.g. ["http://127.0.0.1:2379"], not a single string'
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"must be a list of strings, not {toml_type(value)}"
    return None


def toml_type(value: Any) -> str:
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


def from_env(setting, raw: str) -> Any:
    if setting.type == "list[str]":
        items = [item.strip() for item in raw.split(",")]
        for i, item in enumerate(items):
            if item == "":
                raise ValueError(f"item {i + 1} of the comma-separated list is empty")
        return items
    return raw
