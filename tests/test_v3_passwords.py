"""BGP passwords from Kubernetes Secrets (BGPPeer spec.password.secretKeyRef): the reference
is parsed, the value comes in as plain data (CalicoData.secrets), a session never runs without
its password, an unsafe value is refused, and no password shows in warnings, repr or `render`."""

import base64
import dataclasses
import json


import pytest

from rr_service.calico.v3.fields import parse_password_ref
from rr_service.calico.v3.planner import plan_v3
from rr_service.calico.v3.resources import parse_resources
from rr_service.core.render import PASSWORD_MASK, RenderError, Renderer
from rr_service.core.values import InvalidValue, password_problem

from tests.test_v3_plan import ME, NO_MESH, RR, A, node, peer

REF = {"secretKeyRef": {"name": "bgp-secrets", "key": "rr"}}
SECRET = "s3cret-Pw!"
# Nodes a and b are our clients by a BGPPeer whose peerSelector selects us (the reverse
# sessions); the global BGPPeer with a peerIP gives us one forward session to a router.
CLIENTS = peer("clients", nodeSelector="!has(rr)", peerSelector="has(rr)", password=REF)
PLAIN = peer("plain", peerIP="10.0.9.9", asNumber=65009)
ROUTER = peer("router", peerIP="10.0.9.1", asNumber=65001, password={"secretKeyRef": {"name": "other", "key": "k"}})
RAW = {**NO_MESH, **RR, **A, **node("c", "10.0.1.3/24"), **CLIENTS, **PLAIN, **ROUTER}


def plan_with(secrets, raw=RAW):
    data = dataclasses.replace(parse_resources(raw), secrets=secrets)
    assert data.rejected == (), data.rejected
    return plan_v3(data, "rr", ME)


def by_neighbor(plan):
    return {str(s.neighbor): s for s in plan.family(4).sessions}


def test_reference_is_parsed_and_password_is_no_longer_unsupported():
    (p,) = parse_resources(CLIENTS).peers
    assert p.password_ref == ("bgp-secrets", "rr") and p.unsupported == () and p.password is None


@pytest.mark.parametrize("value, reason", [
    ("s", "password"),
    ({"secretKeyRef": "x"}, "secretKeyRef"),
    ({"secretKeyRef": {"name": "Bad_Name", "key": "k"}}, "Secret name"),
    ({"secretKeyRef": {"name": "n", "key": "a/b"}}, "Secret key"),
    ({"secretKeyRef": {"name": "n"}}, "Secret key"),
])
def test_bad_references_are_rejected(value, reason):
    with pytest.raises(InvalidValue, match=reason):
        parse_password_ref(value)


def test_every_session_of_the_bgppeer_gets_the_password():
    plan = plan_with({("bgp-secrets", "rr"): SECRET, ("other", "k"): "router-pw"})
    sessions = by_neighbor(plan)
    assert sessions["10.0.1.1"].password == SECRET and sessions["10.0.1.3"].password == SECRET
    assert sessions["10.0.9.1"].password == "router-pw"
    assert sessions["10.0.9.9"].password is None
    assert not any("password" in w for w in plan.warnings)


def test_a_changed_secret_changes_the_session():
    before = by_neighbor(plan_with({("bgp-secrets", "rr"): SECRET}))["10.0.1.1"]
    after = by_neighbor(plan_with({("bgp-secrets", "rr"): "another-one"}))["10.0.1.1"]
    assert before != after and after.password == "another-one"


def test_missing_secret_leaves_the_sessions_out_with_a_warning():
    plan = plan_with({("bgp-secrets", "other-key"): SECRET})
    sessions = by_neighbor(plan)
    # Only the BGPPeer without a password still gives a session.
    assert set(sessions) == {"10.0.9.9"}
    warned = [w for w in plan.warnings if "password" in w]
    assert any("bgppeer clients" in w and "'bgp-secrets'" in w and "'rr'" in w for w in warned), warned
    assert any("bgppeer router" in w and "'other'" in w for w in warned), warned
    assert all(SECRET not in w for w in plan.warnings)


UNSAFE = ['with"quote', "back\\slash", "new\nline", "tab\there", "nul\x00", "caf\u00e9", "x" * 81, ""]


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_passwords_are_refused_without_being_shown(value):
    assert password_problem(value) is not None
    plan = plan_with({("bgp-secrets", "rr"): value, ("other", "k"): "ok"})
    assert "10.0.1.1" not in by_neighbor(plan) and "10.0.9.1" in by_neighbor(plan)
    (warning,) = [w for w in plan.warnings if "bgppeer clients" in w]
    assert "'bgp-secrets'" in warning and "left out" in warning
    if value:
        assert value not in warning


