"""Kubernetes objects become the v3 data the etcd v3 source gives: what the rule set sees."""

import json
import logging

from rr_service.calico.v3.resources import parse_resources
from rr_service.sources.kubernetes.convert import (
    ASN, CLUSTER_ID, IPV4, IPV6, LABELS, crd_object, resource,
)


def node(name, annotations=None, labels=None, **extra):
    obj = {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}}}
    obj.update(extra)
    return obj


def data(*pairs):
    return parse_resources(dict(resource(plural, obj) for plural, obj in pairs))


def test_a_calico_node_reads_as_its_v3_node():
    d = data(("nodes", node("n1", {IPV4: "192.0.2.11/24", IPV6: "2001:db8::11/64",
                                   ASN: "1.10", CLUSTER_ID: "224.0.0.1"})))
    n = d.node("n1")
    assert str(n.ipv4) == "192.0.2.11" and str(n.ipv6) == "2001:db8::11"
    assert n.as_num == 65546 and n.cluster_id == "224.0.0.1"


def test_bare_addresses_and_decimal_as_are_accepted():
    n = data(("nodes", node("n1", {IPV4: "192.0.2.11", ASN: "64512"}))).node("n1")
    assert str(n.ipv4) == "192.0.2.11" and n.as_num == 64512


def test_an_invalid_annotation_is_absent_and_named_in_a_warning(caplog):
    with caplog.at_level(logging.WARNING, "calico-rr"):
        n = data(("nodes", node("bad", {IPV4: "192.0.2.300", IPV6: "2001:db8::12", ASN: "x"}))).node("bad")
    assert n is not None and n.ipv4 is None and n.as_num is None
    assert str(n.ipv6) == "2001:db8::12"
    assert "bad" in caplog.text and IPV4 in caplog.text and ASN in caplog.text


def test_kubernetes_labels_win_over_the_calico_labels_annotation():
    n = data(("nodes", node("n1", {IPV4: "192.0.2.11", LABELS: json.dumps({"rr": "no", "zone": "a"})},
                             labels={"rr": "yes"}))).node("n1")
    assert n.labels == {"rr": "yes", "zone": "a"}


def test_a_broken_labels_annotation_keeps_the_kubernetes_labels(caplog):
    n = data(("nodes", node("n1", {IPV4: "192.0.2.11", LABELS: "{nope"}, labels={"rr": "yes"}))).node("n1")
    assert n.labels == {"rr": "yes"} and LABELS in caplog.text


def test_kubelet_churn_gives_the_same_bytes():
    a = node("n1", {IPV4: "192.0.2.11", "node.alpha.kubernetes.io/ttl": "0"},
             status={"images": [{"names": ["x"]}]})
    b = node("n1", {IPV4: "192.0.2.11", "node.alpha.kubernetes.io/ttl": "1"},
             status={"images": [], "conditions": [{"type": "Ready"}]})
    b["metadata"]["resourceVersion"] = "99"
    assert resource("nodes", a) == resource("nodes", b)


def test_custom_resources_pass_their_v3_spec_through():
    peer = {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
            "metadata": {"name": "to-rr", "resourceVersion": "5", "uid": "u"},
            "spec": {"peerIP": "192.0.2.2", "asNumber": 64512}}
    config = {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
              "metadata": {"name": "default"}, "spec": {"asNumber": 64513, "nodeToNodeMeshEnabled": False}}
    pool = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
            "metadata": {"name": "p4"}, "spec": {"cidr": "10.65.0.0/16"}}
    key, raw = resource("bgppeers", peer)
    assert key == "bgppeers/to-rr"
    assert json.loads(raw)["apiVersion"] == "projectcalico.org/v3"
    d = data(("bgppeers", peer), ("bgpconfigurations", config), ("ippools", pool))
    assert d.global_as == 64513 and not d.mesh_enabled
    assert not d.rejected and [p.name for p in d.peers] == ["to-rr"]
    assert len(d.pools) == 1


def test_a_v3_resource_written_back_keeps_its_version():
    obj = crd_object("bgppeers", "crd.projectcalico.org/v1",
                     {"metadata": {"name": "rr-a", "labels": {"x": "y"}, "resourceVersion": "7"},
                      "spec": {"peerIP": "192.0.2.2"}})
    assert obj["apiVersion"] == "crd.projectcalico.org/v1" and obj["kind"] == "BGPPeer"
    assert obj["metadata"]["resourceVersion"] == "7" and obj["spec"] == {"peerIP": "192.0.2.2"}


def test_a_bad_annotation_is_reported_once_not_at_every_kubelet_rewrite(caplog):
    with caplog.at_level(logging.WARNING, "calico-rr"):
        for _ in range(3):
            resource("nodes", node("flappy", {IPV4: "not-an-ip"}))
    assert caplog.text.count("flappy") == 1
