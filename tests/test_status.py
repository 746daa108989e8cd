"""The `calico-rr status` table, from a plan and what BIRD's sockets answered."""

import ipaddress
import json
import re

import pytest

from rr_service.bird.control import ProtocolInfo
from rr_service.calico.v1.snapshot import parse_snapshot
from rr_service.core.plan import Identity
from rr_service.calico.v1.rules import plan
from rr_service.core.status import status_table
from rr_service.calico.v3.planner import plan_v3
from rr_service.calico.v3.resources import parse_resources

ME = Identity(ipaddress.IPv4Address("192.0.2.10"), ipaddress.IPv6Address("2001:db8::10"))
DATA = {
    "rr_v4/192.0.2.10": json.dumps({"ip": "192.0.2.10", "cluster_id": "1.2.3.4"}).encode(),
    "global/peer_v4/192.0.2.10": json.dumps({"ip": "192.0.2.10"}).encode(),
    "global/peer_v6/2001:db8::10": json.dumps({"ip": "2001:db8::10"}).encode(),
    "host/a/ip_addr_v4": b"192.0.2.21",
    "host/a/ip_addr_v6": b"2001:db8::21",
    "host/b/ip_addr_v4": b"192.0.2.22",
}


def proto(name, state="up", info="Established"):
    return ProtocolInfo(name=name, proto="BGP", table="master", state=state, since="09:00:00", info=info)


def test_bird1_each_family_from_its_own_socket():
    the_plan = plan(parse_snapshot(DATA), ME)
    text = status_table(
        the_plan,
        {4: "bird", 6: "bird6"},
        {"bird": [proto("Client_192_0_2_21"), proto("Client_192_0_2_99", "start", "Active")]},
        {"bird6": "connection refused"},
    )
    lines = text.splitlines()
    assert "IPv4: 192.0.2.10 member of the reflector mesh, cluster id 1.2.3.4" in lines
    assert "IPv6: 2001:db8::10 standalone (no rr entry of its own)" in lines
    assert "bird6: control socket not answering: connection refused" in lines
    rows = {line.split()[2]: line.split() for line in lines if line.startswith(("IPv", "-")) and len(line.split()) > 4}
    assert rows["Client_192_0_2_21"][6:] == ["up", "09:00:00", "Established", "global/peer_v4"]  # RULE: which key
    assert rows["Client_192_0_2_22"][6] == "missing"  # etcd wants it, BIRD does not run it
    assert rows["Client_2001_db8__21"][6] == "?"  # bird6 did not answer
    # BIRD runs it, etcd no longer wants it
    assert re.search(r"^-\s+-\s+Client_192_0_2_99\s+no\s+start\s+09:00:00\s+Active$", text, re.MULTILINE)


def test_bird2_one_socket_for_both_families():
    the_plan = plan(parse_snapshot(DATA), ME)
    text = status_table(
        the_plan,
        {4: "bird", 6: "bird"},
        {"bird": [proto("Client_192_0_2_21"), proto("Client_192_0_2_22"), proto("Client_2001_db8__21")]},
        {},
    )
    assert "missing" not in text and " no " not in text
    assert text.count("Established") == 3


# ---------------------------------------------------------------- Calico v3 data

def v3(kind, name, spec, labels=None):
    plural = {"Node": "nodes", "BGPPeer": "bgppeers", "BGPConfiguration": "bgpconfigurations"}[kind]
    body = {"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": {"name": name, "labels": labels or {}},
            "spec": spec}
    return {f"{plural}/{name}": json.dumps(body).encode()}


V3_OTHERS = {
    **v3("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": False, "listenPort": 1790}),
    **v3("BGPPeer", "clients", {"nodeSelector": "!has(rr)", "peerSelector": "has(rr)"}),
    **v3("BGPPeer", "tor", {"peerIP": "192.0.2.1", "asNumber": 65000, "node": "rr"}),
    **v3("Node", "a", {"bgp": {"ipv4Address": "192.0.2.21/24", "ipv6Address": "2001:db8::21/64"}}),
}


