"""BIRD 2 and 3: flavour detection, the one-file template, and BIRD 2's and 3's own parsers on it."""

import ipaddress
import os
import subprocess

import pytest

from rr_service.app import wiring as components
from rr_service.bird.version import flavour_of
from rr_service.calico.v1.snapshot import parse_snapshot
from rr_service.core.plan import Identity
from rr_service.calico.v1.rules import plan
from rr_service.core.render import Renderer
from rr_service.app.settings import load_settings
from tests import prereq
from tests.v1data import j
from tests.tomlfile import write_settings


V4, V6 = ipaddress.IPv4Address, ipaddress.IPv6Address
BIRD1 = "/usr/sbin/bird"
ME = Identity(V4("192.0.2.10"), V6("2001:db8::10"))



DATA = {
    "rr_v4/192.0.2.10": j(ip="192.0.2.10", cluster_id="1.2.3.4"),
    "rr_v4/192.0.2.11": j(ip="192.0.2.11"),
    "rr_v6/2001:db8::10": j(ip="2001:db8::10", cluster_id="1.2.3.4"),
    "rr_v6/2001:db8::11": j(ip="2001:db8::11"),
    "global/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="64512"),
    "host/a/ip_addr_v4": b"192.0.2.21",
    "host/a/ip_addr_v6": b"2001:db8::21",
    "host/a/peer_v6/2001:db8::10": j(ip="2001:db8::10"),
}


bird2_binary = prereq.bird2_or_missing


@pytest.mark.parametrize("version, flavour", [("1.6.8", "bird1"), ("2.0.12", "bird2"), ("2.15", "bird2"),
                                              ("2.17.6", "bird2"), ("3.0.1", "bird3"), ("3.1.8", "bird3")])
def test_flavour_of_version(version, flavour):
    assert flavour_of(version) == flavour


def settings_for(tmp_path, flavour, binary):
    path = write_settings(tmp_path / "config.toml", {"reflector": {"ip": "192.0.2.10"},
                                                       "bird": {"flavour": flavour, "binary": str(binary)}})
    return load_settings(path, environ={})


@pytest.mark.integration  # runs the BIRD binary
def test_auto_asks_the_installed_bird(tmp_path):
    assert components.flavour(settings_for(tmp_path, "auto", bird2_binary())) == "bird2"
    if os.path.exists("/usr/sbin/bird"):
        assert components.flavour(settings_for(tmp_path, "auto", "/usr/sbin/bird")) == "bird1"


@pytest.mark.integration  # runs the BIRD binary
def test_auto_detects_bird3(tmp_path):
    binary = prereq.bird3_or_missing()
    assert components.flavour(settings_for(tmp_path, "auto", binary)) == "bird3"
    assert components.flavour(settings_for(tmp_path, "bird3", binary)) == "bird3"
    with pytest.raises(components.FlavourError, match=r"flavour = 'bird2', but .* is BIRD 3\.1"):
        components.flavour(settings_for(tmp_path, "bird2", binary))
    assert list(components.targets(settings_for(tmp_path, "bird3", binary), "bird3")) == ["bird"]
    assert components.family_targets("bird3") == {4: "bird", 6: "bird"}


@pytest.mark.integration  # runs the BIRD binary
def test_wrong_flavour_for_installed_bird_is_a_clear_error(tmp_path):
    with pytest.raises(components.FlavourError, match=r"flavour = 'bird1', but .* is BIRD 2\.0"):
        components.flavour(settings_for(tmp_path, "bird1", bird2_binary()))


def test_auto_without_bird_binary_is_a_clear_error(tmp_path):
    with pytest.raises(components.FlavourError, match="needs the BIRD binary"):
        components.flavour(settings_for(tmp_path, "auto", "/nonexistent/bird"))


def test_explicit_flavour_without_binary_renders(tmp_path):
    settings = settings_for(tmp_path, "bird2", "/nonexistent/bird")
    assert components.flavour(settings) == "bird2"
    assert list(components.targets(settings, "bird2")) == ["bird"]


