"""Test helper: read the BGP sessions out of a BIRD (1.6) config, as comparable records.

Used to compare our rendered configs with Calico's own expectations in
/work/shared/conformance/calico-confd/ (see its README): for every `protocol bgp`, the
neighbour address and port, AS numbers, `rr client`, `rr cluster id`, `next hop keep`,
`source address` and `passive`, with `from <template>` inheritance resolved.

This is a reader for configs as confd (and our renderer) write them, not a full BIRD
grammar: comments (`#`, `/* */`) and strings are understood, blocks are balanced, statements
this helper does not care about are skipped. Anything it cannot make sense of inside a
`protocol bgp` / `template bgp` raises BirdConfigError rather than being guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

# Calico's own fixtures, kept in the repository with their licence (see its README).
CONFORMANCE_DIR = Path(__file__).resolve().parent / "conformance" / "calico-confd"


class BirdConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ExpectedSession:
    """One BGP session. `name` (the protocol name) is informative and is NOT part of equality
    or hashing: our protocol names may differ from Calico's, the set of sessions must not."""

    neighbor: str
    port: Optional[int]
    local_as: Optional[int]
    neighbor_as: int
    rr_client: bool
    rr_cluster_id: Optional[str]
    next_hop_keep: bool
    source_address: Optional[str]
    passive: bool
    name: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return session_key(self.neighbor, self.port)


@dataclass(frozen=True)
class BirdGlobals:
    router_id: Optional[str]
    listen_port: Optional[int]  # `listen bgp port N;`


def session_key(neighbor: str, port: Optional[int]) -> str:
    """'10.0.0.1', '10.0.0.1:179', 'fd00::1', '[fd00::1]:179' (Calico's peerIP spelling)."""
    if port is None:
        return neighbor
    return f"[{neighbor}]:{port}" if ":" in neighbor else f"{neighbor}:{port}"


# ---------------------------------------------------------------------------------------
# Lexing and statement splitting

_PUNCT = set("{};,()=")


