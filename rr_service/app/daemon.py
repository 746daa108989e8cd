"""The daemon: a thin driver of the loop's state machine (rr_service/loop.py).

The machine decides; this module only performs its actions against the real world — the
datastore source, the pipeline, BIRD's configs and sockets, systemd — and tells it what
happened. Rules it keeps (docs/architecture.md):
- never render from a partial or failed read: a broken stream or a datastore outage leaves
  the configs on disk exactly as they are, and BIRD keeps routing on the last good one;
- what counts is what BIRD *accepted*, so a reload that failed is retried, not forgotten;
- the watchdog is fed from this one thread only, also while it waits on the datastore.
"""

from __future__ import annotations

import gc
import logging
import operator
import signal
import threading
import time
from itertools import chain
from typing import Callable, Optional

from rr_service import loop
from rr_service.app import metrics, wiring
from rr_service.app.notify import Notifier
from rr_service.app.settings import Settings, SettingsError
from rr_service.app.state_dir import StateDir
from rr_service.bird.apply import ApplyStatus, ConfigApplier, ConfigRejected
from rr_service.bird.control import BirdClient, BirdSocketError
from rr_service.calico import rule_set
from rr_service.core.limits import limit_news
from rr_service.core.pipeline import Pipeline
from rr_service.core.plan import CLIENT
from rr_service.core.render import RenderError
from rr_service.sources.base import DatastoreError, ResyncNeeded

log = logging.getLogger("calico-rr")

_NAME = operator.attrgetter("name")
# How often client sessions' import limits are read from BIRD: `show protocols all` prints
# some twenty lines per session, and reading them cost the daemon 0.35 s of CPU at 10,000
# clients (`make bench`, idle CPU). So at least a minute, and 10 ms per client session,
# between two reads: a flood is named within a minute up to 6,000 clients and within 100 s
# at 10,000, for at most 0.35 % of a core.
LIMIT_CHECK_MIN = 60.0
LIMIT_CHECK_PER_SESSION = 0.01
_OUTCOMES = {ApplyStatus.APPLIED: loop.APPLIED, ApplyStatus.TAKEN_OVER: loop.TAKEN_OVER,
             ApplyStatus.UNCHANGED: loop.UNCHANGED, ApplyStatus.WRITTEN_BIRD_DOWN: loop.WRITTEN_BIRD_DOWN}


