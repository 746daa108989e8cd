"""Parsing of /calico/bgp/v1 keys and values into validated records."""

import ipaddress

import pytest

from rr_service.core.values import (
    DEFAULT_AS,
    InvalidValue,
    Rejected,
    parse_as_number,
    parse_cluster_id,
    rejection_message,
)
from rr_service.calico.v1.keys import PeerEntry, Reflector
from rr_service.calico.v1.snapshot import SnapshotParser, parse_snapshot
from tests.v1data import j

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address



@pytest.mark.parametrize(
    "value, expected",
    [
        (64512, 64512),
        ("64512", 64512),
        (" 65000 ", 65000),
        ("1.10", 65546),
        ("0.1", 1),
        (4294967295, 4294967295),
        ("65535.65535", 4294967295),
        (1, 1),
    ],
)
def test_as_numbers_accepted(value, expected):
    assert parse_as_number(value) == expected


@pytest.mark.parametrize(
    "value",
    [0, -1, 4294967296, "0", "4294967296", "65536.1", "1.65536", "abc", "", "1e3", "64512;", True, None, 1.5, [1], {"a": 1}, "0x10", "١٢٣"],
)
def test_as_numbers_rejected(value):
    with pytest.raises(InvalidValue):
        parse_as_number(value)


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("1.2.3.4", "1.2.3.4"), (" 10.0.0.1 ", "10.0.0.1")])
def test_cluster_id_accepted(value, expected):
    assert parse_cluster_id(value) == expected


@pytest.mark.parametrize("value", ["1.2.3", "1.2.3.4.5", "2001:db8::1", "1.2.3.4; export all", 5, "256.1.1.1"])
def test_cluster_id_rejected(value):
    with pytest.raises(InvalidValue):
        parse_cluster_id(value)


def test_full_snapshot():
    raw = {
        "rr_v4/192.0.2.10": j(ip="192.0.2.10", cluster_id="1.2.3.4"),
        "rr_v4/192.0.2.11": j(ip="192.0.2.11"),
        "rr_v6/2001:db8::10": j(ip="2001:db8::10", cluster_id=""),
        "global/as_num": b"64513",
        "global/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="64513"),
        "global/peer_v6/2001:db8::10": j(ip="2001:db8::10", as_num=64513),
        "host/node-1/ip_addr_v4": b"192.0.2.21",
        "host/node-1/ip_addr_v6": b"2001:db8::21",
        "host/node-1/as_num": b"65000",
        "host/node-1/peer_v4/192.0.2.11": j(ip="192.0.2.11", as_num="1.10"),
        "host/node-2/ip_addr_v4": b"192.0.2.22",
        "host/node-2/ip_addr_v6": b"",
        "host/node-2/workload/docker/abc/endpoint/x": b"{not ours, ignored}",
        "global/node_mesh": b'{"enabled": false}',
    }
    snap = parse_snapshot(raw)
    assert snap.rejected == ()
    assert snap.reflectors_v4 == (Reflector(V4("192.0.2.10"), "1.2.3.4"), Reflector(V4("192.0.2.11"), None))
    assert snap.reflectors_v6 == (Reflector(V6("2001:db8::10"), None),)
    assert snap.global_as == 64513
    assert snap.global_peers_v4 == (PeerEntry(V4("192.0.2.10"), 64513),)
    assert snap.global_peers_v6 == (PeerEntry(V6("2001:db8::10"), 64513),)
    node1, node2 = snap.nodes
    assert (node1.name, node1.ipv4, node1.ipv6, node1.as_num) == ("node-1", V4("192.0.2.21"), V6("2001:db8::21"), 65000)
    assert node1.peers_v4 == (PeerEntry(V4("192.0.2.11"), 65546),)
    assert (node2.name, node2.ipv4, node2.ipv6, node2.as_num) == ("node-2", V4("192.0.2.22"), None, None)


def test_default_global_as():
    assert parse_snapshot({}).global_as == DEFAULT_AS == 64512
    assert parse_snapshot({"global/as_num": b""}).global_as == DEFAULT_AS


def test_empty_address_is_no_address_and_no_warning():
    snap = parse_snapshot({"host/n/ip_addr_v4": b"", "host/n/ip_addr_v6": b"  "})
    assert snap.rejected == ()
    assert snap.nodes[0].ipv4 is None and snap.nodes[0].ipv6 is None


