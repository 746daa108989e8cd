"""Builds the daemon's parts from Settings, so `run`, `render` and `status` agree on them."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from rr_service.bird.apply import BirdTarget
from rr_service.bird.version import BirdVersionError, bird_version, flavour_of
from rr_service.sources.etcd.client import EtcdConfig, EtcdDatastore
from rr_service.core.values import Rejected
from rr_service.calico.v1.snapshot import parse_snapshot
from rr_service.core.plan import Identity, Plan
from rr_service.calico.v1.rules import plan
from rr_service.core.render import Renderer
from rr_service.app.settings import Settings
from rr_service.calico.v3 import resources as v3_resources
from rr_service.calico.v3.rules import plan_v3

V3_NODES = "nodes/"

FLAVOURS = ("bird1", "bird2")


class FlavourError(Exception):
    """The configured BIRD flavour does not match the installed BIRD, or cannot be found out."""


def identity(settings: Settings) -> Identity:
    ip6 = settings.reflector.ip6
    return Identity(
        ipv4=ipaddress.IPv4Address(settings.reflector.ip),
        ipv6=ipaddress.IPv6Address(ip6) if ip6 else None,
    )


def flavour(settings: Settings, override: Optional[str] = None) -> str:
    """bird1 or bird2: the setting, checked against the installed BIRD, or asked of it (auto).

    `override` is `render --flavour`: an explicit bird1 or bird2 is taken as given, whatever
    BIRD is installed, since previewing the other flavour's config is what it is for. The
    setting is checked: a [bird] flavour that contradicts the installed BIRD stops `run` at
    start. An explicit setting with no BIRD binary installed is trusted; `run` then fails at
    its first `bird -p` with a message naming the binary.
    """
    if override in FLAVOURS:
        return override
    chosen = override or settings.bird.flavour
    binary = settings.bird.binary
    try:
        version = bird_version(binary)
    except BirdVersionError as exc:
        if chosen == "auto":
            raise FlavourError(f"[bird] flavour = \"auto\" needs the BIRD binary: {exc}") from None
        return chosen
    installed = flavour_of(version)
    if chosen not in ("auto", installed):
        raise FlavourError(
            f"[bird] flavour = {chosen!r}, but {binary} is BIRD {version} "
            f"(flavour {installed!r}); set flavour = \"auto\" or {installed!r}"
        )
    return installed


def renderer(settings: Settings, override: Optional[str] = None) -> Renderer:
    return Renderer(flavour=flavour(settings, override))


def targets(settings: Settings, flavour_name: str) -> dict[str, BirdTarget]:
    """Where each rendered config goes, how it is checked and which socket reloads it."""
    bird = settings.bird
    ipv4 = BirdTarget(config_path=bird.config, binary=bird.binary, socket_path=bird.socket)
    if flavour_name == "bird2":
        return {"bird": ipv4}
    ipv6 = BirdTarget(config_path=bird.config6, binary=bird.binary6, socket_path=bird.socket6)
    return {"bird": ipv4, "bird6": ipv6}


def _every_key(key: str) -> bool:
    return True


@dataclass(frozen=True)
class Schema:
    """One way Calico keeps its BGP data in etcd: where it lives and how it becomes a Plan."""

    name: str
    prefix: str
    to_plan: Callable[[Mapping[str, bytes], Identity], tuple[Plan, tuple[Rejected, ...]]]
    # Which keys under the prefix matter; the daemon keeps (and reacts to) only those.
    keep: Callable[[str], bool] = _every_key


class SchemaUndecided(Exception):
    """[etcd] schema = "auto" is decided by reading etcd: use read_with_schema()."""


def _legacy_plan(raw: Mapping[str, bytes], me: Identity) -> tuple[Plan, tuple[Rejected, ...]]:
    snapshot = parse_snapshot(raw)
    return plan(snapshot, me), snapshot.rejected


def node_name(settings: Settings) -> str:
    """Our Calico Node's name: the setting, else the host name as calico/node picks it."""
    return settings.reflector.node_name or socket.gethostname().strip().lower()


