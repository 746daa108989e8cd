"""Builds the daemon's parts from Settings, so `run`, `render` and `status` agree on them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Mapping

from .apply import BirdTarget
from .datastore.etcd import EtcdConfig, EtcdDatastore
from .model import Snapshot, parse_snapshot
from .plan import Identity, Plan, plan
from .render import Renderer
from .settings import Settings

SUPPORTED_FLAVOURS = ("bird1",)


class FlavourError(Exception):
    """The configured BIRD flavour is not one this version can drive."""


def identity(settings: Settings) -> Identity:
    ip6 = settings.reflector.ip6
    return Identity(
        ipv4=ipaddress.IPv4Address(settings.reflector.ip),
        ipv6=ipaddress.IPv6Address(ip6) if ip6 else None,
    )


def flavour(settings: Settings) -> str:
    chosen = settings.bird.flavour
    if chosen == "auto":
        return "bird1"
    if chosen not in SUPPORTED_FLAVOURS:
        raise FlavourError(
            f"[bird] flavour = {chosen!r} is not supported by this version "
            f"(supported: auto, {', '.join(SUPPORTED_FLAVOURS)})"
        )
    return chosen


def renderer(settings: Settings) -> Renderer:
    return Renderer(flavour=flavour(settings))


def targets(settings: Settings) -> dict[str, BirdTarget]:
    """Where each rendered config goes, how it is checked and which socket reloads it."""
    bird = settings.bird
    ipv4 = BirdTarget(config_path=bird.config, binary=bird.binary, socket_path=bird.socket)
    if flavour(settings) == "bird2":
        return {"bird": ipv4}
    ipv6 = BirdTarget(config_path=bird.config6, binary=bird.binary6, socket_path=bird.socket6)
    return {"bird": ipv4, "bird6": ipv6}


def datastore(settings: Settings) -> EtcdDatastore:
    etcd = settings.etcd
    config = EtcdConfig(
        endpoints=tuple(etcd.endpoints),
        ca_cert=etcd.ca_cert,
        cert=etcd.cert,
        key=etcd.key,
        username=etcd.username,
        password=etcd.password,
    )
    return EtcdDatastore(config, etcd.prefix)


@dataclass(frozen=True)
class Computed:
    snapshot: Snapshot
    plan: Plan
    configs: dict[str, str]  # target name -> config text


def compute(raw: Mapping[str, bytes], me: Identity, render: Renderer) -> Computed:
    """The whole pure pipeline: etcd's keys to the BIRD config text."""
    snapshot = parse_snapshot(raw)
    the_plan = plan(snapshot, me)
    return Computed(snapshot, the_plan, render.render(the_plan))
