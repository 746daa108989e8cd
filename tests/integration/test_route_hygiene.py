"""Route hygiene in the lab: what one Calico node announces through the reflector is held to
what Calico would announce, and no session restarts for it. Real etcd (legacy v1 keys with
Calico's `/calico/v1/ipam` pools), the real daemon, BIRD 1.6 nodes, the reflector on BIRD 1.6
and BIRD 2 (conftest.py's `world`).

One scenario per flavour, in order, on one world: the filters switched on over running
sessions (an upgrade from the original image's `import all`), a node announcing a default
route, a foreign prefix and its own routes, the pools changing under it, a node claiming
another's address, and a node flooding past its import limit.
"""

from __future__ import annotations

import json
import re
import signal

import pytest

from tests.lab import calico_node_bird_config, proto_name, wait_for
from tests.lab.world import AS_NUM, NODES, RR1

pytestmark = pytest.mark.integration

TIMEOUT = 90
POOL = "198.51.100.0/24"           # holds nodes a's and b's blocks
BORROWED = "198.51.100.77/32"      # an address a borrowed from another block: Calico announces it
FOREIGN = "203.0.113.0/24"         # in no pool: a hijack until a pool names it
DEFAULT = "0.0.0.0/0"
FLOOD_POOL = "10.70.0.0/16"
FLOOD = [f"10.70.{i // 250}.{i % 250 + 1}/32" for i in range(20_000)]  # 20x the default limit, 1,000
RSS_GROWTH_BOUND_KB = 64 * 1024  # a safety net: the flood's routes beyond the limit are never stored
CLIENT = {n: proto_name("Client", NODES[n].ipv4) for n in ("a", "b")}
CLIENT6 = {n: proto_name("Client", NODES[n].ipv6) for n in ("a", "b")}


def _pool_key(cidr: str) -> str:
    return "/calico/v1/ipam/v4/pool/" + cidr.replace("/", "-")


def _add_pool(world, cidr: str) -> None:
    world.etcd.put(_pool_key(cidr), {"cidr": cidr, "ipip": "", "masquerade": True, "disabled": False})


def _announce(world, name: str, prefixes) -> None:
    """Node `name`'s BIRD now originates and exports `prefixes`."""
    spec = NODES[name]
    world.nodes[name].bird.reconfigure(calico_node_bird_config(spec.ipv4, AS_NUM, [RR1[1]], list(prefixes)))


def _hup(rr, sections: dict) -> None:
    rr.set(sections)
    rr.daemon.popen.send_signal(signal.SIGHUP)


def _config(rr) -> str:
    return rr.bird_conf.read_text()


def _routes_row(rr, protocol: str):
    report = json.loads(rr.cli("status", "--json", check=False, timeout=60).stdout)
    return next(s.get("routes") for s in report["sessions"] if s["protocol"] == protocol), report


def _at(world, node: str, prefix: str):
    """The route node `node` holds for `prefix` from the reflector (not its own static one)."""
    return next((r for r in world.nodes[node].bird.routes(prefix)
                 if r.prefix == prefix and r.protocol != "static1"), None)


def _rss_kb(bird) -> int:
    """BIRD's resident memory (the reflector's BIRD: bird.pid_path names the daemon)."""
    pid = int(bird.pid_path.read_text().split()[0])
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))


def _imports(world, node: str) -> tuple:
    """The updates and withdrawals node `node` has received from the reflector: a route of
    another node flapping at it would move them."""
    text = world.nodes[node].bird.birdc(f"show protocols all {proto_name('Node', RR1[1])}")
    found = [re.search(rf"Import {kind}:\s+(\d+)", text) for kind in ("updates", "withdraws")]
    assert all(found), text
    return tuple(int(m.group(1)) for m in found)


def _runs(world):
    """Every session the scenario must not restart: the reflector's (both families) and the nodes'."""
    rr1 = world.rr1
    runs = {("rr1", 4): rr1.wait_established(list(CLIENT.values()), 4, TIMEOUT),
            ("rr1", 6): rr1.wait_established(list(CLIENT6.values()), 6, TIMEOUT)}
    for n in ("a", "b"):
        runs[(n, 4)] = world.nodes[n].bird.wait_established(proto_name("Node", RR1[1]), TIMEOUT)
    return runs


def _assert_none_restarted(world, before, when: str) -> None:
    after = _runs(world)
    for where, sessions in before.items():
        for name, proto in sessions.items():
            if proto.proto != "BGP":
                continue
            assert after[where][name].same_run_as(proto), (
                f"{name} on {where[0]} restarted {when}: {proto} -> {after[where][name]}")


