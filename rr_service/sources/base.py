"""What every datastore gives the reflector: the Calico data, a bookmark, and changes after it.

The interface is store-neutral, in the manner of Patroni's AbstractDCS: the daemon, `render`,
`status` and `register` talk to a `Source` and never to etcd or the Kubernetes API
themselves. An adapter (sources/etcd, sources/kubernetes) maps its own data, positions and
failures onto these names:

- the data is a mapping of keys to values in the key space of one rule set: `rr_v4/<ip>`,
  `host/<name>/...` for the legacy v1 rules; `<plural>/<name>` → the resource's v3 JSON for
  the Calico v3 rules, whatever store it came from;
- the bookmark is opaque (an etcd revision, a set of Kubernetes resourceVersions): nothing
  but its own source reads it;
- a broken change stream is ResyncNeeded, an unreachable store DatastoreUnavailable: take a
  new snapshot either way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional


class DatastoreError(Exception):
    """Base of every datastore failure."""


class DatastoreConfigError(DatastoreError, ValueError):
    """The adapter's settings are wrong; the message names the setting.

    Raised at start, never at run time: retrying does not help.
    """


class DatastoreUnavailable(DatastoreError):
    """The datastore cannot be used right now (unreachable, timeout, auth, TLS).

    The message says which endpoint and what failed. Retry with backoff; the
    reflector keeps serving its last good config meanwhile.
    """


class ResyncNeeded(DatastoreError):
    """The change stream is broken (compacted revision, watch cancelled or lost).

    Changes may have been missed: take a new snapshot and follow from it.
    """


@dataclass(frozen=True)
class Change:
    """One key that changed: `value` None when it is gone. `created` is when the key came
    into being in the datastore's own order (see DataSet), None when it is gone."""

    key: str
    value: Optional[bytes]
    created: Optional[object] = None


@dataclass(frozen=True)
class DataSet:
    """One consistent read of the Calico data: which rule set reads it (`v1`, `v3`), every
    key it holds, and where to follow its changes from.

    `created` gives each key its creation in the datastore's own order (an etcd
    create_revision; a Kubernetes creationTimestamp): when two nodes claim one address, the
    earlier claim wins. The store sets it and no writer can: a key's name, or a timestamp
    written into its value, could be chosen to win. Keys without one sort first."""

    rules: str
    items: dict
    bookmark: object
    created: dict = field(default_factory=dict)


class Source(ABC):
    """One Calico datastore. Not thread-safe: one caller thread (the daemon loop)."""

    @abstractmethod
    def read(self) -> DataSet:
        """A snapshot of the data. Raises DatastoreError; a failed read decides nothing."""

    @abstractmethod
    def follow(self, bookmark: object) -> None:
        """Deliver, through changes(), every change after `bookmark` (from read())."""

    @abstractmethod
    def changes(self, timeout: float) -> list[Change]:
        """Wait up to `timeout` s for changes, then take all already there; [] if none.
        Raises ResyncNeeded or DatastoreUnavailable: read() and follow() again."""

    @abstractmethod
    def position(self) -> str:
        """Where the data stands, for STATUS= (`revision 1234`)."""

    @abstractmethod
    def describe(self) -> str:
        """Which store this is, for messages (`etcd http://192.0.2.2:2379`)."""

    @abstractmethod
    def close(self) -> None:
        """Let go of connections and watches; the next read() connects again."""

    # -- the writes `register` and `unregister` need, in the key space of rules() -----------

    @abstractmethod
    def rules(self) -> str:
        """Which rule set the data is for (`v1`, `v3`), deciding it from the store if the
        settings leave it open."""

    @abstractmethod
    def get(self, key: str) -> Optional[bytes]:
        ...

    @abstractmethod
    def put(self, key: str, value: bytes) -> None:
        ...

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Delete one key; True if it existed."""

    @abstractmethod
    def update(self, key: str, change: Callable[[Optional[bytes]], bytes]) -> tuple[Optional[bytes], bytes]:
        """Read-modify-write that never loses a concurrent writer's update: `change(value
        read)` gives the value to write; on a conflict it is read and called again. Returns
        (value read, value written)."""

    def where(self, key: str) -> str:
        """A key as an operator finds it in the store (`/calico/resources/v3/.../nodes/a`)."""
        return key


def apply_changes(items: dict, changes: Mapping[str, Optional[bytes]]) -> None:
    """Fold changes into a snapshot's items (None: gone)."""
    for key, value in changes.items():
        if value is None:
            items.pop(key, None)
        else:
            items[key] = value
