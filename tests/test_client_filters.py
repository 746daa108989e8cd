"""[filters]: what a client session (a Calico node) may announce through the reflector.

Rendered for every mode and flavour from Calico v3 and legacy data: the pools (not those
with disableBGPExport, disabled ones too) and service ranges as BIRD prefix sets, never a
default route, the import limit, only on sessions to Calico nodes; and every config parsed
by BIRD itself (`bird -p`). The routes themselves are tried on real BIRDs in
tests/integration/test_route_hygiene.py.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from rr_service.calico import rule_set
from rr_service.core.pipeline import compute_once
from rr_service.core.plan import Identity
from rr_service.core.render import Renderer, RenderError
from tests.hostile.grammar import BIRD1, BirdChecker, assert_only_allowed_lines, bird1_available, bird2_binary
from tests import prereq
from tests.v1data import j

ME = Identity(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv6Address("fd00::1"), node_name="rr")


def res(kind: str, plural: str, name: str, spec: dict, labels: dict | None = None) -> dict:
    return {f"{plural}/{name}": json.dumps({"kind": kind, "apiVersion": "projectcalico.org/v3",
                                            "metadata": {"name": name, "labels": labels or {}},
                                            "spec": spec}).encode()}


CLUSTER = {**res("Node", "nodes", "rr", {"bgp": {"ipv4Address": "10.0.0.1/16", "ipv6Address": "fd00::1/64",
                                                 "routeReflectorClusterID": "1.0.0.1"}}, {"rr": "true"}),
           **res("Node", "nodes", "a", {"bgp": {"ipv4Address": "10.0.1.1/16", "ipv6Address": "fd00::a/64"}}),
           **res("Node", "nodes", "rr2", {"bgp": {"ipv4Address": "10.0.0.2/16", "routeReflectorClusterID": "1.0.0.1"}},
                 {"rr": "true"}),
           **res("BGPPeer", "bgppeers", "clients", {"nodeSelector": "!has(rr)", "peerSelector": "has(rr)"}),
           **res("BGPPeer", "bgppeers", "mesh", {"nodeSelector": "has(rr)", "peerSelector": "has(rr)"}),
           **res("BGPPeer", "bgppeers", "tor", {"peerIP": "10.9.9.9", "asNumber": 64512})}
POOLS = {**res("IPPool", "ippools", "default-ipv4-ippool", {"cidr": "192.168.0.0/16"}),
         **res("IPPool", "ippools", "inside", {"cidr": "192.168.7.0/24"}),  # inside the first: no entry
         **res("IPPool", "ippools", "old", {"cidr": "172.16.0.0/16", "disabled": True}),
         **res("IPPool", "ippools", "quiet", {"cidr": "10.77.0.0/16", "disableBGPExport": True}),
         **res("BGPConfiguration", "bgpconfigurations", "default", {
             "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}], "serviceLoadBalancerIPs": [{"cidr": "fd00:96::/112"}]})}


def render(raw: dict, flavour: str, mode: str = "pools", limit: int = 1000, rules: str = "v3") -> dict:
    computed = compute_once(rule_set(rules), dict(raw), ME, Renderer(flavour=flavour, client_filter=mode,
                                                                     import_limit=limit))
    assert computed.rejected == ()
    for text in computed.configs.values():
        assert_only_allowed_lines(text, flavour)
    return computed.configs


def block(text: str, name: str) -> str:
    start = text.index(f"protocol bgp {name} ")
    return text[start:text.index("\n}\n", start) + 3]


def template(text: str, name: str) -> str:
    start = text.index(f"template bgp {name} ")
    return text[start:text.index("\n}\n", start) + 3]


def filtered(text: str, name: str, suffix: str = "") -> bool:
    """Whether the session takes its filter and limit from the client template."""
    return block(text, name).startswith(f"protocol bgp {name} from bgp_client_template{suffix} {{")


def test_bird1_pools_services_and_the_sessions_they_apply_to():
    configs = render({**CLUSTER, **POOLS}, "bird1")
    v4, v6 = configs["bird"], configs["bird6"]
    assert ("filter calico_client_import {\n  if net.len = 0 then reject;\n"
            "  if net ~ [ 10.96.0.0/12+, 172.16.0.0/16+, 192.168.0.0/16+ ] then accept;\n  reject;\n}\n") in v4
    assert ("filter calico_client_import {\n  if net.len = 0 then reject;\n"
            "  if net ~ [ fd00:96::/112+ ] then accept;\n  reject;\n}\n") in v6
    assert "10.77.0.0" not in v4  # disableBGPExport: Calico announces none of it
    assert template(v4, "bgp_client_template") == (
        "template bgp bgp_client_template from bgp_template {\n"
        "  import filter calico_client_import;\n  import limit 1000 action block;\n}\n")
    assert filtered(v4, "Client_10_0_1_1")
    # the other reflector (same cluster id: a peer), the router by peerIP: not filtered
    assert not filtered(v4, "Peer_10_0_0_2") and not filtered(v4, "Client_10_9_9_9")
    assert "import filter" not in block(v4, "Peer_10_0_0_2") + block(v4, "Client_10_9_9_9")
    assert filtered(v6, "Client_fd00__a") and "import filter calico_client_import;" in v6


def test_bird2_one_filter_per_family_in_the_channel():
    text = render({**CLUSTER, **POOLS}, "bird2")["bird"]
    assert "filter calico_client_import_v4 {\n" in text and "filter calico_client_import_v6 {\n" in text
    for family in (4, 6):
        assert template(text, f"bgp_client_template_v{family}") == (
            f"template bgp bgp_client_template_v{family} from bgp_template_v{family} {{\n"
            f"  ipv{family} {{ import filter calico_client_import_v{family}; import limit 1000 action block; }};\n}}\n")
    assert filtered(text, "Client_10_0_1_1", "_v4") and filtered(text, "Client_fd00__a", "_v6")
    assert not filtered(text, "Peer_10_0_0_2", "_v4") and not filtered(text, "Client_10_9_9_9", "_v4")


def test_a_family_without_pools_accepts_nothing_from_clients():
    text = render({**CLUSTER, **res("IPPool", "ippools", "p", {"cidr": "192.168.0.0/16"})}, "bird1")["bird6"]
    assert "filter calico_client_import {\n  if net.len = 0 then reject;\n  reject;\n}\n" in text


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_without_any_pool_limits_only_and_said_in_the_config(flavour):
    text = render(CLUSTER, flavour)["bird"]
    assert "# What a Calico node may announce: anything but a default route (no IP pool known).\n" in text
    assert "  if net.len = 0 then reject;\n  accept;\n}\n" in text
    assert "import limit 1000 action block;" in template(text, "bgp_client_template" + ("" if flavour == "bird1" else "_v4"))
    assert filtered(text, "Client_10_0_1_1", "" if flavour == "bird1" else "_v4")


def test_limits_only_and_off():
    text = render({**CLUSTER, **POOLS}, "bird1", mode="limits-only")["bird"]
    assert "([filters] mode = limits-only)" in text
    assert "192.168.0.0" not in text and "  accept;\n" in text
    off = render({**CLUSTER, **POOLS}, "bird1", mode="off")
    assert off == compute_once(rule_set("v3"), {**CLUSTER, **POOLS}, ME, Renderer(flavour="bird1")).configs
    assert "filter" not in off["bird"] and "import limit" not in off["bird"]


def test_no_limit_line_with_limit_zero():
    text = render({**CLUSTER, **POOLS}, "bird1", limit=0)["bird"]
    assert "import limit" not in text and "import filter calico_client_import;" in text


def test_legacy_pools():
    raw = {"global/as_num": b"64512", "global/peer_v4/10.0.0.1": j(ip="10.0.0.1"),
           "host/a/ip_addr_v4": b"10.0.1.1", "ipam/v4/pool/192.168.0.0-16": j(cidr="192.168.0.0/16", disabled=True)}
    text = render(raw, "bird1", rules="v1")["bird"]
    assert "  if net ~ [ 192.168.0.0/16+ ] then accept;\n" in text
    assert filtered(text, "Client_10_0_1_1") and "import filter calico_client_import;" in text


def test_a_bad_mode_or_limit_is_refused():
    with pytest.raises(RenderError):
        Renderer(client_filter="pool")
    with pytest.raises(RenderError):
        Renderer(import_limit=-1)


@pytest.mark.integration  # runs BIRD's own parser
def test_bird_parses_every_mode_and_flavour():
    flavours = {"bird1": bird1_available(), "bird2": bird2_binary() is not None, "bird3": prereq.bird3_binary() is not None}
    prereq.partly(flavours["bird3"], "BIRD 3 could not be fetched (tools/fetch-bird3)")
    checker = BirdChecker()
    try:
        for mode in ("pools", "limits-only", "off"):
            for data in (CLUSTER, {**CLUSTER, **POOLS}):
                for flavour, there in flavours.items():
                    if not there:
                        continue
                    for target, text in render(data, flavour, mode).items():
                        binary = BIRD1[target] if flavour == "bird1" else prereq.bird_binary_or_missing(flavour)
                        checker.submit(binary, text, (mode, flavour, target))
        refused = checker.wait()
    finally:
        checker.close()
    assert not refused, refused


def test_pools_asked_for_but_none_known_is_said_once_in_the_warnings():
    computed = compute_once(rule_set("v3"), dict(CLUSTER), ME, Renderer(client_filter="pools", import_limit=1000))
    assert ("[filters] mode = pools, but the data names no IP pool (Calico IPPool resources, or /calico/v1/ipam "
            "pools): clients may announce anything but a default route, up to 1000 routes each") in computed.plan.warnings
    for renderer in (Renderer(client_filter="pools"), Renderer(client_filter="limits-only")):
        with_pools = compute_once(rule_set("v3"), {**CLUSTER, **POOLS}, ME, renderer)
        assert not any("[filters]" in w for w in with_pools.plan.warnings)
    assert not any("[filters]" in w for w in compute_once(rule_set("v3"), dict(CLUSTER), ME,
                                                          Renderer(client_filter="off")).plan.warnings)
