"""Calico v3 resources in the lab's etcd, written the way calicoctl stores them.

calicoctl (etcd datastore) keeps one JSON object per resource under
``/calico/resources/v3/projectcalico.org/<plural>/<name>``: ``kind``, ``apiVersion``,
``metadata`` (``name``, ``uid``, ``creationTimestamp``, ``labels`` with string values) and
``spec``, marshalled by Go's encoding/json (compact, no spaces).  Cluster-scoped kinds
only (Node, BGPPeer, BGPConfiguration, IPPool): no namespace in the key.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Dict, Optional

from tests.lab import Etcd, Lab, Reflector, wait_for

V3_PREFIX = "/calico/resources/v3/projectcalico.org"
API_VERSION = "projectcalico.org/v3"
PLURALS = {"Node": "nodes", "BGPPeer": "bgppeers", "BGPConfiguration": "bgpconfigurations", "IPPool": "ippools"}


def resource(kind: str, name: str, spec: dict, labels: Optional[Dict[str, str]] = None) -> dict:
    metadata: dict = {
        "name": name,
        "uid": str(uuid.uuid4()),
        "creationTimestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if labels:
        if not all(isinstance(v, str) for v in labels.values()):
            raise ValueError("calicoctl stores label values as strings")
        metadata["labels"] = dict(labels)
    return {"kind": kind, "apiVersion": API_VERSION, "metadata": metadata, "spec": spec}


class V3Data:
    """Puts and deletes v3 resources through the lab's etcd (etcdctl in its namespace)."""

    def __init__(self, etcd: Etcd):
        self.etcd = etcd

    @staticmethod
    def key(kind: str, name: str) -> str:
        return f"{V3_PREFIX}/{PLURALS[kind]}/{name}"

    def put(self, obj: dict) -> None:
        self.etcd.put(self.key(obj["kind"], obj["metadata"]["name"]),
                      json.dumps(obj, separators=(",", ":")))

    def delete(self, kind: str, name: str) -> None:
        self.etcd.delete(self.key(kind, name))

    # -- the kinds the reflector reads -----------------------------------------
    def node(self, name: str, ipv4: Optional[str] = None, ipv6: Optional[str] = None,
             labels: Optional[Dict[str, str]] = None, cluster_id: Optional[str] = None,
             as_num: Optional[int] = None) -> dict:
        """A Node; addresses in CIDR notation as calico/node writes them (``192.0.2.21/24``)."""
        bgp: dict = {}
        if ipv4:
            bgp["ipv4Address"] = ipv4
        if ipv6:
            bgp["ipv6Address"] = ipv6
        if as_num is not None:
            bgp["asNumber"] = as_num
        if cluster_id:
            bgp["routeReflectorClusterID"] = cluster_id
        obj = resource("Node", name, {"bgp": bgp}, labels)
        obj["status"] = {}
        self.put(obj)
        return obj

    def bgp_peer(self, name: str, **spec) -> dict:
        obj = resource("BGPPeer", name, spec)
        self.put(obj)
        return obj

    def bgp_configuration(self, name: str, **spec) -> dict:
        obj = resource("BGPConfiguration", name, spec)
        self.put(obj)
        return obj

    def ip_pool(self, name: str, **spec) -> dict:
        obj = resource("IPPool", name, spec)
        self.put(obj)
        return obj


def v3_reflector(lab: Lab, name: str, etcd: Etcd, ip4: str, ip6, schema: str, **kwargs) -> Reflector:
    """A reflector host whose daemon reads the v3 data as `[reflector] node_name = name`."""
    host = lab.add_host(name, ip4, ip6)
    state_dir = lab.tmp / f"{name}-rr" / "state"
    return Reflector(lab, host, [etcd.endpoint], ipv6=ip6 is not None, **kwargs,
                     settings={"safety": {"state_dir": str(state_dir)}, "reflector": {"node_name": name},
                               "etcd": {"schema": schema}})


def wait_reflected(bird, prefix: str, rr_ips: set, originator: str, next_hop: str, cluster_id: str,
                   timeout: float) -> list:
    """Wait until `bird` (a node) has `prefix` from every reflector in `rr_ips`, reflected once
    (cluster list = [cluster_id]) with the originating node's id and next hop unchanged."""
    def learned():
        routes = [r for r in bird.routes(prefix) if r.protocol != "static1"]
        return routes if {r.from_ for r in routes} == rr_ips else None
    routes = wait_for(learned, timeout, what=f"{prefix} from {sorted(rr_ips)}",
                      describe=lambda: bird.birdc("show route all") + bird.birdc("show protocols"))
    for r in routes:
        assert r.originator_id == originator, r.excerpt()
        assert r.cluster_list == [cluster_id], r.excerpt()  # reflected once
        assert r.next_hop == next_hop, r.excerpt()
        assert r.as_path == "", r.excerpt()
    return routes
