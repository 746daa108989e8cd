"""A test Kubernetes API server: an HTTPS facade over a real etcd (not kube-apiserver).

It serves what a Calico route reflector reads from the Kubernetes datastore (core Nodes,
Secrets, Namespaces; Calico's BGPPeer, BGPConfiguration and IPPool as custom resources in
crd.projectcalico.org/v1 and/or projectcalico.org/v3) with kube-apiserver's semantics for
resourceVersions, lists, pagination, watches, errors, authentication and RBAC, so that a
Kubernetes client can be tested against it with kubectl and python3-kubernetes as witnesses.
Objects are stored as JSON under kube's etcd keys (/registry/minions/<node>,
/registry/secrets/<ns>/<name>, /registry/<group>/<plural>/<name>); real kube-apiserver stores
core objects such as Nodes as protobuf. See README.md for what it does not do.

    from tests.kubeapi import KubeApiServer, realistic_node

    with KubeApiServer(etcd_url, groups=("crd",)) as api:
        api.seed("nodes", [realistic_node("node-1", ipv4="192.0.2.21/24", asn="64512")])
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig", auth="token", ca="file")
"""

from .auth import Rule, User
from .errors import ApiError
from .httpclient import Http, WatchReader
from .kubeconfig import exec_calls, set_exec_token, write_kubeconfig
from .kubectl import debian_kubectl, kubectl_or_missing, popen_kubectl, run_kubectl
from .objects import bgp_configuration, bgp_peer, ip_pool, realistic_node, secret
from .resources import CRD_GROUP, CRD_VERSION, V3_GROUP, V3_VERSION, Resource
from .server import KubeApiServer

__all__ = [
    "ApiError", "CRD_GROUP", "CRD_VERSION", "Http", "KubeApiServer", "Resource", "Rule", "User",
    "V3_GROUP", "V3_VERSION", "bgp_configuration", "bgp_peer", "debian_kubectl",
    "exec_calls", "ip_pool", "kubectl_or_missing", "popen_kubectl", "realistic_node",
    "run_kubectl", "secret", "set_exec_token", "WatchReader", "write_kubeconfig",
]
