"""The BIRD-config reader used for conformance (tests/conformance_bird.py).

Part 1 runs it over every Calico fixture and checks the sessions against values read by hand
from the files. Part 2 checks the syntax it understands on small synthetic configs.
"""

import ipaddress

import pytest

from conformance_bird import (
    CONFORMANCE_DIR,
    BirdConfigError,
    BirdGlobals,
    ExpectedSession,
    conformance_cases,
    globals_from_bird_config,
    session_key,
    sessions_from_bird_config,
)

def S(neighbor, neighbor_as, *, port=None, local_as, source=None, rr=None, keep=False,
      passive=False, name=""):
    """Shorthand: rr=<cluster id> means `rr client; rr cluster id <id>;`."""
    return ExpectedSession(
        neighbor=neighbor, port=port, local_as=local_as, neighbor_as=neighbor_as,
        rr_client=rr is not None, rr_cluster_id=rr, next_hop_keep=keep,
        source_address=source, passive=passive, name=name,
    )


# Written down by hand from the bird.cfg / bird6.cfg files (node kube-master).
EXPECTED = {
    ("global", 4): [
        # listenPort 150 applies to peers given without a port; sourceAddress: None drops
        # the `source address` line.
        S("10.192.0.3", 64567, port=150, local_as=64567,
          name="Global_10_192_0_3_port_150"),
        S("10.192.0.4", 64567, port=150, local_as=64567, source="10.192.0.2",
          name="Global_10_192_0_4_port_150"),
        S("10.192.0.4", 64567, port=166, local_as=64567, source="10.192.0.2",
          name="Global_10_192_0_4_port_166"),
    ],
    ("global", 6): [],  # "IPv6 disabled on this node."
    ("specific_node", 4): [
        S("10.192.0.3", 64512, local_as=64512, source="10.192.0.2", name="Node_10_192_0_3"),
        S("10.192.0.4", 64566, local_as=64512, source="10.192.0.2", name="Node_10_192_0_4"),
    ],
    ("specific_node", 6): [],
    ("route_reflector", 4): [
        S("10.192.0.3", 64532, local_as=64532, source="10.192.0.2", rr="10.0.0.1",
          name="Node_10_192_0_3"),
        S("10.192.0.4", 64532, local_as=64532, source="10.192.0.2", rr="10.0.0.1",
          name="Node_10_192_0_4"),
        S("172.19.4.87", 64533, local_as=64532, source="10.192.0.2",
          name="Node_172_19_4_87"),
    ],
    ("route_reflector", 6): [
        S("ac13::57", 64533, port=50, local_as=64532, source="fe0a::2",
          name="Node_ac13__57_port_50"),
    ],
    ("keepnexthop", 4): [
        # reverse peerings (kube-node-1/2 select kube-master with peerSelector)
        S("10.192.0.3", 64532, local_as=64532, source="10.192.0.2", rr="10.0.0.1",
          name="Node_10_192_0_3"),
        S("10.192.0.4", 64532, local_as=64532, source="10.192.0.2", rr="10.0.0.1",
          name="Node_10_192_0_4"),
        S("172.19.4.87", 64533, local_as=64532, source="10.192.0.2", keep=True,
          name="Node_172_19_4_87"),
    ],
    ("keepnexthop", 6): [
        S("ac13::57", 64533, port=50, local_as=64532, source="fe0a::2", keep=True,
          name="Node_ac13__57_port_50"),
    ],
    ("keepnexthop-global", 4): [
        S("172.19.4.87", 64533, local_as=64532, source="10.192.0.2", keep=True,
          name="Global_172_19_4_87"),
    ],
    ("keepnexthop-global", 6): [
        S("ac13::57", 64533, port=50, local_as=64532, source="fe0a::2", keep=True,
          name="Global_ac13__57_port_50"),
    ],
    ("selectors", 4): [
        # kube-node-1 listens on 500 (BGPConfiguration node.kube-node-1)
        S("10.192.0.3", 64512, port=500, local_as=64512, source="10.192.0.2",
          name="Node_10_192_0_3_port_500"),
        S("10.192.0.4", 64512, local_as=64512, source="10.192.0.2", name="Node_10_192_0_4"),
    ],
    ("selectors", 6): [
        S("fd5f::3", 64512, port=500, local_as=64512, source="fd5f::2",
          name="Node_fd5f__3_port_500"),
        S("fd5f::4", 64512, local_as=64512, source="fd5f::2", name="Node_fd5f__4"),
    ],
    ("selectors/step2", 4): [
        S("10.192.0.3", 64512, local_as=64512, source="10.192.0.2", name="Node_10_192_0_3"),
        S("10.192.0.4", 64512, local_as=64512, source="10.192.0.2", name="Node_10_192_0_4"),
    ],
    ("selectors/step2", 6): [
        S("fd5f::3", 64512, local_as=64512, source="fd5f::2", name="Node_fd5f__3"),
        S("fd5f::4", 64512, local_as=64512, source="fd5f::2", name="Node_fd5f__4"),
    ],
}

