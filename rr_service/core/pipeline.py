"""From a rule set's data to BIRD's config text, redoing only what a change touches. Pure.

A rule set (calico/v1, calico/v3) brings an incremental parser (a change re-parses its own
keys and says which nodes differ and whether anything global did) and an incremental
planner (a changed node re-decides its own neighbours; a global change plans over, reusing
every session that stays equal); IncrementalRenderer re-renders only the sessions that
changed. The pipeline feeds one into the next. `render`, `status` and the daemon all use it:
one implementation, so what `render` prints is what the daemon applies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Optional, Protocol

from rr_service.core.plan import Identity, Plan, Planned
from rr_service.core.render import IncrementalRenderer, Renderer
from rr_service.core.values import Rejected


class Parser(Protocol):
    """Made with the pipeline's `created` (key -> creation order, kept up to date by the
    pipeline): what a parsed record says about when it was created."""

    def clear(self) -> None: ...

    def apply(self, changes: Mapping[str, Optional[bytes]]): ...  # has .rejected


class Planner(Protocol):
    def update(self, parsed) -> Planned: ...


class RuleSet(Protocol):
    """One of Calico's data models and the rules that read it."""

    name: str  # "v1", "v3"

    def wanted(self, key: str) -> bool: ...  # the keys it reads; every other key is ignored

    def dated(self, key: str) -> bool: ...  # the keys whose creation order decides a claim

    def parser(self, created: Mapping[str, object]) -> Parser: ...

    def planner(self, me: Identity, running: Optional[dict] = None) -> Planner: ...


@dataclass(frozen=True)
class Computed:
    plan: Plan
    rejected: tuple[Rejected, ...]
    configs: dict[str, str]  # target name (bird, bird6) -> config text


class Pipeline:
    def __init__(self, rules: RuleSet, me: Identity, renderer: Renderer, running: Optional[dict] = None):
        """`running`: who holds each neighbour in the configs BIRD runs now
        (core/running.read_claims): an address several nodes claim stays with that node."""
        self.rules, self.me, self.renderer = rules, me, renderer
        self.items: dict = {}
        self.created: dict = {}
        self._running = running
        self._parser = rules.parser(self.created)
        self._planner = rules.planner(me, running)
        self._blocks = IncrementalRenderer(renderer)
        self._pending: Optional[dict] = None  # None: everything is new (after a reset)

    def reset(self, items: dict, created: Optional[Mapping[str, object]] = None) -> None:
        """Start over from `items`, which the pipeline takes over and changes (no copy: at
        10,000 nodes a copy beside the snapshot's own dict only raised the start's peak), and
        the keys' creation order (sources.base.DataSet.created)."""
        wanted, dated = self.rules.wanted, self.rules.dated
        for key in [key for key in items if not wanted(key)]:
            del items[key]
        self.items = items
        self.created.clear()
        if created:
            self.created.update((key, order) for key, order in created.items() if dated(key) and key in items)
        self._pending = None

    def change(self, key: str, value: Optional[bytes], created: Optional[object] = None) -> bool:
        """Take in one changed key; False when it changes nothing (not ours, the same value)."""
        if not self.rules.wanted(key) or self.items.get(key) == value:
            return False
        if value is None:
            del self.items[key]
            self.created.pop(key, None)
        else:
            self.items[key] = value
            if created is not None and self.rules.dated(key):
                self.created[key] = created
        if self._pending is not None:
            self._pending[key] = value
        return True

    def compute(self) -> Computed:
        try:
            if self._pending is None:
                self._parser.clear()
                parsed = self._parser.apply(self.items)
            else:
                parsed = self._parser.apply(self._pending)
            planned = self._planner.update(parsed)
            configs = self._blocks.render(planned)
            notes = self.renderer.notes(planned.plan)
        except BaseException:
            # A render error (or anything else) midway leaves the kept state half updated:
            # the next compute starts over from the keys.
            self._pending = None
            self._parser.clear()
            self._planner = self.rules.planner(self.me, self._running)
            raise
        self._pending = {}
        plan = planned.plan if not notes else dataclasses.replace(planned.plan,
                                                                  warnings=planned.plan.warnings + notes)
        return Computed(plan, parsed.rejected, configs)


def compute_once(rules: RuleSet, items: dict, me: Identity, renderer: Renderer,
                 created: Optional[Mapping[str, object]] = None, running: Optional[dict] = None) -> Computed:
    """The whole pipeline over one data set (`render`, `status`)."""
    pipeline = Pipeline(rules, me, renderer, running)
    pipeline.reset(items, created)
    return pipeline.compute()
