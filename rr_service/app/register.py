"""`calico-rr register` / `unregister`: what this reflector writes to declare itself, in
whichever data model the datastore holds. Used by the command line and by the Ansible role's
module (which previews the writes for check and diff mode).

- v1: `rr_v4/<ip>` (and `rr_v6/<ip6>`) = `{"ip": ..., "cluster_id": ...}`.
- v3: the BGPPeers `calico-rr-<node_name>-ipv4` / `-ipv6` (default), or with `node` our
  Calico Node resource (calico/v3/register.py has the pure read-modify-write steps).

Every v3 write is an optimistic update through the Source: somebody else's change made in
between is read again and kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional

from rr_service.app.settings import Settings
from rr_service.core.values import InvalidValue, parse_as_number, parse_cluster_id
from rr_service.sources.base import Source


@dataclass(frozen=True)
class Options:
    cluster_id: Optional[str] = None  # None: keep the stored one (v3); "" none
    labels: dict = field(default_factory=dict)  # v3 only
    node: bool = False  # v3: our Node resource instead of the BGPPeers
    as_number: Optional[str] = None  # v3 BGPPeers
    node_selector: Optional[str] = None  # v3 BGPPeers

    def v3_only(self) -> list[str]:
        """The options given that only the v3 data knows."""
        given = [("--label", bool(self.labels)), ("--node", self.node), ("--as-number", self.as_number is not None),
                 ("--node-selector", self.node_selector is not None)]
        return [option for option, present in given if present]


@dataclass(frozen=True)
class Write:
    key: str  # in the source's key space
    change: Callable[[Optional[bytes]], bytes]


class RegisterError(Exception):
    """Options that do not fit (exit status 2)."""


def split_label(text: str) -> tuple[str, str]:
    """`--label KEY=VALUE`, checked as a stored label is."""
    from rr_service.calico.v3.register import parse_label_option

    return parse_label_option(text)


def writes(settings: Settings, source: Source, options: Options) -> tuple[str, list[Write]]:
    """(the data model, the writes register makes): nothing is written yet."""
    for option, value, check in (("--cluster-id", options.cluster_id, parse_cluster_id),
                                 ("--as-number", options.as_number, parse_as_number)):
        try:
            if value:
                check(value)
        except InvalidValue as exc:
            raise RegisterError(f"{option}: {exc}") from None
    rules = source.rules()
    if rules == "v1":
        if options.v3_only():
            raise RegisterError(f"{options.v3_only()[0]} needs the Calico v3 data ([etcd] schema)")
        return rules, _v1_writes(settings, options)
    try:
        labels = dict(split_label(f"{k}={v}") for k, v in options.labels.items())
    except InvalidValue as exc:
        raise RegisterError(f"--label: {exc}") from None
    if options.node:
        if options.as_number is not None or options.node_selector is not None:
            raise RegisterError("--as-number and --node-selector are for the BGPPeers, not --node")
        return rules, [_node_write(settings, options, labels)]
    return rules, _peer_writes(settings, source, options, labels)


def register(settings: Settings, source: Source, options: Options) -> list[str]:
    """Make the writes; one line per key for the operator."""
    _rules, planned = writes(settings, source, options)
    lines = []
    for write in planned:
        existing, value = source.update(write.key, write.change)
        verb = "updated" if existing is not None else "created"
        lines.append(f"{verb} {source.where(write.key)} = {value.decode()}")
    return lines


def unregister(settings: Settings, source: Source) -> list[str]:
    """Remove what register wrote; a Node of ours is left alone (with a note)."""
    lines = []
    if source.rules() == "v1":
        for key in _v1_keys(settings):
            lines.append(f"{'removed' if source.delete(key) else 'not present:'} {source.where(key)}")
        return lines
    from rr_service.calico.v3.external import reflector_peer_name

    name = settings_node_name(settings)
    removed = 0
    for family in (4, 6):
        key = f"bgppeers/{reflector_peer_name(name, family)}"
        gone = source.delete(key)
        removed += gone
        lines.append(f"{'removed' if gone else 'not present:'} {source.where(key)}")
    if removed:
        lines.append("the nodes and the other reflectors drop their sessions to this reflector; a calico-rr still "
                     "running here holds back dropping its own ([safety] max_drop_share): stop it, or run "
                     "`calico-rr accept`")
    if source.get(f"nodes/{name}") is not None:
        lines.append(f"our Node resource {source.where(f'nodes/{name}')} stays: remove it with "
                     f"`calicoctl delete node {name}` (this also releases its IPAM data)")
    return lines


def settings_node_name(settings: Settings) -> str:
    from rr_service.app.wiring import node_name

    return node_name(settings)


# -- v1 -----------------------------------------------------------------------------------

def _v1_keys(settings: Settings) -> list[str]:
    keys = [f"rr_v4/{settings.reflector.ip}"]
    if settings.reflector.ip6:
        keys.append(f"rr_v6/{settings.reflector.ip6}")
    return keys


def _v1_writes(settings: Settings, options: Options) -> list[Write]:
    cluster_id = parse_cluster_id(options.cluster_id or "") or ""
    found = []
    for key in _v1_keys(settings):
        value = json.dumps({"ip": key.split("/", 1)[1], "cluster_id": cluster_id}).encode()
        found.append(Write(key, lambda _existing, value=value: value))
    return found


# -- v3 -----------------------------------------------------------------------------------

def _node_write(settings: Settings, options: Options, labels: dict) -> Write:
    from rr_service.app.local_addresses import prefix_length
    from rr_service.calico.v3 import register as v3_register

    name = settings_node_name(settings)

    def change(existing: Optional[bytes]) -> bytes:
        ipv4, ipv6 = v3_register.node_addresses(existing, (settings.reflector.ip, settings.reflector.ip6), prefix_length)
        return v3_register.updated_node(existing, name, ipv4, ipv6, options.cluster_id, labels)

    return Write(f"nodes/{name}", change)


def _peer_writes(settings: Settings, source: Source, options: Options, labels: dict) -> list[Write]:
    from rr_service.calico.v3 import register as v3_register
    from rr_service.calico.v3.external import reflector_peer_name

    name = settings_node_name(settings)
    as_num = parse_as_number(options.as_number) if options.as_number is not None else None
    default_as = as_num if as_num is not None else _global_as(source)
    found = []
    for family, address in ((4, settings.reflector.ip), (6, settings.reflector.ip6)):
        if not address:
            continue
        peer_name = reflector_peer_name(name, family)

        def change(existing: Optional[bytes], address: str = address, peer_name: str = peer_name) -> bytes:
            return v3_register.updated_reflector_peer(existing, peer_name, name, address, as_num, default_as,
                                                      options.cluster_id, options.node_selector, labels)

        found.append(Write(f"bgppeers/{peer_name}", change))
    return found


def _global_as(source: Source) -> int:
    """The cluster's AS (BGPConfiguration default), as the nodes use it for us."""
    from rr_service.calico.v3 import resources

    raw = source.get("bgpconfigurations/default")
    if raw is None:
        return resources.DEFAULT_AS
    try:
        config = resources.parse_bgp_configuration("default", raw)
    except InvalidValue as exc:
        raise InvalidValue(f"BGPConfiguration default is invalid ({exc}); give --as-number") from None
    return config.as_num if config.as_num is not None else resources.DEFAULT_AS
