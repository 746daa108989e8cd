"""The reflector's main loop: snapshot, plan, render, apply; then watch and apply each change.

Rules it keeps:
- never render from a partial or failed read: a broken watch or an etcd outage leaves the
  configs on disk exactly as they are, and BIRD keeps routing on the last good one;
- changes that arrive while an apply is in flight fold into the next apply, and a burst of
  changes is gathered until it pauses (coalesce.py), so it costs BIRD a few reloads;
- what counts is what BIRD *accepted*, so a reload that failed is retried, not forgotten.
"""

from __future__ import annotations

import gc
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from rr_service.app import wiring as components
from rr_service.bird.apply import ApplyStatus, ConfigApplier, ConfigRejected
from rr_service.core.coalesce import BurstDetector
from rr_service.sources.base import Change, DatastoreError, ResyncNeeded
from rr_service.core.values import Rejected, rejection_message
from rr_service.app.notify import Notifier
from rr_service.core.pipeline import Pipeline
from rr_service.core.plan import CLIENT, MESH, Plan
from rr_service.core.render import Renderer, RenderError
from rr_service.core.safety import DropGuard
from rr_service.app.state_dir import StateDir
from rr_service.app.settings import Settings, SettingsError

log = logging.getLogger("calico-rr")

BACKOFF_FIRST = 0.25
# A down etcd costs one connect attempt per try (0.1 s CPU per minute, measured); coming back
# fast matters more: with 1 s (+20 % jitter) a change made the moment etcd answers again is
# applied within the 2 s; at 2 s the jitter alone could take 2.4 s.
BACKOFF_CAP = 1.0
BIRD_RETRY = 5.0  # seconds between `configure` attempts while BIRD's socket does not answer
BIRD_CHECK = 5.0  # seconds between checks that BIRD still runs what it accepted (restarted?)
TICK = 1.0  # upper bound on how long the loop waits; keeps signals and the watchdog prompt

# How the last apply ended (LoopState.last_apply). READY=1 goes out after IN_PLACE, and after
# HELD and BLOCKED: those are deliberate safety states in which BIRD keeps its running config
# and STATUS= says why (docs/architecture.md). A render failure, a refusal or a write error
# (FAILED) sends no READY: a start that never gets a config in place fails visibly at systemd's
# start timeout instead of looking healthy.
IN_PLACE = "in place"  # every config current: accepted by BIRD, or in place while BIRD is down
HELD = "held"  # the drop guard holds it back
BLOCKED = "blocked"  # the data a plan rests on is invalid (Plan.error)
FAILED = "failed"


