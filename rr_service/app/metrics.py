"""The daemon's own health for Prometheus (`[metrics] listen`), with Debian's
python3-prometheus-client. Off by default: without the setting nothing is imported.

Names follow Prometheus' conventions: one prefix (calico_rr_), base units, `_total`
counters, `_timestamp_seconds` for times. The daemon feeds them from the loop's events
(`observe_*`) and, once per pass, from the loop's state (`observe_state`): nothing here
decides anything, and the hot path pays a few counter increments per change.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from rr_service import __version__
from rr_service.core.plan import CLIENT, MESH, PEER
from rr_service.loop import events as loop

# What an apply's outcome counts as (calico_rr_applies_total{result}).
RESULTS = {loop.APPLIED: "applied", loop.TAKEN_OVER: "applied", loop.UNCHANGED: "unchanged",
           loop.REJECTED: "rejected", loop.WRITE_ERROR: "error", loop.WRITTEN_BIRD_DOWN: "error"}


class MetricsError(Exception):
    """The endpoint cannot be served (a port in use, an address not on this host)."""


class NoMetrics:
    """Without `[metrics] listen`: every observation costs a method call and nothing else."""

    listen = ""

    def close(self) -> None:
        pass

    def observe_changes(self, count: int) -> None:
        pass

    def observe_read(self, ok: bool, first: bool) -> None:
        pass

    def observe_resync(self) -> None:
        pass

    def observe_applied(self, outcomes: dict, seconds: float) -> None:
        pass

    def observe_state(self, state) -> None:
        pass


class Metrics(NoMetrics):
    def __init__(self, listen: str, flavour: str, datastore: str):
        # The _created series of every counter would double the endpoint for nothing a rule uses.
        os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "True")
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, make_wsgi_app
        except ImportError:
            raise MetricsError(f"[metrics] listen = {listen!r} needs python3-prometheus-client "
                               "(apt install python3-prometheus-client)") from None

        registry = CollectorRegistry(auto_describe=True)

        def make(kind, name, text, **kwargs):
            return kind(name, text, registry=registry, **kwargs)

        self._build = make(Info, "calico_rr_build", "calico-routereflector's version, BIRD flavour and datastore")
        self.describe(flavour, datastore)
        self.events = make(Counter, "calico_rr_datastore_events", "Datastore changes that changed something")
        self.connected = make(Gauge, "calico_rr_datastore_connected", "1 while the datastore answers")
        self.resyncs = make(Counter, "calico_rr_datastore_resyncs", "Fresh snapshots after the first one")
        self.applies = make(Counter, "calico_rr_applies", "Configs put in front of BIRD, by outcome",
                            labelnames=("config", "result"))
        self.duration = make(Histogram, "calico_rr_apply_duration_seconds", "Time to put the configs in front of BIRD",
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        self.last_success = make(Gauge, "calico_rr_last_apply_success_timestamp_seconds",
                                 "When every BIRD last ran the current config (unix time; 0: not yet)")
        self.rejected = make(Gauge, "calico_rr_config_rejected", "1 while a config BIRD refused is the latest one")
        self.holding = make(Gauge, "calico_rr_drop_guard_holding", "1 while the drop guard holds a config back")
        self.holds = make(Counter, "calico_rr_drop_guard_holds", "Configs the drop guard started holding back")
        self.blocked = make(Gauge, "calico_rr_plan_blocked",
                            "1 while an invalid key every session rests on blocks the plan")
        self.sessions = make(Gauge, "calico_rr_sessions", "Sessions in the plan", labelnames=("family", "role"))
        for family in ("ipv4", "ipv6"):
            for role in (MESH, PEER, CLIENT):
                self.sessions.labels(family, role).set(0)
        self._plan = None
        self._was_holding = False
        self._app = make_wsgi_app(registry)
        self.listen, self._server = listen, _serve(listen, self._app)

    def describe(self, flavour: str, datastore: str) -> None:
        self._build.info({"version": __version__, "flavour": flavour, "datastore": datastore})

    def move(self, listen: str) -> None:
        """Serve at `listen` instead (SIGHUP): the new address is bound before the old one is
        let go, so a failure leaves the endpoint where it was, counters intact."""
        if listen != self.listen:
            server = _serve(listen, self._app)
            self._server.shutdown()
            self._server.server_close()
            self.listen, self._server = listen, server

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def observe_changes(self, count: int) -> None:
        if count:
            self.events.inc(count)

    def observe_read(self, ok: bool, first: bool) -> None:
        self.connected.set(1 if ok else 0)
        if ok and not first:
            self.resyncs.inc()

    def observe_resync(self) -> None:
        self.connected.set(0)

    def observe_applied(self, outcomes: dict, seconds: float) -> None:
        self.duration.observe(seconds)
        for config, outcome in outcomes.items():
            self.applies.labels(config, RESULTS.get(outcome.kind, "error")).inc()
        if outcomes and all(RESULTS.get(o.kind) in ("applied", "unchanged") for o in outcomes.values()):
            self.last_success.set(time.time())

    def observe_state(self, state) -> None:
        self.rejected.set(1 if state.rejected_text else 0)
        holding = state.held is not None
        if holding and not self._was_holding:
            self.holds.inc()
        self._was_holding = holding
        self.holding.set(1 if holding else 0)
        self.blocked.set(1 if state.blocked is not None else 0)
        if state.plan is not self._plan:  # counted once per plan, not every pass
            self._plan = state.plan
            for family_plan in (state.plan.v4, state.plan.v6):
                counts = {MESH: 0, PEER: 0, CLIENT: 0}
                for session in family_plan.sessions:
                    counts[session.role] += 1
                for role, count in counts.items():
                    self.sessions.labels(f"ipv{family_plan.family}", role).set(count)


def metrics(listen: str, flavour: str, datastore: str) -> NoMetrics:
    """The metrics the settings ask for; raises MetricsError when they cannot be served."""
    return Metrics(listen, flavour, datastore) if listen else NoMetrics()


def reconfigured(current: NoMetrics, listen: str, flavour: str, datastore: str) -> NoMetrics:
    """The metrics for new settings (SIGHUP): the same counters at a new address, turned on
    or off. Raises MetricsError with `current` untouched."""
    if listen and isinstance(current, Metrics):
        current.move(listen)
        current.describe(flavour, datastore)  # a reload may find BIRD 2 where BIRD 1.6 was
        return current
    if listen == current.listen:
        return current
    new = metrics(listen, flavour, datastore)
    current.close()
    return new


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # a scrape every 15 s is not news for the journal
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _serve(listen: str, app) -> _Server:
    """An HTTP server for `app` on `listen` ("HOST:PORT", "[V6]:PORT"), in a daemon thread."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    server_class = type("Server", (_Server,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
    try:
        server = make_server(host, int(port), app, server_class, handler_class=_QuietHandler)
    except OSError as exc:
        raise MetricsError(f"[metrics] listen = {listen!r}: cannot serve there: {exc.strerror or exc}") from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
