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


class StateDir:
    def __init__(self, path: str):
        self.path = path
        self._warned = False

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def publish_held(self, verdict) -> None:
        record = {
            "since": time.time() - verdict.held_for,
            "dropped": verdict.dropped,
            "running": verdict.running,
            "reason": verdict.reason,
        }
        try:
            os.makedirs(self.path, exist_ok=True)
            tmp = self._file(HELD + ".tmp")
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
            os.replace(tmp, self._file(HELD))
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot write %s (%s): `calico-rr accept` will not see the held config", self.path, exc)

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
