"""The legacy v1 rule set, as the pipeline (core/pipeline.py) takes it."""

from __future__ import annotations

from rr_service.calico.v1.rules import Planner
from rr_service.calico.v1.snapshot import SnapshotParser
from rr_service.core.plan import Identity


class V1Rules:
    name = "v1"

    def wanted(self, key: str) -> bool:
        return True  # every key under the v1 prefix is read (the parser ignores the rest)

    def dated(self, key: str) -> bool:
        return key.endswith(("/ip_addr_v4", "/ip_addr_v6"))  # a node's claim on an address

    def parser(self, created=None) -> SnapshotParser:
        return SnapshotParser(created)

    def planner(self, me: Identity, running=None) -> Planner:
        return Planner(me, running)


RULES = V1Rules()