EXPECTED_LISTEN_PORT = {"global": 150}

ALL_CASE_NAMES = sorted({name for name, _ in EXPECTED})


def _cases():
    return {c.name: c for c in conformance_cases()}


def test_every_fixture_is_covered():
    assert sorted(_cases()) == ALL_CASE_NAMES


def test_step2_inputs_apply_on_top_of_step1():
    case = _cases()["selectors/step2"]
    assert [p.relative_to(CONFORMANCE_DIR).as_posix() for p in case.inputs] == [
        "selectors/input.yaml",
        "selectors/step2/input.yaml",
    ]
    assert [p.relative_to(CONFORMANCE_DIR).as_posix() for p in _cases()["global"].inputs] == [
        "global/input.yaml"
    ]


@pytest.mark.parametrize("case,family", sorted(EXPECTED))
def test_fixture_sessions(case, family):
    got = _cases()[case].sessions(family)
    want = {s.key: s for s in EXPECTED[case, family]}
    assert got == want
    # names are not part of equality; check them too, since they were read by hand
    assert {k: s.name for k, s in got.items()} == {k: s.name for k, s in want.items()}


@pytest.mark.parametrize("case,family", sorted(EXPECTED))
def test_fixture_sessions_are_sane(case, family):
    c = _cases()[case]
    sessions = c.sessions(family)
    for key, s in sessions.items():
        assert key == session_key(s.neighbor, s.port)
        assert ipaddress.ip_address(s.neighbor).version == family
        if s.source_address is not None:
            assert ipaddress.ip_address(s.source_address).version == family
        assert s.port is None or 0 < s.port < 65536
        assert 0 < s.neighbor_as < 2**32
        assert s.local_as is not None  # always inherited from bgp_template
        assert s.rr_client == (s.rr_cluster_id is not None)  # confd writes them together
        assert not s.passive  # no mesh in these fixtures
        if s.rr_client:
            assert s.neighbor_as == s.local_as  # route reflection is iBGP-only
    assert c.globals(family) == BirdGlobals(
        router_id="10.192.0.2", listen_port=EXPECTED_LISTEN_PORT.get(case)
    )


# ---------------------------------------------------------------------------------------
# Synthetic configs

TEMPLATED = """
# Generated by something
function apply_communities ()
{
  if ( net ~ [ 10.0.0.0/8+ ] ) then { bgp_community.add((65000, 100)); }
}
filter calico_export_to_bgp_peers {
  apply_communities();
  if ( net ~ 192.168.0.0/16 ) then { accept; }   # comment with { brace
  reject;
}
router id 10.0.0.9;
listen bgp address 10.0.0.9 port 1179;

protocol kernel { learn; persist; scan time 2; import all; }

template bgp base {
  debug { states };
  description "Connection to BGP peer; with { braces } and # hash";
  local as 65001;
  multihop;
  import all;
  export filter calico_export_to_bgp_peers;
  error wait time 5,30;
}

/* a C comment
   protocol bgp Ignored from base { neighbor 1.1.1.1 as 1; }
*/
template bgp rr_side from base {
  rr client;
  rr cluster id 10.0.0.9;
  source address 10.0.0.9;
}

protocol bgp Client_A from rr_side {
  neighbor 10.0.0.1 as 65001;
}

protocol bgp Client_B from rr_side {
  neighbor 10.0.0.2 port 1790 as 65001;
  passive on;
  rr client off;
}

protocol bgp Upstream from base {
  local 10.0.0.9 as 65002;   # overrides the template's local as
  neighbor 172.16.0.1 as 65100;
  next hop keep;
  import filter { accept; };
}

protocol bgp { neighbor fd00::1 as 65100; local as 65001; passive; next hop self; }
"""


