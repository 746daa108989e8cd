"""The daemon's incremental path for Calico v3 resources (Pipeline: ResourceTable, V3Planner,
IncrementalRenderer) gives exactly what an independent full recompute gives
(tests/oracles/v3.py: every Node and BGPPeer walked from scratch), step after step.

Seeded random walks over a small space of Nodes, BGPPeers and the default
BGPConfiguration, chosen so that the hard cases come up often: Nodes sharing an address
(squatting), a BGPPeer's peerIP on a Node's address (the operator's word against a Node's),
BGPPeers naming this reflector (reverse peering), a declared reflector, our own Node
coming and going, the mesh switched, invalid resources. Each key is created in etcd's order
(a counter): which Node keeps a shared address depends on that and on which session runs,
and the oracle is given the plan that runs, as the daemon has it.
"""

import dataclasses
import ipaddress
import json
import random

import pytest

from rr_service.calico import rule_set
from rr_service.calico.v3.resources import parse_resources
from rr_service.core.pipeline import Pipeline
from rr_service.core.plan import Identity
from rr_service.core.render import Renderer
from tests.oracles import v3 as oracle

ME = Identity(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv6Address("fd00::1"), node_name="rr")
RULES = rule_set("v3")


def resource(kind: str, name: str, spec: dict, labels: dict | None = None) -> bytes:
    metadata = {"name": name, **({"labels": labels} if labels else {})}
    return json.dumps({"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": metadata,
                       "spec": spec}).encode()


class Walk:
    def __init__(self, flavour: str):
        self.raw: dict = {}
        self.created: dict = {}
        self.revision = 0
        # With the client filters on, so a pool or service range change is carried too.
        self.pipeline = Pipeline(RULES, ME, Renderer(flavour=flavour, client_filter="pools", import_limit=1000))
        self.pipeline.reset({}, {})
        self.reference = Renderer(flavour=flavour, client_filter="pools", import_limit=1000)
        self.previous = None

    def put(self, key: str, value):
        if value is None:
            self.raw.pop(key, None)
            self.created.pop(key, None)
        else:
            if key not in self.raw:
                self.revision += 1
                self.created[key] = self.revision
            self.raw[key] = value
        self.pipeline.change(key, value, self.created.get(key))

    def check(self, where: str):
        got = self.pipeline.compute()
        data = parse_resources({key: value for key, value in self.raw.items()})
        data = _with_created(data, self.created)
        want = oracle.plan_v3(data, ME.node_name, ME, self.previous)
        want = dataclasses.replace(want, warnings=want.warnings + self.reference.notes(want))
        assert (got.plan.v4, got.plan.v6, got.plan.error, got.plan.listen_port) == \
               (want.v4, want.v6, want.error, want.listen_port), where
        assert sorted(got.plan.warnings) == sorted(want.warnings), where
        assert got.configs == self.reference.render(got.plan), where
        self.previous = want
        return got


def _with_created(data, created: dict):
    """The oracle's data with each Node's creation order, as the ResourceTable gives it."""
    import dataclasses

    nodes = tuple(dataclasses.replace(node, created=created.get(f"nodes/{node.name}", 0)) for node in data.nodes)
    return dataclasses.replace(data, nodes=nodes, by_name={node.name: node for node in nodes})


def random_change(rng: random.Random):
    n = rng.randint(0, 11)
    address = f"10.0.1.{rng.randint(1, 6)}"

    def node():
        bgp = {"ipv4Address": rng.choice([f"{address}/24", f"{address}/24", "", "10.0.0.1/24", "bad"])}
        if rng.random() < 0.4:
            bgp["ipv6Address"] = f"fd00::{rng.randint(1, 6):x}/64"
        if rng.random() < 0.3:
            bgp["asNumber"] = rng.choice([64512, 65002])
        if rng.random() < 0.2:
            bgp["routeReflectorClusterID"] = rng.choice(["1.0.0.1", "1.0.0.2"])
        labels = {"rr": "true"} if rng.random() < 0.2 else {"zone": rng.choice(["a", "b"])}
        return resource("Node", f"n{n}", {"bgp": bgp}, labels)

    def own_node():
        bgp = {"ipv4Address": "10.0.0.1/24", "ipv6Address": "fd00::1/64"}
        if rng.random() < 0.6:
            bgp["routeReflectorClusterID"] = "1.0.0.1"
        return resource("Node", "rr", {"bgp": bgp}, {"rr": "true"})

    choices = [
        (f"nodes/n{n}", node), (f"nodes/n{n}", node), (f"nodes/n{n}", node),
        ("nodes/rr", own_node),
        ("bgppeers/clients", lambda: resource("BGPPeer", "clients", {"nodeSelector": "!has(rr)",
                                                                      "peerSelector": "has(rr)"})),
        ("bgppeers/tor", lambda: resource("BGPPeer", "tor", {"peerIP": address, "asNumber": rng.choice([65001, 64512])})),
        ("bgppeers/to-zone-a", lambda: resource("BGPPeer", "to-zone-a", {"nodeSelector": "has(rr)",
                                                                          "peerSelector": "zone == 'a'"})),
        ("bgppeers/names-us", lambda: resource("BGPPeer", "names-us", {"peerIP": "10.0.0.1", "asNumber": 64512,
                                                                        "nodeSelector": "zone == 'b'"})),
        ("bgppeers/calico-rr-rr2-ipv4", lambda: resource(
            "BGPPeer", "calico-rr-rr2-ipv4", {"peerIP": rng.choice(["10.0.9.9", address]), "asNumber": 64512},
            {"calico-rr/reflector": "rr2", "calico-rr/cluster-id": "1.0.0.1"})),
        ("bgpconfigurations/default", lambda: resource("BGPConfiguration", "default", {
            "nodeToNodeMeshEnabled": rng.random() < 0.5, "asNumber": rng.choice([64512, 64513]),
            "serviceClusterIPs": [{"cidr": rng.choice(["10.96.0.0/12", "10.96.0.0/16", "fd00:96::/112"])}]})),
        (f"ippools/p{n % 3}", lambda: resource("IPPool", f"p{n % 3}", {
            "cidr": rng.choice(["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "fd00::/48", "0.0.0.0/0"]),
            "disableBGPExport": rng.random() < 0.3})),
    ]
    key, make = rng.choice(choices)
    return key, (None if rng.random() < 0.2 else make())


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
@pytest.mark.parametrize("seed", range(4))
def test_incremental_equals_the_oracle_step_by_step(flavour, seed):
    rng = random.Random(seed)
    walk = Walk(flavour)
    for step in range(250):
        for _ in range(rng.choice([1, 1, 1, 2, 5])):
            walk.put(*random_change(rng))
        walk.check(f"seed {seed} step {step}")
