"""Parsing of Calico v3 resources (rr_service/v3/resources.py): good values and hostile ones."""

import ipaddress
import json

import pytest
from rr_service.core.values import InvalidValue

from rr_service.core.values import DEFAULT_AS
from rr_service.calico.v3.fields import parse_duration_seconds, parse_peer_ip
from rr_service.calico.v3.resources import BGPConfig, parse_resources, relevant_key

V4, V6 = ipaddress.IPv4Address, ipaddress.IPv6Address


def res(kind, name, spec=None, labels=None, **extra):
    metadata = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    body = {"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": metadata, "spec": spec or {}}
    body.update(extra)
    return json.dumps(body).encode()


def node(name, v4=None, v6=None, labels=None, **bgp):
    spec = {"bgp": dict(bgp, **({"ipv4Address": v4} if v4 else {}), **({"ipv6Address": v6} if v6 else {}))}
    return res("Node", name, spec, labels)


def one(raw):
    data = parse_resources(raw)
    assert data.rejected == (), data.rejected
    return data


def test_node_fields():
    data = one({"nodes/a": node("a", "10.0.0.1/16", "fd00::1/64", labels={"rr": "true"}, asNumber="1.10",
                                routeReflectorClusterID="1.0.0.1")})
    (a,) = data.nodes
    assert (a.name, a.ipv4, a.ipv6, a.as_num, a.cluster_id) == ("a", V4("10.0.0.1"), V6("fd00::1"), 65546, "1.0.0.1")
    assert dict(a.labels) == {"rr": "true"}


def test_peer_fields():
    data = one({"bgppeers/p": res("BGPPeer", "p", {
        "peerIP": "[fd00::9]:1179", "asNumber": 65001, "nodeSelector": "has(x)",
        "keepOriginalNextHop": True, "sourceAddress": "None", "maxRestartTime": "2m30s",
        "reversePeering": "Manual"})})
    (p,) = data.peers
    assert (p.peer_ip, p.peer_port, p.as_num, p.keep_next_hop, p.no_source_address, p.max_restart_time, p.reverse) == (
        V6("fd00::9"), 1179, 65001, True, True, 150, False)
    assert p.node_selector.matches({"x": ""}) and not p.is_global


def test_configurations_and_defaults():
    data = one({
        "bgpconfigurations/default": res("BGPConfiguration", "default", {"asNumber": 64567, "listenPort": 150, "nodeToNodeMeshEnabled": False}),
        "bgpconfigurations/node.a": res("BGPConfiguration", "node.a", {"listenPort": 500}),
    })
    assert data.global_as == 64567 and not data.mesh_enabled
    assert data.listen_port_of("a") == 500 and data.listen_port_of("b") == 150
    empty = one({})
    assert empty.global_as == DEFAULT_AS and empty.mesh_enabled and empty.listen_port_of("a") is None
    assert empty.default == BGPConfig("default")


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.1", (V4("10.0.0.1"), None)),
    ("10.0.0.1:179", (V4("10.0.0.1"), 179)),
    ("[fd00::1]:50", (V6("fd00::1"), 50)),
    ("fd00::1", (V6("fd00::1"), None)),
    (" 10.0.0.1 ", (V4("10.0.0.1"), None)),
])
def test_peer_ip_forms(text, expected):
    assert parse_peer_ip(text) == expected


@pytest.mark.parametrize("text", ["10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:x", "fd00::1]:5", "[10.0.0.1]:5x",
                                  "0.0.0.0", "224.0.0.1", "127.0.0.1", "host:179", "", "10.0.0.1/32"])
def test_bad_peer_ips(text):
    with pytest.raises(ValueError):
        parse_peer_ip(text)


@pytest.mark.parametrize("text, seconds", [("120s", 120), ("2m", 120), ("1h1s", 3601), ("1.5m", 90), ("", None), ("0s", None), ("500ms", None)])
def test_durations(text, seconds):
    assert parse_duration_seconds(text) == seconds


@pytest.mark.parametrize("text, seconds", [("4095s", 4095), ("4096s", 4095), ("2h", 4095), ("18h12m15s", 4095),
                                           ("100000h", 4095)])
