"""The daemon's runtime folder: it publishes a held-back render there, and `calico-rr accept`
answers there. A file, not a signal, so the CLI needs no PID and works as root or bird."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Optional

log = logging.getLogger("calico-rr")

HELD = "held.json"
ACCEPT = "accept"
HANDOVER = "handover.json"  # what BIRD runs, as a stopping daemon left it to the next start


class StateDir:
    def __init__(self, path: str):
        self.path = path
        self._warned = False

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _write_json(self, name: str, record: dict) -> None:
        os.makedirs(self.path, exist_ok=True)
        tmp = self._file(name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        os.replace(tmp, self._file(name))

    def publish_held(self, verdict) -> None:
        record = {
            "since": time.time() - verdict.held_for,
            "dropped": verdict.dropped,
            "running": verdict.running,
            "reason": verdict.reason,
        }
        try:
            self._write_json(HELD, record)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot write %s (%s): `calico-rr accept` will not see the held config", self.path, exc)

    def clear_stale(self) -> None:
        """At start: a hold, or an accept, of an earlier run is not this run's (the folder
        outlives a restart: RuntimeDirectoryPreserve=restart)."""
        self.clear_held()

    def save_handover(self, records: dict) -> None:
        """At a clean stop: ConfigApplier.hand_over() of each BIRD, by target name. Not
        fsynced: a lost record costs the next start one reload, nothing else."""
        try:
            self._write_json(HANDOVER, records)
        except OSError as exc:
            log.warning("cannot write %s (%s): the next start reloads BIRD once", self._file(HANDOVER), exc)

    def take_handover(self) -> dict:
        """The records an earlier stop left, read once: a later start must not trust them."""
        path = self._file(HANDOVER)
        try:
            with open(path, encoding="utf-8") as handle:
                records = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s (%s): BIRD is reloaded once", path, exc)
            records = {}
        try:
            os.unlink(path)
        except OSError:
            pass
        return records if isinstance(records, dict) else {}

    def clear_held(self) -> None:
        for name in (HELD, ACCEPT):
            try:
                os.unlink(self._file(name))
            except OSError:
                pass

    def take_accept(self) -> bool:
        """True once per `calico-rr accept`."""
        try:
            os.unlink(self._file(ACCEPT))
            return True
        except OSError:
            return False

    # ---- the CLI side
    def held(self) -> Optional[dict]:
        try:
            with open(self._file(HELD), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def request_accept(self) -> None:
        with open(self._file(ACCEPT), "w", encoding="utf-8") as handle:
            handle.write(f"{time.time()}\n")

    def accept_pending(self) -> bool:
        return os.path.exists(self._file(ACCEPT))
