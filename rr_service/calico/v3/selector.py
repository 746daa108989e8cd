"""Calico's label selector language, as used by BGPPeer `nodeSelector` / `peerSelector`.

Grammar (`!` binds tightest, then `&&`, then `||`)::

    selector := <empty> | or
    or       := and ( '||' and )*
    and      := unary ( '&&' unary )*
    unary    := '!' unary | primary
    primary  := '(' or ')'
              | 'all(' ')' | 'global(' ')' | 'has(' KEY ')'
              | KEY '==' STR | KEY '!=' STR
              | KEY 'in' SET | KEY ('not' 'in' | 'notin') SET
              | KEY 'contains' STR | KEY ('starts' 'with' | 'startswith') STR
              | KEY ('ends' 'with' | 'endswith') STR
    SET      := '{' [ STR ( ',' STR )* [ ',' ] ] '}'
    STR      := '...' | "..."        (no escapes: a value may hold the other quote kind)
    KEY      := [A-Za-z0-9_./-]{1,512}  (e.g. route-reflector, kubernetes.io/hostname)

The tokens are Calico's (libcalico-go lib/selector/tokenizer): only spaces and tabs separate
them, so a line break is an error, as it is for calicoctl and calico/node; `has(`, `all(` and
`global(` are one token each (`has (x)` is the label `has` followed by a parenthesis, an error);
`not in`, `starts with` and `ends with` may be written as one word; a set may end with a comma.

Semantics follow Calico: `!=` and `not in` are true when the label is missing; `==`, `in`,
`contains`, `starts with` and `ends with` are false when it is missing. `global()` matches
every object that is not namespaced; the reflector only selects Nodes, which never are, so
here it matches everything, like `all()`. An empty selector (or one of only spaces and tabs) is `all()`.

Hostile input is bounded: at most MAX_SELECTOR_CHARS characters, MAX_TERMS terms and
MAX_DEPTH levels of parentheses and negations; the parser recurses only per such level, and
chains of `&&` / `||` are flat. A selector is compiled once into nested functions (never into
code text): the `has`, `==` and `in` terms of one `||` or `&&` become one set operation, so
matching a Node costs about as much as its handful of labels, not as many terms as a writer
cares to type. (50 BGPPeers with a 4 KB peerSelector over 3,000 Nodes took 4.3 s term by
term.)
"""

from __future__ import annotations

import re
from typing import Callable, FrozenSet, List, Mapping, NamedTuple, Optional

__all__ = ["MAX_DEPTH", "MAX_LABEL_CHARS", "MAX_SELECTOR_CHARS", "MAX_TERMS", "Selector", "SelectorError",
           "parse_selector"]

MAX_SELECTOR_CHARS = 4096
MAX_DEPTH = 32  # nested '(' and '!' together
MAX_TERMS = 64  # Calico's own selectors have a few; each term of another kind costs a call per Node
MAX_LABEL_CHARS = 512  # Calico's tokenizer refuses longer label keys

_KEY_CHARS = r"A-Za-z0-9_./\-"
_TOKEN_RE = re.compile(
    r"""
      (?P<ws>[ \t]+)
    | (?P<op>&&|\|\||==|!=|!|\(|\)|\{|\}|,)
    | (?P<str>'[^']*'|"[^"]*")
    | (?P<word>[%s]+)
    """
    % _KEY_CHARS,
    re.VERBOSE,
)


class SelectorError(ValueError):
    """A selector that does not parse; the message says at which column and what was expected."""


class _Tok(NamedTuple):
    kind: str  # 'op', 'str', 'word', 'end'
    text: str  # operator text, word text, or the string's value (without quotes)
    col: int  # 1-based column of the token's first character


_FUNCTIONS = ("all", "global", "has")

# AST: nested tuples, hashable and immutable.
#   ('all',) ('global',) ('has', k) ('eq'|'ne'|'contains'|'starts'|'ends', k, v)
#   ('in'|'notin', k, frozenset) ('not', node) ('and', (nodes...)) ('or', (nodes...))
_Node = tuple


