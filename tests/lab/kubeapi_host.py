"""The test Kubernetes API server as a process inside a lab host's network namespace (the
lab's hosts cannot reach the root namespace), so a reflector in the lab can use it:

    python3 -m tests.lab.kubeapi_host --etcd URL --host 192.0.2.2 --port 6443 --workdir DIR

writes DIR/kubeconfig (admin token, CA data), DIR/kubeconfig-rr (user calico-rr, whose
token is read from DIR/kubeconfig-rr.token at every request) and DIR/ready once it serves.
SIGUSR1 stops serving (an API server down: connections refused, watches cut), SIGUSR2 serves
again on the same address with the same CA, SIGHUP applies DIR/control.json (see `control`)
and then writes DIR/control-done with the number of files applied so far, SIGTERM ends it.
Objects are written by the test straight into etcd under kube's keys (see kube_key), which is
what the API server reads.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import threading
from pathlib import Path

from tests.kubeapi.resources import CRD_GROUP


def kube_key(plural: str, name: str, group: str = CRD_GROUP) -> str:
    """Where the API server keeps an object in etcd."""
    return f"/registry/minions/{name}" if plural == "nodes" else f"/registry/{group}/{plural}/{name}"


RR_USER = "calico-rr"


def control(api, spec: dict) -> None:
    """What a test asks of the running server: {"tokens": {token: user}} accepts tokens,
    {"revoke": [token]} refuses them from now on (401) and ends the watches opened with them,
    {"rules": {user: [[verb, resource], ...] or null}} sets what a user may do (null: all),
    {"expire_continue": true} answers every continued list with 410 Expired (false: no more),
    {"filler_nodes": N} writes N Nodes without Calico's annotations (kubelet's only: no
    session, but lists of more than one page)."""
    from tests.kubeapi import realistic_node
    if spec.get("filler_nodes"):
        api.seed("nodes", [realistic_node(f"filler-{i:04d}") for i in range(spec["filler_nodes"])])
    if "expire_continue" in spec:
        api.expire_continue_tokens = bool(spec["expire_continue"])
        api.cut_watches()  # so that the reflector lists again now
    for token, user in (spec.get("tokens") or {}).items():
        api.add_token(token, user)
    for token in spec.get("revoke") or ():
        api.revoke_token(token, cut_watches=True)
    for user, rules in (spec.get("rules") or {}).items():
        api.set_rules(user, None if rules is None else [tuple(rule) for rule in rules])
        api.cut_watches()  # kube-apiserver checks RBAC per request: the next list is refused


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.lab.kubeapi_host")
    parser.add_argument("--etcd", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)

    from tests.kubeapi import KubeApiServer
    done = threading.Event()
    wanted: list = []
    wake = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set() or wake.set())
    signal.signal(signal.SIGUSR1, lambda *_: wanted.append("stop") or wake.set())
    signal.signal(signal.SIGUSR2, lambda *_: wanted.append("start") or wake.set())
    signal.signal(signal.SIGHUP, lambda *_: wanted.append("control") or wake.set())
    applied = 0
    workdir = Path(args.workdir)
    with KubeApiServer(args.etcd, groups=("crd",), host=args.host, port=args.port,
                       workdir=str(workdir / "api"), bookmark_interval=1.0) as api:
        api.kubeconfig(workdir / "kubeconfig", auth="token", ca="data")
        rr_token = "rr-" + secrets.token_hex(16)
        api.add_token(rr_token, RR_USER)
        api.kubeconfig(workdir / "kubeconfig-rr", auth="token-file", ca="data", token=rr_token)
        (workdir / "ready").write_text("serving\n")
        while not done.is_set():
            wake.wait()
            wake.clear()
            while wanted:
                action = wanted.pop(0)
                if action == "stop" and api.running:
                    api.stop()
                    (workdir / "ready").unlink(missing_ok=True)
                elif action == "start" and not api.running:
                    api.start()
                    (workdir / "ready").write_text("serving\n")
                elif action == "control":
                    control(api, json.loads((workdir / "control.json").read_text()))
                    applied += 1
                    (workdir / "control-done").write_text(f"{applied}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