def _tokenize(text: str) -> List[str]:
    """Words, strings (kept with their quotes) and single punctuation characters."""
    tokens: List[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise BirdConfigError("unterminated /* comment")
            i = j + 2
        elif c == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise BirdConfigError("unterminated string")
            tokens.append(text[i : j + 1])
            i = j + 1
        elif c in _PUNCT:
            tokens.append(c)
            i += 1
        else:
            j = i
            while (
                j < n
                and not text[j].isspace()
                and text[j] not in _PUNCT
                and text[j] not in '"#'
                and not text.startswith("/*", j)
            ):
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


class _Block:
    """A `{ ... }` body, as a list of statements."""

    def __init__(self, statements: List["_Stmt"]) -> None:
        self.statements = statements


# A statement: its words/blocks, in order. Blocks appear as _Block items.
_Stmt = List[object]


def _split(tokens: List[str], pos: int, closing: bool) -> Tuple[List[_Stmt], int]:
    """Split tokens into statements until the matching '}' (closing) or the end.

    A statement ends at ';' or right after a `{...}` block that is not followed by ';'
    (`protocol x { ... }` at top level; `debug { states };` inside a body).
    """
    statements: List[_Stmt] = []
    current: _Stmt = []
    n = len(tokens)
    while pos < n:
        tok = tokens[pos]
        if tok == ";":
            if current:
                statements.append(current)
            current = []
            pos += 1
        elif tok == "{":
            body, pos = _split(tokens, pos + 1, closing=True)
            current.append(_Block(body))
            if pos >= n or tokens[pos] != ";":
                statements.append(current)
                current = []
        elif tok == "}":
            if not closing:
                raise BirdConfigError("unbalanced '}'")
            if current:
                statements.append(current)
            return statements, pos + 1
        else:
            current.append(tok)
            pos += 1
    if closing:
        raise BirdConfigError("unbalanced '{'")
    if current:
        statements.append(current)
    return statements, pos


def _parse(text: str) -> List[_Stmt]:
    statements, _ = _split(_tokenize(text), 0, closing=False)
    return statements


# ---------------------------------------------------------------------------------------
# BGP protocol bodies

_SWITCH = {"on": True, "yes": True, "off": False, "no": False}


def _int(word: str, what: str) -> int:
    if not word.isdigit():
        raise BirdConfigError(f"{what}: expected a number, found {word!r}")
    return int(word)


def _switch(words: List[str], start: int, what: str) -> bool:
    rest = words[start:]
    if not rest:
        return True
    if len(rest) == 1 and rest[0] in _SWITCH:
        return _SWITCH[rest[0]]
    raise BirdConfigError(f"{what}: unexpected {' '.join(rest)!r}")


def _bgp_settings(name: str, body: List[_Stmt]) -> Dict[str, object]:
    """The session-relevant settings one protocol/template body sets (nothing inherited)."""
    out: Dict[str, object] = {}
    for stmt in body:
        if any(isinstance(w, _Block) for w in stmt):
            continue  # debug { states }; import filter { ... }; channel blocks
        words = [str(w) for w in stmt]
        head = words[0]
        what = f"{name}: {' '.join(words)}"
        if head == "neighbor":
            # neighbor [ip] [port number] [as number]  (BIRD 1.6)
            i = 1
            if i < len(words) and words[i] not in ("port", "as"):
                out["neighbor"] = words[i]
                i += 1
            while i < len(words):
                if words[i] == "port" and i + 1 < len(words):
                    out["port"] = _int(words[i + 1], what)
                elif words[i] == "as" and i + 1 < len(words):
                    out["neighbor_as"] = _int(words[i + 1], what)
                else:
                    raise BirdConfigError(f"{what}: cannot read neighbor statement")
                i += 2
        elif head == "local":
            # local [ip] [port number] [as number]; the ip is the source address
            i = 1
            if i < len(words) and words[i] not in ("port", "as"):
                out["source_address"] = words[i]
                i += 1
            while i < len(words):
                if words[i] == "as" and i + 1 < len(words):
                    out["local_as"] = _int(words[i + 1], what)
                elif words[i] == "port" and i + 1 < len(words):
                    out["local_port"] = _int(words[i + 1], what)
                else:
                    raise BirdConfigError(f"{what}: cannot read local statement")
                i += 2
        elif head == "source" and len(words) == 3 and words[1] == "address":
            out["source_address"] = words[2]
        elif words[:2] == ["rr", "client"]:
            out["rr_client"] = _switch(words, 2, what)
        elif words[:3] == ["rr", "cluster", "id"]:
            if len(words) != 4:
                raise BirdConfigError(f"{what}: expected one cluster id")
            out["rr_cluster_id"] = words[3]
        elif words[:3] == ["next", "hop", "keep"]:
            out["next_hop_keep"] = _switch(words, 3, what)
        elif words[:3] == ["next", "hop", "self"]:
            if _switch(words, 3, what):
                out["next_hop_keep"] = False
        elif head == "passive":
            out["passive"] = _switch(words, 1, what)
    return out


_DEFAULTS: Dict[str, object] = {
    "neighbor": None,
    "port": None,
    "local_as": None,
    "neighbor_as": None,
    "rr_client": False,
    "rr_cluster_id": None,
    "next_hop_keep": False,
    "source_address": None,
    "passive": False,
}


def _header(stmt: _Stmt) -> Tuple[List[str], Optional[_Block]]:
    words = [w for w in stmt if isinstance(w, str)]
    blocks = [w for w in stmt if isinstance(w, _Block)]
    if len(blocks) > 1 or (blocks and stmt[-1] is not blocks[0]):
        raise BirdConfigError(f"cannot read {' '.join(words)!r}")
    return words, (blocks[0] if blocks else None)


def _bgp_definitions(text: str) -> Iterator[Tuple[str, str, Optional[str], Dict[str, object]]]:
    """(kind 'protocol'|'template', name, parent template, own settings) for each BGP one."""
    auto = 0
    for stmt in _parse(text):
        if not stmt or stmt[0] not in ("protocol", "template") or len(stmt) < 2:
            continue
        if stmt[1] != "bgp":
            continue
        words, block = _header(stmt)
        if block is None:
            raise BirdConfigError(f"{' '.join(words)!r} has no body")
        rest = words[2:]
        parent = None
        if len(rest) >= 2 and rest[-2] == "from":
            parent = rest[-1]
            rest = rest[:-2]
        if len(rest) > 1:
            raise BirdConfigError(f"cannot read {' '.join(words)!r}")
        if rest:
            name = rest[0]
        elif words[0] == "protocol":
            auto += 1
            name = f"bgp{auto}"  # BIRD's automatic naming
        else:
            raise BirdConfigError("template without a name")
        yield words[0], name, parent, _bgp_settings(name, block.statements)


def sessions_from_bird_config(text: str) -> Dict[str, ExpectedSession]:
    """The BGP sessions of a BIRD config, keyed by `session_key(neighbor, port)`."""
    templates: Dict[str, Tuple[Optional[str], Dict[str, object]]] = {}
    protocols: List[Tuple[str, Optional[str], Dict[str, object]]] = []
    names = set()
    for kind, name, parent, settings in _bgp_definitions(text):
        if name in names or name in templates:
            raise BirdConfigError(f"duplicate protocol/template name {name!r}")
        if parent is not None and parent not in templates:
            # BIRD requires templates to be defined before use
            raise BirdConfigError(f"{name}: unknown template {parent!r}")
        if kind == "template":
            templates[name] = (parent, settings)
        else:
            names.add(name)
            protocols.append((name, parent, settings))

    def resolved(parent: Optional[str], own: Dict[str, object]) -> Dict[str, object]:
        chain = [own]
        seen = set()
        while parent is not None:
            if parent in seen:  # pragma: no cover - impossible with define-before-use
                raise BirdConfigError(f"template loop through {parent!r}")
            seen.add(parent)
            parent, settings = templates[parent]
            chain.append(settings)
        merged = dict(_DEFAULTS)
        for settings in reversed(chain):
            merged.update(settings)
        return merged

    sessions: Dict[str, ExpectedSession] = {}
    for name, parent, own in protocols:
        s = resolved(parent, own)
        if s["neighbor"] is None or s["neighbor_as"] is None:
            raise BirdConfigError(f"{name}: no neighbor address and AS")
        s.pop("local_port", None)
        session = ExpectedSession(name=name, **s)  # type: ignore[arg-type]
        if session.key in sessions:
            raise BirdConfigError(
                f"{name}: second session to {session.key} (also {sessions[session.key].name})"
            )
        sessions[session.key] = session
    return sessions


def globals_from_bird_config(text: str) -> BirdGlobals:
    router_id = listen_port = None
    for stmt in _parse(text):
        words = [w for w in stmt if isinstance(w, str)]
        if words[:2] == ["router", "id"] and len(words) == 3:
            router_id = words[2]
        elif words[:2] == ["listen", "bgp"]:
            if "port" in words[2:-1]:
                listen_port = _int(words[words.index("port") + 1], "listen bgp")
    return BirdGlobals(router_id=router_id, listen_port=listen_port)


# ---------------------------------------------------------------------------------------
# The fixture cases


@dataclass(frozen=True)
class ConformanceCase:
    name: str  # e.g. 'global', 'selectors/step2'
    directory: Path
    inputs: Tuple[Path, ...]  # input.yaml files to apply in order (step2 on top of step 1)

    def bird_text(self, family: int) -> str:
        return (self.directory / ("bird.cfg" if family == 4 else "bird6.cfg")).read_text()

    def sessions(self, family: int) -> Dict[str, ExpectedSession]:
        return sessions_from_bird_config(self.bird_text(family))

    def globals(self, family: int) -> BirdGlobals:
        return globals_from_bird_config(self.bird_text(family))


def conformance_steps(root: Path = CONFORMANCE_DIR) -> Dict[str, List[ConformanceCase]]:
    """Each case's steps in order, by the case's name (its first step's folder): `selectors`
    -> [selectors, selectors/step2]. Step N is step N-1's data with its own input.yaml applied."""
    steps: Dict[str, List[ConformanceCase]] = {}
    for case in conformance_cases(root):
        steps.setdefault(case.inputs[0].parent.relative_to(root).as_posix(), []).append(case)
    for chain in steps.values():
        chain.sort(key=lambda case: len(case.inputs))
        if [len(case.inputs) for case in chain] != list(range(1, len(chain) + 1)):
            raise ValueError(f"steps of {chain[0].name} do not follow each other: {[c.name for c in chain]}")
    return steps


def conformance_cases(root: Path = CONFORMANCE_DIR) -> List[ConformanceCase]:
    """Every folder holding a bird.cfg, with the chain of input.yaml files leading to it."""
    cases = []
    for cfg in sorted(root.rglob("bird.cfg")):
        directory = cfg.parent
        inputs: List[Path] = []
        d = directory
        while True:
            if (d / "input.yaml").exists():
                inputs.insert(0, d / "input.yaml")
            if d == root or root not in d.parents:
                break
            d = d.parent
        cases.append(
            ConformanceCase(
                name=directory.relative_to(root).as_posix(),
                directory=directory,
                inputs=tuple(inputs),
            )
        )
    return cases