class Daemon:
    def __init__(self, settings: Settings, reload_settings: Callable[[], Settings],
                 notifier: Optional[Notifier] = None):
        self.notifier = notifier or Notifier()
        self._reload_settings = reload_settings
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.pipeline: Optional[Pipeline] = None  # made at the first snapshot
        self._rules_name: Optional[str] = None
        self._freeze_after_compute = False
        self.state = loop.State()
        self._reads = 0
        self._last_plan = None
        self._limits_hit: frozenset = frozenset()
        self._limits_checked = float("-inf")
        self._configure(settings, wiring.flavour(settings))
        self.metrics = metrics.metrics(settings.metrics.listen, self.renderer.flavour, wiring.datastore_label(settings))

    def _configure(self, settings: Settings, flavour: str) -> None:
        self.settings = settings
        self.me = wiring.identity(settings)
        self.renderer = wiring.renderer_for(settings, flavour)
        self.appliers = {name: ConfigApplier(target) for name, target in wiring.targets(settings, flavour).items()}
        self._family_targets = wiring.family_targets(flavour)
        self.source = wiring.source(settings, heartbeat=self.notifier.watchdog)
        self.state_dir = StateDir(settings.safety.state_dir)
        self.loop_settings = loop.Settings(
            source=wiring.datastore_name(settings), max_drop_share=settings.safety.max_drop_share, hold_seconds=settings.safety.hold_seconds,
            burst_settle_seconds=settings.bird.burst_settle_seconds,
            burst_max_delay_seconds=settings.bird.burst_max_delay_seconds)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ the driver
    def run(self) -> int:
        log.info("starting: reflector %s%s, %s, %s configs %s", self.me.ipv4,
                 f" / {self.me.ipv6}" if self.me.ipv6 else "", self.source.describe(), self.renderer.flavour,
                 ", ".join(a.target.config_path for a in self.appliers.values()))
        self.state_dir.clear_stale()
        handed_over = self.state_dir.take_handover()
        for name, applier in self.appliers.items():
            applier.take_over(handed_over.get(name))
        program = loop.program(self.loop_settings, state=self.state)
        try:
            answer = None
            while not self._stop.is_set():
                self.notifier.watchdog()
                action = program.send(answer)
                answer = self._perform(action)
        finally:
            program.close()
            self.notifier.stopping()
            self.notifier.status("stopping")
            self.source.close()
            self.metrics.close()
            self._hand_over()
            log.info("stopped")
        return 0

    def _perform(self, action):
        if isinstance(action, loop.Log):
            log.log(logging.getLevelName(action.level.upper()), "%s", action.text)
        elif isinstance(action, loop.Pass):
            return loop.PassStarted(time.monotonic(), self._handle_reload())
        elif isinstance(action, loop.ReadSnapshot):
            return self._read_snapshot()
        elif isinstance(action, loop.Wait):
            return self._wait(action.timeout)
        elif isinstance(action, loop.Compute):
            return self._compute()
        elif isinstance(action, loop.Apply):
            started = time.monotonic()
            applied = self._apply(action.configs)
            self.metrics.observe_applied(applied.outcomes, time.monotonic() - started)
            return applied
        elif isinstance(action, loop.CheckBird):
            self._watch_limits()
            return loop.BirdChecked(tuple(name for name, a in self.appliers.items() if not a.still_accepted()))
        elif isinstance(action, loop.Notify):
            self.notifier.status(action.status)
            if action.ready:
                self.notifier.ready()
            self.metrics.observe_state(self.state)
        elif isinstance(action, loop.Sleep):
            self._sleep(action.seconds)
        elif isinstance(action, loop.PublishHeld):
            self.state_dir.publish_held(action.verdict)
        elif isinstance(action, loop.ClearHeld):
            self.state_dir.clear_held()
        else:  # pragma: no cover - a new action without its performer is a programming error
            raise TypeError(f"no performer for {action!r}")
        return None

    def _handle_reload(self) -> bool:
        """SIGHUP: new settings (and the BIRD binary's flavour again: bird may be bird2 now)."""
        if not self._reload.is_set():
            return False
        self._reload.clear()
        self.notifier.reloading()
        try:
            settings = self._reload_settings()
            flavour = wiring.flavour(settings)
        except (SettingsError, wiring.FlavourError) as exc:
            log.error("reload refused, keeping the running settings: %s", exc)
            return False
        log.info("reloading settings from %s", settings.source)
        logging.getLogger().setLevel(settings.log.level.upper())
        if flavour != self.renderer.flavour:
            log.info("BIRD flavour is now %s (was %s)", flavour, self.renderer.flavour)
        self.source.close()
        self._configure(settings, flavour)
        try:
            self.metrics = metrics.reconfigured(self.metrics, settings.metrics.listen, flavour,
                                               wiring.datastore_label(settings))
        except metrics.MetricsError as exc:
            log.error("%s; the metrics stay %s", exc, f"at {self.metrics.listen}" if self.metrics.listen else "off")
        self.pipeline = None  # new settings: nothing kept applies
        return True

    def _read_snapshot(self):
        try:
            data = self.source.read()
            self.source.follow(data.bookmark)
        except DatastoreError as exc:
            self.source.close()
            self.metrics.observe_read(False, self._reads == 0)
            return loop.Failed(time.monotonic(), time.time(), str(exc))
        self.metrics.observe_read(True, self._reads == 0)
        self._reads += 1
        if self.settings.datastore.type == "etcdv3" and self.settings.etcd.schema == "auto" \
                and data.rules != self._rules_name:
            log.info("[etcd] schema = auto: using the Calico %s data", data.rules)
        self._rules_name = data.rules
        if self.pipeline is None or self.pipeline.rules.name != data.rules:
            self.pipeline = Pipeline(rule_set(data.rules), self.me, self.renderer, wiring.running_claims(self.settings))
        # Otherwise a resync keeps the rendered session blocks: only what changed is redone.
        self.pipeline.reset(data.items, data.created)
        gc.unfreeze()  # the previous data set's objects: let the collector see them again
        self._freeze_after_compute = True
        return loop.SnapshotRead(time.monotonic(), self.source.position(), len(self.pipeline.items),
                                 self.source.describe())

    def _wait(self, timeout: float):
        if self.notifier.watchdog_every:
            timeout = min(timeout, self.notifier.watchdog_every)
        try:
            changes = self.source.changes(timeout)
        except ResyncNeeded as exc:
            self.source.close()
            return loop.Failed(time.monotonic(), time.time(), str(exc), resync=True)
        except DatastoreError as exc:
            self.source.close()
            self.metrics.observe_read(False, False)
            return loop.Failed(time.monotonic(), time.time(), str(exc))
        count = sum(self.pipeline.change(change.key, change.value, change.created) for change in changes)
        self.metrics.observe_changes(count)
        if count:
            log.debug("%d change(s), now at %s", count, self.source.position())
        return loop.Changes(time.monotonic(), count, self.source.position())

    def _compute(self):
        try:
            computed = self.pipeline.compute()
        except RenderError as exc:
            return loop.RenderFailed(str(exc))
        if self._freeze_after_compute:
            # The data set's ~10 objects per node live until the next resync: out of the
            # cyclic collector's reach, full collections no longer scan them on every change
            # (they cost 30-50 ms at 10,000 nodes, on a quarter of the changes).
            gc.freeze()
            self._freeze_after_compute = False
        the_plan = computed.plan
        self._last_plan = the_plan
        # The protocol names each BIRD gets, from the plan (the renderer names each protocol
        # after its session), not from scanning the rendered text; built in C (map over the
        # sessions): a Python loop over 10,000 sessions cost a millisecond per change.
        names = {target: frozenset(chain.from_iterable(map(_NAME, the_plan.family(family).sessions)
                                                       for family, t in self._family_targets.items() if t == target))
                 for target in self.appliers}
        disk = {target: applier.names_on_disk() for target, applier in self.appliers.items()
                if target not in self.state.running_names}
        return loop.Computed(time.monotonic(), the_plan, computed.configs, names, disk,
                             self.state_dir.take_accept(), computed.rejected)

    def _apply(self, configs: dict):
        outcomes = {}
        for target, text in configs.items():
            applier = self.appliers[target]
            path = applier.target.config_path
            try:
                outcomes[target] = loop.Outcome(_OUTCOMES[applier.apply(text)], path=path)
            except ConfigRejected as exc:
                outcomes[target] = loop.Outcome(loop.REJECTED, str(exc), path)
            except OSError as exc:
                outcomes[target] = loop.Outcome(loop.WRITE_ERROR, str(exc), path)
        return loop.Applied(time.monotonic(), time.time(), outcomes)

    def _watch_limits(self) -> None:
        """Log a client session reaching its import limit (a node flooding) and leaving it."""
        now = time.monotonic()
        if (not self.renderer.import_limit or self._last_plan is None
                or now - self._limits_checked < LIMIT_CHECK_MIN):
            return
        clients = self._last_plan.v4.count(CLIENT) + self._last_plan.v6.count(CLIENT)
        if not clients or now - self._limits_checked < LIMIT_CHECK_PER_SESSION * clients:
            return
        self._limits_checked = now
        counts = {}
        for name, applier in self.appliers.items():
            try:
                counts[name] = BirdClient(applier.target.socket_path, timeout=5.0).client_routes()
            except BirdSocketError as exc:
                log.debug("%s: import limits not read: %s", name, exc)
        self._limits_hit, lines = limit_news(self._last_plan, self._family_targets, self._limits_hit, counts)
        for level, line in lines:
            log.log(logging.getLevelName(level.upper()), "%s", line)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and not self._reload.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.notifier.watchdog()
            self._stop.wait(min(left, loop.TICK))

    def _hand_over(self) -> None:
        """Tell the next start what each BIRD runs, so that a restart of calico-rr alone
        (an upgrade, `systemctl restart`) does not reload a BIRD already running its config."""
        records = {name: record for name, applier in self.appliers.items()
                   if (record := applier.hand_over()) is not None}
        if records:
            self.state_dir.save_handover(records)

    def status_line(self) -> str:
        return loop.status_line(self.state, self.loop_settings)
