"""Objects as a Calico cluster in the Kubernetes datastore holds them.

A Calico node in this mode is a core v1 Node: its BGP addresses, AS number and route
reflector cluster id are annotations (libcalico-go k8s/resources/node.go), its Calico labels a
JSON map in `projectcalico.org/labels` under the Kubernetes labels. BGPPeer, BGPConfiguration
and IPPool are cluster-scoped custom resources whose `spec` is Calico's v3 spec.
`realistic_node(bulk=True)` adds what a kubelet writes (images, conditions, capacity): about
15 KB per Node, so list sizes and watch traffic are those of a real cluster.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Dict, Optional

from .resources import CRD_GROUP, CRD_VERSION

ANN = "projectcalico.org/"
IMAGES = ["registry.k8s.io/kube-proxy", "docker.io/calico/node", "docker.io/calico/cni",
          "docker.io/calico/kube-controllers", "docker.io/calico/typha", "docker.io/calico/csi",
          "registry.k8s.io/coredns/coredns", "registry.k8s.io/pause",
          "registry.k8s.io/metrics-server/metrics-server", "quay.io/prometheus/node-exporter",
          "quay.io/prometheus/prometheus", "docker.io/grafana/grafana", "docker.io/library/nginx",
          "docker.io/library/redis", "docker.io/library/postgres", "quay.io/jetstack/cert-manager",
          "registry.k8s.io/ingress-nginx/controller", "docker.io/fluent/fluent-bit",
          "docker.io/bitnami/kafka", "docker.io/library/busybox", "ghcr.io/dexidp/dex",
          "docker.io/istio/proxyv2", "docker.io/istio/pilot", "quay.io/cilium/hubble-relay",
          "docker.io/openpolicyagent/gatekeeper", "registry.k8s.io/kube-state-metrics",
          "docker.io/velero/velero", "docker.io/library/mysql", "docker.io/library/mongo",
          "quay.io/argoproj/argocd", "docker.io/jaegertracing/all-in-one",
          "docker.io/hashicorp/vault", "docker.io/bitnami/zookeeper",
          "docker.io/library/traefik", "docker.io/elastic/filebeat", "docker.io/library/haproxy"]


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def realistic_node(name: str, ipv4: Optional[str] = None, ipv6: Optional[str] = None,
                   asn: Optional[str] = None, cluster_id: Optional[str] = None,
                   labels: Optional[Dict[str, str]] = None, bulk: bool = True,
                   calico_labels: Optional[Dict[str, str]] = None) -> dict:
    """A core v1 Node as kubelet and calico-node leave it.

    ipv4/ipv6: the BGP addresses (CIDR, as Calico writes them, e.g. "192.0.2.21/24");
    asn: "64512" (or asdot); cluster_id: a route reflector cluster id ("224.0.0.1");
    labels: metadata.labels (Kubernetes labels, which win over Calico's);
    calico_labels: the JSON map in annotation projectcalico.org/labels (default: labels).
    """
    k8s_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": "amd64", **(labels or {})}
    annotations = {"node.alpha.kubernetes.io/ttl": "0",
                   "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                   ANN + "labels": json.dumps(calico_labels if calico_labels is not None
                                              else (labels or {}), sort_keys=True)}
    for key, value in (("IPv4Address", ipv4), ("IPv6Address", ipv6), ("ASNumber", asn),
                       ("RouteReflectorClusterID", cluster_id)):
        if value is not None:
            annotations[ANN + key] = value
    if ipv4:
        annotations[ANN + "IPv4IPIPTunnelAddr"] = "10.244.%d.0" % (int(_digest(name)[:2], 16))
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": k8s_labels, "annotations": annotations},
            "spec": {"podCIDR": "10.244.%d.0/24" % (int(_digest(name)[:2], 16))}}
    if not bulk:
        return node
    node["metadata"]["annotations"]["kubeadm.alpha.kubernetes.io/cri-socket"] = \
        "unix:///run/containerd/containerd.sock"
    node["spec"]["podCIDRs"] = [node["spec"]["podCIDR"]]
    node["spec"]["providerID"] = f"baremetal://{name}"
    addresses = [{"type": "Hostname", "address": name}]
    if ipv4:
        addresses.insert(0, {"type": "InternalIP", "address": ipv4.split("/")[0]})
    if ipv6:
        addresses.insert(1, {"type": "InternalIP", "address": ipv6.split("/")[0]})
    stamp = "2024-01-01T00:00:00Z"
    conditions = [{"type": t, "status": s, "reason": r, "message": m,
                   "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
                  for t, s, r, m in (
                      ("NetworkUnavailable", "False", "CalicoIsUp",
                       "Calico is running on this node"),
                      ("MemoryPressure", "False", "KubeletHasSufficientMemory",
                       "kubelet has sufficient memory available"),
                      ("DiskPressure", "False", "KubeletHasNoDiskPressure",
                       "kubelet has no disk pressure"),
                      ("PIDPressure", "False", "KubeletHasSufficientPID",
                       "kubelet has sufficient PID available"),
                      ("Ready", "True", "KubeletReady", "kubelet is posting ready status. "
                                                        "AppArmor enabled"))]
    images = []
    for image in IMAGES:
        for tag in ("v1.28.1", "v3.26.4"):
            digest = _digest(image, tag)
            images.append({"names": [f"{image}@sha256:{digest}", f"{image}:{tag}"],
                           "sizeBytes": int(digest[:7], 16) * 3})
    resources = {"cpu": "8", "ephemeral-storage": "101430960Ki", "hugepages-1Gi": "0",
                 "hugepages-2Mi": "0", "memory": "32779508Ki", "pods": "110"}
    node["status"] = {
        "capacity": resources, "allocatable": dict(resources, memory="32677108Ki"),
        "conditions": conditions, "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": _digest(name, "machine")[:32],
                     "systemUUID": _digest(name, "uuid")[:32], "bootID": _digest(name, "boot")[:32],
                     "kernelVersion": "6.1.0-18-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)",
                     "containerRuntimeVersion": "containerd://1.6.20", "kubeletVersion": "v1.28.0",
                     "kubeProxyVersion": "v1.28.0", "operatingSystem": "linux",
                     "architecture": "amd64"},
        "images": images}
    return node


def _calico(kind: str, name: str, spec: dict, group: str, version: str) -> dict:
    return {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": {"name": name},
            "spec": spec}


def bgp_peer(name: str, peer_ip: Optional[str] = None, as_number: Optional[int] = None,
             group: str = CRD_GROUP, version: str = CRD_VERSION, **spec) -> dict:
    """A BGPPeer; spec keys as Calico's v3 spec (node, nodeSelector, peerSelector, password...)."""
    if peer_ip is not None:
        spec["peerIP"] = peer_ip
    if as_number is not None:
        spec["asNumber"] = as_number
    return _calico("BGPPeer", name, spec, group, version)


def bgp_configuration(name: str = "default", group: str = CRD_GROUP, version: str = CRD_VERSION,
                      **spec) -> dict:
    spec.setdefault("logSeverityScreen", "Info")
    spec.setdefault("nodeToNodeMeshEnabled", False)
    spec.setdefault("asNumber", 64512)
    return _calico("BGPConfiguration", name, spec, group, version)


def ip_pool(name: str, cidr: str, group: str = CRD_GROUP, version: str = CRD_VERSION,
            **spec) -> dict:
    spec = {"cidr": cidr, "ipipMode": "Never", "vxlanMode": "Never", "natOutgoing": True,
            "blockSize": 26 if ":" not in cidr else 122, "nodeSelector": "all()", **spec}
    return _calico("IPPool", name, spec, group, version)


def secret(name: str, data: Dict[str, str], namespace: str = "kube-system",
           type_: str = "Opaque") -> dict:
    """A Secret with data given as text (stored base64, as kube does)."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace}, "type": type_,
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
