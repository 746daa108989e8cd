"""labelSelector and fieldSelector, as kube-apiserver parses them (the common subset).

Calico reads its BGP password Secrets with `fieldSelector=metadata.name=<name>` (so RBAC with
`resourceNames` can allow exactly those): the field selector is also what authorisation sees
as the name of a list or watch.
"""

from __future__ import annotations

import re
from typing import Callable, List, Optional, Tuple

from .errors import bad_request

Predicate = Callable[[dict], bool]
FIELDS = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace")}
EXTRA_FIELDS = {"Secret": {"type": ("type",)},
                "Node": {"spec.unschedulable": ("spec", "unschedulable")}}


def _split(text: str) -> List[str]:
    """Split on commas outside parentheses (`a in (x,y),b` is two requirements)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_SET = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ = re.compile(r"^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$")
_EXISTS = re.compile(r"^(!?)\s*([^\s!=(),]+)$")


def label_selector(text: Optional[str]) -> Predicate:
    """A predicate on objects for a labelSelector; 400 BadRequest when it does not parse."""
    if not text:
        return lambda obj: True
    tests: List[Callable[[dict], bool]] = []
    for req in _split(text):
        if m := _SET.match(req):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                tests.append(lambda l, k=key, vs=values: k in l and l[k] in vs)
            else:
                tests.append(lambda l, k=key, vs=values: k not in l or l[k] not in vs)
        elif m := _EQ.match(req):
            key, op, value = m.groups()
            if op == "!=":
                tests.append(lambda l, k=key, v=value: l.get(k) != v)
            else:
                tests.append(lambda l, k=key, v=value: k in l and l[k] == v)
        elif m := _EXISTS.match(req):
            negate, key = m.group(1) == "!", m.group(2)
            tests.append(lambda l, k=key, n=negate: (k in l) != n)
        else:
            raise bad_request(f"unable to parse requirement: invalid label selector: {req!r}")

    def match(obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(test(labels) for test in tests)
    return match


def field_selector(text: Optional[str], kind: str) -> Tuple[Predicate, Optional[str]]:
    """(predicate, the name it pins with `metadata.name=` or None); 400 for unknown fields."""
    if not text:
        return (lambda obj: True), None
    known = dict(FIELDS, **EXTRA_FIELDS.get(kind, {}))
    tests, pinned = [], None
    for req in _split(text):
        m = re.match(r"^([^!=]+?)\s*(==|=|!=)\s*(.*)$", req)
        if not m:
            raise bad_request(f"invalid selector: {req!r}; can't understand {req!r}")
        field, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if field not in known:
            raise bad_request(f'"{field}" is not a known field selector: only '
                              + ", ".join(f'"{f}"' for f in known))
        path = known[field]
        if op == "!=":
            tests.append(lambda o, p=path, v=value: _text(o, p) != v)
        else:
            tests.append(lambda o, p=path, v=value: _text(o, p) == v)
            if field == "metadata.name":
                pinned = value
    return (lambda obj: all(t(obj) for t in tests)), pinned


def _text(obj: dict, path: Tuple[str, ...]) -> str:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return "" if obj is None else str(obj)
