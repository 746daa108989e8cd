"""etcd faults: down, restarted under a down etcd, a cluster member killed, compaction.

Real etcd, real BIRD, the real daemon, real node BIRDs with Established sessions (conftest).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from typing import Callable, Optional

import pytest

from tests.faults.faultlab import (EVENTUALLY, dropped_sessions, established_count, etcd_python,
                                   etcd_revision, fingerprint, relaunch_etcd, restart_etcd, stop_etcd)
from tests.faults.model_helpers import EtcdDriver, Op
from tests.lab import proto_name, wait_for
from tests.lab.world import NODES

pytestmark = pytest.mark.integration

# The outage docs/reliability.md reports: etcd down for 60 s. RR_FAULTS_ETCD_OUTAGE shortens it for a quick run
# (the figure recorded says how long it really was).
OUTAGE = float(os.environ.get("RR_FAULTS_ETCD_OUTAGE", "60"))
APPLY_AFTER_ETCD_BACK = 2.0  # promised (docs/reliability.md): a change made after etcd returns is applied within 2 s
APPLY_AFTER_MEMBER_KILLED = 5.0  # promised (docs/reliability.md): new changes applied within 5 s
C_IP = NODES["c"].ipv4
FAILOVER_WRITES = 10  # changes put through a survivor after the first, all through the failover
FAILOVER_PAUSE = 0.3  # seconds between them: the window spans the daemon's move
WRITER_TIMEOUT = 0.5  # per put: a put stuck in the election is retried soon, not after seconds


def _wait_protocol(bird, name: str, timeout: float, present: bool = True) -> float:
    """Wait until BIRD has (or no longer has) protocol `name`; returns when (monotonic)."""
    wait_for(lambda: (name in bird.protocols()) == present, timeout, interval=0.02,
             what=f"{name} {'in' if present else 'gone from'} BIRD{bird.family} on {bird.host.name}",
             describe=lambda: bird.birdc("show protocols"))
    return time.monotonic()


@pytest.mark.parametrize("flavour", ["bird1", "bird3"])
def test_etcd_down(fault_world, figures, flavour):
    """etcd stopped for 60 s: no session drops, no config rewritten, STATUS= says etcd is
    unreachable, and a change made once etcd answers again is applied within 2 s. On the BIRD
    1.6 pair and on BIRD 3 (BIRD 2: the same one-daemon path)."""
    w = fault_world(flavour=flavour)
    rr = w.rr
    before = w.sessions()
    files = tuple(rr.config_files.values())
    prints = {p: fingerprint(p) for p in files}
    cpu_before = rr.cpu_seconds()

    t_stop = time.monotonic()
    stop_etcd(w.etcd)
    t_stopped = time.monotonic()
    rr.notify.wait_status(lambda s: "etcd unreachable" in s, timeout=30, since=t_stop,
                          what="STATUS= saying etcd is unreachable")
    report_seconds = time.monotonic() - t_stopped

    # Hold the outage for the time the guarantee names, checking all along (a session that
    # flapped and came back would show a new `since`; a rewrite a new inode/mtime/hash).
    drops, rewrites, samples = set(), set(), 0
    while time.monotonic() < t_stopped + OUTAGE:
        rr.assert_alive()
        drops.update(dropped_sessions(before, w.sessions()))
        rewrites.update(str(p) for p in files if fingerprint(p) != prints[p])
        samples += 1
        time.sleep(1.0)  # sampling period while the outage is held
    outage = time.monotonic() - t_stopped
    cpu_outage = rr.cpu_seconds() - cpu_before
    status_in_outage = rr.notify.status()
    after_outage = w.sessions()
    drops.update(dropped_sessions(before, after_outage))

    t_restart = time.monotonic()
    relaunch_etcd(w)

    # The change is made the moment etcd answers again (not while it still starts up: a put
    # sent then would wait in etcdctl's dial, and its clock would start before etcd returned).
    wait_for(w.etcd.healthy, EVENTUALLY, interval=0.02, what="etcd answering again")
    t_put = time.monotonic()
    w.calico.add_node("c", C_IP)
    t_seen = _wait_protocol(rr.bird, proto_name("Client", C_IP), EVENTUALLY)
    apply_seconds = t_seen - t_put
    rr.notify.wait_status(lambda s: "etcd ok" in s, timeout=EVENTUALLY, since=t_restart)
    reconnect_seconds = next(t for t, m in rr.notify.messages
                             if t >= t_restart and m.startswith("STATUS=etcd ok")) - t_restart
    final = w.sessions()
    drops.update(dropped_sessions(before, final))

    assert not drops, f"sessions dropped during the etcd outage: {sorted(drops)}"
    assert not rewrites, f"configs rewritten during the etcd outage: {sorted(rewrites)}"
    assert "etcd unreachable" in status_in_outage, status_in_outage
    assert "BIRD keeps the last config" in status_in_outage, status_in_outage
    assert apply_seconds <= APPLY_AFTER_ETCD_BACK, (
        f"change applied {apply_seconds:.2f} s after etcd answered (limit {APPLY_AFTER_ETCD_BACK} s)")
    assert rr.in_sync_with_render()
    assert "no longer runs the config" not in rr.log()  # BIRD never restarted: no false alarm
    figures.add("faults", "etcd_down" if flavour == "bird1" else f"etcd_down_{flavour}",
                fault="etcd down" if flavour == "bird1" else "etcd down, reflector on BIRD 3",
                done=f"etcd server stopped for {outage:.0f} s with {established_count(before)} sessions "
                     "Established (reflector + nodes, IPv4 + IPv6), then started; a node added the "
                     "moment etcd answered",
                figure=f"{len(drops)} sessions dropped; {len(rewrites)} config files rewritten; "
                       f"STATUS= said unreachable after {report_seconds:.1f} s; change applied "
                       f"{apply_seconds:.2f} s after the put (limit {APPLY_AFTER_ETCD_BACK:g} s); "
                       f"reconnected {reconnect_seconds:.1f} s after etcd's start; daemon CPU during the outage {cpu_outage:.1f} s",
                measured={"outage_seconds": outage, "sessions": established_count(before),
                          "sessions_dropped": len(drops), "files_rewritten": len(rewrites),
                          "status_report_seconds": report_seconds, "apply_seconds": apply_seconds,
                          "reconnect_seconds": reconnect_seconds,
                          "cpu_seconds_during_outage": cpu_outage, "samples": samples})


def test_daemon_restart_while_etcd_down(fault_world, figures):
    """The daemon restarted while etcd is down: BIRD keeps the last good config (sessions keep
    their uptime), the daemon says so (STATUS=, log, READY=1 anyway), and it catches up when
    etcd returns."""
    w = fault_world()
    rr = w.rr
    before = w.sessions()
    files = (rr.bird_conf, rr.bird6_conf)
    prints = {p: fingerprint(p) for p in files}

    stop_etcd(w.etcd)
    rr.stop()
    t_start = time.monotonic()
    rr.start()
    status = rr.notify.wait_status(lambda s: "etcd unreachable" in s, timeout=30, since=t_start,
                                   what="STATUS= saying etcd is unreachable after the restart")
    report_seconds = time.monotonic() - t_start
    wait_for(lambda: any(t >= t_start and m == "READY=1" for t, m in rr.notify.messages), 10,
             what="READY=1 after the restart")
    assert "etcd unreachable" in rr.log()

    hold = 10.0  # the daemon retries etcd many times meanwhile (BACKOFF_FIRST doubling up to BACKOFF_CAP)
    drops, rewrites = set(), set()
    while time.monotonic() < t_start + report_seconds + hold:
        rr.assert_alive()
        drops.update(dropped_sessions(before, w.sessions()))
        rewrites.update(str(p) for p in files if fingerprint(p) != prints[p])
        time.sleep(1.0)  # sampling period while the outage is held

    restart_etcd(w)
    t_put = time.monotonic()
    w.calico.add_node("c", C_IP)
    t_seen = _wait_protocol(rr.bird, proto_name("Client", C_IP), EVENTUALLY)
    catch_up = t_seen - t_put
    drops.update(dropped_sessions(before, w.sessions()))
    in_sync = rr.in_sync_with_render()

    assert not drops, sorted(drops)
    assert not rewrites, sorted(rewrites)
    assert "BIRD keeps the last config" in status, status
    assert in_sync
    figures.add("faults", "daemon_restart_etcd_down", fault="daemon restarted while etcd is down",
                done=f"etcd stopped, daemon restarted, outage held {hold:.0f} s more, etcd started, "
                     "a node added",
                figure=f"{len(drops)} sessions dropped; {len(rewrites)} config files rewritten; "
                       f"STATUS= said unreachable {report_seconds:.1f} s after the start; caught up "
                       f"{catch_up:.2f} s after the put",
                measured={"sessions": established_count(before), "sessions_dropped": len(drops),
                          "files_rewritten": len(rewrites), "status_report_seconds": report_seconds,
                          "catch_up_seconds": catch_up})


def _daemon_peer(rr) -> set:
    """The etcd addresses the daemon holds established connections to (seen from its netns)."""
    out = rr.host.run(["ss", "-tnH", "state", "established", "( dport = :2379 )"]).stdout
    peers = set()
    for line in out.splitlines():
        if line.strip():  # "... [::ffff:192.0.2.10]:47768 [::ffff:192.0.2.2]:2379" (gRPC: v4-mapped)
            peers.add(line.split()[-1].rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:"))
    return peers


def _members(etcd) -> dict:
    """{client address: (member id as hex, is leader)} of the cluster, asked through `etcd`."""
    status = json.loads(etcd.ctl("endpoint", "status", "--cluster", "-w", "json"))
    return {s["Endpoint"].rsplit("//", 1)[1].rsplit(":", 1)[0]:
            (f"{s['Status']['header']['member_id']:x}", s["Status"]["leader"] == s["Status"]["header"]["member_id"])
            for s in status}


def _make_leader(members: list, address: str) -> None:
    """Move the raft leadership to the member at `address` (the hardest member to lose)."""
    def moved():
        view = _members(members[0])
        if view[address][1]:
            return True
        leader = next(m for m in members if view[m.host.ipv4][1])
        leader.ctl("move-leader", view[address][0])
        return False
    wait_for(moved, 60, interval=0.5, what=f"the etcd member at {address} leading the cluster")


class _Writer(threading.Thread):
    """Puts and deletes through one etcd member, each retried until etcd accepts it; notes
    when each was sent (the attempt etcd accepted) and when it was acknowledged."""

    def __init__(self, driver: EtcdDriver, ops: list, pause: float):
        super().__init__(daemon=True, name="etcd-writer")
        self.driver, self.ops, self.pause = driver, ops, pause
        self.acked: list = []  # (op, sent, acked)
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            for op in self.ops:
                sent = time.monotonic()
                self.driver.apply(op)
                self.acked.append((op, sent, time.monotonic()))
                time.sleep(self.pause)  # the writes spread over the failover window
        except BaseException as exc:  # the test thread reports it
            self.error = exc


def test_etcd_cluster_member_killed(fault_world, lab, figures):
    """Three etcd members; the one the daemon talks to (made the raft leader first: the
    hardest case, a leader election on top) is killed, and a change is put through a survivor
    at once: applied within 5 s of the kill; changes written all through the failover window
    are all applied, none lost."""
    w = fault_world(etcd_members=3)
    rr = w.rr
    before = w.sessions()
    peers = wait_for(lambda: (lambda p: p if len(p) == 1 else None)(_daemon_peer(rr)), 30,
                     what="one etcd connection of the daemon")
    (talks_to,) = peers
    _make_leader(w.members, talks_to)
    victim = next(m for m in w.members if m.host.ipv4 == talks_to)
    survivor = next(m for m in w.members if m is not victim)
    window_nodes = [(f"fo{i:02d}", f"192.0.2.{150 + i}") for i in range(FAILOVER_WRITES)]
    ops = [Op("put", "host/c/ip_addr_v4", C_IP.encode())]
    ops += [Op("put", f"host/{name}/ip_addr_v4", ip.encode()) for name, ip in window_nodes]
    ops += [Op("delprefix", f"host/{window_nodes[0][0]}/")]  # a removal in the window too
    driver = EtcdDriver(survivor.host.ns, survivor.endpoint, w.calico.prefix, lab.tmp / "failover-writer.log",
                        call_timeout=WRITER_TIMEOUT)
    try:
        driver.dump()  # connected to the survivor before the kill
        writer = _Writer(driver, ops, pause=FAILOVER_PAUSE)
        t_kill = time.monotonic()
        os.killpg(victim.proc.pid, signal.SIGKILL)
        writer.start()
        t_seen = _wait_protocol(rr.bird, proto_name("Client", C_IP), EVENTUALLY)
        apply_seconds = t_seen - t_kill
        moved_to = wait_for(lambda: (lambda p: p if p and talks_to not in p else None)(_daemon_peer(rr)),
                            30, what="the daemon's new etcd connection")
        writer.join(EVENTUALLY)
        assert not writer.is_alive(), "the writer did not finish"
        if writer.error:
            raise writer.error
    finally:
        driver.close()
    victim.proc.popen.wait(10)
    t_last_ack = writer.acked[-1][2]
    first_put_ack = writer.acked[0][2] - t_kill
    wanted = {proto_name("Client", ip) for _, ip in window_nodes[1:]} | {proto_name("Client", C_IP)}
    gone = proto_name("Client", window_nodes[0][1])
    wait_for(lambda: wanted <= set(rr.bird.protocols()) and gone not in rr.bird.protocols(), EVENTUALLY,
             interval=0.05, what="every change of the failover window in BIRD",
             describe=lambda: rr.bird.birdc("show protocols"))
    all_applied = time.monotonic() - t_last_ack
    in_sync = wait_for(rr.in_sync_with_render, EVENTUALLY, interval=0.5, what="configs equal to `calico-rr render`")
    drops = dropped_sessions(before, w.sessions())

    assert apply_seconds <= APPLY_AFTER_MEMBER_KILLED, (
        f"change applied {apply_seconds:.2f} s after the kill (limit {APPLY_AFTER_MEMBER_KILLED} s)")
    assert in_sync
    assert not drops, drops
    figures.add("faults", "etcd_member_killed", fault="etcd cluster member killed",
                done=f"3-member etcd cluster; the member the daemon was connected to ({talks_to}) "
                     f"made the raft leader, then SIGKILLed; at once a node put through a survivor, "
                     f"then {FAILOVER_WRITES} more puts and a removal {FAILOVER_PAUSE:g} s apart "
                     "(each retried until etcd accepted it)",
                figure=f"first change applied {apply_seconds:.2f} s after the kill (limit "
                       f"{APPLY_AFTER_MEMBER_KILLED:g} s; etcd acknowledged it {first_put_ack:.2f} s after "
                       f"the kill); moved to {', '.join(sorted(moved_to))}; all {len(ops)} changes of "
                       f"the window applied, 0 lost; final configs = `calico-rr render`; {len(drops)} "
                       "sessions dropped",
                measured={"apply_seconds_after_kill": apply_seconds, "first_ack_seconds": first_put_ack,
                          "changes": len(ops), "window_seconds": t_last_ack - t_kill,
                          "all_applied_after_last_ack_seconds": all_applied, "sessions_dropped": len(drops)})


def _cut_off(member, others, add: bool) -> None:
    """Route the member's raft traffic nowhere, both ways, inside the lab's own namespaces: it
    still answers the daemon, but no longer hears its cluster (a network partition)."""
    verb = "add" if add else "del"
    for a, b in [(member, o) for o in others] + [(o, member) for o in others]:
        a.host.run(["ip", "route", verb, "prohibit", f"{b.host.ipv4}/32"], check=add)


def test_etcd_member_cut_off_from_its_cluster(fault_world, lab, figures):
    """The member the daemon talks to loses its cluster but still answers the daemon: its watch
    goes silent while gRPC's pings keep succeeding. etcd cancels a `hasleader` watch on a member
    without a leader, so the daemon resyncs from the majority; a change put there is applied,
    and no session drops meanwhile."""
    w = fault_world(etcd_members=3)
    rr = w.rr
    before = w.sessions()
    (talks_to,) = wait_for(lambda: (lambda p: p if len(p) == 1 else None)(_daemon_peer(rr)), 30,
                           what="one etcd connection of the daemon")
    victim = next(m for m in w.members if m.host.ipv4 == talks_to)
    majority = [m for m in w.members if m is not victim]
    driver = EtcdDriver(majority[0].host.ns, majority[0].endpoint, w.calico.prefix,
                        lab.tmp / "partition-writer.log", call_timeout=WRITER_TIMEOUT)
    try:
        driver.dump()  # connected to the majority before the cut
        t_cut = time.monotonic()
        _cut_off(victim, majority, add=True)
        try:
            writer = _Writer(driver, [Op("put", "host/c/ip_addr_v4", C_IP.encode())], pause=0)
            writer.start()
            t_seen = _wait_protocol(rr.bird, proto_name("Client", C_IP), EVENTUALLY)
            writer.join(EVENTUALLY)
            if writer.error:
                raise writer.error
            moved_to = wait_for(lambda: (lambda p: p if p and talks_to not in p else None)(_daemon_peer(rr)),
                                30, what="the daemon's connection to the majority")
            in_sync = wait_for(rr.in_sync_with_render, EVENTUALLY, interval=0.5,
                               what="configs equal to `calico-rr render`")
            resync_logged = "resyncing" in rr.log() or "watch lost" in rr.log()
        finally:
            _cut_off(victim, majority, add=False)
    finally:
        driver.close()
    drops = dropped_sessions(before, w.sessions())
    applied_seconds = t_seen - t_cut
    acked_seconds = writer.acked[0][2] - t_cut

    assert in_sync
    assert resync_logged, rr.log()[-3000:]
    assert not drops, drops
    figures.add("faults", "etcd_member_cut_off", fault="etcd member cut off from its cluster",
                done=f"3-member etcd cluster; the member the daemon talks to ({talks_to}) cut off from "
                     "the other two (its raft traffic routed nowhere), still reachable by the daemon; "
                     "a node put through the majority",
                figure=f"change applied {applied_seconds:.2f} s after the cut (etcd acknowledged it "
                       f"{acked_seconds:.2f} s after the cut); moved to {', '.join(sorted(moved_to))}; "
                       f"final configs = `calico-rr render`; {len(drops)} sessions dropped",
                measured={"applied_seconds_after_cut": applied_seconds, "acked_seconds": acked_seconds,
                          "sessions_dropped": len(drops)})


# Single puts, one watch response each: a daemon that does not read its watch (stopped) lets its
# HTTP/2 window (64 KiB) and etcd's per-watch buffer (128 responses) overflow, so etcd moves the
# watch behind ("unsynced"); once compacted, catching it up means a compacted-revision error.
FILLER_PUTS = 600
FILLER_BYTES = 3000


def _changes_script(prefix: str, add: range, remove: range, move_as: range, tag: str) -> str:
    """Node changes in transactions, FILLER_PUTS single puts of unrelated keys, removals; prints
    the last revision."""
    return f"""