def v3_node(v4="192.0.2.10/24", v6="2001:db8::10/64"):
    bgp = {"routeReflectorClusterID": "1.2.3.4"}
    bgp.update({k: v for k, v in (("ipv4Address", v4), ("ipv6Address", v6)) if v})
    return v3("Node", "rr", {"bgp": bgp}, {"rr": "true"})


def v3_table(raw, me=ME, bird=None):
    the_plan = plan_v3(parse_resources(raw), "rr", me)
    return status_table(the_plan, {4: "bird", 6: "bird6"}, bird or {"bird": [], "bird6": []}, {}).splitlines()


def test_v3_our_node_found():
    # every node listens on 1790 (the default's listenPort): so do we, and so are they reached
    lines = v3_table({**V3_OTHERS, **v3_node()}, bird={"bird": [proto("Client_192_0_2_21_port_1790")], "bird6": []})
    assert "IPv4: Calico Node rr at 192.0.2.10, cluster id 1.2.3.4, listening on port 1790" in lines
    assert "IPv6: Calico Node rr at 2001:db8::10, cluster id 1.2.3.4, listening on port 1790" in lines
    rows = {line.split()[2]: line.split() for line in lines if line.startswith("IPv") and len(line.split()) > 4}
    assert rows["Client_192_0_2_21_port_1790"][:2] == ["IPv4", "client"]
    assert rows["Client_192_0_2_21_port_1790"][6:9] == ["up", "09:00:00", "Established"]
    assert rows["Peer_192_0_2_1_port_1790"][:2] == ["IPv4", "peer"] and rows["Peer_192_0_2_1_port_1790"][6] == "missing"
    assert rows["Client_2001_db8__21_port_1790"][:2] == ["IPv6", "client"]


def test_v3_our_node_missing_says_so_for_each_configured_family():
    lines = v3_table(V3_OTHERS)
    assert ("IPv4: no Node of ours and no BGPPeer with peerIP 192.0.2.10: no IPv4 sessions "
            "(calico-rr register creates this reflector's BGPPeer)") in lines
    assert ("IPv6: no Node of ours and no BGPPeer with peerIP 2001:db8::10: no IPv6 sessions "
            "(calico-rr register creates this reflector's BGPPeer)") in lines
    assert not any("no address configured" in line for line in lines)
    # a family the settings leave out is just that, Node or not
    lines = v3_table(V3_OTHERS, me=Identity(ME.ipv4))
    assert "IPv6: no address configured for this reflector" in lines


@pytest.mark.parametrize("node, me, expected", [
    (v3_node(v4="192.0.2.99/24"), ME,
     "IPv4: Node rr says IPv4 192.0.2.99 but this reflector is configured as 192.0.2.10: no IPv4 sessions "
     "until they agree (fix the setting, or run calico-rr register --node)"),
    (v3_node(v6=None), ME,
     "IPv6: Node rr has no IPv6 address (reflector ip 2001:db8::10): no IPv6 sessions (calico-rr register --node adds it)"),
    (v3_node(), Identity(ME.ipv4),
     "IPv6: Node rr has IPv6 address 2001:db8::10 but reflector.ip6 is empty: no IPv6 sessions"),
])
def test_v3_address_disagreement_is_named_not_called_unconfigured(node, me, expected):
    lines = v3_table({**V3_OTHERS, **node}, me=me)
    assert expected in lines
    assert not any("no address configured" in line for line in lines)
    # the other family still serves
    assert any(line.startswith("IPv") and line.endswith(", cluster id 1.2.3.4, listening on port 1790") for line in lines)


def test_a_plan_the_daemon_would_not_apply_says_so():
    """A typo in global/as_num stops the daemon from applying (BIRD keeps its config): status
    must say so instead of listing the fallback AS as if it were running."""
    the_plan = plan(parse_snapshot({**DATA, "global/as_num": b"65000;"}), ME)
    text = status_table(the_plan, {4: "bird", 6: "bird6"}, {"bird": [], "bird6": []}, {})
    assert text.splitlines()[0].startswith("NOT APPLIED: etcd key global/as_num is invalid"), text