def test_templates_comments_and_overrides():
    got = sessions_from_bird_config(TEMPLATED)
    assert got == {
        "10.0.0.1": S("10.0.0.1", 65001, local_as=65001, source="10.0.0.9", rr="10.0.0.9"),
        "10.0.0.2:1790": ExpectedSession(
            neighbor="10.0.0.2", port=1790, local_as=65001, neighbor_as=65001,
            rr_client=False, rr_cluster_id="10.0.0.9", next_hop_keep=False,
            source_address="10.0.0.9", passive=True, name="",
        ),
        "172.16.0.1": S("172.16.0.1", 65100, local_as=65002, source="10.0.0.9", keep=True),
        "fd00::1": S("fd00::1", 65100, local_as=65001, passive=True),
    }
    assert [s.name for s in got.values()] == ["Client_A", "Client_B", "Upstream", "bgp1"]
    assert globals_from_bird_config(TEMPLATED) == BirdGlobals("10.0.0.9", 1179)


def test_name_is_not_compared():
    a = S("10.0.0.1", 1, local_as=1, name="Node_10_0_0_1")
    b = S("10.0.0.1", 1, local_as=1, name="rr_client_10_0_0_1")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


@pytest.mark.parametrize(
    "neighbor,port,key",
    [
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", 179, "10.0.0.1:179"),
        ("fd00::1", None, "fd00::1"),
        ("fd00::1", 50, "[fd00::1]:50"),
    ],
)
def test_session_key(neighbor, port, key):
    assert session_key(neighbor, port) == key


def test_no_bgp_at_all():
    assert sessions_from_bird_config("router id 1.2.3.4;\nprotocol device { scan time 2; }\n") == {}
    assert sessions_from_bird_config("") == {}
    assert globals_from_bird_config("") == BirdGlobals(None, None)


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("protocol bgp p from nope { neighbor 1.1.1.1 as 1; }", "unknown template 'nope'"),
        # BIRD requires the template first
        ("protocol bgp p from t { neighbor 1.1.1.1 as 1; }\ntemplate bgp t { local as 1; }",
         "unknown template 't'"),
        ("protocol bgp p { local as 1; }", "no neighbor address and AS"),
        ("protocol bgp p { neighbor 1.1.1.1; }", "no neighbor address and AS"),
        ("protocol bgp p { neighbor 1.1.1.1 as x; }", "expected a number"),
        ("protocol bgp p { neighbor 1.1.1.1 as 1 foo; }", "cannot read neighbor"),
        ("protocol bgp p { neighbor 1.1.1.1 as 1; }\nprotocol bgp q { neighbor 1.1.1.1 as 2; }",
         "second session to 1.1.1.1"),
        ("protocol bgp p { neighbor 1.1.1.1 as 1; }\nprotocol bgp p { neighbor 2.2.2.2 as 2; }",
         "duplicate protocol/template name 'p'"),
        ("protocol bgp p { neighbor 1.1.1.1 as 1; ", "unbalanced '{'"),
        ("protocol bgp p { neighbor 1.1.1.1 as 1; } }", "unbalanced '}'"),
        ('protocol bgp p { description "x; }', "unterminated string"),
        ("/* protocol bgp p { neighbor 1.1.1.1 as 1; }", "unterminated /* comment"),
        ("protocol bgp p { neighbor 1.1.1.1 as 1; rr client maybe; }", "unexpected 'maybe'"),
        ("protocol bgp p;", "has no body"),
        ("template bgp { local as 1; }", "template without a name"),
    ],
)
def test_errors(text, fragment):
    with pytest.raises(BirdConfigError) as excinfo:
        sessions_from_bird_config(text)
    assert fragment in str(excinfo.value)


def test_ports_distinguish_sessions():
    text = """
    template bgp t { local as 1; }
    protocol bgp a from t { neighbor 10.0.0.4 port 150 as 1; }
    protocol bgp b from t { neighbor 10.0.0.4 port 166 as 1; }
    protocol bgp c from t { neighbor 10.0.0.4 as 1; }
    """
    assert sorted(sessions_from_bird_config(text)) == [
        "10.0.0.4", "10.0.0.4:150", "10.0.0.4:166"
    ]
