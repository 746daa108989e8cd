#!/usr/bin/python3
"""`make demo`: the reflector end to end, in throw-away network namespaces.

Starts etcd, one reflector (its BIRD + BIRD6 and `python3 -m rr_service run`)
and two Calico-like nodes, each a network namespace of its own on a private
bridge (192.0.2.0/24, 2001:db8::/64), writes the Calico data to etcd, waits for
the BGP sessions, shows the reflected routes at each node and the reflector's
`status`, and removes everything again: on success, on error, on Ctrl-C.

Needs root.  Exit status 0 when every step worked, 1 when one failed, 2 when
the machine cannot run the demo.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.lab import (CalicoData, Lab, LabError, Reflector, proto_name,  # noqa: E402
                       requirements_missing, rr_service_available, sweep)
from tests.lab.world import AS_NUM, CLUSTER_ID, ETCD_IP, NODES, RR1, World  # noqa: E402

TIMEOUT = 60


class Interrupted(Exception):
    pass


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def _on_signal(signum, _frame):
    raise Interrupted("Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name)


def main() -> int:
    reason = requirements_missing() or rr_service_available()
    if reason:
        print(f"demo: cannot run here: {reason}", file=sys.stderr)
        return 2
    # SIGINT too: a shell may start us with it ignored, and Ctrl-C must clean up.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    started = time.monotonic()
    rr = None
    lab = None
    try:
        sweep()  # labs left behind by killed runs (never those of live runs)
        lab = Lab(keep_tmp=bool(os.environ.get("RRLAB_KEEP")))
        say(f"lab: network namespaces {lab.prefix}* on a private bridge, files in {lab.tmp}")
        etcd_host = lab.add_host("etcd", ETCD_IP)
        etcd = lab.start_etcd(etcd_host)
        say(f"etcd is up at {etcd.endpoint} (namespace {etcd_host.ns})")

        calico = CalicoData(etcd)
        name, rr_ip, rr_ip6 = RR1
        calico.set_global_as(AS_NUM)
        calico.add_global_peer(rr_ip, AS_NUM)
        calico.add_global_peer(rr_ip6, AS_NUM)
        for n in ("a", "b"):
            calico.add_node(n, NODES[n].ipv4, NODES[n].ipv6)
        say(f"Calico data in etcd: AS {AS_NUM}, every node peers with {rr_ip} and {rr_ip6}, "
            f"nodes a ({NODES['a'].ipv4}) and b ({NODES['b'].ipv4})")

        rr_host = lab.add_host(name, rr_ip, rr_ip6)
        rr = Reflector(lab, rr_host, [etcd.endpoint])
        say(f"reflector {rr_ip} / {rr_ip6}: BIRD and BIRD6 running on a minimal config")
        rr.cli("register", "--cluster-id", CLUSTER_ID)
        say(f"registered the reflector in etcd: calico-rr register --cluster-id {CLUSTER_ID}")

        world = World(lab, etcd, calico, rr)
        for n in ("a", "b"):
            world.add_node(n, [rr_ip], [rr_ip6])
        say("nodes a and b: BIRD and BIRD6 configured like calico/node, each exporting its own "
            f"blocks ({NODES['a'].block4}, {NODES['a'].block6}; "
            f"{NODES['b'].block4}, {NODES['b'].block6})")

        rr.start()
        say(f"daemon started: python3 -m rr_service --config {rr.config} run (pid {rr.daemon.pid})")

        for family in (4, 6):
            names = [proto_name("Client", getattr(NODES[n], "ipv4" if family == 4 else "ipv6"))
                     for n in ("a", "b")]
            t0 = time.monotonic()
            rr.wait_established(names, family, TIMEOUT)
            say(f"IPv{family} sessions Established on the reflector: {', '.join(names)} "
                f"({time.monotonic() - t0:.1f} s)")

        for n, other in (("b", "a"), ("a", "b")):
            node = world.nodes[n]
            for family in (4, 6):
                prefix = NODES[other].block4 if family == 4 else NODES[other].block6
                via_rr = rr_ip if family == 4 else rr_ip6
                route = node.bird_for(family).wait_route(
                    prefix, TIMEOUT, pred=lambda r: r.protocol != "static1")
                if route.originator_id != NODES[other].ipv4 or CLUSTER_ID not in route.cluster_list:
                    raise LabError(f"unexpected route at node {n}:\n{route.excerpt()}")
                say(f"at node {n}: node {other}'s {prefix}, reflected by {via_rr} "
                    f"(originator {route.originator_id}, cluster list {' '.join(route.cluster_list)}):")
                print(indent(route.excerpt()), flush=True)

        res = rr.cli("status", check=False)
        say(f"calico-rr status, inside the reflector's namespace (exit {res.returncode}):")
        print(indent(res.stdout + (res.stderr if res.returncode else "")), flush=True)
        if res.returncode != 0:
            raise LabError(f"calico-rr status exited {res.returncode}")

        say(f"all steps passed in {time.monotonic() - started:.1f} s; cleaning up")
        return 0
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"\ndemo: interrupted ({exc or 'Ctrl-C'}); cleaning up", file=sys.stderr, flush=True)
        return 130
    except (LabError, TimeoutError, AssertionError, OSError) as exc:
        print(f"demo: FAILED: {exc}", file=sys.stderr)
        if rr is not None and rr.daemon is not None:
            print("--- last lines of the daemon's log ---", file=sys.stderr)
            print(rr.log()[-4000:], file=sys.stderr)
        return 1
    except Exception as exc:  # a bug in the demo or the lab: say so, then clean up
        import traceback
        traceback.print_exc()
        print(f"demo: FAILED unexpectedly: {exc!r}", file=sys.stderr)
        return 1
    finally:
        # Ignore further Ctrl-C / TERM while tearing down, so nothing is left behind.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if lab is not None:
            lab.close()
            if lab.keep_tmp:
                say(f"kept the lab's files in {lab.tmp}")
            say("removed every namespace and process the demo started")


if __name__ == "__main__":
    sys.exit(main())
