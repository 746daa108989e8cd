"""Calico v3 against a real etcd: schema auto-detection, the daemon's snapshot, `register`
(an optimistic update that keeps a concurrent writer's change), `render` and `status`."""

from __future__ import annotations

import json

import pytest

from etcdproc import EtcdProc, etcd_installed

pytest.importorskip("etcd3", reason="python3-etcd3 is not installed")
# A real etcd: not part of `make test-unit`, which runs where there is none.
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not etcd_installed(), reason="etcd / etcdctl not installed")]

from rr_service.app import cli  # noqa: E402
from rr_service.app import wiring as components  # noqa: E402
from rr_service.calico import rule_set  # noqa: E402
from rr_service.core.pipeline import compute_once  # noqa: E402
from rr_service.core.render import Renderer  # noqa: E402
from rr_service.sources.etcd.client import EtcdDatastore  # noqa: E402
from rr_service.sources.etcd.config import EtcdConfig  # noqa: E402
from rr_service.sources.base import DatastoreError  # noqa: E402
from rr_service.app.settings import load_settings  # noqa: E402
from rr_service.calico.v3.resources import PREFIX  # noqa: E402
from tests.tomlfile import write_settings  # noqa: E402


@pytest.fixture(scope="module")
def etcd():
    with EtcdProc() as server:
        yield server


@pytest.fixture
def clean(etcd):
    etcd.ctl("del", "--prefix", "/calico/")
    return etcd


def settings(tmp_path, url, schema="auto", ip6=""):
    return write_settings(tmp_path / "config.toml", {
        "reflector": {"ip": "10.0.0.1", "ip6": ip6, "node_name": "rr"},
        "etcd": {"endpoints": [url], "schema": schema},
        "bird": {"flavour": "bird1", "config": f"{tmp_path}/bird.conf", "config6": f"{tmp_path}/bird6.conf",
                 "socket": f"{tmp_path}/bird.ctl", "socket6": f"{tmp_path}/bird6.ctl"},
        "safety": {"state_dir": f"{tmp_path}/state"},
    })


def v3_node(name, ip, **labels):
    return json.dumps({"kind": "Node", "apiVersion": "projectcalico.org/v3",
                       "metadata": {"name": name, "labels": labels}, "spec": {"bgp": {"ipv4Address": ip}}})


def read(s):
    """One snapshot through the daemon's own source."""
    store = components.source(s)
    try:
        return store.read()
    finally:
        store.close()


def decided(s):
    store = components.source(s)
    try:
        return store.rules()
    finally:
        store.close()


def plan_of(s):
    data = read(s)
    computed = compute_once(rule_set(data.rules), data.items, components.identity(s), Renderer())
    return computed.plan, computed.rejected


def test_auto_picks_v1_without_v3_nodes(clean, tmp_path):
    clean.ctl("put", "/calico/bgp/v1/rr_v4/10.0.0.1", '{"ip":"10.0.0.1","cluster_id":""}')
    clean.ctl("put", f"{PREFIX}/ippools/p", "{}")  # other v3 resources do not count
    s = load_settings(str(settings(tmp_path, clean.url)), environ={})
    data = read(s)
    assert data.rules == "v1" and "rr_v4/10.0.0.1" in data.items
    assert decided(s) == "v1"


def test_auto_picks_v3_when_a_node_exists(clean, tmp_path):
    clean.ctl("put", "/calico/bgp/v1/rr_v4/10.0.0.1", '{"ip":"10.0.0.1","cluster_id":""}')
    clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))
    s = load_settings(str(settings(tmp_path, clean.url)), environ={})
    data = read(s)
    assert data.rules == "v3" and "nodes/a" in data.items
    assert decided(s) == "v3"


def test_explicit_schema_is_not_second_guessed(clean, tmp_path):
    clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))
    s = load_settings(str(settings(tmp_path, clean.url, schema="v1")), environ={})
    data = read(s)
    assert data.rules == "v1" and data.items == {}


def test_no_schema_is_picked_from_a_failed_read(tmp_path):
    s = load_settings(str(settings(tmp_path, "http://127.0.0.1:9")), environ={})
    store = components.source(s)
    with pytest.raises(DatastoreError):
        store.read()
    store.close()


