"""Builds the daemon's parts from Settings, so `run`, `render` and `status` agree on them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from .apply import BirdTarget
from .bird_version import BirdVersionError, bird_version, flavour_of
from .datastore.etcd import EtcdConfig, EtcdDatastore
from .model import Rejected, parse_snapshot
from .plan import Identity, Plan, plan
from .render import Renderer
from .settings import Settings

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

    An explicit flavour with no BIRD binary installed is trusted, so `render --flavour` works
    on any machine; `run` then fails at its first `bird -p` with a message naming the binary.
    """
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


@dataclass(frozen=True)
class Schema:
    """One way Calico keeps its BGP data in etcd: where it lives and how it becomes a Plan."""

    name: str
    prefix: str
    to_plan: Callable[[Mapping[str, bytes], Identity], tuple[Plan, tuple[Rejected, ...]]]


def _legacy_plan(raw: Mapping[str, bytes], me: Identity) -> tuple[Plan, tuple[Rejected, ...]]:
    snapshot = parse_snapshot(raw)
    return plan(snapshot, me), snapshot.rejected


def schema(settings: Settings) -> Schema:
    return Schema(name="v1", prefix=settings.etcd.prefix, to_plan=_legacy_plan)


def datastore(settings: Settings, prefix: Optional[str] = None) -> EtcdDatastore:
    etcd = settings.etcd
    config = EtcdConfig(
        endpoints=tuple(etcd.endpoints),
        ca_cert=etcd.ca_cert,
        cert=etcd.cert,
        key=etcd.key,
        username=etcd.username,
        password=etcd.password,
    )
    return EtcdDatastore(config, prefix or etcd.prefix)


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
