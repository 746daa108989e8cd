"""etcd in the lab, and the legacy Calico keys the reflector reads.

The test process lives in the root namespace and cannot reach a lab address,
so every etcd operation runs ``etcdctl`` inside the etcd host's namespace.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from typing import Dict, Optional

from .netns import Host, Lab, LabError, Proc, wait_for

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
CALICO_PREFIX = "/calico/bgp/v1"


class Etcd:
    """A one-member etcd cluster on `host`, plus a tiny KV client."""

    def __init__(self, lab: Lab, host: Host, proc: Proc, endpoint: str):
        self.lab = lab
        self.host = host
        self.proc = proc
        self.endpoint = endpoint

    def ctl(self, *args: str, input: Optional[str] = None, timeout: float = 15) -> str:
        env_cmd = ["env", "ETCDCTL_API=3", ETCDCTL, f"--endpoints={self.endpoint}",
                   "--dial-timeout=3s", "--command-timeout=10s", *args]
        return self.host.run(env_cmd, input=input, timeout=timeout).stdout

    def put(self, key: str, value) -> None:
        if not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        self.ctl("put", "--", key, value)

    def get(self, key: str) -> Optional[str]:
        out = self.ctl("get", "--print-value-only", "--", key)
        return out[:-1] if out.endswith("\n") else (out or None)

    def get_prefix(self, prefix: str) -> Dict[str, str]:
        out = self.ctl("get", "--prefix", "-w", "json", "--", prefix)
        data = json.loads(out)
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
                for kv in data.get("kvs", [])}

    def delete(self, key: str, prefix: bool = False) -> None:
        args = ["del"] + (["--prefix"] if prefix else []) + ["--", key]
        self.ctl(*args)

    def healthy(self) -> bool:
        try:
            out = self.host.run(["env", "ETCDCTL_API=3", ETCDCTL, f"--endpoints={self.endpoint}",
                                 "--dial-timeout=1s", "--command-timeout=2s", "endpoint", "health"],
                                check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0 and "is healthy" in (out.stdout + out.stderr)


def start_etcd(lab: Lab, host: Host, timeout: float = 30.0) -> Etcd:
    ip = host.ipv4
    data_dir = lab.tmp / f"{host.name}-etcd.data"
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    client = f"http://{ip}:2379"
    peer = f"http://{ip}:2380"
    proc = host.popen([ETCD, "--name", host.name, "--data-dir", str(data_dir),
                       "--listen-client-urls", client, "--advertise-client-urls", client,
                       "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                       "--initial-cluster", f"{host.name}={peer}",
                       "--initial-cluster-state", "new", "--log-level", "warn"],
                      name=f"{host.name}-etcd")
    etcd = Etcd(lab, host, proc, client)

    def up():
        if not proc.alive():
            raise LabError(f"etcd on {host.name} exited:\n{proc.log()}")
        return etcd.healthy()
    wait_for(up, timeout, interval=0.3, what=f"etcd on {host.name}", describe=proc.log)
    return etcd


class CalicoData:
    """Writes the legacy Calico BGP keys (``/calico/bgp/v1/...``)."""

    def __init__(self, etcd: Etcd, prefix: str = CALICO_PREFIX):
        self.etcd = etcd
        self.prefix = prefix.rstrip("/")

    def key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts])

    def set_global_as(self, as_num: int = 64512) -> None:
        self.etcd.put(self.key("global", "as_num"), str(as_num))

    def add_reflector(self, ip: str, cluster_id: str = "1.2.3.4") -> None:
        fam = "rr_v6" if ":" in ip else "rr_v4"
        self.etcd.put(self.key(fam, ip), {"ip": ip, "cluster_id": cluster_id})

    def remove_reflector(self, ip: str) -> None:
        self.etcd.delete(self.key("rr_v6" if ":" in ip else "rr_v4", ip))

    def add_global_peer(self, ip: str, as_num: int = 64512) -> None:
        fam = "peer_v6" if ":" in ip else "peer_v4"
        self.etcd.put(self.key("global", fam, ip), {"ip": ip, "as_num": str(as_num)})

    def remove_global_peer(self, ip: str) -> None:
        self.etcd.delete(self.key("global", "peer_v6" if ":" in ip else "peer_v4", ip))

    def add_node(self, name: str, ipv4: str, ipv6: Optional[str] = None) -> None:
        self.etcd.put(self.key("host", name, "ip_addr_v4"), ipv4)
        if ipv6:
            self.etcd.put(self.key("host", name, "ip_addr_v6"), ipv6)

    def add_node_peer(self, name: str, peer_ip: str, as_num: int = 64512) -> None:
        fam = "peer_v6" if ":" in peer_ip else "peer_v4"
        self.etcd.put(self.key("host", name, fam, peer_ip), {"ip": peer_ip, "as_num": str(as_num)})

    def remove_node(self, name: str) -> None:
        self.etcd.delete(self.key("host", name) + "/", prefix=True)

    def dump(self) -> Dict[str, str]:
        return self.etcd.get_prefix(self.prefix + "/")