def test_daemon_snapshot_detects_v3_and_keeps_only_bgp_resources(clean, tmp_path):
    """The source reads only the kinds the v3 rules read, and its watch never delivers pod
    churn (workload endpoints lie outside the watched range)."""
    clean.ctl("put", f"{PREFIX}/nodes/rr", v3_node("rr", "10.0.0.1/24", rr="true"))
    clean.ctl("put", f"{PREFIX}/workloadendpoints/ns/pod", "{}")
    s = load_settings(str(settings(tmp_path, clean.url)), environ={})
    store = components.source(s)
    try:
        data = store.read()
        assert data.rules == "v3" and set(data.items) == {"nodes/rr"}
        store.follow(data.bookmark)
        clean.ctl("put", f"{PREFIX}/workloadendpoints/ns/pod2", "{}")
        clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))
        seen = []
        for _ in range(20):
            seen += [change.key for change in store.changes(0.5)]
            if "nodes/a" in seen:
                break
        assert seen == ["nodes/a"]
        assert store.position().startswith("revision ") and int(store.position().split()[1]) > data.bookmark
    finally:
        store.close()


def stored(etcd, name="rr"):
    return json.loads(etcd.ctl("get", "--print-value-only", f"{PREFIX}/nodes/{name}").stdout)


def test_register_creates_then_updates_our_node_keeping_other_fields(clean, tmp_path):
    clean.ctl("put", f"{PREFIX}/nodes/other", v3_node("other", "10.0.1.1/24"))  # makes auto pick v3
    path = str(settings(tmp_path, clean.url, ip6="fd00::1"))
    assert cli.main(["--config", path, "register", "--node", "--cluster-id", "1.0.0.1", "--label", "route-reflector=true"]) == 0
    node = stored(clean)
    assert node["kind"] == "Node" and node["apiVersion"] == "projectcalico.org/v3"
    assert node["metadata"]["name"] == "rr" and node["metadata"]["uid"] and node["metadata"]["creationTimestamp"]
    assert node["metadata"]["labels"] == {"route-reflector": "true"}
    assert node["spec"]["bgp"]["routeReflectorClusterID"] == "1.0.0.1"
    assert node["spec"]["bgp"]["ipv4Address"].startswith("10.0.0.1/")
    assert node["spec"]["bgp"]["ipv6Address"].startswith("fd00::1/")

    # someone else adds fields; a second register keeps them and the stored prefix length
    node["metadata"]["labels"]["zone"] = "a"
    node["metadata"]["annotations"] = {"x": "y"}
    node["spec"]["bgp"]["ipv4Address"] = "10.0.0.1/22"
    node["spec"]["orchRefs"] = [{"nodeName": "rr", "orchestrator": "k8s"}]
    clean.ctl("put", f"{PREFIX}/nodes/rr", json.dumps(node))
    uid = node["metadata"]["uid"]
    assert cli.main(["--config", path, "register", "--node", "--label", "rr-group=b"]) == 0
    again = stored(clean)
    assert again["metadata"]["uid"] == uid and again["metadata"]["annotations"] == {"x": "y"}
    assert again["metadata"]["labels"] == {"route-reflector": "true", "zone": "a", "rr-group": "b"}
    assert again["spec"]["bgp"]["ipv4Address"] == "10.0.0.1/22"
    assert again["spec"]["bgp"]["routeReflectorClusterID"] == "1.0.0.1"  # not given: kept
    assert again["spec"]["orchRefs"] == [{"nodeName": "rr", "orchestrator": "k8s"}]

    # and the daemon's path now plans with it
    s = load_settings(path, environ={})
    plan, rejected = plan_of(s)
    assert rejected == () and plan.v4.cluster_id == "1.0.0.1"


