"""Calico label selectors (rr_service.v3.selector): table-driven."""

import pytest
from hypothesis import given, settings, strategies as st

from rr_service.calico.v3.selector import (
    MAX_DEPTH,
    MAX_LABEL_CHARS,
    MAX_SELECTOR_CHARS,
    MAX_TERMS,
    Selector,
    SelectorError,
    parse_selector,
)

RR = {"route-reflector": "true", "kubernetes.io/hostname": "rr-1", "zone": "eu-west-1a"}
NODE = {"kubernetes.io/hostname": "node-1", "zone": "eu-west-1b", "tier": "web"}
BARE = {}
QUOTY = {"msg": "it's \"here\"", "sp": "a b  c", "empty": ""}

# (selector, labels, expected)
MATCH_CASES = [
    # all() / global() / empty
    ("all()", BARE, True),
    ("all()", RR, True),
    ("global()", BARE, True),
    ("global()", NODE, True),
    ("", BARE, True),
    ("", NODE, True),
    ("   \t ", NODE, True),
    ("!all()", NODE, False),
    # has()
    ("has(route-reflector)", RR, True),
    ("has(route-reflector)", NODE, False),
    ("has(route-reflector)", BARE, False),
    ("!has(route-reflector)", NODE, True),
    ("!has(route-reflector)", RR, False),
    ("has(kubernetes.io/hostname)", NODE, True),
    ("has(empty)", QUOTY, True),
    ("has(projectcalico.org/ns)", {"projectcalico.org/ns": "x"}, True),
    # ==
    ("zone == 'eu-west-1a'", RR, True),
    ("zone == 'eu-west-1a'", NODE, False),
    ("zone == 'eu-west-1a'", BARE, False),
    ("kubernetes.io/hostname == 'rr-1'", RR, True),
    ("projectcalico.org/ns == 'default'", {"projectcalico.org/ns": "default"}, True),
    ("empty == ''", QUOTY, True),
    ("empty == ''", BARE, False),
    ("zone == 'EU-WEST-1A'", RR, False),  # case-sensitive
    # != (true when missing)
    ("zone != 'eu-west-1a'", RR, False),
    ("zone != 'eu-west-1a'", NODE, True),
    ("zone != 'eu-west-1a'", BARE, True),
    # in / not in (not in: true when missing)
    ("zone in {'eu-west-1a', 'eu-west-1b'}", RR, True),
    ("zone in {'eu-west-1a', 'eu-west-1b'}", NODE, True),
    ("zone in {'eu-west-1c'}", NODE, False),
    ("zone in {'eu-west-1a'}", BARE, False),
    ("zone in {}", NODE, False),
    ("zone not in {'eu-west-1a', 'us-east-1a'}", RR, False),
    ("zone not in {'eu-west-1a', 'us-east-1a'}", NODE, True),
    ("zone not in {'eu-west-1a'}", BARE, True),
    ("zone not in {}", NODE, True),
    # contains / starts with / ends with (false when missing)
    ("zone contains 'west'", RR, True),
    ("zone contains 'east'", RR, False),
    ("zone contains 'west'", BARE, False),
    ("zone contains ''", NODE, True),
    ("zone starts with 'eu-'", NODE, True),
    ("zone starts with 'us-'", NODE, False),
    ("zone starts with 'eu-'", BARE, False),
    ("zone ends with '1b'", NODE, True),
    ("zone ends with '1b'", RR, False),
    ("zone ends with '1b'", BARE, False),
    # precedence: ! tightest, then &&, then ||
    ("a == 'x' || b == 'y' && !has(c)", {"a": "x", "c": "1"}, True),
    ("a == 'x' || b == 'y' && !has(c)", {"b": "y"}, True),
    ("a == 'x' || b == 'y' && !has(c)", {"b": "y", "c": "1"}, False),
    ("a == 'x' || b == 'y' && !has(c)", {}, False),
    ("(a == 'x' || b == 'y') && !has(c)", {"a": "x", "c": "1"}, False),
    ("(a == 'x' || b == 'y') && !has(c)", {"a": "x"}, True),
    ("!has(a) && has(b)", {"b": "1"}, True),
    ("!(has(a) && has(b))", {"a": "1", "b": "1"}, False),
    ("!(has(a) && has(b))", {"b": "1"}, True),
    ("!a == 'x'", {"a": "x"}, False),  # '!' applies to the whole comparison
    ("!a == 'x'", {}, True),
    ("!!has(a)", {"a": "1"}, True),
    ("has(a) || has(b) || has(c)", {"c": "1"}, True),
    ("has(a) && has(b) && has(c)", {"a": "1", "b": "1"}, False),
    ("((has(a)))", {"a": "1"}, True),
    ("has(a) && (has(b) || (has(c) && !has(d)))", {"a": "1", "c": "1"}, True),
    ("has(a) && (has(b) || (has(c) && !has(d)))", {"a": "1", "c": "1", "d": "1"}, False),
    # quoting: both kinds, the other kind inside, spaces
    ('zone == "eu-west-1a"', RR, True),
    ("zone == 'eu-west-1a'", RR, True),
    ('msg starts with "it\'s "', QUOTY, True),  # no escapes: a value holds one quote kind
    ("two == 'say \"hi\"'", {"two": 'say "hi"'}, True),
    ('two == "it\'s"', {"two": "it's"}, True),
    ('msg contains "it\'s"', QUOTY, True),
    ("msg contains '\"here\"'", QUOTY, True),
    ("sp == 'a b  c'", QUOTY, True),
    ("sp == 'a b c'", QUOTY, False),
    ("sp in {\"x\", 'a b  c'}", QUOTY, True),
    ("msg ends with '\"'", QUOTY, True),
    ("zone == 'eu-west-1a && has(x)'", {"zone": "eu-west-1a && has(x)"}, True),
    # whitespace variations
    ("zone=='eu-west-1a'", RR, True),
    ("  zone   ==   'eu-west-1a'  ", RR, True),
    ("zone\t==\t'eu-west-1a'", RR, True),  # spaces and tabs only: see INVALID for line breaks
    ("has( zone )&&zone!='x'", RR, True),
    ("has(\tzone\t)", RR, True),
    ("all( )", RR, True),
    ("global(\t)", RR, True),
    ("zone in{'eu-west-1a','x'}", RR, True),
    ("zone   not    in   { 'x' , 'y' }", RR, True),
    ("zone not\tin {'x'}", RR, True),
    ("zone starts   with 'eu'", RR, True),
    ("msg == 'line\nbreak'", {"msg": "line\nbreak"}, True),  # inside a string it is a character
    # Calico's tokenizer: `not in`, `starts with`, `ends with` also as one word
    ("zone notin {'x'}", RR, True),
    ("zone notin {'eu-west-1a'}", RR, False),
    ("zone notin{'x'}", BARE, True),
    ("zone startswith 'eu-'", NODE, True),
    ("zone startswith'us-'", NODE, False),
    ("zone endswith '1b'", NODE, True),
    ("zone endswith '1a'", NODE, False),
    # a set may end with a comma
    ("zone in {'eu-west-1a',}", RR, True),
    ("zone not in {'eu-west-1a' , }", RR, False),
    ("!has(zone)||zone=='eu-west-1b'", NODE, True),
    ("(has(zone))&&(!has(tier))", RR, True),
    # keys that look like keywords are keys when used as keys
    ("in == 'x'", {"in": "x"}, True),
    ("not == 'x'", {"not": "x"}, True),
    ("has == 'x'", {"has": "x"}, True),
    ("all != 'x'", {}, True),
]


