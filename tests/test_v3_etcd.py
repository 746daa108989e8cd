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

from rr_service import cli, components  # noqa: E402
from rr_service.datastore.base import DatastoreError  # noqa: E402
from rr_service.settings import load_settings  # noqa: E402
from rr_service.v3.resources import PREFIX  # noqa: E402


@pytest.fixture(scope="module")
def etcd():
    with EtcdProc() as server:
        yield server


@pytest.fixture
def clean(etcd):
    etcd.ctl("del", "--prefix", "/calico/")
    return etcd


def settings(tmp_path, url, schema="auto", ip6="", extra=""):
    path = tmp_path / "config.toml"
    path.write_text(
        f'[reflector]\nip = "10.0.0.1"\nip6 = "{ip6}"\nnode_name = "rr"\n'
        f'[etcd]\nendpoints = ["{url}"]\nschema = "{schema}"\n'
        f'[bird]\nflavour = "bird1"\nconfig = "{tmp_path}/bird.conf"\nconfig6 = "{tmp_path}/bird6.conf"\n'
        f'socket = "{tmp_path}/bird.ctl"\nsocket6 = "{tmp_path}/bird6.ctl"\n'
        f'[safety]\nstate_dir = "{tmp_path}/state"\n{extra}'
    )
    return path


def v3_node(name, ip, **labels):
    return json.dumps({"kind": "Node", "apiVersion": "projectcalico.org/v3",
                       "metadata": {"name": name, "labels": labels}, "spec": {"bgp": {"ipv4Address": ip}}})


def test_auto_picks_v1_without_v3_nodes(clean, tmp_path):
    clean.ctl("put", "/calico/bgp/v1/rr_v4/10.0.0.1", '{"ip":"10.0.0.1","cluster_id":""}')
    clean.ctl("put", f"{PREFIX}/ippools/p", "{}")  # other v3 resources do not count
    s = load_settings(str(settings(tmp_path, clean.url)), environ={})
    schema, store, raw, _ = components.read_with_schema(s)
    store.close()
    assert schema.name == "v1" and "rr_v4/10.0.0.1" in raw
    assert components.decide_schema(s) == "v1"


def test_auto_picks_v3_when_a_node_exists(clean, tmp_path):
    clean.ctl("put", "/calico/bgp/v1/rr_v4/10.0.0.1", '{"ip":"10.0.0.1","cluster_id":""}')
    clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))
    s = load_settings(str(settings(tmp_path, clean.url)), environ={})
    schema, store, raw, _ = components.read_with_schema(s)
    store.close()
    assert schema.name == "v3" and schema.prefix == PREFIX and "nodes/a" in raw
    assert components.decide_schema(s) == "v3"


def test_explicit_schema_is_not_second_guessed(clean, tmp_path):
    clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))
    s = load_settings(str(settings(tmp_path, clean.url, schema="v1")), environ={})
    schema, store, raw, _ = components.read_with_schema(s)
    store.close()
    assert schema.name == "v1" and raw == {}


def test_no_schema_is_picked_from_a_failed_read(tmp_path):
    s = load_settings(str(settings(tmp_path, "http://127.0.0.1:9")), environ={})
    with pytest.raises(DatastoreError):
        components.read_with_schema(s)


def test_daemon_snapshot_detects_v3_and_keeps_only_bgp_resources(clean, tmp_path):
    from rr_service.daemon import Daemon

    clean.ctl("put", f"{PREFIX}/nodes/rr", v3_node("rr", "10.0.0.1/24", rr="true"))
    clean.ctl("put", f"{PREFIX}/workloadendpoints/ns/pod", "{}")
    path = settings(tmp_path, clean.url)
    daemon = Daemon(load_settings(str(path), environ={}), reload_settings=lambda: None)
    try:
        assert daemon.schema is None  # auto: undecided until etcd answered
        assert daemon._take_snapshot()
        assert daemon.schema.name == "v3"
        assert set(daemon.pipeline.raw) == {"nodes/rr"}
        clean.ctl("put", f"{PREFIX}/workloadendpoints/ns/pod2", "{}")
        clean.ctl("put", f"{PREFIX}/nodes/a", v3_node("a", "10.0.1.1/24"))
        for _ in range(20):
            daemon._wait_for_changes()
            if "nodes/a" in daemon.pipeline.raw:
                break
        assert set(daemon.pipeline.raw) == {"nodes/rr", "nodes/a"}
    finally:
        daemon.store.close()


def stored(etcd, name="rr"):
    return json.loads(etcd.ctl("get", "--print-value-only", f"{PREFIX}/nodes/{name}").stdout)


