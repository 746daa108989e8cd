"""Fixtures of the fault tests: each test builds its own world with `fault_world(...)`
(see faultlab.py for the topology and the helpers)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests import prereq  # noqa: E402
from tests.faults.faultlab import (FaultNode, FaultReflector, FaultWorld,  # noqa: E402
                                   start_etcd_cluster)
from tests.faults.figures import figures, pytest_runtest_makereport  # noqa: E402,F401
from tests.lab import (CalicoData, Lab, calico_node_bird_config, requirements_missing,  # noqa: E402
                       need_rr_service, sweep)
from tests.lab.world import AS_NUM, CLUSTER_ID, ETCD_IP, NODES, RR1  # noqa: E402


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture
def lab(request):
    prereq.need(requirements_missing())
    need_rr_service()
    sweep()
    with Lab(keep_tmp=bool(os.environ.get("RRLAB_KEEP"))) as the_lab:
        yield the_lab


@pytest.fixture
def fault_world(lab, request):
    """A factory: fault_world(safety={...}, env={...}, nodes=("a", "b"), before_reflector=fn,
    etcd_members=1, flavour="bird1") builds the world, starts the daemon and waits until every session is
    Established and the daemon has applied its first config."""
    made: List[FaultWorld] = []

    def build(safety: Optional[dict] = None, env: Optional[dict] = None,
              nodes: Sequence[str] = ("a", "b"), before_reflector: Optional[Callable[[], None]] = None,
              etcd_members: int = 1, flavour: str = "bird1") -> FaultWorld:
        t0 = time.monotonic()
        if etcd_members == 1:
            etcd_hosts = [lab.add_host("etcd", ETCD_IP)]
            members = [lab.start_etcd(etcd_hosts[0])]
        else:
            etcd_hosts = [lab.add_host(f"etcd{i + 1}", f"192.0.2.{2 + i}") for i in range(etcd_members)]
            members = start_etcd_cluster(lab, etcd_hosts)
        etcd = members[0]
        calico = CalicoData(etcd)
        name, ip4, ip6 = RR1
        rr_host = lab.add_host(name, ip4, ip6)
        if before_reflector is not None:
            before_reflector()
        rr = FaultReflector(lab, rr_host, [m.endpoint for m in members], safety=safety, env=env, flavour=flavour)
        world = FaultWorld(lab, etcd, calico, rr, etcd_hosts=etcd_hosts, members=members)
        made.append(world)
        calico.set_global_as(AS_NUM)
        calico.add_reflector(ip4, CLUSTER_ID)
        calico.add_reflector(ip6, CLUSTER_ID)
        calico.add_global_peer(ip4, AS_NUM)
        calico.add_global_peer(ip6, AS_NUM)
        for n in nodes:
            spec = NODES[n]
            calico.add_node(n, spec.ipv4, spec.ipv6)
            host = lab.add_host(spec.name, spec.ipv4, spec.ipv6)
            bird = lab.start_bird(host, calico_node_bird_config(spec.ipv4, AS_NUM, [ip4], spec.block4))
            bird6 = None
            if spec.ipv6:
                bird6 = lab.start_bird(host, calico_node_bird_config(
                    spec.ipv6, AS_NUM, [ip6], spec.block6, router_id=spec.ipv4, family=6), family=6)
            world.nodes[n] = FaultNode(n, host, bird, bird6)
        rr.start()
        world.wait_all_established()
        rr.notify.wait_status(lambda s: "etcd ok" in s and all(f"{t} applied" in s for t in rr.config_files),
                              what="the daemon's first apply")
        world.setup_seconds = time.monotonic() - t0
        return world

    yield build

    rep = getattr(request.node, "rep_call", None)
    for world in made:
        if rep is not None and rep.failed:
            print(f"===== rr_service log (tail) =====\n{world.rr.log()[-8000:]}")
            print("===== STATUS= (last 10) =====\n" + "\n".join(world.rr.notify.statuses()[-10:]))
            for b in dict.fromkeys((world.rr.bird, world.rr.bird6)):
                try:
                    print(f"===== rr1 BIRD{b.family} =====\n{b.birdc('show protocols')}")
                except Exception as exc:
                    print(f"(birdc failed: {exc})")
        try:
            world.rr.stop()
        except Exception:
            pass
        world.rr.notify.close()
