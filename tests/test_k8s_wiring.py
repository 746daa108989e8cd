"""[datastore] type picks the source; etcd mode never loads the Kubernetes client."""

import subprocess
import sys

from rr_service.app import wiring
from rr_service.app.settings import load_settings
from rr_service.sources.kubernetes.source import KubeSource


def test_type_kubernetes_gives_the_kubernetes_source(tmp_path, monkeypatch):
    (tmp_path / "kubeconfig").write_text(
        '{"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],'
        ' "clusters": [{"name": "k", "cluster": {"server": "https://192.0.2.1:6443"}}],'
        ' "users": [{"name": "u", "user": {"token": "t"}}]}')
    monkeypatch.setattr("rr_service.app.settings.DEFAULT_CONFIG_PATH", str(tmp_path / "none.toml"))
    settings = load_settings(None, environ={"IP": "192.0.2.10", "DATASTORE_TYPE": "kubernetes",
                                            "KUBECONFIG": str(tmp_path / "kubeconfig")})
    source = wiring.source(settings)
    assert isinstance(source, KubeSource) and source.rules() == "v3"
    assert str(tmp_path / "kubeconfig") in source.describe()


def test_etcd_mode_pays_nothing_for_kubernetes_support():
    code = ("import sys; from rr_service.app import cli, daemon, wiring; "
            "print(sorted(m for m in sys.modules if 'kubernetes' in m or m.startswith(('urllib3', 'yaml'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_wrong_kubeconfig_stops_at_start_naming_it(tmp_path):
    import pytest
    from rr_service.sources.base import DatastoreConfigError
    with pytest.raises(DatastoreConfigError, match="cannot read kubeconfig .*missing"):
        KubeSource(str(tmp_path / "missing"))