def _v3_planner(name: str) -> Callable[[Mapping[str, bytes], Identity], tuple[Plan, tuple[Rejected, ...]]]:
    def to_plan(raw: Mapping[str, bytes], me: Identity) -> tuple[Plan, tuple[Rejected, ...]]:
        data = v3_resources.parse_resources(raw)
        return plan_v3(data, name, me), data.rejected

    return to_plan


def schema(settings: Settings, decided: Optional[str] = None) -> Schema:
    """The v1 or v3 schema; with [etcd] schema = "auto", `decided` says which (see detect)."""
    name = decided or settings.etcd.schema
    if name == "v3":
        return Schema(name="v3", prefix=v3_resources.PREFIX, to_plan=_v3_planner(node_name(settings)),
                      keep=v3_resources.relevant_key)
    if name == "v1":
        return Schema(name="v1", prefix=settings.etcd.prefix, to_plan=_legacy_plan)
    raise SchemaUndecided('[etcd] schema = "auto" is decided from etcd\'s data')


def holds_v3_nodes(raw: Mapping[str, bytes]) -> bool:
    """auto's rule, on a snapshot of the v3 prefix: any Node resource means Calico v3."""
    return any(key.startswith(V3_NODES) for key in raw)


def decide_schema(settings: Settings) -> str:
    """"v1" or "v3": the setting, or for "auto" whether etcd holds any v3 Node resource."""
    if settings.etcd.schema != "auto":
        return settings.etcd.schema
    store = datastore(settings, v3_resources.PREFIX + "/" + V3_NODES)
    try:
        raw, _revision = store.snapshot()
    finally:
        store.close()
    return "v3" if raw else "v1"


def read_with_schema(settings: Settings, heartbeat: Optional[Callable[[], None]] = None
                     ) -> tuple[Schema, "EtcdDatastore", dict, int]:
    """One snapshot under the schema in force, deciding "auto" from it.

    auto reads the v3 prefix first: any `nodes/` key means v3, and that snapshot is the
    data; otherwise the v1 prefix is read. A failed read raises DatastoreError and decides
    nothing. The returned store is open (the caller watches from it, then closes it).
    `heartbeat`: see EtcdDatastore.
    """
    if settings.etcd.schema != "auto":
        chosen = schema(settings)
        store = datastore(settings, chosen.prefix, heartbeat)
        try:
            raw, revision = store.snapshot()
        except BaseException:
            store.close()
            raise
        return chosen, store, raw, revision
    store = datastore(settings, v3_resources.PREFIX, heartbeat)
    try:
        raw, revision = store.snapshot()
        if holds_v3_nodes(raw):
            return schema(settings, "v3"), store, raw, revision
        chosen = schema(settings, "v1")
        store.retarget(chosen.prefix)
        raw, revision = store.snapshot()
        return chosen, store, raw, revision
    except BaseException:
        store.close()
        raise


def datastore(settings: Settings, prefix: Optional[str] = None,
              heartbeat: Optional[Callable[[], None]] = None) -> EtcdDatastore:
    etcd = settings.etcd
    config = EtcdConfig(
        endpoints=tuple(etcd.endpoints),
        ca_cert=etcd.ca_cert,
        cert=etcd.cert,
        key=etcd.key,
        username=etcd.username,
        password=etcd.password,
    )
    return EtcdDatastore(config, prefix or etcd.prefix, heartbeat)


@dataclass(frozen=True)
class Computed:
    plan: Plan
    rejected: tuple[Rejected, ...]
    configs: dict[str, str]  # target name -> config text


def compute(raw: Mapping[str, bytes], me: Identity, render: Renderer, data: Schema) -> Computed:
    """The whole pure pipeline: etcd's keys to the BIRD config text."""
    the_plan, rejected = data.to_plan(raw, me)
    return Computed(the_plan, rejected, render.render(the_plan))


def family_targets(flavour_name: str) -> dict[int, str]:
    """Which BIRD config (and socket) carries each address family."""
    return {4: "bird", 6: "bird"} if flavour_name == "bird2" else {4: "bird", 6: "bird6"}