def test_datastore_unreachable_still_lists_what_bird_runs():
    """No plan (the datastore did not answer): BIRD's sessions are listed, each as not known
    to be wanted, and the first note says why."""
    text = status_table(None, {4: "bird", 6: "bird6"}, {"bird": [proto("Client_192_0_2_21")], "bird6": []}, {},
                        datastore_error="etcd http://192.0.2.2:2379: connection refused")
    lines = text.splitlines()
    assert lines[0] == ("datastore unreachable: etcd http://192.0.2.2:2379: connection refused; "
                        "BIRD's sessions below are what it runs now")
    row = next(line.split() for line in lines if "Client_192_0_2_21" in line)
    assert row[:4] == ["-", "-", "Client_192_0_2_21", "?"] and row[4:7] == ["up", "09:00:00", "Established"]


def test_the_json_report_has_what_a_script_needs():
    from rr_service.core.status import status_report

    the_plan = plan(parse_snapshot(DATA), ME)
    from rr_service.bird.control import RouteCounts

    report = status_report(the_plan, {4: "bird", 6: "bird6"},
                           {"bird": [proto("Client_192_0_2_21"), proto("Client_192_0_2_99")]},
                           {"bird6": "connection refused"}, held="the new data would drop 9 of 10",
                           client_routes={"bird": {"Client_192_0_2_21": RouteCounts(1000, 2, True)}})
    json.dumps(report)  # plain data
    assert report["datastore"] == {"reachable": True, "error": None}
    assert report["held"] == "the new data would drop 9 of 10" and report["not_applied"] is None
    assert report["bird"] == {"bird": {"answering": True, "error": None},
                              "bird6": {"answering": False, "error": "connection refused"}}
    assert report["families"][0] == {"family": 4, "address": "192.0.2.10",
                                     "mode": "192.0.2.10 member of the reflector mesh", "cluster_id": "1.2.3.4",
                                     "listen_port": None, "sessions": 2}
    by_name = {s["protocol"]: s for s in report["sessions"]}
    assert by_name["Client_192_0_2_21"] == {"family": "IPv4", "role": "client", "protocol": "Client_192_0_2_21",
                                            "neighbor": "192.0.2.21", "as": "64512", "wanted": "yes", "state": "up",
                                            "since": "09:00:00", "info": "Established", "rule": "global/peer_v4",
                                            "routes": {"imported": 1000, "filtered": 2, "limit_hit": True}}
    assert "IPv4 Client_192_0_2_21 (a): import limit hit, its further routes are ignored; other sessions carry on" in report["notes"]
    assert by_name["Client_192_0_2_99"]["wanted"] == "no"  # BIRD runs it, the data does not call for it
    assert by_name["Client_2001_db8__21"]["state"] == "?"  # bird6 did not answer


def test_a_node_at_its_import_limit_is_logged_once_when_it_starts_and_once_when_it_ends():
    from rr_service.bird.control import RouteCounts
    from rr_service.core.limits import limit_news

    the_plan = plan(parse_snapshot(DATA), ME)
    targets = {4: "bird", 6: "bird6"}
    flooding = {"bird": {"Client_192_0_2_21": RouteCounts(1000, 0, True), "Client_192_0_2_22": RouteCounts(3)}}
    hit, lines = limit_news(the_plan, targets, frozenset(), flooding)
    assert hit == {("bird", "Client_192_0_2_21")}
    assert lines == [("warning", "IPv4 Client_192_0_2_21 (a): import limit hit, its further routes are ignored; "
                                 "other sessions carry on")]
    assert limit_news(the_plan, targets, hit, flooding) == (hit, [])  # said once
    # A BIRD not answering changes nothing: its sessions keep their last known state.
    assert limit_news(the_plan, targets, hit, {"bird6": {}}) == (hit, [])
    calm = {"bird": {"Client_192_0_2_21": RouteCounts(10), "Client_192_0_2_22": RouteCounts(3)}}
    assert limit_news(the_plan, targets, hit, calm) == (
        frozenset(), [("info", "IPv4 Client_192_0_2_21 (a): below its import limit again")])
