"""`calico-rr --help` tells both of Calico's data layouts apart, and what `unregister` does with v3."""

import pytest

from rr_service import cli


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


def test_unregister_help_says_v3_is_refused(capsys):
    text = help_text(capsys, "unregister")
    assert "With Calico v3 data it changes nothing and exits 2" in text
    assert "calicoctl delete node NAME" in text
    assert "(v3: refused)" in help_text(capsys)  # the command list
