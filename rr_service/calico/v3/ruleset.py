"""The Calico v3 rule set, as the pipeline (core/pipeline.py) takes it."""

from __future__ import annotations

from rr_service.calico.v3.planner import V3Planner
from rr_service.calico.v3.resources import relevant_key
from rr_service.calico.v3.table import ResourceTable
from rr_service.core.plan import Identity


class V3Rules:
    name = "v3"

    def wanted(self, key: str) -> bool:
        return relevant_key(key)

    def parser(self) -> ResourceTable:
        return ResourceTable()

    def planner(self, me: Identity) -> V3Planner:
        return V3Planner(me)


RULES = V3Rules()
