"""The Calico v3 rule set, as the pipeline (core/pipeline.py) takes it."""

from __future__ import annotations

from rr_service.calico.v3.planner import V3Planner
from rr_service.calico.v3.resources import SECRETS, relevant_key
from rr_service.calico.v3.table import ResourceTable
from rr_service.core.plan import Identity


class V3Rules:
    name = "v3"

    def wanted(self, key: str) -> bool:
        # Secrets come only from a source that reads Kubernetes Secrets (BGP passwords).
        return relevant_key(key) or key.startswith(SECRETS + "/")

    def dated(self, key: str) -> bool:
        return key.startswith("nodes/")  # a Node's claim on its addresses

    def parser(self, created=None) -> ResourceTable:
        return ResourceTable(created)

    def planner(self, me: Identity, running=None) -> V3Planner:
        return V3Planner(me, running)


RULES = V3Rules()
