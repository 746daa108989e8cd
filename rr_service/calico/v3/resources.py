"""Calico v3 resources (Node, BGPPeer, BGPConfiguration) from etcd, validated. Pure.

Keys are relative to `/calico/resources/v3/projectcalico.org/`: `nodes/<name>`,
`bgppeers/<name>`, `bgpconfigurations/<name>`; values are the whole JSON objects
calicoctl stores (`{"kind": ..., "apiVersion": ..., "metadata": {...}, "spec": {...}}`).
Other resource kinds under that prefix are not ours and are ignored.

As in `model.py`, every value is checked once, here; a bad resource becomes a
`Rejected(key, reason)` and every other resource still counts. Fields this reflector does
not use are ignored, except a few that change what a session means (a BGP password, TTL
security, filters): those come out as warnings, because silently dropping them would give
a session that differs from Calico's.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Mapping, Optional

from rr_service.core.values import (
    DEFAULT_AS,
    HOSTNAME_RE,
    IPAddress,
    IPNetwork,
    InvalidValue,
    Rejected,
    show,
    no_duplicate_fields,
    parse_cluster_id,
    parse_route_cidr,
)
from rr_service.calico.v3 import fields
from rr_service.calico.v3.selector import Selector

PREFIX = "/calico/resources/v3/projectcalico.org"
KINDS = {"nodes": "Node", "bgppeers": "BGPPeer", "bgpconfigurations": "BGPConfiguration", "ippools": "IPPool"}
API_VERSION = "projectcalico.org/v3"
MAX_RESOURCE_BYTES = 256 * 1024  # a Node is ~1 KB; annotations can grow it, not this far
# Labels `calico-rr register` puts on the BGPPeer that declares a reflector outside the
# cluster (no Calico Node of its own): the reflector's name, and its cluster id, which Calico's
# BGPPeer spec has no field for. Reflectors find each other by the first one.
REFLECTOR_LABEL = "calico-rr/reflector"
CLUSTER_ID_LABEL = "calico-rr/cluster-id"
# BGPConfiguration fields whose ranges the nodes advertise (Calico's service advertisement).
SERVICE_RANGE_FIELDS = ("serviceClusterIPs", "serviceExternalIPs", "serviceLoadBalancerIPs")
MAX_SERVICE_RANGES = 64
# BGPPeer fields that change a session in a way this reflector does not render.
UNSUPPORTED_PEER_FIELDS = ("ttlSecurity", "filters", "localWorkloadSelector",
                           "numAllowedLocalASNumbers")


def relevant_key(key: str) -> bool:
    """The keys this reflector reads; everything else under the v3 prefix is ignored."""
    return key.split("/", 1)[0] in KINDS


@dataclass(frozen=True)
class CalicoNode:
    name: str
    labels: Mapping[str, str]
    ipv4: Optional[ipaddress.IPv4Address] = None
    ipv6: Optional[ipaddress.IPv6Address] = None
    as_num: Optional[int] = None
    cluster_id: Optional[str] = None  # spec.bgp.routeReflectorClusterID
    # When the Node was created, in the datastore's order (sources.base.DataSet): of two
    # Nodes claiming one address, the earlier claim wins.
    created: int = 0

    def address(self, family: int) -> Optional[IPAddress]:
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True)
class BGPPeer:
    name: str
    node: Optional[str] = None  # spec.node
    node_selector: Optional[Selector] = None  # spec.nodeSelector
    peer_ip: Optional[IPAddress] = None  # spec.peerIP, without the port
    peer_port: Optional[int] = None  # the port of `ip:port` / `[ipv6]:port`
    as_num: Optional[int] = None  # spec.asNumber (with peerIP)
    peer_selector: Optional[Selector] = None  # spec.peerSelector
    keep_next_hop: bool = False  # spec.keepOriginalNextHop
    no_source_address: bool = False  # spec.sourceAddress: None
    max_restart_time: Optional[int] = None  # spec.maxRestartTime, whole seconds
    reverse: bool = True  # spec.reversePeering != "Manual"
    unsupported: tuple[str, ...] = ()  # fields set that we cannot render
    notes: tuple[str, ...] = ()  # values we changed to something BGP can carry, said as warnings
    # Set when the BGPPeer declares a reflector (label REFLECTOR_LABEL, with a peerIP): its
    # name, and the cluster id of label CLUSTER_ID_LABEL (None: none).
    reflector: Optional[str] = None
    reflector_cluster_id: Optional[str] = None
    # spec.password.secretKeyRef as (secret name, key); None: no password. The value itself
    # is not in the datastore: rules.context() resolves it from CalicoData.secrets into
    # `password` (never shown by repr, so it cannot reach a log line through one).
    password_ref: Optional[tuple[str, str]] = None
    password: Optional[str] = field(default=None, repr=False)

    @property
    def is_global(self) -> bool:
        """No node and no nodeSelector: the peering applies to every node."""
        return self.node is None and self.node_selector is None

    def applies_to(self, node: CalicoNode) -> bool:
        if self.node is not None:
            return node.name == self.node
        if self.node_selector is not None:
            return self.node_selector.matches(node.labels)
        return True


@dataclass(frozen=True)
class BGPConfig:
    name: str
    as_num: Optional[int] = None
    listen_port: Optional[int] = None
    mesh_enabled: Optional[bool] = None  # spec.nodeToNodeMeshEnabled
    # The service ranges the nodes advertise (serviceClusterIPs, serviceExternalIPs,
    # serviceLoadBalancerIPs): routes a client may announce besides its pools' (default only).
    service_ranges: tuple = ()


@dataclass(frozen=True)
class IPPool:
    name: str
    cidr: IPNetwork
    # spec.disableBGPExport: Calico announces none of its routes, so a client must not either.
    # (spec.disabled does not count: the pool's blocks in use stay, and are announced.)
    bgp_export: bool = True


@dataclass(frozen=True)
class CalicoData:
    nodes: tuple[CalicoNode, ...] = ()
    peers: tuple[BGPPeer, ...] = ()
    configs: Mapping[str, BGPConfig] = field(default_factory=dict)
    pools: tuple[IPPool, ...] = ()
    rejected: tuple[Rejected, ...] = field(default=(), compare=False)
    # The nodes by name, when the caller keeps them so (table.ResourceTable): node() is then
    # one lookup, not a walk over every node.
    by_name: Optional[Mapping[str, CalicoNode]] = field(default=None, compare=False)
    # BGP password secrets as plain values, (secret name, key) -> value, read by the source
    # from the secret namespace; a ref missing here is a secret or key that does not exist.
    secrets: Mapping[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def node(self, name: str) -> Optional[CalicoNode]:
        if self.by_name is not None:
            return self.by_name.get(name)
        return next((n for n in self.nodes if n.name == name), None)

    @property
    def default(self) -> BGPConfig:
        return self.configs.get("default") or BGPConfig("default")

    @property
    def global_as(self) -> int:
        # Only `default` counts, as in calico/node: an asNumber on node.<name> is read (and
        # validated) but sets nothing; a node's own AS is its Node's spec.bgp.asNumber.
        return self.default.as_num if self.default.as_num is not None else DEFAULT_AS

    @property
    def mesh_enabled(self) -> bool:
        return self.default.mesh_enabled is not False  # Calico's default: on

    def as_of(self, node: CalicoNode) -> int:
        return node.as_num if node.as_num is not None else self.global_as

    def listen_port_of(self, node_name: str) -> Optional[int]:
        """The port a node's BIRD listens on: node.<name>, else default, else BGP's 179."""
        own = self.configs.get(f"node.{node_name}")
        if own is not None and own.listen_port is not None:
            return own.listen_port
        return self.default.listen_port


# ---------------------------------------------------------------------------- resources

def _load(raw: bytes, plural: str, key_name: str) -> tuple[str, dict]:
    if len(raw) > MAX_RESOURCE_BYTES:
        raise InvalidValue(f"value is {len(raw)} bytes, more than the {MAX_RESOURCE_BYTES} allowed")
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicate_fields)
    except UnicodeDecodeError:
        raise InvalidValue("value is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidValue(f"value is not valid JSON ({show(str(exc), 80)})") from None
    if not isinstance(data, dict):
        raise InvalidValue(f"value must be a JSON object, not {type(data).__name__}")
    kind = data.get("kind", KINDS[plural])
    if kind != KINDS[plural]:
        raise InvalidValue(f"kind is {show(kind)}, expected {KINDS[plural]}")
    api = data.get("apiVersion", API_VERSION)
    if api != API_VERSION:
        raise InvalidValue(f"apiVersion is {show(api)}, expected {API_VERSION}")
    metadata = fields.json_object(data.get("metadata"), "metadata")
    name = fields.parse_name(key_name)
    if metadata.get("name", name) != name:
        raise InvalidValue(f"key names {name} but metadata.name is {show(metadata.get('name'))}")
    return name, data


def parse_node(key_name: str, raw: bytes, created: int = 0) -> CalicoNode:
    name, data = _load(raw, "nodes", key_name)
    metadata = fields.json_object(data.get("metadata"), "metadata")
    bgp = fields.json_object(fields.json_object(data.get("spec"), "spec").get("bgp"), "spec.bgp")
    v4, v6 = bgp.get("ipv4Address"), bgp.get("ipv6Address")
    return CalicoNode(
        name=name,
        labels=fields.parse_labels(metadata.get("labels")),
        ipv4=None if v4 in (None, "") else fields.parse_cidr_address(v4, 4),
        ipv6=None if v6 in (None, "") else fields.parse_cidr_address(v6, 6),
        as_num=fields.optional_as(bgp.get("asNumber")),
        cluster_id=parse_cluster_id(bgp.get("routeReflectorClusterID")),
        created=created,
    )


def parse_bgp_peer(key_name: str, raw: bytes) -> BGPPeer:
    name, data = _load(raw, "bgppeers", key_name)
    spec = fields.json_object(data.get("spec"), "spec")
    node = spec.get("node") or None
    if node is not None:
        node = fields.parse_name(node)
    node_selector = fields.parse_selector_field(spec.get("nodeSelector"), "nodeSelector")
    peer_selector = fields.parse_selector_field(spec.get("peerSelector"), "peerSelector")
    if node is not None and node_selector is not None:
        raise InvalidValue("node and nodeSelector cannot both be set")
    peer_ip, peer_port, as_num = None, None, None
    if spec.get("peerIP") not in (None, ""):
        if peer_selector is not None:
            raise InvalidValue("peerIP and peerSelector cannot both be set")
        peer_ip, peer_port = fields.parse_peer_ip(spec["peerIP"])
        as_num = fields.optional_as(spec.get("asNumber"))
        if as_num is None:
            raise InvalidValue("peerIP needs an asNumber")
    elif peer_selector is None:
        raise InvalidValue("needs peerIP or peerSelector")
    reflector, reflector_cluster_id = _reflector_labels(data, peer_ip)
    source = spec.get("sourceAddress", "UseNodeIP")
    if source not in ("UseNodeIP", "None", "", None):
        raise InvalidValue(f"sourceAddress {show(source)} is not UseNodeIP or None")
    restart = fields.parse_duration_seconds(spec.get("maxRestartTime"))
    notes = ()
    if restart is not None and restart > fields.MAX_RESTART_SECONDS:
        notes = (f"maxRestartTime {show(spec.get('maxRestartTime'))} ({restart} s) is more than the "
                 f"{fields.MAX_RESTART_SECONDS} s BGP can carry (a 12-bit field): {fields.MAX_RESTART_SECONDS} s is used",)
    reverse = spec.get("reversePeering", "Auto")
    if reverse not in ("Auto", "Manual", "", None):
        raise InvalidValue(f"reversePeering {show(reverse)} is not Auto or Manual")
    return BGPPeer(
        name=name,
        node=node,
        node_selector=node_selector,
        peer_ip=peer_ip,
        peer_port=peer_port,
        as_num=as_num,
        peer_selector=peer_selector,
        keep_next_hop=bool(fields.flag(spec.get("keepOriginalNextHop"), "keepOriginalNextHop")),
        no_source_address=source == "None",
        max_restart_time=restart if restart is None else min(restart, fields.MAX_RESTART_SECONDS),
        reverse=reverse != "Manual",
        unsupported=tuple(f for f in UNSUPPORTED_PEER_FIELDS if spec.get(f) not in (None, "", [], {}, 0)),
        reflector=reflector,
        reflector_cluster_id=reflector_cluster_id,
        notes=notes,
        password_ref=fields.parse_password_ref(spec.get("password")),
    )


def _reflector_labels(data: dict, peer_ip: Optional[IPAddress]) -> tuple[Optional[str], Optional[str]]:
    """(reflector name, cluster id) of a BGPPeer that declares a reflector, else (None, None).
    Only these two labels are read and checked: a BGPPeer's other labels select nothing in
    Calico, so an odd one must not cost the BGPPeer its sessions."""
    labels = fields.json_object(data.get("metadata"), "metadata").get("labels")
    labels = labels if isinstance(labels, dict) else {}
    if REFLECTOR_LABEL not in labels:
        if CLUSTER_ID_LABEL in labels:
            raise InvalidValue(f"label {CLUSTER_ID_LABEL} without label {REFLECTOR_LABEL}")
        return None, None
    name = labels[REFLECTOR_LABEL]
    if not isinstance(name, str) or not HOSTNAME_RE.fullmatch(name):
        raise InvalidValue(f"label {REFLECTOR_LABEL} {show(name)} is not a valid reflector name")
    if peer_ip is None:
        raise InvalidValue(f"label {REFLECTOR_LABEL} needs a peerIP: the reflector's address")
    try:
        cluster_id = parse_cluster_id(labels.get(CLUSTER_ID_LABEL))
    except InvalidValue as exc:
        raise InvalidValue(f"label {CLUSTER_ID_LABEL}: {exc}") from None
    return name, cluster_id


def parse_bgp_configuration(key_name: str, raw: bytes) -> BGPConfig:
    name, data = _load(raw, "bgpconfigurations", key_name)
    spec = fields.json_object(data.get("spec"), "spec")
    port = spec.get("listenPort")
    ranges = []
    for field_name in SERVICE_RANGE_FIELDS:
        listed = spec.get(field_name)
        if listed is None:
            continue
        if not isinstance(listed, list) or len(listed) > MAX_SERVICE_RANGES:
            raise InvalidValue(f"{field_name} must be a list of at most {MAX_SERVICE_RANGES} {{cidr: ...}} objects")
        for entry in listed:
            ranges.append(parse_route_cidr(fields.json_object(entry, field_name).get("cidr"), f"{field_name} cidr"))
    return BGPConfig(
        name=name,
        as_num=fields.optional_as(spec.get("asNumber")),
        listen_port=None if port in (None, 0) else fields.parse_port(port, "listenPort"),
        mesh_enabled=fields.flag(spec.get("nodeToNodeMeshEnabled"), "nodeToNodeMeshEnabled"),
        service_ranges=tuple(ranges),
    )


def parse_ip_pool(key_name: str, raw: bytes) -> IPPool:
    name, data = _load(raw, "ippools", key_name)
    spec = fields.json_object(data.get("spec"), "spec")
    fields.flag(spec.get("disabled"), "disabled")  # checked, but a disabled pool's blocks stay announced
    return IPPool(name=name, cidr=parse_route_cidr(spec.get("cidr"), "cidr"),
                  bgp_export=not fields.flag(spec.get("disableBGPExport"), "disableBGPExport"))


_PARSERS = {"nodes": parse_node, "bgppeers": parse_bgp_peer, "bgpconfigurations": parse_bgp_configuration,
            "ippools": parse_ip_pool}


# BGP password Secrets, as a source gives them: `secrets/<name>` → the Secret's `data` as
# JSON (key → base64, as Kubernetes keeps it). Not a Calico kind and not read from etcd's
# Calico prefix: only a source that reads Kubernetes Secrets puts these keys in.
SECRETS = "secrets"


def parse_secret(name: str, raw: bytes) -> Mapping[str, str]:
    """A Secret's data, key → text. A value that is not base64 is left out (a BGPPeer naming
    it then warns that the key is missing); bytes that are not UTF-8 are kept as escapes,
    which the password check refuses. Messages never quote a value."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidValue("the Secret's data is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidValue("the Secret's data is not a map")
    out = {}
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        try:
            decoded = base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error):
            continue
        out[key] = decoded.decode("utf-8", "surrogateescape")
    return out


def parse_resource(key: str, raw: bytes, created: int = 0):
    """One resource by its key (`nodes/<name>`, ...): (plural, record); None for a key of a
    kind the reflector does not read. Raises InvalidValue with the reason. `created`: the
    key's creation order (a Node's, sources.base.DataSet)."""
    plural, _, rest = key.partition("/")
    if plural == SECRETS and rest and "/" not in rest:
        return plural, parse_secret(rest, raw)
    if plural not in KINDS:
        return None
    if "/" in rest or not rest:
        raise InvalidValue("unexpected key layout (expected <plural>/<name>)")
    if plural == "nodes":
        return plural, parse_node(rest, raw, created)
    return plural, _PARSERS[plural](rest, raw)


def parse_resources(raw: Mapping[str, bytes]) -> CalicoData:
    """Every Node, BGPPeer and BGPConfiguration, by key."""
    from rr_service.calico.v3.table import ResourceTable

    return ResourceTable().apply(raw).data
