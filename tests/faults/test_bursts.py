"""A burst of registrations (a cluster scaling up, a bulk import) is gathered into fewer BIRD
reloads than it has transactions, and nothing of it is lost. Real etcd, real BIRD, the real
daemon with its default [bird] burst_settle_seconds / burst_max_delay_seconds.

How many reloads exactly depends on when the writer's transactions arrive against the settle
time, i.e. on the machine's load: that number is a benchmark's (bench/), not this test's.
What must hold on any machine: the burst is gathered at least once, and all of it is applied."""

from __future__ import annotations

import dataclasses

import pytest

from rr_service.app.settings import BirdSettings
from tests.faults.faultlab import EVENTUALLY, etcd_python
from tests.lab import proto_name, wait_for

pytestmark = pytest.mark.integration

SETTLE = {f.name: f.default for f in dataclasses.fields(BirdSettings)}["burst_settle_seconds"]
NODES = 200            # 192.0.2.50 .. 192.0.2.249 and 2001:db8::1:50 ..: no lab host answers
TRANSACTIONS = 10      # 60 keys each (address, IPv6 address, AS of 20 nodes) ...
GAP = SETTLE / 4       # ... this far apart: a burst that does not pause for the settle time


def _burst_script(prefix: str) -> str:
    return f"""
import time
prefix = {prefix!r}
nodes = [(f"burst-{{i:03d}}", f"192.0.2.{{50 + i}}", f"2001:db8::1:{{50 + i:x}}") for i in range({NODES})]
per_txn = len(nodes) // {TRANSACTIONS}
start = time.monotonic()
for t in range({TRANSACTIONS}):
    ops = []
    for name, ip4, ip6 in nodes[t * per_txn:(t + 1) * per_txn]:
        ops.append(client.transactions.put(f"{{prefix}}/host/{{name}}/ip_addr_v4", ip4))
        ops.append(client.transactions.put(f"{{prefix}}/host/{{name}}/ip_addr_v6", ip6))
        ops.append(client.transactions.put(f"{{prefix}}/host/{{name}}/as_num", "64512"))
    ok, _ = client.transaction(compare=[], success=ops, failure=[])
    assert ok
    time.sleep(max(0.0, start + {GAP} * (t + 1) - time.monotonic()))
print(len(nodes))
"""


def test_burst_of_registrations_is_gathered(fault_world):
    world = fault_world()
    rr = world.rr
    reloads_before = rr.log_count("bird accepted ")
    last = proto_name("Client", f"192.0.2.{50 + NODES - 1}")
    last6 = proto_name("Client", f"2001:db8::1:{50 + NODES - 1:x}")

    etcd_python(world.etcd_hosts[0], world.etcd.endpoint, _burst_script("/calico/bgp/v1"))

    wait_for(lambda: last in rr.bird.protocols() and last6 in rr.bird6.protocols(), EVENTUALLY,
             what=f"{last} and {last6} configured on rr1",
             describe=lambda: rr.log()[-3000:])
    reloads = rr.log_count("bird accepted ") - reloads_before
    clients = [p for p in rr.bird.protocols() if p.startswith("Client_192_0_2_")]
    assert len(clients) == NODES + len(world.nodes), clients
    assert rr.in_sync_with_render(), "the configs on disk differ from `calico-rr render`"
    assert 1 <= reloads < TRANSACTIONS, (
        f"{reloads} reloads of bird for {TRANSACTIONS} transactions:\n{rr.log()[-3000:]}")