def _describe(tok: _Tok) -> str:
    if tok.kind == "end":
        return "end of selector"
    if tok.kind == "str":
        return "string " + _quote(tok.text)
    return repr(tok.text)


def _tokenize(text: str) -> List[_Tok]:
    tokens: List[_Tok] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            col = pos + 1
            if ch in "'\"":
                raise SelectorError(f"column {col}: unterminated string starting with {ch}")
            if ch in "&|":
                raise SelectorError(f"column {col}: expected {ch * 2!r}, found {ch!r}")
            if ch.isspace():
                raise SelectorError(
                    f"column {col}: {ch!r} in selector (Calico allows only spaces and tabs between tokens)"
                )
            raise SelectorError(f"column {col}: unexpected character {ch!r}")
        kind = m.lastgroup
        if kind == "str":
            tokens.append(_Tok("str", m.group()[1:-1], pos + 1))
        elif kind == "word" and len(m.group()) > MAX_LABEL_CHARS:
            raise SelectorError(f"column {pos + 1}: label longer than {MAX_LABEL_CHARS} characters")
        elif kind != "ws":
            tokens.append(_Tok(kind, m.group(), pos + 1))
        pos = m.end()
    tokens.append(_Tok("end", "", n + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    # -- helpers -------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def fail(self, expected: str, tok: Optional[_Tok] = None) -> SelectorError:
        tok = tok or self.peek()
        return SelectorError(f"column {tok.col}: expected {expected}, found {_describe(tok)}")

    def expect_op(self, op: str) -> _Tok:
        tok = self.peek()
        if tok.kind != "op" or tok.text != op:
            raise self.fail(repr(op))
        return self.next()

    def expect_word(self, word: str) -> _Tok:
        tok = self.peek()
        if tok.kind != "word" or tok.text != word:
            raise self.fail(repr(word))
        return self.next()

    def expect_str(self, after: str) -> str:
        tok = self.peek()
        if tok.kind != "str":
            raise self.fail(f"a quoted value after {after}")
        self.next()
        return tok.text

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SelectorError(
                f"column {tok.col}: selector nested too deeply (more than {MAX_DEPTH} levels)"
            )

    # -- grammar ---------------------------------------------------------------------------
    def parse(self) -> _Node:
        if self.peek().kind == "end":
            return ("all",)
        node = self.parse_or()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail("'&&', '||' or end of selector")
        return node

    def parse_or(self) -> _Node:
        terms = [self.parse_and()]
        while self.peek().kind == "op" and self.peek().text == "||":
            self.next()
            terms.append(self.parse_and())
        return _join("or", terms)

    def parse_and(self) -> _Node:
        terms = [self.parse_unary()]
        while self.peek().kind == "op" and self.peek().text == "&&":
            self.next()
            terms.append(self.parse_unary())
        return _join("and", terms)

    def parse_unary(self) -> _Node:
        # Negations are counted iteratively, so '!!!!...' cannot recurse.
        bangs: List[_Tok] = []
        while self.peek().kind == "op" and self.peek().text == "!":
            tok = self.next()
            self.enter(tok)
            bangs.append(tok)
        node = self.parse_primary()
        for _ in bangs:
            node = ("not", node)
        self.depth -= len(bangs)
        return node

    def parse_primary(self) -> _Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text == "(":
            self.next()
            self.enter(tok)
            node = self.parse_or()
            close = self.peek()
            if close.kind != "op" or close.text != ")":
                raise self.fail(f"')' to close '(' at column {tok.col}")
            self.next()
            self.depth -= 1
            return node
        if tok.kind != "word":
            raise self.fail("a label, a function (all(), global(), has()), '!' or '('")
        self.next()
        after = self.peek()
        if after.kind == "op" and after.text == "(":
            if after.col != tok.col + len(tok.text) and tok.text in _FUNCTIONS:
                raise SelectorError(
                    f"column {after.col}: no space allowed between {tok.text!r} and '(' "
                    f"(Calico reads {tok.text}( as one token)"
                )
            return self.parse_function(tok)
        return self.parse_comparison(tok)

    def parse_function(self, name: _Tok) -> _Node:
        if name.text not in _FUNCTIONS:
            raise SelectorError(
                f"column {name.col}: unknown function {name.text!r}"
                " (expected all(), global() or has(label))"
            )
        self.expect_op("(")
        if name.text == "has":
            key = self.peek()
            if key.kind != "word":
                raise self.fail("a label name inside has()")
            self.next()
            self.expect_op(")")
            return ("has", key.text)
        self.expect_op(")")
        return (name.text,)

    def parse_comparison(self, key: _Tok) -> _Node:
        k = key.text
        op = self.peek()
        if op.kind == "op" and op.text in ("==", "!="):
            self.next()
            return ("eq" if op.text == "==" else "ne", k, self.expect_str(repr(op.text)))
        if op.kind == "word":
            if op.text == "in":
                self.next()
                return ("in", k, self.parse_set())
            if op.text in ("not", "notin"):
                self.next()
                if op.text == "not":
                    self.expect_word("in")
                return ("notin", k, self.parse_set())
            if op.text == "contains":
                self.next()
                return ("contains", k, self.expect_str("'contains'"))
            if op.text in ("starts", "ends"):
                self.next()
                self.expect_word("with")
                return (op.text, k, self.expect_str(f"'{op.text} with'"))
            if op.text in ("startswith", "endswith"):
                self.next()
                which = op.text[: -len("with")]
                return (which, k, self.expect_str(f"'{which} with'"))
        raise self.fail(
            f"an operator after label {k!r} ('==', '!=', 'in', 'not in', 'contains',"
            " 'starts with' or 'ends with')"
        )

    def parse_set(self) -> FrozenSet[str]:
        self.expect_op("{")
        values = []
        tok = self.peek()
        if tok.kind == "op" and tok.text == "}":
            self.next()
            return frozenset()
        while True:
            tok = self.peek()
            if tok.kind != "str":
                raise self.fail("a quoted value in the set")
            self.next()
            values.append(tok.text)
            tok = self.peek()
            if tok.kind == "op" and tok.text == ",":
                self.next()
                after = self.peek()
                if after.kind == "op" and after.text == "}":  # Calico takes a trailing comma
                    self.next()
                    return frozenset(values)
                continue
            if tok.kind == "op" and tok.text == "}":
                self.next()
                return frozenset(values)
            raise self.fail("',' or '}' in the set")


def _join(kind: str, terms: List[_Node]) -> _Node:
    """Build a flat n-ary and/or node; '(a && b) && c' becomes the same tree as 'a && b && c'."""
    if len(terms) == 1:
        return terms[0]
    flat: List[_Node] = []
    for t in terms:
        flat.extend(t[1] if t[0] == kind else (t,))
    return (kind, tuple(flat))


def _quote(value: str) -> str:
    return "'" + value + "'" if '"' in value else '"' + value + '"'


def _render(node: _Node) -> str:
    kind = node[0]
    if kind in ("all", "global"):
        return kind + "()"
    if kind == "has":
        return f"has({node[1]})"
    if kind in ("eq", "ne", "contains", "starts", "ends"):
        op = {"eq": "==", "ne": "!=", "contains": "contains", "starts": "starts with",
              "ends": "ends with"}[kind]
        return f"{node[1]} {op} {_quote(node[2])}"
    if kind in ("in", "notin"):
        values = ", ".join(_quote(v) for v in sorted(node[2]))
        return f"{node[1]} {'in' if kind == 'in' else 'not in'} {{{values}}}"
    if kind == "not":
        inner = node[1]
        text = _render(inner)
        return "!" + (text if inner[0] in ("all", "global", "has", "not") else f"({text})")
    joiner = " && " if kind == "and" else " || "
    return joiner.join(f"({_render(t)})" if t[0] == "or" else _render(t) for t in node[1])


_Match = Callable[[Mapping[str, str]], bool]


def _always(labels: Mapping[str, str]) -> bool:
    return True


def _terms(node: _Node) -> int:
    if node[0] in ("and", "or"):
        return sum(_terms(t) for t in node[1])
    if node[0] == "not":
        return _terms(node[1])
    return 1


def _compile(node: _Node) -> _Match:
    """A function of a Node's labels with the meaning of `node` (see the module docstring:
    `!=` and `not in` hold for a missing label; `==`, `in` and the string tests do not)."""
    kind = node[0]
    if kind in ("all", "global"):
        return _always
    if kind == "has":
        key = node[1]
        return lambda labels: key in labels
    if kind == "not":
        inner = _compile(node[1])
        return lambda labels: not inner(labels)
    if kind in ("and", "or"):
        return _compile_chain(kind, node[1])
    key, operand = node[1], node[2]
    if kind == "eq":
        return lambda labels: labels.get(key) == operand
    if kind == "ne":
        return lambda labels: labels.get(key) != operand
    if kind == "in":
        return lambda labels: labels.get(key) in operand
    if kind == "notin":
        return lambda labels: labels.get(key) not in operand
    test = {"contains": str.__contains__, "starts": str.startswith, "ends": str.endswith}[kind]

    def string_test(labels: Mapping[str, str]) -> bool:
        value = labels.get(key)
        return value is not None and test(value, operand)
    return string_test


def _compile_chain(kind: str, terms: tuple) -> _Match:
    """`a || b || ...` or `a && b && ...`, with its `has`, `==` and `in` terms folded into
    set operations over the labels."""
    keys = frozenset(t[1] for t in terms if t[0] == "has")
    wanted: dict = {}  # label -> the values that satisfy an `==` / `in` term on it
    rest = []
    for term in terms:
        if term[0] == "has":
            continue
        if kind == "or" and term[0] in ("eq", "in"):
            values = frozenset((term[2],)) if term[0] == "eq" else term[2]
            wanted[term[1]] = wanted.get(term[1], frozenset()) | values
        else:
            rest.append(_compile(term))
    parts: list = []
    if kind == "or":
        if keys:
            parts.append(lambda labels: not keys.isdisjoint(labels))
        if wanted:
            pairs = tuple(wanted.items())

            def any_value(labels: Mapping[str, str]) -> bool:
                if len(pairs) <= len(labels):
                    return any(labels.get(key) in values for key, values in pairs)
                return any(value in wanted.get(key, ()) for key, value in labels.items())
            parts.append(any_value)
        parts += rest
        if len(parts) == 1:
            return parts[0]
        return lambda labels: any(part(labels) for part in parts)
    if keys:
        parts.append(lambda labels: keys <= labels.keys())
    parts += rest
    if len(parts) == 1:
        return parts[0]
    return lambda labels: all(part(labels) for part in parts)


class Selector:
    """A parsed selector: immutable and hashable.

    `.source` is the original text. Two selectors are equal when they mean the same parse
    tree, whatever their spacing or quoting; `str()` gives a canonical spelling.
    """

    __slots__ = ("_source", "_root", "_match")

    def __init__(self, source: str, root: _Node) -> None:
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_match", _compile(root))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Selector is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Selector is immutable")

    @property
    def source(self) -> str:
        return self._source

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self._match(labels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selector):
            return NotImplemented
        return self._root == other._root

    def __hash__(self) -> int:
        return hash(("Selector", self._root))

    def __str__(self) -> str:
        return _render(self._root)

    def __repr__(self) -> str:
        return f"Selector({self._source!r})"


def parse_selector(text: str) -> Selector:
    """Parse Calico selector `text`; raise SelectorError (with the column) if it is invalid."""
    if not isinstance(text, str):
        raise SelectorError(f"selector must be a string, not {type(text).__name__}")
    if len(text) > MAX_SELECTOR_CHARS:
        raise SelectorError(
            f"selector too long: {len(text)} characters (at most {MAX_SELECTOR_CHARS})"
        )
    root = _Parser(text).parse()
    terms = _terms(root)
    if terms > MAX_TERMS:
        raise SelectorError(f"selector has {terms} terms (at most {MAX_TERMS})")
    return Selector(text, root)