def test_a_client_announces_only_what_calico_would_and_no_session_restarts(world, flavour, figures):
    rr1, etcd = world.rr1, world.etcd
    try:
        # The original image's sessions (`import all`, no limit) running, then the filters on.
        _runs(world)  # the daemon up (a SIGHUP before it handles signals would end it)
        _hup(rr1, {"filters": {"mode": "off", "import_limit": 0}})
        wait_for(lambda: "import limit" not in _config(rr1), TIMEOUT, what="an unfiltered config")
        before = _runs(world)
        _add_pool(world, POOL)
        _hup(rr1, {"filters": {"mode": None, "import_limit": None}})  # the defaults: pools, 1,000
        wait_for(lambda: POOL + "+" in _config(rr1) and "import limit 1000" in _config(rr1),
                 TIMEOUT, what="the filtered config applied")
        _assert_none_restarted(world, before, "when filters and limits were switched on")

        # Node a announces its block, a borrowed address, a default route and a foreign prefix.
        _announce(world, "a", [NODES["a"].block4, BORROWED, DEFAULT, FOREIGN])
        wait_for(lambda: _at(world, "b", BORROWED), TIMEOUT, what=f"{BORROWED} reflected to node b")
        wait_for(lambda: (_routes_row(rr1, CLIENT["a"])[0] or {}).get("filtered", 0) >= 2, TIMEOUT,
                 what="status counting a's default route and foreign prefix as filtered",
                 describe=lambda: rr1.cli("status", check=False).stdout)
        assert _at(world, "b", NODES["a"].block4) is not None
        assert _at(world, "b", DEFAULT) is None, "a default route from a client reached another node"
        assert _at(world, "b", FOREIGN) is None, f"{FOREIGN}, in no pool, reached another node"
        table = rr1.cli("status", check=False).stdout
        assert "(2 filtered)" in table, table
        _assert_none_restarted(world, before, "while a announced what its filter refuses")

        # A pool naming the foreign prefix lets it through: the filter changes, no session restarts.
        _add_pool(world, FOREIGN)
        wait_for(lambda: _at(world, "b", FOREIGN), TIMEOUT, what=f"{FOREIGN} let through once a pool names it")
        assert _at(world, "b", DEFAULT) is None
        _assert_none_restarted(world, before, "when a pool was added")

        # A Node claiming a's address (its name sorts first) does not take a's running session.
        etcd.put("/calico/bgp/v1/host/0squatter/ip_addr_v4", NODES["a"].ipv4)
        etcd.put("/calico/bgp/v1/host/0squatter/as_num", "65000")
        wait_for(lambda: f"claim the address {NODES['a'].ipv4}: node a keeps its session" in rr1.log(), TIMEOUT,
                 what="the daemon's warning naming the squatter", describe=lambda: rr1.log()[-3000:])
        rr1.assert_alive()
        _assert_none_restarted(world, before, "when another Node claimed a's address")
        assert f"neighbor {NODES['a'].ipv4} as {AS_NUM}" in _config(rr1)
        etcd.delete("/calico/bgp/v1/host/0squatter/", prefix=True)

        # Node b floods: cut at its limit, named in status and in the daemon's log; a carries on.
        _add_pool(world, FLOOD_POOL)
        wait_for(lambda: FLOOD_POOL in _config(rr1), TIMEOUT, what="the flood's pool in the filter")
        rss_before = _rss_kb(rr1.bird)
        b_imports = _imports(world, "b")
        _announce(world, "b", [NODES["b"].block4, *FLOOD])
        wait_for(lambda: (_routes_row(rr1, CLIENT["b"])[0] or {}).get("limit_hit"), TIMEOUT,
                 what="b's session at its import limit",
                 describe=lambda: rr1.cli("status", check=False).stdout)
        routes, report = _routes_row(rr1, CLIENT["b"])
        assert routes["imported"] <= 1000, routes
        assert any("import limit hit" in note and "(b)" in note for note in report["notes"]), report["notes"]
        wait_for(lambda: f"{CLIENT['b']} (b): import limit hit" in rr1.log(), 180,
                 what="the daemon's log naming b at its limit")
        after = rr1.bird.protocols()
        assert after[CLIENT["b"]].established, "the flooding node's session was dropped, not limited"
        assert after[CLIENT["a"]].same_run_as(before[("rr1", 4)][CLIENT["a"]])
        assert _imports(world, "b") == b_imports, "the reflector sent b updates or withdrawals during b's flood"
        assert _at(world, "b", BORROWED) is not None
        rss_growth = _rss_kb(rr1.bird) - rss_before
        assert rss_growth < RSS_GROWTH_BOUND_KB, f"the reflector's BIRD grew by {rss_growth} KB"
        rr1.assert_alive()
        _assert_none_restarted(world, {k: v for k, v in before.items() if k != ("rr1", 4)}, "during b's flood")
        figures.add("hostile", f"announcements_{flavour}", fault="hostile announcements",
                    done=f"a client announces a default route and a prefix in no pool; another floods "
                         f"{len(FLOOD):,} routes in a pool (reflector on {flavour}, nodes on BIRD 1.6)",
                    figure=f"reflected to other nodes: 0 of 2 refused routes; flood cut at 1,000 "
                           f"(BIRD grew {rss_growth / 1024:.1f} MB); sessions restarted: 0",
                    measured={"refused_reflected": 0, "flood": len(FLOOD), "rss_growth_kb": rss_growth})
        figures.add("hostile", f"squatters_{flavour}", fault="address squatting",
                    done="a Node whose name sorts first claims a running client's address with another AS",
                    figure="sessions taken over: 0; warning names both", measured={"taken_over": 0})
    finally:
        for name in ("a", "b"):
            _announce(world, name, [NODES[name].block4])
        for cidr in (POOL, FOREIGN, FLOOD_POOL):
            etcd.delete(_pool_key(cidr))
        etcd.delete("/calico/bgp/v1/host/0squatter/", prefix=True)
