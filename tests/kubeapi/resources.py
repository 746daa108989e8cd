"""The resources the server knows, where each lives in etcd, and the discovery documents.

Discovery is what kubectl reads first (`/api`, `/apis`, then one APIResourceList per
group/version) to map `bgppeers.crd.projectcalico.org` to a URL; Calico's own client reads
`/apis` to choose between `crd.projectcalico.org/v1` and `projectcalico.org/v3`. So only the
groups a server is configured with appear anywhere, as on a cluster where only those CRDs
(or that aggregated API) are installed.
"""

from __future__ import annotations

import hashlib
import base64
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

CRD_GROUP, CRD_VERSION = "crd.projectcalico.org", "v1"
V3_GROUP, V3_VERSION = "projectcalico.org", "v3"
GROUPS = {"crd": (CRD_GROUP, CRD_VERSION), "v3": (V3_GROUP, V3_VERSION)}

# Calico's cluster-scoped kinds a route reflector reads: (kind, plural, short names).
CALICO_KINDS: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    ("BGPPeer", "bgppeers", ()),
    ("BGPConfiguration", "bgpconfigurations", ()),
    ("IPPool", "ippools", ()),
)
ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str                 # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    etcd_dir: str              # below the prefix: "minions", "crd.projectcalico.org/bgppeers"
    short_names: Tuple[str, ...] = ()
    # kube-apiserver lets Nodes and Secrets be PUT without a resourceVersion, never CRs
    # (customResourceStrategy.AllowUnconditionalUpdate is false): 422 there.
    unconditional_update: bool = True
    # Nodes have a status subresource: a PUT/PATCH of the node keeps the old status.
    status_subresource: bool = False
    # A DELETE of a CR answers the deleted object; Nodes and Secrets answer a Status.
    returns_deleted_object: bool = False
    # CRs get metadata.generation, bumped when anything but metadata/status changes.
    generation: bool = False
    table: str = "default"     # how `kubectl get` prints it (see tables.py)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def key_prefix(self, prefix: str, namespace: str = "") -> str:
        """The etcd key prefix of all objects (of one namespace), ending with '/'."""
        base = f"{prefix.rstrip('/')}/{self.etcd_dir}/"
        return f"{base}{namespace}/" if (self.namespaced and namespace) else base

    def key(self, prefix: str, name: str, namespace: str = "") -> str:
        return self.key_prefix(prefix, namespace) + name


CORE: Tuple[Resource, ...] = (
    # Real kube-apiserver stores Nodes under "minions" (their name before 2014).
    Resource("", "v1", "nodes", "Node", False, "minions", ("no",), status_subresource=True,
             table="node"),
    Resource("", "v1", "secrets", "Secret", True, "secrets", (), table="secret"),
    Resource("", "v1", "namespaces", "Namespace", False, "namespaces", ("ns",),
             status_subresource=True, table="namespace"),
)


def calico_resources(group_keys: Iterable[str],
                     kinds: Iterable[Tuple[str, str, Tuple[str, ...]]] = CALICO_KINDS
                     ) -> List[Resource]:
    """Calico's kinds in each configured group ("crd" and/or "v3"), cluster-scoped."""
    out = []
    for key in group_keys:
        if key not in GROUPS:
            raise ValueError(f"unknown API group {key!r}: expected one of {sorted(GROUPS)}")
        group, version = GROUPS[key]
        for kind, plural, short in kinds:
            out.append(Resource(group, version, plural, kind, False, f"{group}/{plural}", short,
                                unconditional_update=False, returns_deleted_object=True,
                                generation=True))
    return out


@dataclass
class Catalog:
    """Every resource of one server, and lookups by URL parts."""

    resources: List[Resource]
    git_version: str = "v1.28.0"
    _by_path: Dict[Tuple[str, str, str], Resource] = field(default_factory=dict, init=False)

    def __post_init__(self):
        for res in self.resources:
            self._by_path[(res.group, res.version, res.plural)] = res

    def find(self, group: str, version: str, plural: str) -> Optional[Resource]:
        return self._by_path.get((group, version, plural))

    def group_versions(self) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {}
        for res in self.resources:
            if res.group and res.version not in out.setdefault(res.group, []):
                out[res.group].append(res.version)
        return out

    # -- discovery documents ---------------------------------------------------------------
    def version(self) -> dict:
        major, minor = self.git_version.lstrip("v").split(".")[:2]
        return {"major": major, "minor": minor, "gitVersion": self.git_version,
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z",
                "goVersion": "go1.20", "compiler": "gc", "platform": "linux/amd64"}

    def api_versions(self, server_address: str) -> dict:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}

    def api_group(self, group: str) -> Optional[dict]:
        versions = self.group_versions().get(group)
        if not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
                "preferredVersion": entries[0]}

    def api_group_list(self) -> dict:
        groups = [self.api_group(g) for g in self.group_versions()]
        for g in groups:
            del g["kind"], g["apiVersion"]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> Optional[dict]:
        entries = []
        for res in self.resources:
            if (res.group, res.version) != (group, version):
                continue
            entry = {"name": res.plural, "singularName": res.singular if res.group else "",
                     "namespaced": res.namespaced, "kind": res.kind, "verbs": list(ALL_VERBS),
                     "storageVersionHash": _hash(res)}
            if res.short_names:
                entry["shortNames"] = list(res.short_names)
            entries.append(entry)
            if res.status_subresource:
                entries.append({"name": f"{res.plural}/status", "singularName": "",
                                "namespaced": res.namespaced, "kind": res.kind,
                                "verbs": ["get", "patch", "update"]})
        if not entries:
            return None
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": entries}


def _hash(res: Resource) -> str:
    # kube's storageVersionHash: 8 bytes of a SHA-256, base64; clients only compare it.
    digest = hashlib.sha256(f"{res.group}/{res.version}/{res.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def build_catalog(group_keys: Iterable[str] = ("crd",), git_version: str = "v1.28.0",
                  extra: Iterable[Resource] = ()) -> Catalog:
    """The core resources plus Calico's in the given groups ("crd", "v3"), plus extra."""
    return Catalog(list(CORE) + calico_resources(group_keys) + list(extra), git_version)
