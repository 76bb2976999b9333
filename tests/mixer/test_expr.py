"""CEXL, case by case, as Istio 1.3's default runtime evaluates it (facts: mixer-facts.md 1)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.api.istio.policy.v1beta1 import ValueType as T
from istio_sdk.mixer import AttributeBag
from istio_sdk.mixer.expr import (
    MAX_DEPTH,
    EvaluationError,
    ExpressionError,
    ParseError,
    TypeCheckError,
    compile,
)
from istio_sdk.timeutil import Duration, Timestamp

UTC = datetime.UTC
MANIFEST = {
    "s": T.STRING,
    "s2": T.STRING,
    "s3": T.STRING,
    "i": T.INT64,
    "i2": T.INT64,
    "d": T.DOUBLE,
    "b": T.BOOL,
    "b2": T.BOOL,
    "t": T.TIMESTAMP,
    "t2": T.TIMESTAMP,
    "dur": T.DURATION,
    "ip": T.IP_ADDRESS,
    "ip2": T.IP_ADDRESS,
    "m": T.STRING_MAP,
    "m2": T.STRING_MAP,
    "dns": T.DNS_NAME,
    "mail": T.EMAIL_ADDRESS,
    "u": T.URI,
    "request.size": T.INT64,
    "a.b.c": T.STRING,
    "nil": T.STRING,
}
BAG = AttributeBag(
    {
        "s": "hello",
        "i": 7,
        "d": 2.5,
        "b": True,
        "t": datetime.datetime(2020, 5, 1, 12, 0, tzinfo=UTC),
        "dur": datetime.timedelta(milliseconds=20),
        "ip": ipaddress.ip_address("10.0.0.1"),
        "m": {"k": "v", "empty": ""},
        "a.b.c": "flat",
        "request.size": 0,
    }
)


def run(text: str, bag: Any = BAG) -> Any:
    return compile(text, MANIFEST).evaluate(bag)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the namespace is flat: a.b.c is one attribute; "nil" is just a name
        ('a.b.c == "flat"', True),
        # true/false in any case are constants
        ("TRUE && False", False),
        ("tRuE", True),
        # literals
        ("010", 10),  # base 10 always
        ("1.5", 1.5),
        (".5", 0.5),
        ("'a'", "a"),
        ("`raw\\n`", "raw\\n"),
        ('"\\u00e9"', "é"),
        ('"10s"', datetime.timedelta(seconds=10)),
        ('"1h30m"', datetime.timedelta(minutes=90)),
        ('"-1s"', datetime.timedelta(seconds=-1)),
        ('"0"', datetime.timedelta(0)),
        ('"1ns"', Duration(nanoseconds=1)),
        ('"1.2.3.4"', "1.2.3.4"),  # IPs and timestamps stay strings
        # | is the first *present* operand: "" and 0 win
        ('s2 | s3 | "x"', "x"),
        ('s | "x"', "hello"),
        ("request.size | 200", 0),
        ('m["empty"] | "x"', ""),
        ('m["missing"] | "x"', "x"),  # a missing key counts as absent on the left of |
        ('m["missing"]', ""),  # but plain indexing gives ""
        ('m2["k"] | "x"', "x"),
        ('m[s2] | "x"', "x"),  # an absent key expression: absent
        ('(m2 | m)["k"]', "v"),
        ('dur | "0ms"', datetime.timedelta(milliseconds=20)),
        ('s2 | "x" == "x"', True),  # (s2 | "x") == "x"
        ('s2 | "x" + "s"', "xs"),  # (s2 | "x") + "s"
        ('conditional(b, s, "no") | "x"', "hello"),
        ('toLower("AB") | s2', "ab"),  # a call counts as present
        # operators and size() on the left of | are evaluated, then the right operand wins
        ("(i == 7) | false", False),
        ("size(s) | 3", 3),
        # short-circuits: the right side is never evaluated when not needed
        ('b || s2 == "x"', True),
        ('false && s2 == "x"', False),
        ("conditional(b, s, s2)", "hello"),
        ('conditional(false, s2, "no")', "no"),
        # comparisons
        ('"abc" < "abd"', True),
        ('"é" > "z"', True),  # byte-wise on UTF-8
        ("d >= 2.5 && i < 8 && i <= 7 && i > 6", True),
        ('t < timestamp("2020-05-01T12:00:01Z")', True),
        ('t == timestamp("2020-05-01T14:00:00+02:00")', True),  # instants, not zones
        ('"b" > "a"', True),
        # arithmetic: + on strings, ints (int64 wrap-around) and doubles
        ('s + "!"', "hello!"),
        ("i + 9223372036854775807", -9223372036854775802),
        ("d + 0.5", 3.0),
        # functions and methods
        ('size("héllo")', 6),  # UTF-8 bytes
        ("size(s)", 5),
        ('match("svc.ns1.cluster", "*.ns1.cluster")', True),
        ('match("abc", "ab*")', True),
        ('match("*x-suffix", "*x*")', True),  # trailing * first: prefix "*x"
        ('match("abc", "abc")', True),
        ('"^h.l".matches(s)', True),  # the target is the pattern
        ('"ll".matches(s)', True),  # unanchored
        ('s.startsWith("he") && s.endsWith("lo")', True),
        ('"hello".startsWith(s)', True),
        ('toLower("MiXeR")', "mixer"),
        ('conditionalString(b, "y", "n")', "y"),
        ('emptyStringMap()["k"]', ""),
        ('ip("10.0.0.1") == ip', True),
        ('ip("::ffff:10.0.0.1") == ip', True),  # IPv4 equals its IPv4-mapped form
        ('ip("010.000.000.001") == ip', True),  # Go 1.12 accepts leading zeros
        ('ip != ip("10.0.0.2")', True),
        ('dnsName("Example.COM.") == dnsName("example.com")', True),
        ('dnsName("xn--bcher-kva.ch")', "bücher.ch"),
        ('dnsName("a_b.C.")', "a_b.C."),
        ('dnsName("Bücher.ch") == dnsName("xn--bcher-kva.CH")', True),
        ('email("Ann@Example.com") == email("Ann@example.COM")', True),
        ('email("ann@example.com") == email("Ann@example.com")', False),  # local part exact
        ('email("<ann@example.com>")', "<ann@example.com>"),
        ('uri("HTTP://Example.com:80/a") == uri("http://example.com:80/a")', True),
        ('uri("http://example.com:80/a") == uri("http://example.com:81/a")', False),
        ('uri("mailto:x@y")', "mailto:x@y"),
        (
            'timestamp("2020-01-02T03:04:05.123456789Z")',
            Timestamp.from_datetime(
                datetime.datetime(2020, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), 789
            ),
        ),
        # comments and a trailing newline are Go syntax
        ("i /* seven */ == 7\n", True),
        # extra arguments are accepted unchecked
        ('toLower("A", 1, 2)', "a"),
    ],
)
def test_evaluates_as_mixer(text: str, expected: object) -> None:
    result = run(text)
    assert result == expected
    assert type(result) is type(expected) or isinstance(expected, datetime.datetime | str)


@pytest.mark.parametrize(
    ("text", "result_type"),
    [
        ("s", T.STRING),
        ('"5s"', T.DURATION),
        ('"abc"', T.STRING),
        ("1", T.INT64),
        ("1.0", T.DOUBLE),
        ("s | s2", T.STRING),
        ('m["k"]', T.STRING),
        ('ip("1.2.3.4")', T.IP_ADDRESS),
        ('dnsName("a.b")', T.DNS_NAME),
        ('email("a@b.c")', T.EMAIL_ADDRESS),
        ('uri("http://a")', T.URI),
        ('timestamp("2020-01-01T00:00:00Z")', T.TIMESTAMP),
        ("emptyStringMap()", T.STRING_MAP),
        ("conditional(b, dur, dur)", T.DURATION),
        ("size(s)", T.INT64),
        ("i == 1", T.BOOL),
    ],
)
def test_result_types(text: str, result_type: T) -> None:
    assert compile(text, MANIFEST).result_type == result_type


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nosuch", "unknown attribute nosuch"),
        (
            'request.size == "200"',
            'EQ($request.size, "200") arg 2 ("200") typeError got STRING, expected INT64',
        ),
        ("true == i", "EQ(true, $i) arg 2 ($i) typeError got INT64, expected BOOL"),
        ("!b", "unknown function: NOT"),
        ("-1", "unknown function: SUB"),
        ("i - 1", "unknown function: SUB"),
        ("i * 2", "unknown function: MUL"),
        ("i / 2", "unknown function: QUO"),
        ("i % 2", "unknown function: REM"),
        ("i & 2", "unknown function: AND"),
        ("i ^ 2", "unknown function: XOR"),
        ("i << 2", "unknown function: "),
        ("+i", "ADD($i) arity mismatch. Got 1 arg(s), expected 2 arg(s)"),
        ("ipEqual(ip, ip)", "unknown function: ipEqual"),
        ("ip_equal(ip, ip)", "unknown function: ip_equal"),
        ("timestamp_lt(t, t)", "unknown function: timestamp_lt"),
        ("reverse(s)", "unknown function: reverse"),
        ('matches("a", "b")', "invoking instance method without an instance: matches"),
        ("s.toLower()", "invoking regular function on instance method: toLower"),
        ('"aaa".matches(23)', '"aaa":matches(23) arg 1 (23) typeError got INT64, expected STRING'),
        ("i.startsWith(s)", "$i:startsWith($s) target typeError got INT64, expected STRING"),
        ("match(s)", "match($s) arity mismatch. Got 1 arg(s), expected 2 arg(s)"),
        (
            "conditional(s, 1, 2)",
            "conditional($s, 1, 2) arg 1 ($s) typeError got STRING, expected BOOL",
        ),
        (
            'conditional(b, 1, "x")',
            'conditional($b, 1, "x") arg 3 ("x") typeError got STRING, expected INT64',
        ),
        ("m[1]", "INDEX($m, 1) arg 2 (1) typeError got INT64, expected STRING"),
        ('s["k"]', 'INDEX($s, "k") arg 1 ($s) typeError got STRING, expected STRING_MAP'),
        # the compiler's own refusals
        (
            'dur == "1s"',
            "internal compiler error -- equality for type not yet implemented: Duration",
        ),
        ("m == m2", "internal compiler error -- equality for type not yet implemented: Interface"),
        (
            "dur < dur",
            "internal compiler error -- less than for type not yet implemented: Duration",
        ),
        ("b <= b2", "internal compiler error -- less or equal for type not yet implemented: Bool"),
        (
            "ip > ip2",
            "internal compiler error -- greater than for type not yet implemented: Interface",
        ),
        ("b + b2", "internal compiler error -- Add for type not yet implemented: Bool"),
        ("dur + dur", "internal compiler error -- Add for type not yet implemented: Duration"),
    ],
)
def test_type_errors(text: str, message: str) -> None:
    with pytest.raises(TypeCheckError) as caught:
        compile(text, MANIFEST)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("a = 2", "unable to parse expression 'a = 2': 1:3: expected '==', found '='", (1, 3)),
        ("@23", "unable to parse expression '@23': 1:1: illegal character U+0040 '@'", (1, 1)),
        ("'abc'", "unable to parse expression ''abc'': 1:1: illegal rune literal", (1, 1)),
        ("0x10", 'strconv.ParseInt: parsing "0x10": invalid syntax', (1, 1)),
        (
            "i == 99999999999999999999",
            'strconv.ParseInt: parsing "99999999999999999999": value out of range',
            (1, 6),
        ),
        ("1e400", 'strconv.ParseFloat: parsing "1e400": value out of range', (1, 1)),
        ("b ? 1 : 2", None, (1, 3)),
        ("s in m", None, (1, 3)),
        ("x.type", None, (1, 3)),
        ("x.map.y", None, (1, 3)),
        ("s b", "unable to parse expression 's b': 1:3: expected 'EOF', found b", (1, 3)),
        ("s\n== s", None, (2, 1)),
        ('"open', None, (1, 1)),
        ("(s).x", None, (1, 1)),
        ('"lit".x', None, (1, 1)),
        ("m[1:2]", None, (1, 2)),
        ("*s", None, (1, 1)),
        ("[]int{1}", None, (1, 1)),
        ("toLower(s)(s)", None, (1, 11)),
        ("08", None, (1, 1)),
        ("1i", None, (1, 1)),
        ("", None, (1, 1)),
        ("s;", None, (1, 2)),
        ('size("\ud800")', "illegal UTF-8 encoding at offset 6", (1, 7)),
    ],
)
def test_parse_errors(text: str, message: str | None, position: tuple[int, int]) -> None:
    with pytest.raises(ParseError) as caught:
        compile(text, MANIFEST)
    if message is not None:
        assert str(caught.value) == message
    assert caught.value.position == position


@pytest.mark.parametrize(
    ("text", "bag", "message"),
    [
        ('s2 == "x"', BAG, "lookup failed: 's2'"),
        ("s2 | s3", BAG, "lookup failed: 's3'"),  # the last operand is strict
        ('toLower(s2) | "x"', BAG, "lookup failed: 's2'"),  # function arguments are strict
        ('m2["k"]', BAG, "lookup failed: 'm2'"),
        ("m[s2]", BAG, "lookup failed: 's2'"),
        ('(s2 == "a") | true', BAG, "lookup failed: 's2'"),
        ('s == "x"', {"s": 20}, "error converting value to string: '20'"),
        ("i == 1", {"i": "1"}, "error converting value to int64: '1'"),
        ('ip("10.1.12")', BAG, "could not convert 10.1.12 to IP_ADDRESS"),
        ('ip("fe80::1%eth0")', BAG, "could not convert fe80::1%eth0 to IP_ADDRESS"),
        (
            'timestamp("242233")',
            BAG,
            "could not convert '242233' to TIMESTAMP. expected format: '2006-01-02T15:04:05Z07:00'",
        ),
        ('timestamp("2020-02-30T00:00:00Z")', BAG, "could not convert"),
        (
            'dnsName("-bad.example")',
            BAG,
            "error converting '-bad.example' to dns name: 'idna: invalid label \"-bad\"'",
        ),
        ('dnsName("ab--c.example")', BAG, "invalid label"),
        ('dnsName("a..b")', BAG, "invalid label"),
        # x/net/idna's dnsName() profile has no mapping, so STD3 rules reach only xn-- labels:
        # "a_b.c" converts, but comparing it (the lookup profile maps with STD3) fails
        ('dnsName("a_b.c") == dnsName("a.c")', BAG, "idna: disallowed rune U+005F"),
        ('dnsName("xn--zz")', BAG, 'invalid label "xn--zz"'),
        ('email("Ann <ann@example.com>")', BAG, "display names are not allowed"),
        ('email("nobody")', BAG, "error converting 'nobody' to e-mail"),
        ('email("a@-x.com")', BAG, "dns name"),
        ('uri("")', BAG, "error converting string to uri: empty string"),
        ('uri("http://a b")', BAG, "error converting string to uri 'http://a b'"),
        ('"(".matches(s)', BAG, "error parsing regexp"),
    ],
)
def test_evaluation_errors(text: str, bag: Any, message: str) -> None:
    expression = compile(text, MANIFEST)
    with pytest.raises(EvaluationError) as caught:
        expression.evaluate(bag)
    assert message in str(caught.value)


def test_evaluates_any_mapping_and_is_reusable() -> None:
    rule = compile('s == "a" && i > 3', MANIFEST)
    assert rule.evaluate({"s": "a", "i": 4}) is True
    assert rule.evaluate(AttributeBag(s="a", i=3)) is False
    assert rule.evaluate({"s": "b"}) is False  # && short-circuits before the missing i


def test_default_manifest_is_istio_13s() -> None:
    expression = compile('request.headers["user-agent"] | "" == "x" && source.ip == ip("1.2.3.4")')
    assert expression.result_type == T.BOOL
    with pytest.raises(TypeCheckError, match=r"unknown attribute source\.port"):
        compile("source.port == 80")


def test_deep_nesting_is_a_parse_error_not_a_recursion_error() -> None:
    for text in (
        "(" * 100_000 + "s" + ")" * 100_000,
        "!" * 100_000 + "b",
        "s" + " + s" * (MAX_DEPTH + 1),
        "toLower(" * 5_000 + "s" + ")" * 5_000,
        "m[" * 5_000 + '"k"' + "]" * 5_000,
    ):
        with pytest.raises(ParseError, match="nested"):
            compile(text, MANIFEST)
    ok = "(" * 50 + "s" + ")" * 50
    assert compile(ok, MANIFEST).evaluate(BAG) == "hello"


def test_one_megabyte_strings() -> None:
    big = "x" * 1_000_000
    assert compile(f'size("{big}")', MANIFEST).evaluate({}) == 1_000_000
    assert compile('s == "x"', MANIFEST).evaluate({"s": big}) is False
    with pytest.raises(ParseError) as caught:
        compile('"' + big, MANIFEST)
    assert len(str(caught.value)) < 400  # the message does not echo a megabyte


def test_a_half_megabyte_selector_chain_is_parsed_in_linear_time() -> None:
    # each ``.name`` used to copy the whole chain so far: quadratic, minutes for this text
    text = "a." * 250_000 + "b"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(_compile_error, text)
        error = future.result(timeout=20)  # a generous bound; linear parsing takes ~1 s
    assert isinstance(error, TypeCheckError)
    assert "unknown attribute a.a.a." in str(error)


def _compile_error(text: str) -> ExpressionError | None:
    try:
        compile(text, MANIFEST)
    except ExpressionError as exc:
        return exc
    return None


def test_a_hostile_mapping_gives_an_evaluation_error() -> None:
    class Broken(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("boom")

    with pytest.raises(EvaluationError, match="boom"):
        compile("s", MANIFEST).evaluate(Broken())


_ALPHABET = [
    *'()[]{}.,;:|&!<>=+-*/%^"\'`\\ \n\t',
    "s", "i", "m", "b", "dur", "ip", "true", "TRUE", "0x1", "010", "1.5e3", '"1s"', '"x"',
    "size", "match", "matches", "toLower", "conditional", "ip", "timestamp", "dnsName", "func",
    "map", "type", "==", "&&", "||", "...", "<-", "//", "/*", "*/", "'a'", "`r`", "\x00", "é",
]  # fmt: skip


@given(
    st.one_of(
        st.text(max_size=40),
        st.text(st.characters(codec=None, categories=None), max_size=10),  # surrogates too
        st.lists(st.sampled_from(_ALPHABET), max_size=25).map("".join),
    )
)
def test_random_text_gives_only_expression_errors(text: str) -> None:
    try:
        expression = compile(text, MANIFEST)
    except ExpressionError:
        return
    for bag in (BAG, {}, {"s": 1, "m": "x", "b": "y", "i": 2.5}):
        with contextlib.suppress(ExpressionError):
            expression.evaluate(bag)
