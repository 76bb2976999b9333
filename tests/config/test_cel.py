"""The CEL subset behind Istio's CRD validation rules."""

from __future__ import annotations

import contextlib
import json
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from istio_sdk.config import validate
from istio_sdk.config._cel import CelError, CelSyntaxError, compile_rule, evaluate

RULES = pathlib.Path(__file__).resolve().parents[2] / "src/istio_sdk/config/crd_rules.json"


def _all_rules() -> set[str]:
    found: set[str] = set()

    def walk(schema: dict[str, object]) -> None:
        for rule, _message in schema.get("x-rules", ()):  # type: ignore[attr-defined]
            found.add(rule)
        for child in schema.get("properties", {}).values():  # type: ignore[attr-defined]
            walk(child)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                walk(schema[key])  # type: ignore[arg-type]

    for schema in json.loads(RULES.read_text()).values():
        walk(schema)
    return found


def test_every_rule_in_istios_crds_compiles() -> None:
    rules = _all_rules()
    assert len(rules) >= 30
    for rule in rules:
        compile_rule(rule)


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("duration(self) >= duration('1ms')", "5m", True),
        ("duration(self) >= duration('1ms')", "0.5ms", False),
        ("duration(self) >= duration('1ms')", "1h30m", True),
        ("0 < self && self <= 65535", 8080, True),
        ("0 < self && self <= 65535", 0, False),
        ("!self.contains('*')", "*.example.com", False),
        ("self.all(key, !key.contains('*'))", {"a": 1, "b*": 2}, False),
        ("self.all(key, 0 < int(key) && int(key) <= 65535)", {"8080": {}}, True),
        ("self.all(l1, self.exists_one(l2, l1.number == l2.number))", [{"number": 1}], True),
        (
            "self.all(l1, self.exists_one(l2, l1.number == l2.number))",
            [{"number": 1}, {"number": 1}],
            False,
        ),
        ("(has(self.a) ? 1 : 0) + (has(self.b) ? 1 : 0) <= 1", {"a": 1, "b": 2}, False),
        ("(has(self.a) ? 1 : 0) + (has(self.b) ? 1 : 0) <= 1", {"b": 2}, True),
        ('self.startsWith("unix://") ? !self.endsWith("/") : true', "unix:///tmp/s/", False),
        ('self.substring(7, 8) == "/"', "unix:///x", True),
        ("self in ['', 'HTTP', 'HTTPS']", "TCP", False),
        ("url(self).getScheme() in ['http', 'https']", "https://a/b", True),
        ("isURL(self)", "registry.example.com/x:1", False),
        ("isURL('http://' + self)", "registry.example.com/x:1", True),
        ("key.matches('^[a-z]+$')".replace("key", "self"), "abc", True),
        ("self.size() == 0 || size(self) == 2", [1, 2], True),
        ("1 == 1.0 && 'a' != 1 && [1, 2] == [1, 2] && {'a': 1}['a'] == 1", None, True),
    ],
)
def test_rules_evaluate(rule: str, value: object, expected: bool) -> None:
    assert evaluate(rule, value) is expected


def test_errors_follow_cel() -> None:
    with pytest.raises(CelError, match="no such key"):
        evaluate("self.value != ''", {})
    # || and && ignore an error on one side when the other side decides
    assert evaluate("true || self.missing", {}) is True
    assert evaluate("self.missing && false", {}) is False
    with pytest.raises(CelError):
        evaluate("self.missing || false", {})
    with pytest.raises(CelError, match="not bool"):
        evaluate("1 + 1", None)
    with pytest.raises(CelError, match="invalid duration"):
        evaluate("duration(self) > duration('0')", "5 minutes")
    with pytest.raises(CelSyntaxError, match="unsupported function"):
        compile_rule("self.lowerAscii() == 'a'")
    with pytest.raises(CelSyntaxError):
        compile_rule("self ==")


def test_validate_reports_crd_rule_messages_at_their_field() -> None:
    problems = validate(
        """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {interval: 0.5ms}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: shop}
spec: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: nothing-written, namespace: shop}
"""
    )
    assert [(p.index, p.path, p.message, p.line) for p in problems] == [
        (
            0,
            "spec.trafficPolicy.outlierDetection.interval",
            "must be a valid duration greater than 1ms",
            7,
        ),
        # Istio's own rule for the same field, as istioctl and the webhook word it
        (0, "spec.trafficPolicy.outlierDetection.interval", "duration must be greater than 1ms", 7),
        (1, "spec", "Address is required", 12),
        (1, "spec.address", "address is required", 12),  # Istio's own rule, beside the CRD's
        (2, "spec.address", "address is required", 14),  # no spec: only Istio's rule runs
    ]


