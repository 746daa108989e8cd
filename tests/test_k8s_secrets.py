"""BGP password Secrets through the Kubernetes source against the test API server (a real
etcd behind it): read by name, followed when they change, a newly named one picked up, and
the shipped RBAC (a Role with resourceNames) enough to read exactly those."""

from __future__ import annotations

import ipaddress

import pytest

from tests import prereq

prereq.import_or_missing("etcd3", "python3-etcd3 is not installed")

from rr_service.calico.v3.resources import parse_resources  # noqa: E402
from rr_service.core.plan import Identity  # noqa: E402
from rr_service.calico.v3.planner import plan_v3  # noqa: E402
from rr_service.sources.kubernetes.source import KubeSource  # noqa: E402
from tests.etcdproc import etcd_for_kubeapi  # noqa: E402
from tests.kubeapi import KubeApiServer, bgp_peer, realistic_node, secret  # noqa: E402
from tests.kubeapi.auth import Rule  # noqa: E402
from tests.test_k8s_source import collect, shipped_rules  # noqa: E402

pytestmark = pytest.mark.integration

ME = Identity(ipaddress.IPv4Address("192.0.2.2"), None)
PW = "right-pw-1"


@pytest.fixture(scope="module")
def etcd():
    yield from etcd_for_kubeapi()


@pytest.fixture
def api(etcd):
    server = KubeApiServer(etcd.url, groups=("crd",), bookmark_interval=1.0)
    try:
        server.start()
        server.store.delete_prefix("/registry/")
        server.registry.ensure_namespaces(["kube-system"])
        yield server
    finally:
        server.close()


def peer_with_password(name, secret_name, key="password"):
    return bgp_peer(name, "192.0.2.2", 64512, nodeSelector="all()",
                    password={"secretKeyRef": {"name": secret_name, "key": key}})


def fold(items, changes):
    for c in changes:
        if c.value is None:
            items.pop(c.key, None)
        else:
            items[c.key] = c.value


def passwords(items):
    plan = plan_v3(parse_resources(items), "rr", ME)
    return {str(s.neighbor): s.password for s in plan.v4.sessions}, plan.warnings


def test_secret_is_read_followed_and_a_new_one_picked_up(api, tmp_path):
    api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24")])
    api.create("secrets", secret("bgp-secrets", {"password": PW}), namespace="kube-system")
    api.create("secrets", secret("unrelated", {"password": "never-read"}), namespace="kube-system")
    api.create("bgppeers", peer_with_password("to-rr", "bgp-secrets"), group="crd")
    source = KubeSource(api.kubeconfig(tmp_path / "kc", auth="token", ca="data"), watch_timeout=2)
    try:
        data = source.read()
        assert "secrets/bgp-secrets" in data.items and "secrets/unrelated" not in data.items
        items = dict(data.items)
        assert passwords(items)[0] == {"192.0.2.21": PW}
        source.follow(data.bookmark)

        changed = secret("bgp-secrets", {"password": "changed-pw"})
        res = api.resource("secrets")
        api.registry.update(res, "kube-system", "bgp-secrets", changed)
        seen = collect(source, lambda s: any(c.key == "secrets/bgp-secrets" for c in s))
        fold(items, seen)
        assert passwords(items)[0] == {"192.0.2.21": "changed-pw"}

        # A BGPPeer naming a Secret not read yet: it is read at once and watched from there.
        api.create("secrets", secret("second", {"pw": "second-pw"}), namespace="kube-system")
        api.create("bgppeers", peer_with_password("to-rr-2", "second", "pw"), group="crd")
        seen = collect(source, lambda s: any(c.key == "secrets/second" for c in s))
        assert any(c.key == "bgppeers/to-rr-2" for c in seen)
        fold(items, seen)

        # A deleted Secret: the sessions of its BGPPeer are left out, with a warning.
        api.registry.delete(res, "kube-system", "bgp-secrets")
        seen = collect(source, lambda s: any(c.key == "secrets/bgp-secrets" and c.value is None for c in s))
        fold(items, seen)
        sessions, warnings = passwords(items)
        assert sessions == {"192.0.2.21": "second-pw"}
        assert any("bgppeer to-rr:" in w and "'bgp-secrets'" in w for w in warnings)
        assert all(PW not in w and "changed-pw" not in w for w in warnings)
    finally:
        source.close()


def shipped_secret_role(names=("bgp-secrets",)):
    import yaml
    docs = yaml.safe_load_all((prereq.REPO / "packaging" / "kubernetes" / "rbac.yaml").read_text())
    role = next(d for d in docs if d["kind"] == "Role")
    (rule,) = role["rules"]
    assert rule["resourceNames"] == ["bgp-secrets"] and rule["resources"] == ["secrets"]
    return Rule(tuple(rule["verbs"]), ("secrets",), tuple(names), (role["metadata"]["namespace"],))


def test_the_shipped_role_reads_the_named_secrets_only(api, tmp_path):
    api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24")])
    api.create("secrets", secret("bgp-secrets", {"password": PW}), namespace="kube-system")
    api.create("secrets", secret("not-granted", {"password": "other"}), namespace="kube-system")
    api.create("bgppeers", peer_with_password("to-rr", "bgp-secrets"), group="crd")
    api.create("bgppeers", peer_with_password("to-rr-b", "not-granted"), group="crd")
    user = "system:serviceaccount:kube-system:calico-routereflector"
    api.add_token("rr-token", user)
    api.set_rules(user, [*shipped_rules(), shipped_secret_role()])
    source = KubeSource(api.kubeconfig(tmp_path / "rr-kc", auth="token", ca="file", token="rr-token"),
                        watch_timeout=2)
    try:
        data = source.read()
        assert "secrets/bgp-secrets" in data.items and "secrets/not-granted" not in data.items
        source.follow(data.bookmark)
        # the watch of the granted Secret is allowed too: a change arrives
        api.registry.update(api.resource("secrets"), "kube-system", "bgp-secrets",
                            secret("bgp-secrets", {"password": "rotated"}))
        seen = collect(source, lambda s: any(c.key == "secrets/bgp-secrets" for c in s))
        assert seen
    finally:
        source.close()

