"""Calico's data in etcd as a Source: the legacy v1 keys or the v3 resources.

- v1: every key under `[etcd] prefix` (`/calico/bgp/v1`), keys relative to it, and beside
  them Calico's legacy IP pools (`/calico/v1/ipam/v4/pool/<cidr>`, `v6`) as
  `ipam/v4/pool/<cidr>`, read at the same revision and watched on a stream of their own.
- v3: the resources the v3 rule set reads (`nodes/`, `bgppeers/`, `bgpconfigurations/`
  under `/calico/resources/v3/projectcalico.org`), read at one revision; the watch covers
  the smallest key range that holds them, so pod churn (`workloadendpoints/`) never reaches
  the reflector. Keys are `<plural>/<name>`.
- auto: v3 as soon as any v3 Node resource exists, else v1, decided at every read from a
  read that worked (a failed read decides nothing).

The bookmark is etcd's revision; the source follows from the revision after it.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from rr_service.calico.v3.resources import KINDS, PREFIX as V3_PREFIX
from rr_service.sources.base import Change, DataSet, ResyncNeeded, Source
from rr_service.calico.v1.keys import POOL_HEAD
from rr_service.core.values import shown_key
from rr_service.sources.etcd.client import AlsoRange, EtcdDatastore
from rr_service.sources.etcd.config import EtcdConfig

log = logging.getLogger("calico-rr")

SCHEMAS = ("v1", "v3", "auto")


def legacy_pools(v1_prefix: str) -> Optional[AlsoRange]:
    """Where Calico keeps the legacy IP pools beside the BGP keys: `/calico/bgp/v1` ->
    `/calico/v1/ipam/v4/pool/`, `.../v6/pool/`. None for a prefix of another shape."""
    if not v1_prefix.endswith("/bgp/v1"):
        return None
    return AlsoRange(v1_prefix[: -len("/bgp/v1")] + "/v1/ipam/", ("v4/pool/", "v6/pool/"), POOL_HEAD + "/")
V3_UNDER = tuple(f"{plural}/" for plural in sorted(KINDS))
V3_NODES = "nodes/"


class EtcdSource(Source):
    def __init__(self, config: EtcdConfig, schema: str, v1_prefix: str,
                 heartbeat: Optional[Callable[[], None]] = None):
        if schema not in SCHEMAS:
            raise ValueError(f"schema {schema!r} is not one of {', '.join(SCHEMAS)}")
        self._schema = schema
        self._prefixes = {"v1": v1_prefix.rstrip("/"), "v3": V3_PREFIX}
        self._store = EtcdDatastore(config, self._prefixes["v3" if schema == "v3" else "v1"], heartbeat)
        self._decided: Optional[str] = None if schema == "auto" else schema
        self._revision = 0
        self._pools = legacy_pools(self._prefixes["v1"])

    # -- reading ---------------------------------------------------------------

    def read(self) -> DataSet:
        # A fresh client for every snapshot: no reconnect backoff or half-dead watch inherited.
        self._store.close()
        created: dict = {}
        if self._schema == "auto":
            self._store.retarget(V3_PREFIX)
            items, revision = self._store.snapshot(under=V3_UNDER, created=created)
            rules = "v3" if any(key.startswith(V3_NODES) for key in items) else "v1"
            if rules == "v1":
                self._store.retarget(self._prefixes["v1"])
                items, revision = self._store.snapshot(created=created)
        else:
            rules = self._schema
            items, revision = self._store.snapshot(**self._under(rules), created=created)
        if rules == "v1":
            items = self._v1_items(items, revision, created)
        self._decided, self._revision = rules, revision
        return DataSet(rules, items, revision, created)

    def follow(self, bookmark: object) -> None:
        if self._decided is None:
            raise ResyncNeeded("nothing read yet: read() first")
        if self._decided == "v1":
            also = (self._pools,) if self._pools is not None else ()
            self._store.start_watch(int(bookmark) + 1, also=also, exclude=POOL_HEAD + "/")
        else:
            self._store.start_watch(int(bookmark) + 1, **self._under(self._decided))

    def changes(self, timeout: float) -> list[Change]:
        events = self._store.next_changes(timeout)
        if events:
            self._revision = max(self._revision, max(event.revision for event in events))
        return [Change(event.key, event.value, event.created) for event in events]

    def _v1_items(self, items: dict, revision: int, created: dict) -> dict:
        """The BGP keys and, beside them, Calico's legacy IP pools (what clients may announce).
        A key under the BGP prefix that would read as a pool (`<prefix>/ipam/...`) is none of
        Calico's, and must not pass for a pool: dropped here, and by the watch."""
        for key in [key for key in items if key.startswith(POOL_HEAD + "/")]:
            log.warning("ignoring etcd key %s/%s: not a Calico BGP key (IP pools are read from %s)",
                        self._prefixes["v1"], shown_key(key), self._pools.prefix if self._pools else "/calico/v1/ipam/")
            del items[key]
            created.pop(key, None)
        if self._pools is not None:
            items.update(self._store.read_also(self._pools, revision, created))
        return items

    def position(self) -> str:
        return f"revision {self._revision}"

    def describe(self) -> str:
        return self._store.describe()

    def close(self) -> None:
        self._store.close()

    # -- writing (register) -------------------------------------------------------

    def rules(self) -> str:
        if self._decided is None:
            self._store.close()
            self._store.retarget(V3_PREFIX)
            self._decided = "v3" if self._store.holds_any(V3_NODES) else "v1"
            self._store.retarget(self._prefixes[self._decided])
        return self._decided

    def get(self, key: str) -> Optional[bytes]:
        self.rules()
        return self._store.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.rules()
        self._store.put(key, value)

    def delete(self, key: str) -> bool:
        self.rules()
        return self._store.delete(key)

    def update(self, key: str, change: Callable[[Optional[bytes]], bytes]) -> tuple[Optional[bytes], bytes]:
        self.rules()
        return self._store.update(key, change)

    def where(self, key: str) -> str:
        return f"{self._prefixes[self.rules()]}/{key}"

    def _under(self, rules: str) -> dict:
        return {"under": V3_UNDER} if rules == "v3" else {}

    def __repr__(self) -> str:
        return f"<EtcdSource {self.describe()} schema={self._schema}>"
