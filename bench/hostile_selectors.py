"""What hostile BGPPeer selectors cost the v3 pipeline (no etcd, no BIRD: the planner alone).

    /usr/bin/python3 bench/hostile_selectors.py [--nodes 3000] [--peers 50]

50 BGPPeers apply to the reflector, each with a peerSelector of the most terms allowed
(selector.MAX_TERMS) that no set operation can fold (`label-N contains 'zz'`, on labels no
Node has) and only its last term matching: every selector is matched term by term against
every Node. Printed: the first plan (cold start, `render`), a Node changed (what a kubelet
or calico/node causes), and a BGPPeer changed (what an operator causes: only that BGPPeer's
selector is matched again; every candidate is planned again).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rr_service.calico import rule_set  # noqa: E402
from rr_service.calico.v3.selector import MAX_TERMS  # noqa: E402
from rr_service.core.pipeline import Pipeline  # noqa: E402
from rr_service.core.plan import Identity  # noqa: E402
from rr_service.core.render import Renderer  # noqa: E402

ME = Identity(ipaddress.IPv4Address("10.0.0.1"), node_name="rr")


def resource(kind: str, plural: str, name: str, spec: dict, labels: dict | None = None) -> tuple[str, bytes]:
    return f"{plural}/{name}", json.dumps({"kind": kind, "apiVersion": "projectcalico.org/v3",
                                           "metadata": {"name": name, "labels": labels or {}},
                                           "spec": spec}).encode()


def selector(salt: str) -> str:
    terms = [f"label-{n:04d} contains '{salt}'" for n in range(MAX_TERMS - 1)] + ["zone == 'a'"]
    return " || ".join(terms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3000)
    parser.add_argument("--peers", type=int, default=50)
    args = parser.parse_args()
    items = dict([resource("Node", "nodes", "rr", {"bgp": {"ipv4Address": "10.0.0.1/8", "routeReflectorClusterID":
                                                           "1.0.0.1"}}, {"rr": "true"})])
    for i in range(args.nodes):
        key, value = resource("Node", "nodes", f"n{i:05d}", {"bgp": {"ipv4Address": f"10.1.{i // 250}.{i % 250 + 1}/8"}},
                              {"zone": "a", "kubernetes.io/hostname": f"n{i:05d}"})
        items[key] = value
    for p in range(args.peers):
        key, value = resource("BGPPeer", "bgppeers", f"p{p:02d}", {"nodeSelector": "has(rr)", "peerSelector": selector("zz")})
        items[key] = value
    pipeline = Pipeline(rule_set("v3"), ME, Renderer(flavour="bird2"))
    pipeline.reset(dict(items))
    started = time.perf_counter()
    computed = pipeline.compute()
    cold = time.perf_counter() - started
    assert len(computed.plan.v4.sessions) == args.nodes and not computed.rejected
    key, value = resource("Node", "nodes", "n00007", {"bgp": {"ipv4Address": "10.2.0.7/8"}}, {"zone": "a"})
    started = time.perf_counter()
    pipeline.change(key, value)
    pipeline.compute()
    node_change = time.perf_counter() - started
    key, value = resource("BGPPeer", "bgppeers", "p07", {"nodeSelector": "has(rr)", "peerSelector": selector("zy")})
    started = time.perf_counter()
    pipeline.change(key, value)
    pipeline.compute()
    peer_change = time.perf_counter() - started
    print(f"{args.peers} BGPPeers x {MAX_TERMS}-term peerSelectors over {args.nodes} Nodes: "
          f"first plan {cold:.2f} s, a Node changed {node_change * 1000:.1f} ms, "
          f"a BGPPeer changed {peer_change:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
