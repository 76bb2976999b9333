"""The CEL subset behind Istio's CRD validation rules."""

from __future__ import annotations

import json
import pathlib

import pytest

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
        (1, "spec", "Address is required", 12),
    ]
