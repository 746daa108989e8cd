"""Datastore adapters behind one small interface (see base.py).

Only this package talks to etcd; nothing else imports ``etcd3``. The etcd
adapter itself is imported from ``rr_service.datastore.etcd`` so that code and
tests that never touch etcd do not pull in gRPC.
"""

from rr_service.datastore.base import (
    Change,
    DatastoreConfigError,
    DatastoreError,
    DatastoreUnavailable,
    ResyncNeeded,
)

__all__ = [
    "Change",
    "DatastoreConfigError",
    "DatastoreError",
    "DatastoreUnavailable",
    "ResyncNeeded",
]