# --- durations: nanoseconds exactly, Go's time.ParseDuration syntax --------------------------

MIN_1MS = "duration(self) >= duration('1ms')"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("999999ns", False),  # rounded to microseconds this was 1ms and passed
        ("1000000ns", True),
        ("0.999999999ms", False),
        ("1000001ns", True),
        ("999.999us", False),
        ("1000\u00b5s", True),  # micro sign
        ("1000\u03bcs", True),  # Greek mu
        (".001s", True),
        ("1.s", True),
        ("-1h", False),
    ],
)
def test_durations_compare_to_the_nanosecond(value: str, expected: bool) -> None:
    assert evaluate(MIN_1MS, value) is expected


def test_duration_arithmetic_keeps_nanoseconds_and_checks_overflow() -> None:
    assert evaluate("duration('1ms') - duration('1ns') < duration('1ms')", None) is True
    assert evaluate("duration('1h') + duration('1ns') != duration('1h')", None) is True
    assert evaluate("duration('1.5h') == duration('90m')", None) is True
    assert evaluate("duration('1h') + duration('1ns') == duration('3600000000001ns')", None)
    with pytest.raises(CelError, match="overflow"):
        evaluate("duration('2562047h') + duration('2562047h') > duration('0')", None)


@pytest.mark.parametrize(
    "text",
    ["", "1", "1e3s", "5 s", "s", ".s", "1d", "\u0665s", "9223372036854775808ns", "1h 2m", "+"],
)
def test_durations_outside_gos_syntax_are_errors(text: str) -> None:
    with pytest.raises(CelError, match="invalid duration"):
        evaluate(MIN_1MS, text)


def test_duration_extremes_parse_as_in_go() -> None:
    assert evaluate("duration(self) < duration('0')", "-9223372036854775808ns") is True
    assert evaluate("duration(self) > duration('0')", "9223372036854775807ns") is True
    assert evaluate("duration(self) == duration('0')", "-0") is True


def test_validate_rejects_a_keepalive_interval_just_under_1ms() -> None:
    problems = validate(
        """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {interval: 999999ns}
"""
    )
    assert [(p.path, p.message) for p in problems] == [
        (
            "spec.trafficPolicy.outlierDetection.interval",
            "must be a valid duration greater than 1ms",
        ),
        ("spec.trafficPolicy.outlierDetection.interval", "duration must be greater than 1ms"),
    ]


# --- int(): Go's strconv.ParseInt, base 10 ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["8_080", " 80", "80 ", "80\n", "\u0668\u0660", "\uff18\uff10", "0x50", "", "+", "1e3", "8.0"],
)
def test_int_of_a_string_takes_only_a_sign_and_ascii_digits(text: str) -> None:
    with pytest.raises(CelError, match="not an integer"):
        evaluate("int(self) > 0", text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("+80", 80), ("-80", -80), ("080", 80), ("-9223372036854775808", -(2**63))],
)
def test_int_of_a_string(text: str, value: int) -> None:
    assert evaluate(f"int(self) == {value}", text) is True


@pytest.mark.parametrize("value", ["9223372036854775808", "-9223372036854775809", "9" * 5000])
def test_int_of_a_string_out_of_range_is_an_error(value: str) -> None:
    with pytest.raises(CelError, match="int64 range"):
        evaluate("int(self) > 0", value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e19, -(2.0**63)])
def test_int_of_a_double_outside_int64_is_an_error(value: float) -> None:
    with pytest.raises(CelError, match="int64 range"):
        evaluate("int(self) > 0", value)


def test_int_of_a_double_truncates_toward_zero() -> None:
    assert evaluate("int(self) == -2", -2.9) is True


# --- matches(): RE2 --------------------------------------------------------------------------


