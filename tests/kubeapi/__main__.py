"""Run the test Kubernetes API server by hand:

    /usr/bin/python3 -m tests.kubeapi --etcd http://127.0.0.1:2379 --port 0 --groups crd,v3

prints the URL, the admin token and a kubeconfig path, then serves until Ctrl-C. Without
--etcd it starts a throw-away etcd of its own (tests/etcdproc.py). Run from the repository.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import ExitStack


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.kubeapi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--etcd", help="etcd client URL (default: start a throw-away etcd)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--groups", default="crd",
                        help="Calico API groups, comma-separated: crd, v3 (default crd)")
    parser.add_argument("--extra-ip", action="append", default=[],
                        help="one more IP address in the serving certificate")
    parser.add_argument("--workdir", help="where the CA, certs and kubeconfig go "
                                          "(default: a temp dir, removed at exit)")
    parser.add_argument("--bookmark-interval", type=float, default=60.0)
    args = parser.parse_args(argv)

    from .server import KubeApiServer
    done = threading.Event()
    # before anything starts: a SIGTERM during start-up must still clean up
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with ExitStack() as stack:
        etcd_url = args.etcd
        if not etcd_url:
            from tests.etcdproc import EtcdProc
            etcd_url = stack.enter_context(EtcdProc()).url
            print(f"etcd:       {etcd_url} (throw-away)")
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        api = stack.enter_context(KubeApiServer(
            etcd_url, groups=groups, host=args.host, port=args.port, extra_ips=args.extra_ip,
            workdir=args.workdir, bookmark_interval=args.bookmark_interval))
        kubeconfig = api.kubeconfig(api.workdir / "kubeconfig")
        print(f"url:        {api.url}")
        print(f"token:      {api.admin_token}")
        print(f"ca:         {api.ca_cert}")
        print(f"kubeconfig: {kubeconfig}")
        print("serving; Ctrl-C stops", flush=True)
        try:
            done.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
