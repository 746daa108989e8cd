"""The daemon's way from etcd's keys to config text, redoing only what a change touches.

For the legacy schema a change re-parses its own keys (SnapshotParser.apply), re-plans only
the nodes it changed (Planner) and re-renders only the sessions that changed
(IncrementalRenderer): Python-level work in proportion to the change, plus a tuple() of the
sessions and a str.join of the kept blocks. A change of global data (reflectors, global
peers, global_as) plans over from the snapshot, reusing every session and block that stays
equal. The Calico v3 schema is recomputed in full. Either way the result equals
`components.compute` over the same keys (tests/test_pipeline.py holds it to that).
"""

from __future__ import annotations

from typing import Optional

from rr_service.app.wiring import Computed, Schema
from rr_service.calico.v1.snapshot import SnapshotParser
from rr_service.core.plan import Identity
from rr_service.calico.v1.rules import Planner
from rr_service.core.render import IncrementalRenderer, Renderer


class Pipeline:
    def __init__(self, schema: Schema, me: Identity, renderer: Renderer):
        self.schema, self.me, self.renderer = schema, me, renderer
        self.raw: dict = {}
        self._incremental = schema.name == "v1"
        self._parser = SnapshotParser()
        self._planner = Planner(me)
        self._blocks = IncrementalRenderer(renderer)
        self._pending: Optional[dict] = None  # None: everything is new (after a reset)

    def reset(self, raw: dict) -> None:
        """Start over from `raw`, which the pipeline takes over and changes (no copy: at
        10,000 nodes a copy beside the snapshot's own dict only raised the start's peak)."""
        self.raw = raw
        self._pending = None

    def change(self, key: str, value: Optional[bytes]) -> None:
        if value is None:
            self.raw.pop(key, None)
        else:
            self.raw[key] = value
        if self._pending is not None:
            self._pending[key] = value

    def compute(self) -> Computed:
        if not self._incremental:
            the_plan, rejected = self.schema.to_plan(self.raw, self.me)
            self._pending = {}
            return Computed(the_plan, rejected, self.renderer.render(the_plan))
        try:
            if self._pending is None:
                self._parser.clear()
                parsed = self._parser.apply(self.raw)
            else:
                parsed = self._parser.apply(self._pending)
            planned = self._planner.update(parsed)
            configs = self._blocks.render(planned)
        except BaseException:
            # A render error (or anything else) midway leaves the kept state half updated:
            # the next compute starts over from the keys.
            self._pending = None
            raise
        self._pending = {}
        return Computed(planned.plan, parsed.snapshot.rejected, configs)