def test_matches_uses_re2_semantics() -> None:
    assert evaluate("self.matches('^[a-z]+$')", "abc\n") is False  # Python's $ matched here
    assert evaluate("self.matches('^[a-z]+$')", "abc") is True
    assert evaluate("self.matches('^\\\\d+$')", "\u0668") is False  # \d is ASCII in RE2
    assert evaluate("self.matches('(?i)ABC')", "xabcx") is True  # unanchored, like Go
    assert evaluate("self.matches('^a')", "\ud800a") is False  # a lone surrogate is U+FFFD


def test_a_regex_re2_rejects_is_an_error_not_a_verdict() -> None:
    with pytest.raises(CelSyntaxError, match="RE2"):
        compile_rule("self.matches('a(?=b)')")
    with pytest.raises(CelSyntaxError, match="RE2"):
        compile_rule("self.matches('(a)\\\\1')")
    with pytest.raises(CelError, match="RE2"):  # a pattern that is only known at run time
        evaluate("'ab'.matches(self)", "a(?=b)")


def test_validate_rejects_a_port_name_ending_in_a_newline() -> None:
    problems = validate(
        """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: shop}
spec:
  hosts: [a.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, ports: {"http\\n": 8080}}]
"""
    )
    assert [(p.path, p.message) for p in problems] == [
        ("spec.endpoints[0].ports", "port name must be valid"),
        (
            'spec.endpoints[0].ports["http\\n"]',
            "endpoint port 8080 is not defined by the service entry",
        ),
        ('spec.endpoints[0].ports["http\\n"]', "invalid port name: http\n"),
    ]


# --- isURL() and url(): Go's url.ParseRequestURI and url.Parse --------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://example.com/a%20b", True),
        ("https://example.com/%zz", False),
        ("https://example.com/%4", False),
        ("https://example.com/%", False),
        ("https://example.com/a%", False),
        ("https://exa%41mple.com/", False),  # hosts may escape only non-ASCII bytes
        ("https://ex%C3%A4mple.com/", True),
        ("https://example.com/?q=%zz", True),  # Go leaves the query unchecked
        ("https://a:b:c/", False),
        ("https://example.com:8080/", True),
        ("https://example.com:80a/", False),
        ("https://[::1]:80/", True),
        ("https://[::1/", False),
        ("https://[fe80::1%25en0]/", True),
        ("https://user:p%zz@example.com/", False),
        ("https://us er@example.com/", False),
        ("https://exa mple.com/", False),
        ("https://example.com/a\tb", False),
        ("/absolute/path", True),
        ("../relative", False),
        ("registry.example.com/x:1", False),
        ("", False),
        ("*", True),
        ("mailto:x%zz", True),  # opaque: Go checks nothing after the scheme
        (":no-scheme", False),
        ("1http://example.com/", False),
    ],
)
def test_is_url_follows_go_parse_request_uri(text: str, expected: bool) -> None:
    assert evaluate("isURL(self)", text) is expected


def test_url_needs_a_valid_fragment_and_lowercases_the_scheme() -> None:
    assert evaluate("url(self).getScheme() == 'https'", "HTTPS://example.com/") is True
    assert evaluate("isURL(self)", "https://example.com/?q#%zz") is True
    with pytest.raises(CelError, match="not a URL"):
        evaluate("url(self).getScheme() == 'https'", "https://example.com/?q#%zz")


def test_validate_rejects_a_wasm_url_with_a_bad_escape() -> None:
    problems = validate(
        """\
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: w, namespace: shop}
spec: {url: "oci://registry.example.com/plugin%zz"}
"""
    )
    assert [p.path for p in problems] == ["spec.url", "spec.url"]  # the CRD's rule and Istio's
    assert "failed to parse url" in problems[1].message


# --- the rest of CEL's semantics --------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        "9223372036854775807 + 1 > 0",
        "-9223372036854775807 - 2 < 0",
        "4611686018427387904 * 2 > 0",
        "-(-9223372036854775807 - 1) > 0",
        "(-9223372036854775807 - 1) / -1 > 0",
        "(-9223372036854775807 - 1) % -1 == 0",
    ],
)
def test_int_overflow_is_an_error(rule: str) -> None:
    with pytest.raises(CelError, match="overflow"):
        evaluate(rule, None)


