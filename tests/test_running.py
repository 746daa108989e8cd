"""core/running.py: who holds each neighbour, read back from the configs calico-rr wrote."""

import ipaddress
import json

import pytest

from rr_service.calico.v3.planner import plan_v3
from rr_service.calico.v3.resources import parse_resources
from rr_service.core.plan import Identity
from rr_service.core.render import Renderer
from rr_service.core.running import read_claims, running_claims

ME = Identity(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv6Address("fd00::1"), node_name="rr")


def res(kind, name, spec, labels=None):
    return {f"{kind.lower()}s/{name}" if kind != "BGPConfiguration" else f"bgpconfigurations/{name}": json.dumps(
        {"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": {"name": name, "labels": labels or {}},
         "spec": spec}).encode()}


DATA = {**res("Node", "rr", {"bgp": {"ipv4Address": "10.0.0.1/24", "ipv6Address": "fd00::1/64",
                                     "routeReflectorClusterID": "1.0.0.1"}}, {"rr": "true"}),
        **res("Node", "a", {"bgp": {"ipv4Address": "10.0.1.1/24", "ipv6Address": "fd00::a/64"}}),
        **res("Node", "b.example", {"bgp": {"ipv4Address": "10.0.1.2/24"}}),
        **res("BGPConfiguration", "node.b.example", {"listenPort": 1790}),
        **res("BGPPeer", "clients", {"nodeSelector": "!has(rr)", "peerSelector": "has(rr)"}),
        **res("BGPPeer", "tor", {"peerIP": "10.9.9.9:50", "asNumber": 65000})}


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_claims_of_every_session_with_a_node(flavour):
    configs = Renderer(flavour=flavour).render(plan_v3(parse_resources(DATA), "rr", ME))
    claims = running_claims(configs.values())
    v4, v6 = ipaddress.IPv4Address, ipaddress.IPv6Address
    assert claims == {4: {(int(v4("10.0.1.1")), 0): "a", (int(v4("10.0.1.2")), 1790): "b.example"},
                      6: {(int(v6("fd00::a")), 0): "a"}}  # the router by peerIP holds no claim


def test_files_that_are_missing_or_not_ours_hold_no_claims(tmp_path):
    (tmp_path / "other.conf").write_text('protocol bgp x { description "hand-written"; neighbor 10.0.0.9 as 1; }\n')
    assert read_claims([str(tmp_path / "missing.conf"), str(tmp_path / "other.conf")]) == {4: {}, 6: {}}
