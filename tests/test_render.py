"""BIRD 1.6 config text: what the templates produce, and that BIRD's own parser accepts it."""

import dataclasses
import ipaddress
import json
import shutil
import subprocess

import pytest

from rr_service.calico.v1.snapshot import parse_snapshot
from rr_service.core.plan import Identity, Planned, session_key
from rr_service.calico.v1.rules import plan
from rr_service.core.render import IncrementalRenderer, Renderer, RenderError
from tests import prereq
from tests.v1data import j
from tests.hostile.grammar import assert_only_allowed_lines

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
ME = Identity(V4("192.0.2.10"), V6("2001:db8::10"))



DATA = {
    "rr_v4/192.0.2.10": j(ip="192.0.2.10", cluster_id="1.2.3.4"),
    "rr_v4/192.0.2.11": j(ip="192.0.2.11"),
    "rr_v6/2001:db8::10": j(ip="2001:db8::10", cluster_id="1.2.3.4"),
    "global/as_num": b"64512",
    "global/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="64512"),
    "host/a/ip_addr_v4": b"192.0.2.21",
    "host/a/ip_addr_v6": b"2001:db8::21",
    "host/a/peer_v6/2001:db8::10": j(ip="2001:db8::10", as_num="64512"),
    "host/b/ip_addr_v4": b"192.0.2.22",
    "host/b/as_num": b"65001",
}

class Rendered:
    def __init__(self, configs):
        self.v4, self.v6 = configs["bird"], configs["bird6"]

    def __eq__(self, other):
        return (self.v4, self.v6) == (other.v4, other.v6)


def rendered(raw=DATA, me=ME):
    return Rendered(Renderer().render(plan(parse_snapshot(raw), me)))


def test_ipv4_config():
    text = rendered().v4
    assert "router id 192.0.2.10;" in text
    assert "source address 192.0.2.10;" in text
    assert (
        "protocol bgp Mesh_192_0_2_11 from bgp_template {\n"
        '  description "role=mesh";\n'
        "  local as 64512;\n"
        "  neighbor 192.0.2.11 as 64512;\n"
        "}\n"
    ) in text
    assert (
        "protocol bgp Client_192_0_2_21 from bgp_template {\n"
        '  description "role=client node=a";\n'
        "  local as 64512;\n"
        "  neighbor 192.0.2.21 as 64512;\n"
        "  rr client;\n"
        "  rr cluster id 1.2.3.4;\n"
        "}\n"
    ) in text
    # node b is in another AS: a plain eBGP session, BIRD refuses `rr client` there
    assert ("protocol bgp Client_192_0_2_22 from bgp_template {\n  description \"role=client node=b\";\n"
            "  local as 64512;\n  neighbor 192.0.2.22 as 65001;\n}\n") in text
    for option in ("multihop;", "import all;", "export all;", "graceful restart;"):
        assert f"  {option}\n" in text
    assert_only_allowed_lines(text)


def test_ipv6_config_router_id_is_ipv4():
    text = rendered().v6
    assert "router id 192.0.2.10;" in text
    assert "source address 2001:db8::10;" in text
    assert "protocol bgp Client_2001_db8__21 from bgp_template {" in text
    assert "Client_192" not in text
    assert_only_allowed_lines(text)


def test_no_ipv6_address_gives_valid_empty_bird6_config():
    text = rendered(me=Identity(V4("192.0.2.10"))).v6
    assert "router id 192.0.2.10;" in text
    assert "protocol bgp" not in text and "template bgp" not in text
    assert_only_allowed_lines(text)


def test_rendering_is_deterministic():
    assert rendered() == rendered(dict(reversed(list(DATA.items()))))


HOSTILE_STRINGS = [
    '192.0.2.30; protocol bgp evil { neighbor 192.0.2.66 as 1; }',
    "192.0.2.30\nprotocol static { route 0.0.0.0/0 blackhole; }",
    '"; export all; "',
    "}",
    "{",
    "include \"/etc/shadow\";",
    "1.2.3.4; rr client",
    "64512; local as 1",
    "\x00\x01\x1b[31m",
    "𝟙𝟡𝟚.𝟘.𝟚.𝟙",
    "192.0.2.30%eth0",
    "192.0.2.30/24",
    " ",
    "a" * 3000,
]