@pytest.mark.parametrize(
    "key, value, reason_part",
    [
        ("rr_v4/192.0.2.10", b"{broken", "not valid JSON"),
        ("rr_v4/192.0.2.10", b"[]", "JSON object"),
        ("rr_v4/192.0.2.10", j(ip="2001:db8::10"), "IPv6 address, expected IPv4"),
        ("rr_v4/192.0.2.10", j(ip="192.0.2.99"), "key names 192.0.2.10"),
        ("rr_v4/192.0.2.10", j(ip="192.0.2.10", cluster_id="x; }"), "dotted quad"),
        ("rr_v4/192.0.2.10", b'{"ip": "192.0.2.10", "ip": "192.0.2.11"}', "duplicate field"),
        ("rr_v6/2001:db8::10", j(ip="192.0.2.10"), "IPv4 address, expected IPv6"),
        ("global/as_num", b"99999999999", "not a number"),
        ("global/as_num", b"0", "outside"),
        ("global/peer_v4/192.0.2.10", j(ip="192.0.2.10", as_num="64512 } protocol"), "not a number"),
        ("host/node1/ip_addr_v4", b"192.0.2.300", "not an IP address"),
        ("host/node1/ip_addr_v4", b"2001:db8::1", "expected IPv4"),
        ("host/node1/ip_addr_v4", b"0.0.0.0", "is unspecified, not a BGP neighbour"),
        ("host/node1/ip_addr_v6", b"\xff\xfe", "not UTF-8"),
        ("host/node1/ip_addr_v4", b"1" * 5000, "bytes, more than"),
        ("host/node;1/ip_addr_v4", b"192.0.2.21", "not a valid host name"),
        ("host/node1/as_num", b"true", "not a number"),
        ("host/node1/peer_v4/192.0.2.10", j(ip=["192.0.2.10"]), "must be a string"),
    ],
)
def test_bad_entries_are_rejected_with_key_and_reason(key, value, reason_part):
    good = {"host/good/ip_addr_v4": b"192.0.2.50", "rr_v4/192.0.2.77": j(ip="192.0.2.77")}
    snap = parse_snapshot({**good, key: value})
    assert [r.key for r in snap.rejected] == [key]
    assert reason_part in snap.rejected[0].reason
    # everything else still parses
    assert any(n.name == "good" and n.ipv4 == V4("192.0.2.50") for n in snap.nodes)
    assert Reflector(V4("192.0.2.77")) in snap.reflectors_v4


def test_rejected_keys_other_nodes_rest_on_are_bad_settings():
    raw = {
        "global/as_num": b"65000;",
        "rr_v4/192.0.2.10": j(ip="192.0.2.10", cluster_id="1.2.3"),
        "global/peer_v6/2001:db8::10": j(ip="2001:db8::10", as_num="x"),
        "global/peer_v4/192.0.2.010": j(ip="192.0.2.10"),  # its key names no address
        "host/a/as_num": b"65000;",  # one node's: a plain rejection
    }
    snap = parse_snapshot(raw)
    assert len(snap.rejected) == 5
    assert [(b.key, b.kind, b.family, b.address) for b in snap.bad_settings] == [
        ("global/as_num", "global_as", 0, None),
        ("global/peer_v4/192.0.2.010", "global_peer", 4, None),
        ("global/peer_v6/2001:db8::10", "global_peer", 6, V6("2001:db8::10")),
        ("rr_v4/192.0.2.10", "reflector", 4, V4("192.0.2.10")),
    ]
    assert snap.bad_settings[0].reason == "AS number '65000;' is not a number"
    # the incremental parser forgets a bad setting once its key is fixed or gone
    parser = SnapshotParser()
    parser.reset(raw)
    after = parser.update({"global/as_num": b"65000", "rr_v4/192.0.2.10": None})
    assert [b.key for b in after.bad_settings] == ["global/peer_v4/192.0.2.010", "global/peer_v6/2001:db8::10"]
    assert after.global_as == 65000


def test_rejection_message_never_spans_lines():
    assert rejection_message(Rejected("host/a/as_num", "AS number 'x' is not a number")) == \
        "ignoring etcd key host/a/as_num: AS number 'x' is not a number"
    forged = rejection_message(Rejected("host/a\nINFO all good/as_num", "bad"))
    assert forged == "ignoring etcd key 'host/a\\nINFO all good/as_num': bad" and forged.isprintable()
