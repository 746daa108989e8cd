#!/usr/bin/python3
"""The confd way, as a yardstick: what confd (and so the calico/routereflector image) does on
every etcd event, with the product's own templates.

On every wake-up of the watch (events that queued meanwhile fold into it, as confd's
etcd v3 watch does): re-read the whole prefix in one Range (confd's Get), parse + plan +
render everything from scratch, compare with the file on disk, write it (temp file +
rename, no fsync: confd's way), and `configure` over BIRD's control socket. No `bird -p` check, no drop guard, no
fsync, no memory of what BIRD accepted. READY=1 goes to NOTIFY_SOCKET after the first pass
(confd has no sd_notify; the bench needs the moment).

    /usr/bin/python3 bench/baseline.py --config FILE     (same config.toml as calico-rr)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rr_service.app import wiring  # noqa: E402
from rr_service.app.settings import load_settings  # noqa: E402
from rr_service.bird.control import BirdClient, BirdSocketError  # noqa: E402
from rr_service.calico import rule_set  # noqa: E402
from rr_service.core.pipeline import compute_once  # noqa: E402
from rr_service.sources.base import DatastoreError  # noqa: E402
from rr_service.sources.etcd.client import EtcdDatastore  # noqa: E402
from rr_service.sources.etcd.config import EtcdConfig  # noqa: E402

log = logging.getLogger("baseline")


def notify(text: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(path)
        sock.send(text.encode())


def write_no_fsync(path: str, text: str) -> None:
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o640)
    os.rename(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    settings = load_settings(args.config)
    logging.basicConfig(stream=sys.stderr, level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    me = wiring.identity(settings)
    renderer = wiring.renderer(settings)
    rules = rule_set("v1")
    targets = wiring.targets(settings, renderer.flavour)
    store = EtcdDatastore(EtcdConfig(tuple(settings.etcd.endpoints)), settings.etcd.prefix)

    def one_pass() -> None:
        raw, _revision = store.snapshot(page_keys=None)  # the whole prefix in one Range, every time
        computed = compute_once(rules, raw, me, renderer)
        for name, target in targets.items():
            text = computed.configs[name]
            try:
                with open(target.config_path, encoding="utf-8") as f:
                    if f.read() == text:
                        continue  # confd: "target config in sync"
            except FileNotFoundError:
                pass
            write_no_fsync(target.config_path, text)
            try:
                BirdClient(target.socket_path).configure()
                log.info("baseline: %s configured", name)
            except BirdSocketError as exc:
                log.error("baseline: %s reload failed: %s", name, exc)

    raw, revision = store.snapshot(page_keys=None)
    store.start_watch(revision + 1)
    one_pass()
    notify("READY=1")
    while not stop:
        try:
            changes = store.next_changes(1.0)
        except DatastoreError as exc:
            log.warning("baseline: watch: %s; re-reading", exc)
            raw, revision = store.snapshot(page_keys=None)
            store.start_watch(revision + 1)
            changes = [True]
        if changes:
            one_pass()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
