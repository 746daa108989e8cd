"""From a rule set's data to BIRD's config text, redoing only what a change touches. Pure.

A rule set (calico/v1, calico/v3) brings an incremental parser (a change re-parses its own
keys and says which nodes differ and whether anything global did) and an incremental
planner (a changed node re-decides its own neighbours; a global change plans over, reusing
every session that stays equal); IncrementalRenderer re-renders only the sessions that
changed. The pipeline feeds one into the next. `render`, `status` and the daemon all use it:
one implementation, so what `render` prints is what the daemon applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Protocol

from rr_service.core.plan import Identity, Plan, Planned
from rr_service.core.render import IncrementalRenderer, Renderer
from rr_service.core.values import Rejected


class Parser(Protocol):
    def clear(self) -> None: ...

    def apply(self, changes: Mapping[str, Optional[bytes]]): ...  # has .rejected


class Planner(Protocol):
    def update(self, parsed) -> Planned: ...


class RuleSet(Protocol):
    """One of Calico's data models and the rules that read it."""

    name: str  # "v1", "v3"

    def wanted(self, key: str) -> bool: ...  # the keys it reads; every other key is ignored

    def parser(self) -> Parser: ...

    def planner(self, me: Identity) -> Planner: ...


@dataclass(frozen=True)
class Computed:
    plan: Plan
    rejected: tuple[Rejected, ...]
    configs: dict[str, str]  # target name (bird, bird6) -> config text


class Pipeline:
    def __init__(self, rules: RuleSet, me: Identity, renderer: Renderer):
        self.rules, self.me, self.renderer = rules, me, renderer
        self.items: dict = {}
        self._parser = rules.parser()
        self._planner = rules.planner(me)
        self._blocks = IncrementalRenderer(renderer)
        self._pending: Optional[dict] = None  # None: everything is new (after a reset)

    def reset(self, items: dict) -> None:
        """Start over from `items`, which the pipeline takes over and changes (no copy: at
        10,000 nodes a copy beside the snapshot's own dict only raised the start's peak)."""
        for key in [key for key in items if not self.rules.wanted(key)]:
            del items[key]
        self.items = items
        self._pending = None

    def change(self, key: str, value: Optional[bytes]) -> bool:
        """Take in one changed key; False when it changes nothing (not ours, the same value)."""
        if not self.rules.wanted(key) or self.items.get(key) == value:
            return False
        if value is None:
            del self.items[key]
        else:
            self.items[key] = value
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
        except BaseException:
            # A render error (or anything else) midway leaves the kept state half updated:
            # the next compute starts over from the keys.
            self._pending = None
            self._parser.clear()
            self._planner = self.rules.planner(self.me)
            raise
        self._pending = {}
        return Computed(planned.plan, parsed.rejected, configs)


def compute_once(rules: RuleSet, items: dict, me: Identity, renderer: Renderer) -> Computed:
    """The whole pipeline over one data set (`render`, `status`)."""
    pipeline = Pipeline(rules, me, renderer)
    pipeline.reset(items)
    return pipeline.compute()
