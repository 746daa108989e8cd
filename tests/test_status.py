"""The `calico-rr status` table, from a plan and what BIRD's sockets answered."""

import ipaddress
import json
import re

from rr_service.bird_socket import ProtocolInfo
from rr_service.model import parse_snapshot
from rr_service.plan import Identity, plan
from rr_service.status import status_table

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
    assert rows["Client_192_0_2_21"][6:] == ["up", "09:00:00", "Established"]
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