@pytest.mark.parametrize("text,labels,expected", MATCH_CASES)
def test_matches(text, labels, expected):
    assert parse_selector(text).matches(labels) is expected


CALICO_FIXTURE_SELECTORS = [
    # the selectors used by the conformance fixtures, with their node labels
    ("has(routeReflector)", {"routeReflector": "true"}, True),
    ("has(routeReflector)", {}, False),
    ("!has(routeReflector)", {}, True),
    ("group=='one'", {"group": "one"}, True),
    ("group=='two'", {"group": "one"}, False),
]


@pytest.mark.parametrize("text,labels,expected", CALICO_FIXTURE_SELECTORS)
def test_fixture_selectors(text, labels, expected):
    assert parse_selector(text).matches(labels) is expected


TOO_DEEP_PARENS = "(" * (MAX_DEPTH + 1) + "all()" + ")" * (MAX_DEPTH + 1)
TOO_DEEP_BANGS = "!" * (MAX_DEPTH + 1) + "all()"
TOO_DEEP_MIXED = "!(" * (MAX_DEPTH // 2 + 1) + "all()" + ")" * (MAX_DEPTH // 2 + 1)

# (selector, fragment the message must contain)
INVALID = [
    # unterminated strings
    ("a == 'x", "column 6: unterminated string"),
    ('a == "x', "column 6: unterminated string"),
    ("a in {'x', 'y}", "column 12: unterminated string"),
    ("msg == 'it''s'", "column 12: expected '&&', '||' or end of selector, found string"),
    ("msg == 'it's \"here\"'", "column 20: unterminated string"),
    # unknown functions / misuse of functions
    ("foo()", "column 1: unknown function 'foo'"),
    ("has(a) && any()", "column 11: unknown function 'any'"),
    ("All()", "unknown function 'All'"),
    ("has()", "column 5: expected a label name"),
    ("has('a')", "column 5: expected a label name"),
    ("has(a", "column 6: expected ')'"),
    ("has(a b)", "column 7: expected ')'"),
    ("all(x)", "column 5: expected ')'"),
    # Calico reads has( / all( / global( as one token: with a space it is a label and a '('
    ("has (zone)", "column 5: no space allowed between 'has' and '('"),
    ("all ()", "column 5: no space allowed between 'all' and '('"),
    ("has(a) || global\t()", "column 18: no space allowed between 'global' and '('"),
    # trailing / leading / doubled operators
    ("has(a) &&", "column 10: expected a label"),
    ("has(a) ||", "column 10: expected a label"),
    ("has(a) && || has(b)", "column 11: expected a label"),
    ("&& has(a)", "column 1: expected a label"),
    ("!", "column 2: expected a label"),
    ("has(a) !", "column 8: expected '&&', '||' or end"),
    ("has(a) & has(b)", "column 8: expected '&&'"),
    ("has(a) | has(b)", "column 8: expected '||'"),
    ("has(a) has(b)", "column 8: expected '&&', '||' or end"),
    # comparisons without a value or operator
    ("a ==", "column 5: expected a quoted value after '=='"),
    ("a == && has(b)", "column 6: expected a quoted value"),
    ("a != ", "column 6: expected a quoted value after '!='"),
    ("a == x", "column 6: expected a quoted value"),
    ("a = 'x'", "column 3: unexpected character '='"),
    ("a", "column 2: expected an operator after label 'a'"),
    ("a 'x'", "column 3: expected an operator after label 'a'"),
    ("== 'x'", "column 1: expected a label"),
    ("a contains", "column 11: expected a quoted value"),
    ("a starts 'x'", "column 10: expected 'with'"),
    ("a ends", "column 7: expected 'with'"),
    ("a not {'x'}", "column 7: expected 'in'"),
    ("a in 'x'", "column 6: expected '{'"),
    ("a in {'x' 'y'}", "column 11: expected ',' or '}'"),
    ("a in {,}", "column 7: expected a quoted value in the set"),
    ("a in {'x',,}", "column 11: expected a quoted value in the set"),
    ("a in {'x'", "column 10: expected ',' or '}'"),
    ("a in {x}", "column 7: expected a quoted value in the set"),
    # parentheses
    ("(has(a)", "column 8: expected ')' to close '(' at column 1"),
    ("has(a))", "column 7: expected '&&', '||' or end"),
    ("()", "column 2: expected a label"),
    (")(", "column 1: expected a label"),
    ("((has(a)) && (has(b)", "column 21: expected ')' to close '(' at column 14"),
    # characters outside the language
    ("a == 'x'; rm -rf /", "column 9: unexpected character ';'"),
    ("__import__('os')", "unknown function '__import__'"),
    ("a == 'x' $", "column 10: unexpected character '$'"),
    # only spaces and tabs separate tokens, as in Calico (calicoctl refuses the others too)
    ("zone ==\n'eu-west-1a'", "column 8: '\\n' in selector (Calico allows only spaces and tabs"),
    ("   \t\n ", "column 5: '\\n' in selector"),
    ("has(a)\r\n", "column 7: '\\r' in selector"),
    ("has(a)\u00a0", "column 7: '\\xa0' in selector"),
    ("a\x0b== 'x'", "column 2: '\\x0b' in selector"),
    # limits
    ("has(a) || " * 410 + "has(b)", "selector too long"),
    ("a == '" + "x" * MAX_SELECTOR_CHARS + "'", "selector too long"),
    ("k" * (MAX_LABEL_CHARS + 1) + " == 'v'", "column 1: label longer than 512 characters"),
    ("has(" + "k" * (MAX_LABEL_CHARS + 1) + ")", "column 5: label longer than 512 characters"),
    (TOO_DEEP_PARENS, "nested too deeply"),
    (TOO_DEEP_BANGS, "nested too deeply"),
    (TOO_DEEP_MIXED, "nested too deeply"),
]


@pytest.mark.parametrize("text,fragment", INVALID, ids=[t[:40] for t, _ in INVALID])
def test_invalid(text, fragment):
    with pytest.raises(SelectorError) as excinfo:
        parse_selector(text)
    assert fragment in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_not_a_string():
    with pytest.raises(SelectorError):
        parse_selector(None)  # type: ignore[arg-type]


def test_limits_are_inclusive():
    deepest = "(" * MAX_DEPTH + "has(a)" + ")" * MAX_DEPTH
    assert parse_selector(deepest).matches({"a": "1"})
    assert parse_selector("!" * MAX_DEPTH + "has(a)").matches({"a": "1"}) is (MAX_DEPTH % 2 == 0)
    assert parse_selector("k" * MAX_LABEL_CHARS + " == 'v'").matches({"k" * MAX_LABEL_CHARS: "v"})
    longest = "a == '" + "x" * (MAX_SELECTOR_CHARS - 7) + "'"
    assert len(longest) == MAX_SELECTOR_CHARS
    assert parse_selector(longest).matches({"a": "x" * (MAX_SELECTOR_CHARS - 7)})


def test_long_flat_chains_do_not_recurse():
    # the most terms there may be: a recursive (binary-tree) parser or evaluator would be deep here.
    sel = parse_selector(" && ".join(f"!has(k{i})" for i in range(MAX_TERMS)))
    assert sel.matches({})
    assert not sel.matches({f"k{MAX_TERMS - 1}": ""})
    sel = parse_selector(" || ".join(f"k{i} == 'v'" for i in range(MAX_TERMS)))
    assert sel.matches({f"k{MAX_TERMS - 1}": "v"})
    assert not sel.matches({f"k{MAX_TERMS - 1}": "w"})


def test_more_terms_than_the_limit_are_refused():
    with pytest.raises(SelectorError, match=f"selector has {MAX_TERMS + 1} terms \\(at most {MAX_TERMS}\\)"):
        parse_selector(" || ".join(f"has(k{i})" for i in range(MAX_TERMS + 1)))


def _reference(node, labels) -> bool:
    """The selector's meaning, term by term, written apart from the compiled matcher."""
    kind = node[0]
    if kind in ("all", "global"):
        return True
    if kind == "has":
        return node[1] in labels
    if kind == "not":
        return not _reference(node[1], labels)
    if kind == "and":
        return all(_reference(t, labels) for t in node[1])
    if kind == "or":
        return any(_reference(t, labels) for t in node[1])
    value = labels.get(node[1])
    if kind in ("ne", "notin"):
        return value is None or (value != node[2] if kind == "ne" else value not in node[2])
    if value is None:
        return False
    if kind == "eq":
        return value == node[2]
    if kind == "in":
        return value in node[2]
    if kind == "contains":
        return node[2] in value
    return value.startswith(node[2]) if kind == "starts" else value.endswith(node[2])


_KEYS = ["a", "b", "c", "zone"]
_VALUES = ["", "x", "y", "xy"]


@st.composite
def _selector_texts(draw, depth=0):
    if depth < 3 and draw(st.booleans()):
        joiner = draw(st.sampled_from([" && ", " || "]))
        parts = draw(st.lists(_selector_texts(depth + 1), min_size=2, max_size=5))
        text = joiner.join(f"({p})" for p in parts)
        return f"!({text})" if draw(st.integers(0, 4)) == 0 else text
    key, value = draw(st.sampled_from(_KEYS)), draw(st.sampled_from(_VALUES))
    values = ", ".join(f"'{v}'" for v in draw(st.lists(st.sampled_from(_VALUES), max_size=3)))
    return draw(st.sampled_from([
        f"has({key})", f"!has({key})", f"{key} == '{value}'", f"{key} != '{value}'", f"{key} in {{{values}}}",
        f"{key} not in {{{values}}}", f"{key} contains '{value}'", f"{key} starts with '{value}'",
        f"{key} ends with '{value}'", "all()"]))


@settings(max_examples=600, deadline=None)
@given(text=_selector_texts(), labels=st.dictionaries(st.sampled_from(_KEYS), st.sampled_from(_VALUES)))
def test_the_compiled_matcher_means_what_the_terms_say(text, labels):
    try:
        selector = parse_selector(text)
    except SelectorError:
        return  # more than MAX_TERMS terms
    assert selector.matches(labels) == _reference(selector._root, labels)


def test_source_immutable_hashable_equal():
    a = parse_selector("zone=='eu'  &&  has(x)")
    b = parse_selector('zone == "eu" && has( x )')
    c = parse_selector("(zone == 'eu') && (has(x))")
    d = parse_selector("zone == 'eu' || has(x)")
    assert a.source == "zone=='eu'  &&  has(x)"
    assert b.source == 'zone == "eu" && has( x )'
    assert a == b == c
    assert hash(a) == hash(b) == hash(c)
    assert a != d
    assert len({a, b, c, d}) == 2
    assert isinstance(a, Selector)
    with pytest.raises(AttributeError):
        a.source = "all()"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        a._root = ("all",)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        a.extra = 1  # type: ignore[attr-defined]


def test_flattening_of_parenthesised_chains():
    assert parse_selector("(has(a) && has(b)) && has(c)") == parse_selector(
        "has(a) && (has(b) && has(c))"
    )
    assert parse_selector("(has(a) || has(b)) && has(c)") != parse_selector(
        "has(a) || has(b) && has(c)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "global()",
        "a == 'x' || b == 'y' && !has(c)",
        "(a == 'x' || b == 'y') && !has(c)",
        "!(a == 'x' || b == 'y')",
        "!a starts with 'q'",
        "k in {'b', \"a\", 'it\"s'} && k not in {}",
        "msg contains \"it's\" && x ends with 'z' && !!has(y)",
    ],
)
def test_canonical_string_round_trips(text):
    sel = parse_selector(text)
    again = parse_selector(str(sel))
    assert again == sel
    assert str(again) == str(sel)


def test_str_and_repr():
    sel = parse_selector("b == 'y' && !has(c) || a in {'z','x'}")
    assert str(sel) == 'b == "y" && !has(c) || a in {"x", "z"}'
    assert repr(sel) == "Selector(\"b == 'y' && !has(c) || a in {'z','x'}\")"
    assert str(parse_selector("")) == "all()"
