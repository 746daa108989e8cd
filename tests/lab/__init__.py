"""Test lab: simulated hosts in network namespaces, with real BIRD and etcd.

    from tests.lab import Lab, calico_node_bird_config

    with Lab() as lab:
        etcd_host = lab.add_host("etcd", "192.0.2.2")
        rr = lab.add_host("rr1", "192.0.2.10", "2001:db8::10")
        etcd = lab.start_etcd(etcd_host)
        bird = lab.start_bird(rr, "router id 192.0.2.10; protocol device {}")
        bird.wait_established("Client_192_0_2_21")

Needs root, iproute2, /usr/sbin/bird{,6}, /usr/bin/etcd{,ctl}.  See
`requirements_missing()`.
"""

import os
import shutil

from .bird import (BirdProc, Protocol, Route, calico_node_bird_config, handwritten_rr_config,
                   minimal_bird_config, parse_protocols, parse_routes, proto_name, start_bird)
from .etcd import CALICO_PREFIX, CalicoData, Etcd, start_etcd
from .netns import REPO_ROOT, Host, Lab, LabError, Proc, sweep, wait_for
from .reflector import Reflector, need_rr_service, rr_service_available

__all__ = [
    "BirdProc", "CALICO_PREFIX", "CalicoData", "Etcd", "Host", "Lab", "LabError", "Proc",
    "Protocol", "REPO_ROOT", "Reflector", "Route", "calico_node_bird_config",
    "handwritten_rr_config", "minimal_bird_config", "parse_protocols", "parse_routes",
    "need_rr_service", "proto_name", "requirements_missing", "rr_service_available", "start_bird", "start_etcd",
    "sweep", "wait_for",
]

_TOOLS = ("ip", "/usr/sbin/bird", "/usr/sbin/bird6", "/usr/sbin/birdc", "/usr/sbin/birdc6",
          "/usr/bin/etcd", "/usr/bin/etcdctl")


def requirements_missing(need_etcd: bool = True):
    """None when the lab can run here, else a reason to skip."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces)"
    for tool in _TOOLS:
        if not need_etcd and "etcd" in tool:
            continue
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.isdir("/run") or not os.access("/run", os.W_OK):
        return "/run is not writable (ip netns needs /run/netns)"
    return None