def bird1_or_missing():
    if not os.access(BIRD1, os.X_OK):
        prereq.missing(f"BIRD 1.6 is not installed ({BIRD1})")
    return BIRD1


@pytest.mark.integration  # runs the BIRD binary
def test_render_flavour_is_taken_as_given_whatever_bird_is_installed(tmp_path):
    # `render --flavour bird2` on a BIRD 1.6 host: the preview before migrating.
    settings = settings_for(tmp_path, "auto", bird1_or_missing())
    assert components.flavour(settings, "bird2") == "bird2"
    assert components.flavour(settings, "bird1") == "bird1"
    assert components.flavour(settings, "auto") == "bird1"
    # ... while the setting itself is still checked (what `run` uses)
    with pytest.raises(components.FlavourError, match=r"flavour = 'bird2', but .* is BIRD 1\.6"):
        components.flavour(settings_for(tmp_path, "bird2", BIRD1))


@pytest.mark.integration  # runs the BIRD binary
def test_flavour_is_asked_again_when_the_binary_changed(tmp_path):
    link = tmp_path / "bird"
    link.symlink_to(bird1_or_missing())
    settings = settings_for(tmp_path, "auto", str(link))
    assert components.flavour(settings) == "bird1"
    link.unlink()
    link.symlink_to(bird2_binary())  # `apt install bird2` replaced it
    assert components.flavour(settings) == "bird2"
    link.unlink()
    link.symlink_to(prereq.bird3_or_missing())  # and then `apt install bird3` (trixie)
    assert components.flavour(settings) == "bird3"


def render2(me=ME):
    return Renderer(flavour="bird2").render(plan(parse_snapshot(DATA), me))["bird"]


def test_bird2_one_file_both_families():
    text = render2()
    assert text.count("router id 192.0.2.10;") == 1
    assert "template bgp bgp_template_v4 {" in text and "  ipv4 {\n    import all;\n    export all;\n  };\n" in text
    assert "template bgp bgp_template_v6 {" in text and "  ipv6 {\n    import all;\n    export all;\n  };\n" in text
    assert ("protocol bgp Mesh_192_0_2_11 from bgp_template_v4 {\n  description \"role=mesh\";\n"
            "  local as 64512;\n  neighbor 192.0.2.11 as 64512;\n}\n") in text
    assert (
        "protocol bgp Client_2001_db8__21 from bgp_template_v6 {\n  description \"role=client node=a\";\n  local as 64512;\n"
        "  neighbor 2001:db8::21 as 64512;\n  rr client;\n  rr cluster id 1.2.3.4;\n}\n"
    ) in text
    assert "protocol bgp Mesh_2001_db8__11 from bgp_template_v6 {" in text


def test_bird3_config_is_bird2s():
    # BIRD 3 reads BIRD 2's configs unchanged (its parser below): one template set for both.
    data = plan(parse_snapshot(DATA), ME)
    assert Renderer(flavour="bird3").render(data) == Renderer(flavour="bird2").render(data)


def test_bird2_same_sessions_as_bird1():
    configs1 = Renderer(flavour="bird1").render(plan(parse_snapshot(DATA), ME))
    bird1_names = {line.split()[2] for text in configs1.values() for line in text.splitlines() if line.startswith("protocol bgp")}
    bird2_names = {line.split()[2] for line in render2().splitlines() if line.startswith("protocol bgp")}
    assert bird1_names == bird2_names and len(bird2_names) == 4


@pytest.mark.integration  # runs the BIRD binary
@pytest.mark.parametrize("flavour", ["bird2", "bird3"])
@pytest.mark.parametrize("me", [ME, Identity(V4("192.0.2.10"))], ids=["dual-stack", "ipv4-only"])
def test_bird2_parser_accepts_it(tmp_path, me, flavour):
    path = tmp_path / "bird.conf"
    path.write_text(Renderer(flavour=flavour).render(plan(parse_snapshot(DATA), me))["bird"])
    result = subprocess.run([prereq.bird_binary_or_missing(flavour), "-p", "-c", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr  # not even a warning