def test_register_creates_then_updates_our_node_keeping_other_fields(clean, tmp_path):
    clean.ctl("put", f"{PREFIX}/nodes/other", v3_node("other", "10.0.1.1/24"))  # makes auto pick v3
    path = str(settings(tmp_path, clean.url, ip6="fd00::1"))
    assert cli.main(["--config", path, "register", "--cluster-id", "1.0.0.1", "--label", "route-reflector=true"]) == 0
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
    assert cli.main(["--config", path, "register", "--label", "rr-group=b"]) == 0
    again = stored(clean)
    assert again["metadata"]["uid"] == uid and again["metadata"]["annotations"] == {"x": "y"}
    assert again["metadata"]["labels"] == {"route-reflector": "true", "zone": "a", "rr-group": "b"}
    assert again["spec"]["bgp"]["ipv4Address"] == "10.0.0.1/22"
    assert again["spec"]["bgp"]["routeReflectorClusterID"] == "1.0.0.1"  # not given: kept
    assert again["spec"]["orchRefs"] == [{"nodeName": "rr", "orchestrator": "k8s"}]

    # and the daemon's path now plans with it
    s = load_settings(path, environ={})
    schema, store, raw, _ = components.read_with_schema(s)
    store.close()
    plan, rejected = schema.to_plan(raw, components.identity(s))
    assert rejected == () and plan.v4.cluster_id == "1.0.0.1"


def test_register_refuses_to_overwrite_garbage(clean, tmp_path, capsys):
    clean.ctl("put", f"{PREFIX}/nodes/rr", "not json")
    path = str(settings(tmp_path, clean.url))
    assert cli.main(["--config", path, "register", "--label", "rr=true"]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert clean.ctl("get", "--print-value-only", f"{PREFIX}/nodes/rr").stdout.strip() == "not json"


@pytest.mark.parametrize("label", ["noequals", "bad key=x", "k=a\nb"])
def test_register_rejects_bad_labels(clean, tmp_path, label):
    clean.ctl("put", f"{PREFIX}/nodes/other", v3_node("other", "10.0.1.1/24"))
    path = str(settings(tmp_path, clean.url))
    assert cli.main(["--config", path, "register", "--label", label]) == 2


def test_label_needs_v3(clean, tmp_path):
    path = str(settings(tmp_path, clean.url))
    assert cli.main(["--config", path, "register", "--label", "rr=true"]) == 2


# ------------------------------------------------------- register: optimistic update

@pytest.fixture
def store(clean, tmp_path):
    """Our etcd adapter on the v3 prefix, as register uses it."""
    adapter = components.datastore(load_settings(str(settings(tmp_path, clean.url)), environ={}), PREFIX)
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
    from rr_service.v3 import register as v3_register

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
    assert cli.main(["--config", path, "register", "--label", "route-reflector=true"]) == 0
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
        assert "protocol bgp Client_10_0_1_1_port_1790 from bgp_template {" in config
        assert "  rr cluster id 1.0.0.1;" in config

        (Path(folder) / "bird.conf").write_text(config)
        with birdproc.BirdNetns(folder) as bird:
            bird.start(str(Path(folder) / "bird.conf"))
            assert cli.main(["--config", path, "status"]) == 0
            out = capsys.readouterr().out
            assert "IPv4: 10.0.0.1 our Node resource found, cluster id 1.0.0.1, listening on port 1790" in out
            assert "IPv6: no address configured for this reflector" in out  # no ip6 in the settings
            row = next(line.split() for line in out.splitlines() if "Client_10_0_1_1_port_1790" in line)
            assert row[:6] == ["IPv4", "client", "Client_10_0_1_1_port_1790", "10.0.1.1", "64512", "yes"]
            assert row[6] == "start"  # BIRD runs it (and cannot reach 10.0.1.1 from its namespace)

            clean.ctl("del", f"{PREFIX}/nodes/rr")
            assert cli.main(["--config", path, "status"]) == 0
            out = capsys.readouterr().out
            assert "IPv4: our Node resource missing: no sessions (calico-rr register creates it)" in out
            assert "no address configured" not in out.split("IPv6")[0]
            row = next(line.split() for line in out.splitlines() if "Client_10_0_1_1_port_1790" in line)
            assert row[:4] == ["-", "-", "Client_10_0_1_1_port_1790", "no"]  # BIRD still runs it

        # unregister never touches v3 data
        assert cli.main(["--config", path, "unregister"]) == 2
        assert "calicoctl delete node NAME" in capsys.readouterr().err
        assert set(clean.ctl("get", "--prefix", "--keys-only", PREFIX).stdout.split()) == {
            f"{PREFIX}/nodes/a", f"{PREFIX}/bgppeers/clients", f"{PREFIX}/bgpconfigurations/default"}