def test_register_refuses_to_overwrite_garbage(clean, tmp_path, capsys):
    clean.ctl("put", f"{PREFIX}/nodes/rr", "not json")
    path = str(settings(tmp_path, clean.url))
    assert cli.main(["--config", path, "register", "--node", "--label", "rr=true"]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert clean.ctl("get", "--print-value-only", f"{PREFIX}/nodes/rr").stdout.strip() == "not json"


@pytest.mark.parametrize("label", ["noequals", "bad key=x", "k=a\nb"])
def test_register_rejects_bad_labels(clean, tmp_path, label):
    clean.ctl("put", f"{PREFIX}/nodes/other", v3_node("other", "10.0.1.1/24"))
    path = str(settings(tmp_path, clean.url))
    assert cli.main(["--config", path, "register", "--label", label]) == 2


@pytest.mark.parametrize("option", [["--label", "rr=true"], ["--node"], ["--as-number", "65000"],
                                    ["--node-selector", "all()"]])
def test_v3_options_need_v3(clean, tmp_path, capsys, option):
    path = str(settings(tmp_path, clean.url))
    assert cli.main(["--config", path, "register", *option]) == 2
    assert f"{option[0]} needs the Calico v3 data" in capsys.readouterr().err


# ------------------------------------------------------- register: optimistic update

@pytest.fixture
def store(clean, tmp_path):
    """Our etcd adapter on the v3 prefix, as register uses it."""
    adapter = EtcdDatastore(EtcdConfig((clean.url,)), PREFIX)
    yield adapter
    adapter.close()


def value_of(etcd, name="rr"):
    return etcd.ctl("get", "--print-value-only", f"{PREFIX}/nodes/{name}").stdout.strip()


def racing_writer(etcd, write):
    """A `change` for update() that records what it saw and, while `write(seen)` gives a value,
    has another writer store it between our read and our write."""
    seen = []

    def change(current):
        seen.append(current)
        theirs = write(seen)
        if theirs is not None:
            etcd.ctl("put", f"{PREFIX}/nodes/rr", theirs)
        return (current or b"") + b"+ours"

    return change, seen


def test_update_retries_when_another_writer_came_in_between(clean, store):
    """The other writer's value is read again and built on, not overwritten."""
    clean.ctl("put", f"{PREFIX}/nodes/rr", "v1")
    change, seen = racing_writer(clean, lambda seen: "v1+theirs" if len(seen) == 1 else None)
    assert store.update("nodes/rr", change) == (b"v1+theirs", b"v1+theirs+ours")
    assert seen == [b"v1", b"v1+theirs"]
    assert value_of(clean) == "v1+theirs+ours"


def test_update_creates_only_while_the_key_is_absent(clean, store):
    change, seen = racing_writer(clean, lambda seen: "theirs" if seen[-1] is None else None)
    assert store.update("nodes/rr", change) == (b"theirs", b"theirs+ours")
    assert seen == [None, b"theirs"]


def test_update_gives_up_after_its_attempts_and_writes_nothing(clean, store):
    clean.ctl("put", f"{PREFIX}/nodes/rr", "0")
    change, seen = racing_writer(clean, lambda seen: f"theirs-{len(seen)}")  # always one step ahead
    with pytest.raises(DatastoreError, match="changed by another writer 3 times"):
        store.update("nodes/rr", change, attempts=3)
    assert len(seen) == 3
    assert value_of(clean) == "theirs-3"


def test_register_keeps_a_concurrent_writers_change(clean, tmp_path, monkeypatch):
    """calico/node (or calicoctl) updates our Node while register runs: both changes stay."""
    from rr_service.calico.v3 import register as v3_register

    clean.ctl("put", f"{PREFIX}/nodes/rr", v3_node("rr", "10.0.0.1/24"))
    real = v3_register.updated_node
    calls = []

    def racing(existing, *args, **kwargs):
        calls.append(existing)
        if len(calls) == 1:
            theirs = json.loads(existing)
            theirs["metadata"]["annotations"] = {"projectcalico.org/IPv4Address": "10.0.0.1/24"}
            clean.ctl("put", f"{PREFIX}/nodes/rr", json.dumps(theirs))
        return real(existing, *args, **kwargs)

    monkeypatch.setattr(v3_register, "updated_node", racing)
    path = str(settings(tmp_path, clean.url))
    assert cli.main(["--config", path, "register", "--node", "--label", "route-reflector=true"]) == 0
    assert len(calls) == 2  # the first write lost the race and was not made
    node = stored(clean)
    assert node["metadata"]["annotations"] == {"projectcalico.org/IPv4Address": "10.0.0.1/24"}  # theirs
    assert node["metadata"]["labels"] == {"route-reflector": "true"}  # ours


# ------------------------------------------------------- render, status, unregister

def test_render_status_and_unregister_on_v3_data(clean, capsys):
    """What a user runs on a v3 cluster: `render` prints Calico's sessions, `status` compares
    them with a real BIRD running that config, and says so when our Node is gone."""
    import birdproc

    birdproc.skip_unless_possible()
    rr = json.loads(v3_node("rr", "10.0.0.1/24", rr="true"))
    rr["spec"]["bgp"]["routeReflectorClusterID"] = "1.0.0.1"
    clean.ctl("put", f"{PREFIX}/nodes/rr", json.dumps(rr))
    clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))
    clean.ctl("put", f"{PREFIX}/bgppeers/clients", json.dumps({
        "kind": "BGPPeer", "apiVersion": "projectcalico.org/v3", "metadata": {"name": "clients"},
        "spec": {"nodeSelector": "!has(rr)", "peerSelector": "has(rr)"}}))
    clean.ctl("put", f"{PREFIX}/bgpconfigurations/default", json.dumps({
        "kind": "BGPConfiguration", "apiVersion": "projectcalico.org/v3", "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": False, "listenPort": 1790}}))
    with birdproc.short_tmpdir() as folder:
        from pathlib import Path

        path = str(settings(Path(folder), clean.url))
        assert cli.main(["--config", path, "render", "--only", "bird"]) == 0
        config = capsys.readouterr().out
        assert "listen bgp port 1790;" in config
        assert "protocol bgp Client_10_0_1_1_port_1790 from bgp_client_template {" in config
        assert "  rr cluster id 1.0.0.1;" in config

        (Path(folder) / "bird.conf").write_text(config)
        with birdproc.BirdNetns(folder) as bird:
            bird.start(str(Path(folder) / "bird.conf"))
            assert cli.main(["--config", path, "status"]) == 0
            out = capsys.readouterr().out
            assert "IPv4: Calico Node rr at 10.0.0.1, cluster id 1.0.0.1, listening on port 1790" in out
            assert row_rule(out, "Client_10_0_1_1_port_1790") == "bgppeer clients (reverse)"
            assert "IPv6: no address configured for this reflector" in out  # no ip6 in the settings
            row = next(line.split() for line in out.splitlines() if "Client_10_0_1_1_port_1790" in line)
            assert row[:6] == ["IPv4", "client", "Client_10_0_1_1_port_1790", "10.0.1.1", "64512", "yes"]
            assert row[6] == "start"  # BIRD runs it (and cannot reach 10.0.1.1 from its namespace)

            clean.ctl("del", f"{PREFIX}/nodes/rr")
            assert cli.main(["--config", path, "status"]) == 0
            out = capsys.readouterr().out
            assert ("IPv4: no Node of ours and no BGPPeer with peerIP 10.0.0.1: no IPv4 sessions "
                    "(calico-rr register creates this reflector's BGPPeer)") in out
            assert "no address configured" not in out.split("IPv6")[0]
            row = next(line.split() for line in out.splitlines() if "Client_10_0_1_1_port_1790" in line)
            assert row[:4] == ["-", "-", "Client_10_0_1_1_port_1790", "no"]  # BIRD still runs it

        # unregister removes only BGPPeers of ours: there are none, and a Node stays
        clean.ctl("put", f"{PREFIX}/nodes/rr", json.dumps(rr))
        assert cli.main(["--config", path, "unregister"]) == 0
        out = capsys.readouterr().out
        assert f"not present: {PREFIX}/bgppeers/calico-rr-rr-ipv4" in out
        assert "calicoctl delete node rr" in out
        assert set(clean.ctl("get", "--prefix", "--keys-only", PREFIX).stdout.split()) == {
            f"{PREFIX}/nodes/a", f"{PREFIX}/nodes/rr", f"{PREFIX}/bgppeers/clients", f"{PREFIX}/bgpconfigurations/default"}


