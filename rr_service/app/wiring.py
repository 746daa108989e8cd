"""Builds the reflector's parts from Settings, so `run`, `render`, `status` and `register`
agree on them: this reflector's identity, the BIRD flavour and its config targets, the
datastore source, the rule set and the pipeline."""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable, Optional

from rr_service.app.settings import Settings
from rr_service.bird.apply import BirdTarget
from rr_service.bird.version import BirdVersionError, bird_version, flavour_of
from rr_service.calico import rule_set
from rr_service.core.pipeline import Computed, compute_once
from rr_service.core.plan import Identity
from rr_service.core.render import Renderer
from rr_service.core.running import read_claims
from rr_service.sources.base import DataSet, Source

FLAVOURS = ("bird1", "bird2", "bird3")


class FlavourError(Exception):
    """The configured BIRD flavour does not match the installed BIRD, or cannot be found out."""


def node_name(settings: Settings) -> str:
    """Our Calico name: the setting, else the host name as calico/node picks it."""
    return settings.reflector.node_name or socket.gethostname().strip().lower()


def identity(settings: Settings) -> Identity:
    ip6 = settings.reflector.ip6
    return Identity(
        ipv4=ipaddress.IPv4Address(settings.reflector.ip),
        ipv6=ipaddress.IPv6Address(ip6) if ip6 else None,
        node_name=node_name(settings),
    )


def flavour(settings: Settings, override: Optional[str] = None) -> str:
    """bird1, bird2 or bird3: the setting, checked against the installed BIRD, or asked of it (auto).

    `override` is `render --flavour`: an explicit flavour is taken as given, whatever
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
    return renderer_for(settings, flavour(settings, override))


def renderer_for(settings: Settings, flavour_name: str) -> Renderer:
    """The configs as the settings want them: this flavour, [filters] for client sessions."""
    return Renderer(flavour=flavour_name, client_filter=settings.filters.mode,
                    import_limit=settings.filters.import_limit)


def targets(settings: Settings, flavour_name: str) -> dict[str, BirdTarget]:
    """Where each rendered config goes, how it is checked and which socket reloads it."""
    bird = settings.bird
    ipv4 = BirdTarget(config_path=bird.config, binary=bird.binary, socket_path=bird.socket)
    if flavour_name != "bird1":
        return {"bird": ipv4}
    ipv6 = BirdTarget(config_path=bird.config6, binary=bird.binary6, socket_path=bird.socket6)
    return {"bird": ipv4, "bird6": ipv6}


def family_targets(flavour_name: str) -> dict[int, str]:
    """Which BIRD config (and socket) carries each address family."""
    return {4: "bird", 6: "bird6"} if flavour_name == "bird1" else {4: "bird", 6: "bird"}


def datastore_name(settings: Settings) -> str:
    """The datastore in words, for STATUS= and the log ("Kubernetes API unreachable ...")."""
    return "Kubernetes API" if settings.datastore.type == "kubernetes" else "etcd"


def datastore_label(settings: Settings) -> str:
    """The datastore as the calico_rr_build metric's `datastore` label says it."""
    return "kubernetes" if settings.datastore.type == "kubernetes" else "etcd"


def source(settings: Settings, heartbeat: Optional[Callable[[], None]] = None) -> Source:
    """The datastore the settings name. Imported here, not at the top: `--help` and the pure
    parts must work without the datastore's client library, and etcd mode never loads the
    Kubernetes client (nor the other way round)."""
    if settings.datastore.type == "kubernetes":
        from rr_service.sources.kubernetes.source import KubeSource

        return KubeSource(settings.kubernetes.kubeconfig or None, settings.kubernetes.secret_namespace, heartbeat)
    from rr_service.sources.etcd.config import EtcdConfig
    from rr_service.sources.etcd.source import EtcdSource

    etcd = settings.etcd
    config = EtcdConfig(endpoints=tuple(etcd.endpoints), ca_cert=etcd.ca_cert, cert=etcd.cert, key=etcd.key,
                        username=etcd.username, password=etcd.password)
    store = EtcdSource(config, etcd.schema, etcd.prefix, heartbeat)
    if not settings.kubernetes.kubeconfig:
        return store
    # Calico in etcd mode reads BGP passwords from Kubernetes Secrets when it has a kubeconfig.
    from rr_service.sources.kubernetes.with_secrets import WithKubernetesSecrets

    return WithKubernetesSecrets(store, settings.kubernetes.kubeconfig, settings.kubernetes.secret_namespace)


def compute_now(settings: Settings, render: Renderer) -> tuple[DataSet, Computed]:
    """One read of the datastore through the whole pipeline, as `run` would compute it."""
    store = source(settings)
    try:
        data = store.read()
    finally:
        store.close()
    return data, compute_once(rule_set(data.rules), data.items, identity(settings), render, data.created,
                              running_claims(settings))


def running_claims(settings: Settings) -> dict:
    """Who holds each neighbour in the configs BIRD runs (core/running.py). bird.conf is read
    last: after a move to BIRD 2 it holds both families, and an old bird6.conf says nothing
    it does not."""
    return read_claims((settings.bird.config6, settings.bird.config))