prefix = {prefix!r}
puts = [(f"{{prefix}}/host/n{{i:02d}}/ip_addr_v4", f"192.0.2.{{100 + i}}") for i in {list(add)!r}]
puts += [(f"{{prefix}}/host/n{{i:02d}}/as_num", "64513") for i in {list(move_as)!r}]
for start in range(0, len(puts), 100):
    chunk = puts[start:start + 100]
    client.transaction(compare=[], success=[client.transactions.put(k, v) for k, v in chunk], failure=[])
filler = "x" * {FILLER_BYTES}
for i in range({FILLER_PUTS}):  # one revision, one watch response each
    client.put(f"{{prefix}}/host/filler-{tag}/workload/k{{i}}", filler + str(i))
for i in {list(remove)!r}:
    client.delete_prefix(f"{{prefix}}/host/n{{i:02d}}/")
client.delete_prefix(f"{{prefix}}/host/filler-{tag}/")
print(client.get_prefix_response(prefix + "/").header.revision)
"""


def _snapshots_at(log: str, since: int) -> list:
    """Revisions of the daemon's snapshots logged after character `since` of its log."""
    return [int(r) for r in re.findall(r"snapshot at revision (\d+)", log[since:])]


def _cut_changes_compact(w, cut: Callable[[], None], restore: Callable[[], None], **changes) -> tuple:
    """cut(); the changes; `etcdctl compact` to the last revision; restore(). Returns the
    revisions written and the compacted revision."""
    rev_before = etcd_revision(w.etcd)
    cut()
    try:
        revision = int(etcd_python(w.etcd.host, w.etcd.endpoint,
                                   _changes_script(w.calico.prefix, **changes)).strip().splitlines()[-1])
        w.etcd.ctl("compact", str(revision))
    finally:
        restore()
    return revision - rev_before, revision