@pytest.mark.parametrize("hostile", HOSTILE_STRINGS)
def test_hostile_values_never_reach_the_config(hostile):
    as_text = json.dumps(hostile)
    raw = dict(DATA)
    raw.update({
        f"rr_v4/{hostile}": j(ip=hostile, cluster_id=hostile),
        "rr_v4/192.0.2.12": j(ip="192.0.2.12", cluster_id=hostile),
        "host/c/ip_addr_v4": hostile.encode(),
        "host/d/ip_addr_v4": b"192.0.2.24",
        "host/d/as_num": hostile.encode(),
        f"host/{hostile}/ip_addr_v4": b"192.0.2.25",
        "host/e/ip_addr_v4": b"192.0.2.26",
        "host/e/peer_v4/192.0.2.10": f'{{"ip": "192.0.2.10", "as_num": {as_text}}}'.encode(),
        f"global/peer_v4/{hostile}": j(ip=hostile, as_num=hostile),
    })
    snap = parse_snapshot(raw)
    assert len(snap.rejected) >= 3
    assert all(r.reason for r in snap.rejected)
    configs = Rendered(Renderer().render(plan(snap, ME)))
    for text in (configs.v4, configs.v6):
        assert_only_allowed_lines(text)
        assert "evil" not in text and "shadow" not in text and "static" not in text
    # the good peers are all still there
    for name in ("Mesh_192_0_2_11", "Client_192_0_2_21", "Client_192_0_2_22"):
        assert f"protocol bgp {name} " in configs.v4


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
def test_incremental_renderer_follows_the_changes_it_is_told(flavour):
    """IncrementalRenderer renders what Renderer.render does, given the changed sessions: also sessions without a source address (their template comes and goes with
    them) and after a render that failed midway."""
    base = plan(parse_snapshot(DATA), ME)
    [a] = [s for s in base.v4.sessions if s.description == "a"]
    key = session_key(a)

    def with_v4_client(session, *others):
        replace = {a: session, **{s: new for s in base.v4.sessions for new in others if s.neighbor == new.neighbor}}
        sessions = tuple(replace.get(s, s) for s in base.v4.sessions if replace.get(s, s))
        return dataclasses.replace(base, v4=dataclasses.replace(base.v4, sessions=sessions))

    incremental = IncrementalRenderer(Renderer(flavour=flavour))
    assert incremental.render(Planned(base, {4: None, 6: None})) == Renderer(flavour=flavour).render(base)
    no_source = dataclasses.replace(a, no_source_address=True)
    for session, expect_template in ((no_source, True), (a, False), (no_source, True), (None, False)):
        the_plan = with_v4_client(session)
        configs = incremental.render(Planned(the_plan, {4: {key: session}, 6: {}}))
        assert configs == Renderer(flavour=flavour).render(the_plan)
        assert ("bgp_template_any_source" in configs["bird"]) == expect_template
    # One change of two fails: the other is in the plan the next change builds on.
    bad = dataclasses.replace(a, description="a; protocol")
    [b] = [s for s in base.v4.sessions if s.description == "b"]
    b_changed = dataclasses.replace(b, local_as=65001)
    with pytest.raises(RenderError):
        incremental.render(Planned(with_v4_client(bad, b_changed), {4: {key: bad, session_key(b): b_changed}, 6: {}}))
    the_plan = with_v4_client(a, b_changed)
    assert incremental.render(Planned(the_plan, {4: {key: a}, 6: {}})) == Renderer(flavour=flavour).render(the_plan)


BIRD = shutil.which("bird") or "/usr/sbin/bird"
BIRD6 = shutil.which("bird6") or "/usr/sbin/bird6"


@pytest.mark.integration  # runs the BIRD binary
@pytest.mark.parametrize("me", [ME, Identity(V4("192.0.2.10"))], ids=["dual-stack", "ipv4-only"])
def test_bird_parser_accepts_rendered_configs(tmp_path, me):
    if not shutil.which(BIRD) or not shutil.which(BIRD6):
        prereq.missing("BIRD 1.6 (bird, bird6) not installed")
    configs = rendered(me=me)
    for binary, text, name in ((BIRD, configs.v4, "bird.conf"), (BIRD6, configs.v6, "bird6.conf")):
        path = tmp_path / name
        path.write_text(text)
        result = subprocess.run([binary, "-p", "-c", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