def row_rule(out: str, protocol: str) -> str:
    """The RULE column of a status row (the last, and it may hold spaces)."""
    header = next(line for line in out.splitlines() if line.startswith("FAMILY"))
    row = next(line for line in out.splitlines() if f" {protocol} " in line)
    return row[header.index("RULE"):].strip()


# ------------------------------------------------------- register: a reflector outside the cluster

def stored_peer(etcd, name):
    text = etcd.ctl("get", "--print-value-only", f"{PREFIX}/bgppeers/{name}").stdout
    return json.loads(text) if text.strip() else None


def test_register_writes_our_bgppeers_then_keeps_other_fields(clean, tmp_path, capsys):
    """The external reflector's register: one BGPPeer per family, peerIP our address, AS the
    cluster's, labelled; a second run keeps what others added and the options not given."""
    clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))  # a v3 cluster: auto picks v3
    clean.ctl("put", f"{PREFIX}/bgpconfigurations/default", json.dumps({
        "kind": "BGPConfiguration", "apiVersion": "projectcalico.org/v3", "metadata": {"name": "default"},
        "spec": {"asNumber": 64500}}))
    path = str(settings(tmp_path, clean.url, ip6="fd00::1"))
    assert cli.main(["--config", path, "register", "--cluster-id", "244.0.0.1", "--node-selector", "rack == 'a'"]) == 0
    assert "created /calico/resources/v3/projectcalico.org/bgppeers/calico-rr-rr-ipv4" in capsys.readouterr().out
    v4, v6 = stored_peer(clean, "calico-rr-rr-ipv4"), stored_peer(clean, "calico-rr-rr-ipv6")
    assert v4["kind"] == "BGPPeer" and v4["apiVersion"] == "projectcalico.org/v3" and v4["metadata"]["uid"]
    assert v4["spec"] == {"peerIP": "10.0.0.1", "asNumber": 64500, "nodeSelector": "rack == 'a'"}
    assert v6["spec"]["peerIP"] == "fd00::1"
    assert v4["metadata"]["labels"] == {"calico-rr/reflector": "rr", "calico-rr/cluster-id": "244.0.0.1"}

    # an operator gives it a port and a password field; register again with a new AS only
    v4["spec"]["peerIP"] = "10.0.0.1:1790"
    v4["metadata"]["annotations"] = {"owner": "netops"}
    clean.ctl("put", f"{PREFIX}/bgppeers/calico-rr-rr-ipv4", json.dumps(v4))
    assert cli.main(["--config", path, "register", "--as-number", "64501"]) == 0
    again = stored_peer(clean, "calico-rr-rr-ipv4")
    assert again["metadata"]["uid"] == v4["metadata"]["uid"] and again["metadata"]["annotations"] == {"owner": "netops"}
    assert again["spec"] == {"peerIP": "10.0.0.1:1790", "asNumber": 64501, "nodeSelector": "rack == 'a'"}
    assert again["metadata"]["labels"]["calico-rr/cluster-id"] == "244.0.0.1"  # not given: kept
    # "" removes the scope and the cluster id
    assert cli.main(["--config", path, "register", "--cluster-id", "", "--node-selector", ""]) == 0
    last = stored_peer(clean, "calico-rr-rr-ipv4")
    assert "nodeSelector" not in last["spec"] and "calico-rr/cluster-id" not in last["metadata"]["labels"]

    # the daemon's path: we are an external reflector that node a peers with
    s = load_settings(path, environ={})
    plan, rejected = plan_of(s)
    assert rejected == ()
    # node a is in the cluster's AS 64500, we told the nodes to dial us in 64501: eBGP
    assert [(x.name, x.local_as, x.neighbor_as) for x in plan.v4.sessions] == [("Peer_10_0_1_1", 64501, 64500)]
    assert plan.listen_port == 1790  # the port the operator put into our peerIP
    assert plan.v4.mode.startswith("external reflector: 1 BGPPeer names 10.0.0.1")

    assert cli.main(["--config", path, "unregister"]) == 0
    out = capsys.readouterr().out
    assert f"removed {PREFIX}/bgppeers/calico-rr-rr-ipv4" in out and f"removed {PREFIX}/bgppeers/calico-rr-rr-ipv6" in out
    assert stored_peer(clean, "calico-rr-rr-ipv4") is None and stored_peer(clean, "calico-rr-rr-ipv6") is None
    assert "calicoctl delete node" not in out  # we have no Node