def test_max_restart_time_is_capped_at_what_bgp_carries(text, seconds):
    data = one({"bgppeers/p": res("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1, "maxRestartTime": text})})
    peer = data.peers[0]
    assert peer.max_restart_time == seconds
    assert bool(peer.notes) == (text != "4095s")
    if peer.notes:
        assert peer.notes[0].startswith(f"maxRestartTime '{text}' (") and peer.notes[0].endswith(
            "is more than the 4095 s BGP can carry (a 12-bit field): 4095 s is used")


def test_relevant_keys():
    assert relevant_key("nodes/a") and relevant_key("bgppeers/p") and relevant_key("bgpconfigurations/default")
    assert relevant_key("ippools/p")  # what clients may announce
    assert not relevant_key("workloadendpoints/ns/x") and not relevant_key("ipamblocks/10-0-0-0-26")


HOSTILE = '10.0.0.1; protocol bgp evil { neighbor 1.2.3.4 as 1; }'

# (key, value, words the reason must contain)
REJECTED = [
    ("nodes/a", b"{not json", "JSON"),
    ("nodes/a", b"[1]", "object"),
    ("nodes/a", b'{"kind":"Node","kind":"Node"}', "JSON"),
    ("nodes/a", b"\xff\xfe", "UTF-8"),
    ("nodes/a", b" " * 300000, "bytes"),
    ("nodes/a", res("BGPPeer", "a"), "kind"),
    ("nodes/a", res("Node", "a", apiVersion="v1"), "apiVersion"),
    ("nodes/a", res("Node", "b"), "metadata.name"),
    ("nodes/a b", res("Node", "a b"), "name"),
    ("nodes/a/b", res("Node", "a"), "layout"),
    ("nodes/a", node("a", HOSTILE), "CIDR"),
    ("nodes/a", node("a", "fd00::1/64"), "IPv6"),
    ("nodes/a", node("a", "10.0.0.1/8", asNumber=True), "AS"),
    ("nodes/a", node("a", "10.0.0.1/8", asNumber="4294967296"), "AS"),
    ("nodes/a", node("a", "10.0.0.1/8", routeReflectorClusterID=HOSTILE), "cluster"),
    ("nodes/a", node("a", "10.0.0.1/8", labels={"rr": True}), "string"),
    ("nodes/a", node("a", "10.0.0.1/8", labels={"bad key": "x"}), "label"),
    ("nodes/a", node("a", "10.0.0.1/8", labels={"k": "a\nb"}), "control"),
    ("nodes/a", res("Node", "a", {"bgp": "x"}), "spec.bgp"),
    ("bgppeers/p", res("BGPPeer", "p", {"peerIP": "10.0.0.1"}), "asNumber"),
    ("bgppeers/p", res("BGPPeer", "p", {}), "peerIP or peerSelector"),
    ("bgppeers/p", res("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1, "peerSelector": "all()"}), "both"),
    ("bgppeers/p", res("BGPPeer", "p", {"node": "a", "nodeSelector": "all()", "peerSelector": "all()"}), "both"),
    ("bgppeers/p", res("BGPPeer", "p", {"peerSelector": "has(("}), "peerSelector"),
    ("bgppeers/p", res("BGPPeer", "p", {"nodeSelector": HOSTILE, "peerSelector": "all()"}), "nodeSelector"),
    ("bgppeers/p", res("BGPPeer", "p", {"peerSelector": "x" * 5000}), "longer"),
    ("bgppeers/p", res("BGPPeer", "p", {"peerIP": HOSTILE, "asNumber": 1}), "peerIP"),
    ("bgppeers/p", res("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1, "sourceAddress": "10.0.0.2"}), "sourceAddress"),
    ("bgppeers/p", res("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1, "keepOriginalNextHop": "yes"}), "keepOriginalNextHop"),
    ("bgppeers/p", res("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1, "maxRestartTime": "forever"}), "maxRestartTime"),
    ("bgppeers/p", res("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1, "node": HOSTILE}), "name"),
    ("bgpconfigurations/default", res("BGPConfiguration", "default", {"listenPort": 70000}), "listenPort"),
    ("bgpconfigurations/default", res("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": "false"}), "true or false"),
]


@pytest.mark.parametrize("key, value, word", REJECTED, ids=[f"{i}-{r[0]}" for i, r in enumerate(REJECTED)])
def test_bad_resources_are_rejected_alone(key, value, word):
    good = {"nodes/ok": node("ok", "10.0.0.9/24"), "bgppeers/ok": res("BGPPeer", "ok", {"peerSelector": "all()"})}
    data = parse_resources({**good, key: value})
    assert [r.key for r in data.rejected] == [key]
    assert word.lower() in data.rejected[0].reason.lower(), data.rejected[0].reason
    assert "ok" in [n.name for n in data.nodes] and "ok" in [p.name for p in data.peers]
    # reasons are safe to log: repr'd and bounded
    assert "\n" not in data.rejected[0].reason and len(data.rejected[0].reason) < 400


def test_other_resources_are_ignored():
    data = parse_resources({"ipamblocks/x": b"garbage", "workloadendpoints/ns/x": b"{}", "nodes/a": node("a")})
    assert data.rejected == () and [n.name for n in data.nodes] == ["a"]


def pool(name, cidr, **spec):
    return {f"ippools/{name}": res("IPPool", name, {"cidr": cidr, **spec})}


def test_ip_pools_and_service_ranges():
    data = one({**pool("default-ipv4-ippool", "192.168.0.0/16", ipipMode="Always", natOutgoing=True),
                **pool("v6", "fd00:10::/48", disabled=True), **pool("quiet", "10.77.0.0/16", disableBGPExport=True),
                "bgpconfigurations/default": res("BGPConfiguration", "default", {
                    "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}], "serviceExternalIPs": [{"cidr": "203.0.113.0/24"}],
                    "serviceLoadBalancerIPs": [{"cidr": "198.51.100.0/24"}, {"cidr": "fd00:96::/112"}]})})
    assert [(p.name, str(p.cidr), p.bgp_export) for p in data.pools] == [
        ("default-ipv4-ippool", "192.168.0.0/16", True), ("quiet", "10.77.0.0/16", False), ("v6", "fd00:10::/48", True)]
    assert [str(r) for r in data.default.service_ranges] == ["10.96.0.0/12", "203.0.113.0/24", "198.51.100.0/24",
                                                             "fd00:96::/112"]


@pytest.mark.parametrize("raw, reason", [
    (pool("p", "0.0.0.0/0"), "wider than /8"),
    (pool("p", "0.0.0.0/1"), "wider than /8"),
    (pool("p", "::/0"), "wider than /16"),
    (pool("p", "224.0.0.0/8"), "not a range of unicast host addresses"),
    (pool("p", "::ffff:0:0/96"), "not a range of unicast host addresses"),
    (pool("p", "10.0.0.0/33"), "not a network in CIDR notation"),
    (pool("p", "10.0.0.0/8; protocol"), "not a network in CIDR notation"),
    (pool("p", "10.0.0.0/8", disableBGPExport="yes"), "disableBGPExport must be true or false"),
    ({"bgpconfigurations/default": res("BGPConfiguration", "default", {"serviceClusterIPs": [{"cidr": "0.0.0.0/0"}]})},
     "serviceClusterIPs cidr 0.0.0.0/0 is wider than /8"),
    ({"bgpconfigurations/default": res("BGPConfiguration", "default", {"serviceClusterIPs": "10.96.0.0/12"})},
     "serviceClusterIPs must be a list"),
])
def test_bad_pools_and_service_ranges_are_rejected(raw, reason):
    data = parse_resources(raw)
    assert len(data.rejected) == 1 and reason in data.rejected[0].reason, data.rejected


def test_unsupported_peer_fields_are_flagged():
    data = one({"bgppeers/p": res("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1,
                                                    "ttlSecurity": 1})})
    assert data.peers[0].unsupported == ("ttlSecurity",)


@pytest.mark.parametrize("peer_ip, reason", [
    ("fe80::1%eth0", "zone index"),
    ("fe80::1", "link-local"),
    ("[fe80::1]:179", "link-local"),
    ("127.0.0.1", "is a loopback address"),
    ("127.0.0.1:179", "is a loopback address"),
    ("[::1]:179", "is a loopback address"),
    ("255.255.255.255", "broadcast"),
    ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("169.254.1.1", "link-local"),
    ("::ffff:127.0.0.1", "IPv4-mapped IPv6 address; give 127.0.0.1 as an IPv4 address"),
    ("::ffff:224.0.0.1", "IPv4-mapped"),
    ("::ffff:0.0.0.0", "IPv4-mapped"),
    ("[::ffff:192.0.2.10]:179", "IPv4-mapped"),
    ("::192.0.2.10", "IPv4-compatible"),
])
def test_peer_ip_that_bird_cannot_use_is_rejected(peer_ip, reason):
    # One address policy for every layout: nothing that is this host, a group, a link's own
    # address, or an IPv4 address dressed as IPv6 (BIRD 2 would dial the IPv4 inside).
    with pytest.raises(InvalidValue, match=reason):
        parse_peer_ip(peer_ip)


@pytest.mark.parametrize("address, reason", [
    ("::ffff:192.0.2.10/96", "IPv4-mapped"),
    ("fe80::1%eth0/64", "zone index"),
    ("127.0.0.1/8", "loopback"),
    ("255.255.255.255/32", "broadcast"),
])
def test_node_address_that_bird_cannot_use_rejects_the_node(address, reason):
    family = 6 if ":" in address else 4
    field = "ipv6Address" if family == 6 else "ipv4Address"
    data = parse_resources({"nodes/n": res("Node", "n", {"bgp": {field: address}})})
    assert data.nodes == () and len(data.rejected) == 1
    assert reason in data.rejected[0].reason, data.rejected[0].reason
