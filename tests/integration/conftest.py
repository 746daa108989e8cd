"""Fixtures for the integration tests: a lab of simulated hosts (network
namespaces) with a real etcd, real BIRD and the real daemon. Every scenario runs twice:
the reflector on BIRD 1.6 (bird + bird6), on BIRD 2 and on BIRD 3 (one daemon each), nodes
on BIRD 1.6.

Topology (all on one bridge, in namespaces this run creates and removes):

    etcd   192.0.2.2
    rr1    192.0.2.10  2001:db8::10   BIRD + BIRD6 + rr_service   (cluster id 1.2.3.4)
    rr2    192.0.2.11  2001:db8::11   started by the `rr2` fixture (cluster id 1.2.3.5)
    a      192.0.2.21  2001:db8::21   Calico-like node, block 198.51.100.0/26, 2001:db8:1::/64
    b      192.0.2.22  2001:db8::22   Calico-like node, block 198.51.100.64/26, 2001:db8:2::/64

Set RRLAB_KEEP=1 to keep the lab's tmp dir (configs, logs) after the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.failure_logs import failed_fixture  # noqa: E402
from tests import prereq  # noqa: E402
from tests.lab import (CalicoData, Lab, Reflector, requirements_missing,  # noqa: E402
                       need_rr_service, sweep)
from tests.faults.figures import figures  # noqa: E402,F401
from tests.lab.world import (AS_NUM, CLUSTER_ID, ETCD_IP, NODES, RR1, RR2,  # noqa: E402
                             RR2_CLUSTER_ID, World)


def dump_logs(*reflectors: Reflector) -> None:
    for rr in reflectors:
        if rr is None:
            continue
        print(f"===== rr_service log on {rr.host.name} (tail) =====")
        print(rr.log()[-6000:])
        for b in (rr.bird, rr.bird6):
            if b is None:
                continue
            try:
                print(f"===== BIRD{b.family} on {rr.host.name}: show protocols =====")
                print(b.birdc("show protocols"))
            except Exception as exc:  # diagnostics only
                print(f"(birdc failed: {exc})")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)




@pytest.fixture(scope="module", params=["bird1", "bird2", "bird3"])
def flavour(request):
    """The reflector's BIRD: Debian's BIRD 1.6 pair, BIRD 2 unpacked beside it (the two
    packages conflict), or trixie's BIRD 3 run from its own tree (tools/fetch-bird3). The
    nodes stay on BIRD 1.6, as real Calico nodes do."""
    prereq.bird_binary_or_missing(request.param)
    return request.param


@pytest.fixture(scope="module")
def lab(flavour):
    prereq.need(requirements_missing())
    sweep()  # labs left by runs that were killed (never those of live runs)
    with Lab(keep_tmp=bool(os.environ.get("RRLAB_KEEP"))) as the_lab:
        if the_lab.keep_tmp:
            print(f"lab tmp dir (kept): {the_lab.tmp}")
        yield the_lab


@pytest.fixture(scope="module")
def world(lab, flavour):
    """etcd + rr1 running the daemon + nodes a and b (IPv4 and IPv6) peering
    with rr1 through the node-global peer entries."""
    need_rr_service()
    etcd_host = lab.add_host("etcd", ETCD_IP)
    etcd = lab.start_etcd(etcd_host)
    calico = CalicoData(etcd)
    name, ip4, ip6 = RR1
    rr1_host = lab.add_host(name, ip4, ip6)
    rr1 = Reflector(lab, rr1_host, [etcd.endpoint], flavour=flavour)

    calico.set_global_as(AS_NUM)
    calico.add_reflector(ip4, CLUSTER_ID)
    calico.add_reflector(ip6, CLUSTER_ID)
    calico.add_global_peer(ip4, AS_NUM)
    calico.add_global_peer(ip6, AS_NUM)
    w = World(lab, etcd, calico, rr1)
    for n in ("a", "b"):
        spec = NODES[n]
        calico.add_node(n, spec.ipv4, spec.ipv6)
        w.add_node(n, [ip4], [ip6])
    rr1.start()
    try:
        yield w
    finally:
        rr1.stop()


@pytest.fixture(scope="module")
def rr2(world, flavour):
    """A second reflector, registered in etcd and running its own daemon."""
    name, ip4, ip6 = RR2
    host = world.lab.add_host(name, ip4, ip6)
    rr = Reflector(world.lab, host, [world.etcd.endpoint], flavour=flavour)
    world.calico.add_reflector(ip4, RR2_CLUSTER_ID)
    world.calico.add_reflector(ip6, RR2_CLUSTER_ID)
    rr.start()
    try:
        yield rr
    finally:
        rr.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    """Print the daemons' logs into the report of a failed test."""
    yield
    w = failed_fixture(request, "world")
    if w is not None:
        others = []
        if "rr2" in request.fixturenames:
            others.append(request.getfixturevalue("rr2"))
        dump_logs(w.rr1, *others)