@pytest.mark.parametrize("args, words", [
    (["--as-number", "x"], "--as-number: AS number 'x' is not a number"),
    (["--node-selector", "has(x"], "--node-selector 'has(x' does not parse"),
    (["--node", "--as-number", "65000"], "are for the BGPPeers, not --node"),
])
def test_register_refuses_bad_options_and_writes_nothing(clean, tmp_path, capsys, args, words):
    clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))
    path = str(settings(tmp_path, clean.url))
    assert cli.main(["--config", path, "register", *args]) in (1, 2)
    assert words in capsys.readouterr().err
    assert stored_peer(clean, "calico-rr-rr-ipv4") is None


def test_register_refuses_an_invalid_default_bgpconfiguration_without_as_number(clean, tmp_path, capsys):
    clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))
    clean.ctl("put", f"{PREFIX}/bgpconfigurations/default", '{"spec": {"asNumber": "65000;"}}')
    path = str(settings(tmp_path, clean.url))
    assert cli.main(["--config", path, "register"]) == 1
    assert "BGPConfiguration default is invalid" in capsys.readouterr().err
    assert cli.main(["--config", path, "register", "--as-number", "65000"]) == 0


def test_v1_reads_and_watches_calicos_legacy_ip_pools_and_only_those(clean, tmp_path):
    """v1 data: the pools under /calico/v1/ipam/ come with the BGP keys (at one revision, and
    as changes), as `ipam/v4/pool/<cidr>`; a key under the BGP prefix that would pass for a
    pool is dropped, and so is anything else between the two prefixes (felix, IPAM blocks)."""
    pool = json.dumps({"cidr": "192.168.0.0/16", "ipip": "tunl0", "masquerade": True, "disabled": False})
    clean.ctl("put", "/calico/bgp/v1/global/as_num", "64512")
    clean.ctl("put", "/calico/v1/ipam/v4/pool/192.168.0.0-16", pool)
    clean.ctl("put", "/calico/bgp/v1/ipam/v4/pool/0.0.0.0-0", json.dumps({"cidr": "0.0.0.0/0"}))  # posing as a pool
    clean.ctl("put", "/calico/ipam/v2/assignment/ipv4/block/192.168.1.0-26", "{}")  # between the prefixes
    s = load_settings(settings(tmp_path, clean.url, schema="v1"), environ={})
    store = components.source(s)
    try:
        data = store.read()
        assert data.rules == "v1"
        assert set(data.items) == {"global/as_num", "ipam/v4/pool/192.168.0.0-16"}
        assert data.created["ipam/v4/pool/192.168.0.0-16"] > 0
        computed = compute_once(rule_set("v1"), dict(data.items), components.identity(s), Renderer(), data.created)
        assert [str(n) for n in computed.plan.v4.client_prefixes] == ["192.168.0.0/16"]
        store.follow(data.bookmark)
        clean.ctl("put", "/calico/ipam/v2/assignment/ipv4/block/192.168.2.0-26", "{}")
        clean.ctl("put", "/calico/bgp/v1/ipam/v6/pool/x", "{}")
        clean.ctl("put", "/calico/v1/ipam/v6/pool/fd00::-48", json.dumps({"cidr": "fd00::/48"}))
        clean.ctl("del", "/calico/v1/ipam/v4/pool/192.168.0.0-16")
        seen = []
        deadline = 20
        import time
        end = time.monotonic() + deadline
        while len(seen) < 2 and time.monotonic() < end:
            seen += [(c.key, c.value is None) for c in store.changes(0.5)]
        assert seen == [("ipam/v6/pool/fd00::-48", False), ("ipam/v4/pool/192.168.0.0-16", True)], seen
        assert store.changes(0.5) == []
    finally:
        store.close()