def _clients_of_n(rr) -> set:
    return {n for n in rr.bird.protocols() if re.search(r"^Client_192_0_2_1[0-4]\d$", n)}


def test_compaction_while_cut_off(fault_world, figures):
    """Twice, many changes and a compaction past the daemon's revision while it cannot follow:
    1. cut off for real: a blackhole route to etcd in the reflector's namespace (BGP untouched);
       the daemon notices, and when the route is gone it resyncs from a snapshot taken after
       the compacted revision;
    2. its watch left behind: the daemon stopped (SIGSTOP) with its connection open, so etcd
       compacts the revision the live watch stands at; resumed, the watch reports the
       compaction and the daemon resyncs.
    Each time the configs end equal to `calico-rr render`, and no session drops."""
    w = fault_world()
    rr = w.rr
    before = w.sessions()
    etcd_ip = w.etcd.host.ipv4
    blackhole = ["ip", "route", "add", "blackhole", f"{etcd_ip}/32"]

    # 1. Cut off: packets to etcd vanish inside rr1's namespace only.
    log_at = len(rr.log())
    t_cut = time.monotonic()
    noticed = {}

    def cut():
        rr.host.run(blackhole)
        rr.notify.wait_status(lambda s: "etcd unreachable" in s, EVENTUALLY, since=t_cut,
                              what="STATUS= saying etcd is unreachable while cut off")
        noticed["seconds"] = time.monotonic() - t_cut

    def reconnect():
        rr.host.run(["ip", "route", "del", "blackhole", f"{etcd_ip}/32"], check=False)
        noticed["restored"] = time.monotonic()
    revisions1, compacted1 = _cut_changes_compact(w, cut, reconnect, add=range(0, 40), remove=range(35, 40),
                                                  move_as=range(30, 35), tag="cut")
    wait_for(lambda: any(r >= compacted1 for r in _snapshots_at(rr.log(), log_at)), EVENTUALLY, interval=0.1,
             what=f"a snapshot at or after the compacted revision {compacted1}",
             describe=lambda: rr.log()[-3000:])
    wait_for(rr.in_sync_with_render, EVENTUALLY, interval=0.2,
             what="configs equal to `calico-rr render` after the resync", describe=lambda: rr.log()[-3000:])
    synced1 = time.monotonic() - noticed["restored"]
    log1 = rr.log()[log_at:]
    clients1 = _clients_of_n(rr)

    # 2. Watch left behind: the daemon keeps its connection but reads nothing.
    log_at = len(rr.log())
    revisions2, compacted2 = _cut_changes_compact(
        w, lambda: rr.signal(signal.SIGSTOP), lambda: rr.signal(signal.SIGCONT),
        add=range(40, 50), remove=range(0, 10), move_as=range(10, 15), tag="behind")
    t_cont = time.monotonic()
    wait_for(lambda: "compacted" in rr.log()[log_at:] and any(r >= compacted2 for r in _snapshots_at(rr.log(), log_at)),
             EVENTUALLY, interval=0.1, what="the watch's compaction reported and a snapshot after it",
             describe=lambda: rr.log()[-3000:])
    wait_for(rr.in_sync_with_render, EVENTUALLY, interval=0.2,
             what="configs equal to `calico-rr render` after the resync", describe=lambda: rr.log()[-3000:])
    synced2 = time.monotonic() - t_cont
    log2 = rr.log()[log_at:]
    clients2 = _clients_of_n(rr)
    drops = dropped_sessions(before, w.sessions())
    rr.assert_alive()

    assert "etcd is reachable again" in log1, log1[-3000:]
    assert len(clients1) == 35, sorted(clients1)  # 40 added, 5 removed
    assert re.search(r"resyncing from a fresh snapshot: etcd watch revision compacted", log2), log2[-3000:]
    assert len(clients2) == 35, sorted(clients2)  # 10 more, 10 removed
    assert not drops, drops
    figures.add("faults", "compaction_cut_off", fault="etcd compacted while the daemon is cut off",
                done=f"blackhole route to etcd in the reflector's namespace; once STATUS= said so "
                     f"({noticed['seconds']:.1f} s), {revisions1} revisions written (40 nodes added, "
                     f"5 removed, 5 moved to another AS, {FILLER_PUTS} puts of {FILLER_BYTES} B to "
                     "unrelated keys), `etcdctl compact` to the last one; route removed",
                figure=f"resynced from a snapshot past the compacted revision; final configs = "
                       f"`calico-rr render` {synced1:.1f} s after the route was removed; {len(drops)} "
                       "sessions dropped (whole test)",
                measured={"noticed_seconds": noticed["seconds"], "revisions": revisions1,
                          "sync_seconds": synced1, "clients": len(clients1)})
    figures.add("faults", "compaction_watch_behind", fault="etcd compacted past a live watch",
                done=f"daemon stopped (SIGSTOP) with its watch open; {revisions2} revisions written "
                     f"(10 nodes added, 10 removed, 5 moved to another AS, {FILLER_PUTS} filler "
                     "puts), `etcdctl compact` to the last one; SIGCONT",
                figure=f"the watch reported the compaction, the daemon resynced; final configs = "
                       f"`calico-rr render` {synced2:.1f} s after SIGCONT; {len(drops)} sessions dropped",
                measured={"revisions": revisions2, "sync_seconds": synced2, "clients": len(clients2),
                          "sessions_dropped": len(drops)})