@pytest.mark.parametrize(
    "rule",
    [
        "-7 / 2 == -3",
        "-7 % 2 == -1",
        "7 % -2 == 1",
        "-9223372036854775808 < 0",
        "0x10 == 16",
        "1.0 / 0.0 > 1e308",
        "-1.0 / 0.0 < -1e308",
        "0.0 / 0.0 != 0.0 / 0.0",
        "false < true",
        "'a' < 'b'",
        "1 == 1.0 && 1 < 1.5",
        '"\\x41\\u00e9\\U0001F600\\101\\a\\?\\`" == "A\u00e9\U0001f600A\\a?`"',
        "string(true) == 'true' && string(-5) == '-5' && string(1e6) == '1e+06'",
        "string(0.1) == '0.1' && string(100000.0) == '100000'",
        "'h\u00e9llo'.size() == 5",
        "[1, 'a'].exists(x, x > 0)",  # the error on 'a' is absorbed by a true element
        "!['a', 0].all(x, x > 0)",  # ... and by a false one
        "1 == 1 // a comment",
        ".5 < 1.0",
    ],
)
def test_cel_semantics(rule: str) -> None:
    assert evaluate(rule, None) is True


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        ("1 / 0 == 0", "division by zero"),
        ("1 % 0 == 0", "modulus by zero"),
        ("1 + 1.0 == 2.0", "no such overload"),
        ("5.0 % 2.0 == 1.0", "no such overload"),
        ("[1, 2][true] == 2", "list index"),
        ("[1, 2][-1] == 2", "out of range"),
        ("[1, 2][2] == 2", "out of range"),
        ("'abc'[0] == 'a'", "cannot index"),
        ("{'a': 1}[true] == 1", "no such key"),
        ("{[1]: 1}.size() == 1", "map key"),
        ("{'a': 1, 'a': 2}.size() == 1", "repeated key"),
        ("string(null) == 'null'", "string"),
        ("[1].exists_one(x, x.y)", "cannot select"),
        ("['a', 1].all(x, x > 0) || false", "cannot compare"),
    ],
)
def test_cel_errors(rule: str, match: str) -> None:
    with pytest.raises(CelError, match=match):
        evaluate(rule, None)


@pytest.mark.parametrize(
    "rule",
    [
        "'\\/' == '/'",  # not a CEL escape
        "'\\ud800' == ''",  # a surrogate is not a character
        "'\\x4' == ''",
        "9223372036854775808 > 0",
        "1" * 5000 + " > 0",
        "0x" + "f" * 5000 + " > 0",
        "1e999 > 0",
        "1u == 1",  # uint is not supported
        "self == \u0668",  # only ASCII digits are digits
        "size(self, self) == 1",
        "self.contains() == true",
        "self.substring(1, 2, 3) == ''",
        "double(self) > 0.0",
        "uint(self) > 0",
        "(" * 10_000 + "true" + ")" * 10_000,
        "!" * 10_000 + "true",
        "1" + " + 1" * 10_000 + " > 0",
        "self" + ".a" * 10_000 + " == 1",
    ],
)
def test_rules_outside_the_subset_do_not_compile(rule: str) -> None:
    with pytest.raises(CelSyntaxError):
        compile_rule(rule)


# --- hostile input -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["999999ns", "1ms", "unix://", "8080", "*", "http://a/%zz", "\ud800"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300)
@given(rule=st.sampled_from(sorted(_all_rules())), value=JSON)
def test_any_json_gives_a_verdict_or_a_cel_error(rule: str, value: object) -> None:
    try:
        result = evaluate(rule, value)
    except CelError:
        return
    assert isinstance(result, bool)


@given(text=st.text(alphabet=st.sampled_from(list("self.()[]{}!-+*/%<>=&|?:,'\"\\0x19u_ a"))))
def test_any_rule_text_compiles_or_gives_a_syntax_error(text: str) -> None:
    with contextlib.suppress(CelError):  # CelSyntaxError included; anything else escapes
        compile_rule(text)
        evaluate(text, {"a": [1]})


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        ("duration(self) > duration('0')", "1" * 5000 + "s"),
        ("duration(self) > duration('0')", "0." + "9" * 100_000 + "s"),
        ("int(self) > 0", "1" * 1_000_000),
        ("self.matches('^(a+)+$')", "a" * 100_000 + "b"),  # no catastrophic backtracking
        ("isURL(self)", "http://a/" + "%" * 1_000_000),
    ],
)
def test_huge_values_are_handled(rule: str, value: str) -> None:
    try:
        assert evaluate(rule, value) in (True, False)
    except CelError as exc:
        assert len(str(exc)) < 1_000  # the message quotes the value cut short
