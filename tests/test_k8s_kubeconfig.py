"""The kubeconfig loader reads what kubectl reads: each auth and CA variant the test API
server's kubeconfigs use (the same files kubectl and python3-kubernetes accept)."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from rr_service.sources.base import DatastoreConfigError, DatastoreUnavailable
from rr_service.sources.kubernetes import kubeconfig
from tests.kubeapi import exec_calls, set_exec_token, write_kubeconfig
from tests.kubeapi.certs import CertAuthority


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ca = CertAuthority(tmp_path_factory.mktemp("ca"))

    def client_cert(user, groups):
        return ca.issue(f"client-{user}", f"/CN={user}")
    return SimpleNamespace(url="https://127.0.0.1:6443", ca_cert=str(ca.cert),
                           admin_token="admin-token", client_cert=client_cert)


@pytest.mark.parametrize("ca", ["file", "data", "insecure"])
@pytest.mark.parametrize("auth", ["token", "cert-files", "cert-data"])
def test_every_ca_and_auth_variant_loads(server, tmp_path, ca, auth):
    config = kubeconfig.load(write_kubeconfig(server, tmp_path / "kc", auth=auth, ca=ca))
    assert config.server == "https://127.0.0.1:6443"
    assert config.token() == ("admin-token" if auth == "token" else None)


def test_a_token_file_is_read_again_so_rotation_needs_no_restart(server, tmp_path):
    path = write_kubeconfig(server, tmp_path / "kc", auth="token-file")
    config = kubeconfig.load(path)
    assert config.token() == "admin-token"
    Path(f"{path}.token").write_text("rotated\n")
    assert config.token() == "rotated"


def test_an_exec_credential_is_cached_until_it_expires(server, tmp_path):
    path = write_kubeconfig(server, tmp_path / "kc", auth="exec", exec_lifetime=3600)
    config = kubeconfig.load(path)
    assert config.token() == config.token() == "admin-token"
    assert exec_calls(path) == 1
    set_exec_token(path, "second", lifetime=3600)
    config.forget()  # what a 401 does
    assert config.token() == "second" and exec_calls(path) == 2


def test_an_expired_exec_credential_is_asked_for_again(server, tmp_path):
    path = write_kubeconfig(server, tmp_path / "kc", auth="exec", exec_lifetime=1)
    config = kubeconfig.load(path)
    config.token()
    config.token()  # expires within the safety margin: run again
    assert exec_calls(path) == 2


def test_a_failing_exec_plugin_is_unavailable_not_a_crash(server, tmp_path):
    path = write_kubeconfig(server, tmp_path / "kc", auth="exec")
    Path(f"{path}.exec-token").unlink()
    with pytest.raises(DatastoreUnavailable, match="exec credential plugin"):
        kubeconfig.load(path).token()


def test_yaml_kubeconfig_with_relative_paths(server, tmp_path):
    (tmp_path / "ca.crt").write_text(Path(server.ca_cert).read_text())
    (tmp_path / "kc.yaml").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters:\n- name: k\n  cluster:\n    server: https://192.0.2.1:6443/\n    certificate-authority: ca.crt\n"
        "users:\n- name: u\n  user:\n    token: t0k\n"
        "contexts:\n- name: c\n  context: {cluster: k, user: u, namespace: calico}\n")
    config = kubeconfig.load(str(tmp_path / "kc.yaml"))
    assert (config.server, config.token(), config.namespace) == ("https://192.0.2.1:6443", "t0k", "calico")


def test_bad_kubeconfigs_say_what_is_wrong(tmp_path):
    with pytest.raises(DatastoreConfigError, match="cannot read kubeconfig"):
        kubeconfig.load(str(tmp_path / "missing"))
    (tmp_path / "kc").write_text('{"current-context": "x", "contexts": []}')
    with pytest.raises(DatastoreConfigError, match="no context named 'x'"):
        kubeconfig.load(str(tmp_path / "kc"))


def test_in_cluster_uses_the_service_account(server, tmp_path):
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_text(Path(server.ca_cert).read_text())
    config = kubeconfig.in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"},
                                   account=tmp_path)
    assert config.server == "https://[fd00::1]:443" and config.token() == "sa-token"
    with pytest.raises(DatastoreConfigError, match="no kubeconfig"):
        kubeconfig.load("", environ={})


def test_a_kubeconfig_list_is_merged_as_kubectl_merges_it(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    (first / "kc").write_text(
        "current-context: c\n"
        "clusters:\n- name: k\n  cluster: {server: 'https://192.0.2.1:6443', insecure-skip-tls-verify: true}\n"
        "contexts:\n- name: c\n  context: {cluster: k, user: u}\n")
    (second / "kc").write_text(
        "current-context: other\n"
        "clusters:\n- name: k\n  cluster: {server: 'https://192.0.2.99:6443'}\n"
        "users:\n- name: u\n  user: {tokenFile: token}\n")
    (second / "token").write_text("from-second\n")
    config = kubeconfig.load(f"{first / 'kc'}:{tmp_path / 'absent'}:{second / 'kc'}")
    # the first file's cluster and current-context win; the user's relative tokenFile is read
    # against the directory of the file that names it
    assert (config.server, config.token()) == ("https://192.0.2.1:6443", "from-second")
    with pytest.raises(DatastoreConfigError, match="none of"):
        kubeconfig.load(f"{tmp_path / 'absent'}:{tmp_path / 'gone'}")


def test_kubeconfig_setting_keeps_the_whole_list_and_checks_each_path():
    from rr_service.app import setting_values
    assert setting_values.kubeconfig("/a/kc::/b/kc") == "/a/kc:/b/kc"
    with pytest.raises(ValueError, match="absolute path"):
        setting_values.kubeconfig("/a/kc:relative/kc")
