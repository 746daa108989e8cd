"""Client of BIRD's control socket (the protocol birdc speaks), for BIRD 1.6 and 2.x.

We speak the protocol ourselves instead of running `birdc`: birdc exits 0 even when BIRD
rejects a config, so only the numbered reply codes tell the truth.
"""
from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

# Codes after which `configure` has taken (or queued) the new config.
# 0025 is deliberately absent: newer BIRD 2 answers "0025 Reconfiguration rejected, another
# config not parsed yet" -- a 0xxx code that means "busy, try again", not success.
_CONFIGURE_OK = frozenset({3, 4, 5, 17, 18, 19})
_CHECK_OK = frozenset({20})
_NO_PROTOCOLS_MATCH = 8003
_BUSY = frozenset({6, 25})  # shutting down / another reconfiguration still parsing
# `configure` answered "in progress" (0004) or "queued" (0005): BIRD finishes it later.
_CONFIGURE_PENDING = frozenset({4, 5})
_RECONFIGURING = "Reconfiguration in progress"  # the last line of `show status` meanwhile

_LINE = re.compile(r"^(\d{4})([ -])(.*)$")
_DATETIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d(?:\.\d+)?)?)\s*(.*)$")


class BirdSocketError(Exception):
    """BIRD cannot be reached or did not answer sensibly (missing socket, refused, timeout)."""


class BirdCommandError(BirdSocketError):
    """BIRD answered, and refused: an 8xxx (run-time) or 9xxx (parse) reply code."""

    def __init__(self, code: int, message: str):
        super().__init__(f"BIRD error {code:04d}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class BirdReply:
    code: int  # the code of the final line
    lines: tuple[tuple[int, str], ...]

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)


@dataclass(frozen=True)
class ProtocolInfo:
    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str


def _quote(path: str) -> str:
    # BIRD's CLI lexer has no escapes inside strings: a quote or newline cannot be sent safely.
    if '"' in path or "\n" in path or "\r" in path:
        raise ValueError(f"path not usable in a BIRD command: {path!r}")
    return f'"{path}"'


class BirdClient:
    def __init__(self, socket_path: str, timeout: float = 10.0):
        self.socket_path = socket_path
        self.timeout = timeout

    # -- protocol --------------------------------------------------------------------

    def command(self, line: str) -> BirdReply:
        if "\n" in line or "\r" in line:
            raise ValueError(f"one BIRD command per call, no newlines: {line!r}")
        deadline = time.monotonic() + self.timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except (OSError, socket.timeout) as e:
                raise BirdSocketError(f"cannot connect to BIRD at {self.socket_path}: {e}") from e
            reader = _Reader(sock, deadline, self.socket_path)
            hello = reader.reply()
            if hello.code != 1:
                raise BirdSocketError(f"unexpected greeting from {self.socket_path}: {hello.lines}")
            try:
                sock.sendall(line.encode() + b"\n")
            except OSError as e:
                raise BirdSocketError(f"cannot send to BIRD at {self.socket_path}: {e}") from e
            reply = reader.reply()
        finally:
            sock.close()
        if reply.code >= 8000:
            message = "\n".join(t for c, t in reply.lines if c >= 8000) or reply.text
            raise BirdCommandError(reply.code, message)
        return reply

    # -- commands --------------------------------------------------------------------

    def configure(self, path: str | None = None) -> BirdReply:
        cmd = "configure" if path is None else f"configure {_quote(path)}"
        return self._expect(self.command(cmd), _CONFIGURE_OK)

    def configure_check(self, path: str | None = None) -> BirdReply:
        cmd = "configure check" if path is None else f"configure check {_quote(path)}"
        return self._expect(self.command(cmd), _CHECK_OK)

    def show_status(self) -> BirdReply:
        return self.command("show status")

    def show_protocols(self) -> list[ProtocolInfo]:
        return parse_protocols(self.command("show protocols"))

    def client_routes(self, pattern: str = "Client_*") -> dict[str, "RouteCounts"]:
        """What each matching protocol took from its peer (`show protocols all`); none when
        no protocol matches (BIRD answers that with 8003, e.g. a reflector without clients)."""
        try:
            return parse_route_counts(self.command(f'show protocols all "{pattern}"'))
        except BirdCommandError as exc:
            if exc.code == _NO_PROTOCOLS_MATCH:
                return {}
            raise

    def reconfiguring(self) -> bool:
        """BIRD is still taking in a config it accepted (shutting down removed protocols)."""
        reply = self.show_status()
        return reply.lines[-1][1].strip() == _RECONFIGURING

    def settle(self, reply: BirdReply, timeout: float, interval: float = 0.02) -> bool:
        """After a `configure` that BIRD finishes later (0004 / 0005): ask until it has
        finished, up to `timeout` seconds; False if it had not by then.

        Measured on BIRD 3.1.8: it may not finish such a reconfiguration until something
        wakes its main loop (a CLI command does; 1.5 s of quiet did not), and a `configure`
        sent meanwhile is queued behind it; after a few queued ones BIRD died (SIGABRT /
        SIGSEGV) at 5,000 and 10,000 sessions. Asked every 20 ms it finished within 25-50 ms
        and crashed in 2 of 15 such runs instead of all of them. BIRD 1.6 and 2 answer the
        same way and are asked the same."""
        if reply.code not in _CONFIGURE_PENDING:
            return True
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # one deadline for the whole wait, also for a BIRD slow to answer at all
            asking = BirdClient(self.socket_path, min(self.timeout, left))
            if not asking.reconfiguring():
                return True
            time.sleep(interval)

    def is_running(self) -> bool:
        try:
            self.show_status()
        except BirdSocketError:
            return False
        return True

    def _expect(self, reply: BirdReply, ok: frozenset[int]) -> BirdReply:
        if reply.code in ok:
            return reply
        # Not a refusal of the config itself: the caller should retry later, as if BIRD
        # were unreachable.
        kind = "busy" if reply.code in _BUSY else "unexpected reply"
        raise BirdSocketError(f"BIRD {kind} ({reply.code:04d}): {reply.text}")


