"""`calico-rr --help` tells both of Calico's data layouts apart, and what `register`/`unregister` do with v3."""

import pytest

from rr_service.app import cli


def help_text(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse re-wraps: compare words


def test_top_level_help_names_both_schemas(capsys):
    text = help_text(capsys)
    assert "/calico/resources/v3/projectcalico.org" in text and "/calico/bgp/v1" in text
    assert "[etcd] schema" in text and "auto picks v3 once a v3 Node exists" in text
    assert "the sessions calico/node would configure for it" in text


def test_unregister_help_says_what_v3_removes(capsys):
    text = help_text(capsys, "unregister")
    assert "v3: delete the BGPPeers `register` wrote" in text
    assert "A Node resource of ours is left alone" in text and "calicoctl delete node NAME" in text
    assert "or its BGPPeers (v3)" in help_text(capsys)  # the command list


def test_register_help_names_both_v3_ways(capsys):
    text = help_text(capsys, "register")
    assert "BGPPeer per family (calico-rr-<node_name>-ipv4, -ipv6)" in text
    assert "--node" in text and "--as-number" in text and "--node-selector" in text
    assert "Outside the cluster, the reflector serves every Node that a BGPPeer" in help_text(capsys)