def test_the_longest_safe_password_is_accepted():
    value = "".join(chr(c) for c in range(0x20, 0x7f) if chr(c) not in '"\\')[:80]
    assert len(value) == 80 and password_problem(value) is None
    assert by_neighbor(plan_with({("bgp-secrets", "rr"): value}))["10.0.1.1"].password == value


def test_password_stays_out_of_repr():
    plan = plan_with({("bgp-secrets", "rr"): SECRET})
    data = dataclasses.replace(parse_resources(RAW), secrets={("bgp-secrets", "rr"): SECRET})
    assert SECRET not in repr(plan) and SECRET not in repr(data)


@pytest.mark.parametrize("flavour", ["bird1", "bird2", "bird3"])
def test_rendered_and_masked(flavour):
    plan = plan_with({("bgp-secrets", "rr"): SECRET, ("other", "k"): "router-pw"})
    text = "".join(Renderer(flavour=flavour).render(plan).values())
    # a and c over IPv4, a over IPv6 too
    assert text.count(f'password "{SECRET}";') == 3 and 'password "router-pw";' in text
    masked_renderer = Renderer(flavour=flavour)
    masked_renderer.mask_passwords = True
    masked = "".join(masked_renderer.render(plan).values())
    assert SECRET not in masked and "router-pw" not in masked
    assert masked.count(f'password "{PASSWORD_MASK}";') == 4


def test_renderer_refuses_an_unsafe_password_that_got_past_the_rules():
    plan = plan_with({("bgp-secrets", "rr"): SECRET})
    v4 = plan.family(4)
    bad = dataclasses.replace(v4.sessions[0], password='x";\n}')
    plan = dataclasses.replace(plan, v4=dataclasses.replace(v4, sessions=(bad,)))
    with pytest.raises(RenderError) as caught:
        Renderer(flavour="bird2").render(plan)
    assert 'x";' not in str(caught.value)




def secret_item(name, **data):
    return {f"secrets/{name}": json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in data.items()}).encode()}


def test_secrets_come_in_as_items_and_changes_reach_the_plan():
    from rr_service.calico.v3.ruleset import RULES
    assert RULES.wanted("secrets/bgp-secrets")
    table = RULES.parser()
    parsed = table.apply({**RAW, **secret_item("bgp-secrets", rr=SECRET)})
    assert parsed.data.secrets == {("bgp-secrets", "rr"): SECRET}
    assert by_neighbor(plan_v3(parsed.data, "rr", ME))["10.0.1.1"].password == SECRET
    changed = table.apply(secret_item("bgp-secrets", rr="new-one"))
    assert changed.globals_changed and changed.data.secrets == {("bgp-secrets", "rr"): "new-one"}
    gone = table.apply({"secrets/bgp-secrets": None})
    assert gone.globals_changed and gone.data.secrets == {}
    assert "10.0.1.1" not in by_neighbor(plan_v3(gone.data, "rr", ME))


def test_a_bad_secret_is_rejected_without_its_content():
    data = parse_resources({"secrets/s": b'not json "hunter2"'})
    (rejected,) = data.rejected
    assert rejected.key == "secrets/s" and "hunter2" not in rejected.reason
    # Values that are not base64 are left out; non-UTF-8 bytes are refused by the check.
    data = parse_resources({"secrets/s": json.dumps({"a": "!!!", "b": base64.b64encode(b"\xff\xfe").decode()}).encode()})
    assert set(data.secrets) == {("s", "b")} and password_problem(data.secrets[("s", "b")]) is not None


def test_a_bgppeer_naming_us_keeps_our_identity_when_its_password_is_missing():
    # No Node of ours: the BGPPeer with our peerIP is what makes us a reflector. Without its
    # Secret its sessions go, but we are still that reflector (no "nothing names us").
    raw = {**NO_MESH, **A, **node("c", "10.0.1.3/24"),
           **peer("to-rr", peerIP="10.0.0.1", asNumber=64512, password=REF)}
    plan = plan_with({}, raw)
    assert plan.family(4).sessions == () and plan.family(4).local_address is not None
    assert [w for w in plan.warnings if "no BGPPeer with peerIP" in w] == []
    assert any("bgppeer to-rr: password from Secret 'bgp-secrets'" in w for w in plan.warnings)
    sessions = by_neighbor(plan_with({("bgp-secrets", "rr"): SECRET}, raw))
    assert {n: s.password for n, s in sessions.items()} == {"10.0.1.1": SECRET, "10.0.1.3": SECRET}