@dataclass(frozen=True)
class RouteCounts:
    """A protocol's routes from its peer: `imported` (held now), `filtered` (updates the
    import filter refused, since the session came up) and whether its import limit is hit
    (routes beyond it are ignored). Both BIRD 1.6 and BIRD 2 (per channel) print them:

        Import limit:   1000 [HIT]
        Routes:         3 imported, 0 exported, 3 preferred
        Route change stats:     received   rejected   filtered    ignored   accepted
          Import updates:              7          0          2          2          3
    """

    imported: int = 0
    filtered: int = 0
    limit_hit: bool = False


_ROUTES = re.compile(r"\s*Routes:\s+(\d+) imported")
_IMPORT_UPDATES = re.compile(r"\s*Import updates:\s+(\d+)\s+(\d+)\s+(\d+)")


def parse_route_counts(reply: BirdReply) -> dict[str, RouteCounts]:
    """`show protocols all` (rows 1002, details 1006): each protocol's RouteCounts, summed
    over its channels."""
    counts: dict[str, list] = {}
    current = None
    for code, text in reply.lines:
        if code == 1002 and text.strip():
            current = counts.setdefault(text.split(None, 1)[0], [0, 0, False])
        elif current is not None and code == 1006:
            routes = _ROUTES.match(text)
            updates = _IMPORT_UPDATES.match(text)
            if routes:
                current[0] += int(routes.group(1))
            elif updates:
                current[1] += int(updates.group(3))
            elif "Import limit:" in text and "[HIT]" in text:
                current[2] = True
    return {name: RouteCounts(*values) for name, values in counts.items()}


def parse_protocols(reply: BirdReply) -> list[ProtocolInfo]:
    """Rows of `show protocols` (code 1002); the 2002 header and `all` details are skipped.

    Columns are split on whitespace, not by position: BIRD pads names to 8 characters but
    longer names push the other columns right. `since` may be a time, a date, or with
    `timeformat protocol iso long` a date and a time separated by a space.
    """
    out = []
    for code, text in reply.lines:
        if code != 1002 or not text.strip():
            continue
        parts = text.split(None, 4)
        if len(parts) < 4:
            raise BirdSocketError(f"garbled protocol row: {text!r}")
        rest = parts[4] if len(parts) > 4 else ""
        m = _DATETIME.match(rest)
        if m:
            since, info = m.group(1), m.group(2)
        else:
            since, _, info = rest.partition(" ")
        out.append(ProtocolInfo(parts[0], parts[1], parts[2], parts[3], since, info.strip()))
    return out


class _Reader:
    """Reads replies line by line until a final `NNNN ` line, under one deadline."""

    def __init__(self, sock: socket.socket, deadline: float, path: str):
        self.sock = sock
        self.deadline = deadline
        self.path = path
        self.buf = b""

    def _line(self) -> str:
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise BirdSocketError(f"timeout waiting for BIRD at {self.path}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout as e:
                raise BirdSocketError(f"timeout waiting for BIRD at {self.path}") from e
            except OSError as e:
                raise BirdSocketError(f"error reading from BIRD at {self.path}: {e}") from e
            if not chunk:
                raise BirdSocketError(f"BIRD at {self.path} closed the connection mid-reply")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        return raw.decode("utf-8", errors="replace")

    def reply(self) -> BirdReply:
        lines: list[tuple[int, str]] = []
        code = None
        while True:
            line = self._line()
            if line.startswith("+"):
                continue  # spontaneous printout (log echo), not part of this reply
            if line.startswith(" "):
                if code is None:
                    raise BirdSocketError(f"continuation line before any code: {line!r}")
                lines.append((code, line[1:]))
                continue
            m = _LINE.match(line)
            if not m:
                if re.fullmatch(r"\d{4}", line):  # a final line with empty text
                    return BirdReply(int(line), tuple(lines + [(int(line), "")]))
                raise BirdSocketError(f"garbled reply line from BIRD: {line!r}")
            code = int(m.group(1))
            lines.append((code, m.group(3)))
            if m.group(2) == " ":
                return BirdReply(code, tuple(lines))
