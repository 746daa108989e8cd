"""What every datastore adapter gives the daemon: errors and changes.

The daemon only knows these names; an adapter (etcd today, maybe the Kubernetes
API later) maps its own failures onto them.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    Changes may have been missed: take a new snapshot and watch again from it.
    """


@dataclass(frozen=True)
class Change:
    """One key that changed.

    ``key`` is relative to the adapter's prefix, without a leading '/'
    (e.g. ``"rr_v4/192.0.2.10"``); ``value`` is None when the key was deleted;
    ``revision`` is the datastore revision of this change.
    """

    key: str
    value: bytes | None
    revision: int