class Backoff:
    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP):
        self.first, self.cap = first, cap
        self.current = first

    def next(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.first


class ProblemLog:
    """Logs each rejected key or plan warning once while it lasts, and again if it returns."""

    def __init__(self) -> None:
        self._seen: set = set()

    def report(self, rejected: tuple[Rejected, ...], warnings: tuple[str, ...]) -> None:
        current = {("key", r.key, r.reason) for r in rejected} | {("plan", w, "") for w in warnings}
        for kind, what, reason in sorted(current - self._seen):
            if kind == "key":
                log.warning("%s", rejection_message(Rejected(what, reason)))
            else:
                log.warning("%s", what)
        self._seen = current


@dataclass
class LoopState:
    revision: int = 0
    need_snapshot: bool = True
    dirty: bool = False
    etcd_problem: Optional[str] = None
    etcd_down_since: Optional[float] = None
    plan: Optional[Plan] = None
    plan_summary: tuple[str, ...] = ()  # the plan's part of STATUS=, counted once per plan
    bird_summary: str = "not configured yet"
    retry_apply_at: Optional[float] = None
    held: Optional[str] = None  # why a render is held back by the drop guard
    blocked: Optional[str] = None  # why the last plan must not be applied (Plan.error)
    last_apply: Optional[str] = None  # IN_PLACE, HELD, BLOCKED or FAILED; None: not since (re)start


class Daemon:
    def __init__(
        self,
        settings: Settings,
        reload_settings: Callable[[], Settings],
        notifier: Optional[Notifier] = None,
    ):
        self.notifier = notifier or Notifier()
        self._reload_settings = reload_settings
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.state = LoopState()
        self.problems = ProblemLog()
        self._rejected_text: dict[str, str] = {}
        self._accepted_at: dict[str, str] = {}
        self._next_bird_check = 0.0
        self._freeze_after_apply = False
        self.pipeline: Optional[Pipeline] = None  # made at the first snapshot
        self._configure(settings, components.flavour(settings))

    # ------------------------------------------------------------------ set-up
    def _configure(self, settings: Settings, flavour: str) -> None:
        self.settings = settings
        self.me = components.identity(settings)
        self.renderer = Renderer(flavour=flavour)
        targets = components.targets(settings, flavour)
        self.appliers = {name: ConfigApplier(target) for name, target in targets.items()}
        self._family_targets = components.family_targets(flavour)
        # The session names each BIRD runs (or reads at its start): set from the plan once
        # a config is in place, so the drop guard never rescans a 1.5 MB text per change;
        # absent (start, reload, BIRD restarted): read from the file on disk.
        self._running_names: dict[str, frozenset[str]] = {}
        # The schema (and with it the store's prefix) comes with every snapshot: for
        # [etcd] schema = "auto" it is decided from a read that worked, never from a failed one.
        self.schema: Optional[components.Schema] = None
        self.store = components.datastore(settings, heartbeat=self.notifier.watchdog)
        self.backoff = Backoff()
        self.bursts = BurstDetector()
        self.guard = DropGuard(settings.safety.max_drop_share, settings.safety.hold_seconds)
        self.state_dir = StateDir(settings.safety.state_dir)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ loop
    def run(self) -> int:
        log.info(
            "starting: reflector %s%s, %s, %s configs %s",
            self.me.ipv4,
            f" / {self.me.ipv6}" if self.me.ipv6 else "",
            self.store.describe(),
            self.renderer.flavour,
            ", ".join(a.target.config_path for a in self.appliers.values()),
        )
        self.state_dir.clear_stale()
        handed_over = self.state_dir.take_handover()
        for name, applier in self.appliers.items():
            applier.take_over(handed_over.get(name))
        try:
            while not self._stop.is_set():
                self.notifier.watchdog()
                if self._reload.is_set():
                    self._handle_reload()
                if self.state.need_snapshot and not self._take_snapshot():
                    if self.state.plan is not None and self.state.retry_apply_at is None and self._bird_drifted():
                        self._apply()  # BIRD restarted meanwhile: give it the last good config
                    self._publish_status()
                    # Ready even at start: BIRD serves on its last good config meanwhile, and
                    # STATUS= says etcd is unreachable (docs/reliability.md).
                    self.notifier.ready()
                    self._sleep(self.backoff.next())
                    continue
                if self.state.dirty:
                    self._apply()
                elif self.state.retry_apply_at is not None and time.monotonic() >= self.state.retry_apply_at:
                    self._apply()
                elif self.state.retry_apply_at is None and self._bird_drifted():
                    self._apply()
                self._publish_status()
                if self.state.last_apply in (IN_PLACE, HELD, BLOCKED):
                    self.notifier.ready()
                self._wait_for_changes()
        finally:
            self.notifier.stopping()
            self.notifier.status("stopping")
            self.store.close()
            self._hand_over()
            log.info("stopped")
        return 0

    def _hand_over(self) -> None:
        """Tell the next start what each BIRD runs, so that a restart of calico-rr alone
        (an upgrade, `systemctl restart`) does not reload a BIRD already running its config."""
        records = {}
        for name, applier in self.appliers.items():
            record = applier.hand_over()
            if record is not None:
                records[name] = record
        if records:
            self.state_dir.save_handover(records)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and not self._reload.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.notifier.watchdog()
            self._stop.wait(min(left, TICK))

    def _bird_drifted(self) -> bool:
        """Every BIRD_CHECK s: does each BIRD still run what it accepted? A BIRD restarted on an
        old file (a package upgrade, a restore) or reloaded by hand is configured again."""
        now = time.monotonic()
        if now < self._next_bird_check:
            return False
        self._next_bird_check = now + BIRD_CHECK
        drifted = [name for name, applier in self.appliers.items() if not applier.still_accepted()]
        for name in drifted:
            self._running_names.pop(name, None)  # it runs whatever its file says now
        if drifted:
            log.warning("%s no longer runs the config it accepted (restarted, reloaded or its file "
                        "changed): configuring it again", ", ".join(drifted))
        return bool(drifted)

    def _take_snapshot(self) -> bool:
        try:
            self.store.close()
            chosen, self.store, raw, revision = components.read_with_schema(self.settings, self.notifier.watchdog)
            if self.settings.etcd.schema == "auto" and (self.schema is None or chosen.name != self.schema.name):
                log.info("[etcd] schema = auto: using the Calico %s data under %s", chosen.name, chosen.prefix)
            self.schema = chosen
            self.store.start_watch(revision + 1)
        except DatastoreError as exc:
            self._etcd_failed(str(exc))
            return False
        raw = {key: value for key, value in raw.items() if self.schema.keep(key)}
        if self.state.etcd_problem:
            log.info("etcd is reachable again (%s)", self.store.describe())
        self.state.revision = revision
        current = self.pipeline
        if current is None or current.schema.name != self.schema.name or current.renderer is not self.renderer:
            # New schema or settings (SIGHUP builds a new renderer): nothing kept applies.
            self.pipeline = Pipeline(self.schema, self.me, self.renderer)
        # Otherwise a resync keeps the rendered session blocks: only what changed is redone.
        self.pipeline.reset(raw)
        gc.unfreeze()  # the previous data set's objects: let the collector see them again
        self._freeze_after_apply = True
        self.state.need_snapshot = False
        self.state.dirty = True
        self.state.etcd_problem = None
        self.state.etcd_down_since = None
        self.backoff.reset()
        log.debug("snapshot at revision %d: %d keys", revision, len(raw))
        return True

    def _etcd_failed(self, reason: str) -> None:
        if self.state.etcd_problem != reason:
            log.warning("etcd unreachable (%s); BIRD keeps its current config", reason)
        self.state.etcd_problem = reason
        if self.state.etcd_down_since is None:
            self.state.etcd_down_since = time.time()
        self.state.need_snapshot = True
        self.store.close()

    def _wait_for_changes(self) -> None:
        timeout = TICK
        if self.notifier.watchdog_every:
            timeout = min(timeout, self.notifier.watchdog_every)
        changes = self._next_changes(timeout)
        if changes and self.bursts.note(self._absorb(changes)):
            self._gather_burst()

    def _gather_burst(self) -> None:
        """Many keys are changing at once: keep taking them in until they pause (or the
        longest delay is up), so the burst costs BIRD a few reloads instead of dozens."""
        bird = self.settings.bird
        deadline = time.monotonic() + bird.burst_max_delay_seconds
        gathered = 0
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.notifier.watchdog()
            changes = self._next_changes(min(bird.burst_settle_seconds, left))
            if not changes:  # a pause, or etcd failed (then the resync covers everything)
                break
            kept = self._absorb(changes)
            self.bursts.note(kept)
            gathered += kept
        log.debug("burst of changes: gathered %d more before reloading", gathered)

    def _next_changes(self, timeout: float) -> list[Change]:
        try:
            return self.store.next_changes(timeout)
        except ResyncNeeded as exc:
            log.info("resyncing from a fresh snapshot: %s", exc)
            self.state.need_snapshot = True
            self.store.close()
        except DatastoreError as exc:
            self._etcd_failed(str(exc))
        return []

    def _absorb(self, changes: list[Change]) -> int:
        """Fold watch events into the data set; the next loop pass applies them together.
        Returns how many were ours (under the schema's prefix)."""
        changes = [change for change in changes if self.schema.keep(change.key)]
        for change in changes:
            self.pipeline.change(change.key, change.value)
            self.state.revision = max(self.state.revision, change.revision)
        if changes:
            log.debug("%d change(s) up to revision %d", len(changes), self.state.revision)
            self.state.dirty = True
        return len(changes)

    def _handle_reload(self) -> None:
        self._reload.clear()
        self.notifier.reloading()
        try:
            settings = self._reload_settings()
            flavour = components.flavour(settings)  # asks the binary again: bird may be bird2 now
        except (SettingsError, components.FlavourError) as exc:
            log.error("reload refused, keeping the running settings: %s", exc)
            return
        log.info("reloading settings from %s", settings.source)
        logging.getLogger().setLevel(settings.log.level.upper())
        if flavour != self.renderer.flavour:
            log.info("BIRD flavour is now %s (was %s)", flavour, self.renderer.flavour)
        self.store.close()
        self._configure(settings, flavour)
        self._rejected_text.clear()
        self.state.need_snapshot = True
        self.state.last_apply = None  # READY again once the new settings' configs are in place

    # ------------------------------------------------------------------ apply
    def _apply(self) -> None:
        self.state.dirty = False
        self.state.retry_apply_at = None
        try:
            computed = self.pipeline.compute()
            if self._freeze_after_apply:
                # The data set's ~10 objects per node live until the next resync: out of the
                # cyclic collector's reach, full collections no longer scan them on every
                # change (they cost 30-50 ms at 10,000 nodes, on a quarter of the changes).
                gc.freeze()
                self._freeze_after_apply = False
        except RenderError as exc:
            log.error("cannot render the BIRD configs: %s", exc)
            self.state.bird_summary = f"render failed: {exc}"
            self.state.last_apply = FAILED
            return
        self.problems.report(computed.rejected, computed.plan.warnings)
        if not self._plan_usable(computed.plan):
            self.state.last_apply = BLOCKED
            return
        names = self._names_by_target(computed.plan)
        if not self._guard_allows(names):
            self.state.last_apply = HELD
            return
        if self.state.plan is None or _modes(self.state.plan) != _modes(computed.plan):
            for family, mode in _modes(computed.plan):
                log.info("IPv%d: %s", family, mode)
        self.state.plan = computed.plan
        self.state.plan_summary = _plan_summary(computed.plan)
        outcomes = []
        for name, applier in self.appliers.items():
            summary, in_place = self._apply_target(name, applier, computed.configs[name])
            if in_place:
                self._running_names[name] = names[name]
            outcomes.append((summary, in_place))
        self.state.bird_summary = "; ".join(summary for summary, _ in outcomes)
        self.state.last_apply = IN_PLACE if all(ok for _, ok in outcomes) else FAILED

    def _plan_usable(self, the_plan: Plan) -> bool:
        """False while the data every session rests on is invalid (a typo in global/as_num):
        BIRD keeps the configs it runs rather than every session restarting in a wrong AS."""
        if the_plan.error is not None:
            if self.state.blocked != the_plan.error:
                log.error("not applying the new BIRD configs, BIRD keeps the running ones: %s", the_plan.error)
            self.state.blocked = the_plan.error
            return False
        if self.state.blocked is not None:
            log.warning("the data is usable again, applying it (was: %s)", self.state.blocked)
            self.state.blocked = None
        return True

    def _names_by_target(self, the_plan: Plan) -> dict[str, frozenset[str]]:
        """The protocol names each BIRD gets from the plan (the renderer names each protocol
        after its session), not from scanning the rendered text."""
        return {name: frozenset(session.name for family, target in self._family_targets.items() if target == name
                                for session in the_plan.family(family).sessions)
                for name in self.appliers}

    def _guard_allows(self, names: dict[str, frozenset[str]]) -> bool:
        running = _union(self._running_names[name] if name in self._running_names
                         else applier.names_on_disk() for name, applier in self.appliers.items())
        new = _union(names.values())
        verdict = self.guard.check(running, new, time.monotonic(), self.state_dir.take_accept())
        if not verdict.apply:
            if self.state.held is None:
                log.warning("holding back the new BIRD configs: %s", verdict.reason)
            self.state.held = verdict.reason
            self.state_dir.publish_held(verdict)
            self.state.retry_apply_at = time.monotonic() + TICK  # watch for accept and timeout
            return False
        if self.state.held is not None:
            log.warning("applying the configs that were held back: %s", verdict.reason)
            self.state.held = None
            self.state_dir.clear_held()
        return True

    def _apply_target(self, name: str, applier: ConfigApplier, text: str) -> tuple[str, bool]:
        """(the STATUS= part, whether this render is now in place for this BIRD)."""
        path = applier.target.config_path
        if self._rejected_text.get(name) == text:
            return f"{path} rejected by BIRD (see log)", False
        try:
            status = applier.apply(text)
        except ConfigRejected as exc:
            self._rejected_text[name] = text
            log.error("BIRD refused the new %s, the previous one stays: %s", path, exc)
            return f"{path} rejected by BIRD", False
        except OSError as exc:
            log.error("cannot write %s, the previous one stays: %s", path, exc)
            self.state.retry_apply_at = time.monotonic() + BIRD_RETRY
            return f"{path} not writable", False
        self._rejected_text.pop(name, None)
        if status is ApplyStatus.APPLIED:
            log.info("%s accepted %s", name, path)
            self._accepted_at[name] = time.strftime("%H:%M:%S")
            return f"{name} applied {self._accepted_at[name]}", True
        if status is ApplyStatus.TAKEN_OVER:
            log.info("%s runs %s as the previous calico-rr left it (same file, same BIRD process): no reload", name, path)
            return f"{name} applied before this start", True
        if status is ApplyStatus.WRITTEN_BIRD_DOWN:
            if f"{name} not running" not in self.state.bird_summary:
                log.warning("%s is not running (no answer on %s); %s is in place for its start", name, applier.target.socket_path, path)
            self.state.retry_apply_at = time.monotonic() + BIRD_RETRY
            return f"{name} not running, config written", True
        return f"{name} applied {self._accepted_at.get(name, 'before this start')}", True

    # ------------------------------------------------------------------ status
    def status_line(self) -> str:
        parts = []
        if self.state.etcd_problem:
            since = time.strftime("%H:%M:%S", time.localtime(self.state.etcd_down_since or time.time()))
            parts.append(f"etcd unreachable since {since}, BIRD keeps the last config")
        else:
            parts.append(f"etcd ok at revision {self.state.revision}")
        parts.extend(self.state.plan_summary)
        if self.state.blocked:
            parts.append(f"NOT APPLIED: {self.state.blocked}")
        if self.state.held:
            parts.append(f"HELD BACK: {self.state.held}")
        parts.append(f"BIRD: {self.state.bird_summary}")
        return " | ".join(parts)

    def _publish_status(self) -> None:
        self.notifier.status(self.status_line())


def _union(sets) -> frozenset[str]:
    """The union of frozensets, without copying the only non-empty one (bird6's is mostly
    empty, and a copy of 10,000 names is half a megabyte on every change)."""
    present = [names for names in sets if names]
    return present[0] if len(present) == 1 else frozenset().union(*present)


def _modes(the_plan: Plan) -> tuple:
    """What makes us a reflector, per family (Calico v3): logged when it changes."""
    return tuple((f.family, f.mode) for f in (the_plan.v4, the_plan.v6) if f.mode)


def _plan_summary(the_plan: Plan) -> tuple[str, ...]:
    """The plan's part of STATUS=. Counted when the plan changes, not on every loop pass: the
    status line is rebuilt each second, and counting 10,000 sessions each time showed up as
    the daemon's idle CPU."""
    parts = []
    if the_plan.warnings:
        parts.append(f"{len(the_plan.warnings)} warning(s), see the log")
    for family_plan in (the_plan.v4, the_plan.v6):
        if family_plan.local_address is None:
            continue
        mesh, clients = family_plan.count(MESH), family_plan.count(CLIENT)
        others = len(family_plan.sessions) - mesh - clients
        parts.append(
            f"IPv{family_plan.family}: {mesh} reflector peers, {clients} clients"
            + (f", {others} other peers" if others else "")
        )
    return tuple(parts)
