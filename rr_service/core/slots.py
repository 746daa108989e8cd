"""Values in the order of their keys, changed one key at a time.

The incremental planner and renderer keep their sessions (and rendered blocks) this way, so
that a change costs a bisect and one list move in C, and the whole list in key order is
there to hand to `tuple()` or `str.join` without a Python loop over every node.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Optional


class Slots:
    """`keys` sorted, `values[i]` belongs to `keys[i]`; None is never stored (it means absent)."""

    __slots__ = ("keys", "values")

    def __init__(self) -> None:
        self.keys: list = []
        self.values: list = []

    def append(self, key: Any, value: Any) -> None:
        """Add a key above every key there is (building from sorted data)."""
        self.keys.append(key)
        self.values.append(value)

    def get(self, key: Any) -> Optional[Any]:
        keys = self.keys
        i = bisect_left(keys, key)
        return self.values[i] if i < len(keys) and keys[i] == key else None

    def put(self, key: Any, value: Optional[Any]) -> Optional[Any]:
        """Set `key` to `value` (None: remove it); returns the value it had, or None."""
        keys = self.keys
        i = bisect_left(keys, key)
        present = i < len(keys) and keys[i] == key
        old = self.values[i] if present else None
        if value is None:
            if present:
                del keys[i], self.values[i]
        elif present:
            self.values[i] = value
        else:
            keys.insert(i, key)
            self.values.insert(i, value)
        return old
