"""Structural rules derived from Istio's CRD schemas."""

from __future__ import annotations

import pathlib
import sys

from istio_sdk.config._crd_rules import check, rules_for

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_packaged_rules_are_up_to_date(shared_dir: pathlib.Path) -> None:
    sys.path.insert(0, str(ROOT / "codegen"))
    try:
        import crd_rules
    finally:
        sys.path.remove(str(ROOT / "codegen"))
    fresh = crd_rules.render(
        crd_rules.build_rules((shared_dir / "istio-api" / "crds.yaml").read_text())
    )
    packaged = (ROOT / "src" / "istio_sdk" / "config" / "crd_rules.json").read_text()
    assert packaged == fresh, "run python codegen/crd_rules.py"


def test_every_served_version_of_a_kind_has_rules() -> None:
    for version in ("v1", "v1beta1", "v1alpha3"):
        assert rules_for(f"networking.istio.io/{version}", "DestinationRule") is not None
    assert rules_for("config.istio.io/v1alpha2", "rule") is None


def test_checks_ranges_lengths_patterns_sizes_and_enums() -> None:
    schema = {
        "properties": {
            "port": {"minimum": 1, "maximum": 65535},
            "big": {"maximum": 10},
            "name": {"minLength": 1, "maxLength": 3, "pattern": "^[a-z]+$"},
            "tags": {"maxItems": 1, "items": {"enum": ["A", "B"]}},
            "labels": {"maxProperties": 1, "additionalProperties": {"maxLength": 2}},
        }
    }
    value = {
        "port": 0,
        "big": "11",  # int64 values are strings in proto3 JSON
        "name": "ABCD",
        "tags": ["A", "C"],
        "labels": {"x": "long", "y": "ok"},
        "other": 5,
    }
    found = list(check(schema, value, "spec"))
    assert found == [
        ("spec.port", "must be at least 1, got 0"),
        ("spec.big", "must be at most 10, got 11"),
        ("spec.name", "must be at most 3 characters long"),
        ("spec.name", "'ABCD' does not match the pattern ^[a-z]+$"),
        ("spec.tags", "must have at most 1 items, got 2"),
        ("spec.tags[1]", "'C' is not one of A, B"),
        ("spec.labels", "must have at most 1 entries, got 2"),
        ("spec.labels.x", "must be at most 2 characters long"),
    ]
    assert list(check(schema, {"port": 80, "name": "ab"}, "spec")) == []


def _patterns(schema: dict[str, object]) -> set[str]:
    found = {schema["pattern"]} if isinstance(schema.get("pattern"), str) else set()
    for child in schema.get("properties", {}).values():  # type: ignore[attr-defined]
        found |= _patterns(child)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found |= _patterns(schema[key])  # type: ignore[arg-type]
    return found  # type: ignore[return-value]


def test_patterns_match_as_re2_does() -> None:
    schema = {"properties": {"name": {"pattern": "^[a-z]+$"}, "digits": {"pattern": "^\\d+$"}}}
    # Python's re lets $ match before a final newline and \d match any Unicode digit.
    assert list(check(schema, {"name": "abc\n", "digits": "\u0661"}, "spec")) == [
        ("spec.name", "'abc\\n' does not match the pattern ^[a-z]+$"),
        ("spec.digits", "'\u0661' does not match the pattern ^\\d+$"),
    ]
    assert list(check(schema, {"name": "abc", "digits": "12"}, "spec")) == []


def test_a_pattern_re2_rejects_is_reported_not_passed() -> None:
    schema = {"properties": {"name": {"pattern": "^(?!admin).*$"}}}
    [(path, message)] = check(schema, {"name": "user"}, "spec")
    assert path == "spec.name"
    assert message.startswith("the schema's pattern cannot be checked: invalid RE2")


def test_every_packaged_pattern_is_valid_re2() -> None:
    import json

    from istio_sdk.config._go import compile_regex

    data = json.loads((ROOT / "src" / "istio_sdk" / "config" / "crd_rules.json").read_text())
    patterns = set().union(*(_patterns(schema) for schema in data.values()))
    assert len(patterns) >= 4
    for pattern in patterns:
        compile_regex(pattern)


def test_validate_checks_patterns_with_re2() -> None:
    from istio_sdk.config import validate

    problems = validate(
        """\
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: w, namespace: shop}
spec: {url: "oci://registry.example.com/plugin:1", sha256: "%s\\n"}
"""
        % ("a" * 64)
    )
    assert [p.path for p in problems] == ["spec.sha256", "spec.sha256"]  # the CRD's and Istio's
    assert "does not match the pattern" in problems[0].message
    assert problems[1].message == "sha256 field must be 64 characters long"


def test_names_ending_in_a_newline_are_invalid() -> None:
    from istio_sdk.config import validate

    problems = validate(
        """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: "reviews\\n", namespace: "shop\\n"}
spec: {host: reviews}
"""
    )
    assert [p.path for p in problems] == ["metadata.name", "metadata.namespace"]


def test_a_null_field_is_no_field_for_the_rules() -> None:
    from istio_sdk.config import validate

    # The kube-apiserver drops nulls of fields that are not nullable before it validates.
    problems = validate(
        """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, credentialName: null, credentialNames: [a]}
"""
    )
    assert problems == []
    both = {"credentialName": "a", "credentialNames": ["b"]}
    schema = {
        "x-rules": [
            ["(has(self.credentialName) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1", "one"]
        ]
    }
    assert list(check(schema, both, "tls")) == [("tls", "one")]
    assert list(check(schema, {**both, "credentialName": None}, "tls")) == []


def test_a_null_of_a_nullable_field_is_kept() -> None:
    schema = {
        "properties": {"enabled": {"nullable": True}},
        "x-rules": [["has(self.enabled)", "m"]],
    }
    assert list(check(schema, {"enabled": None}, "spec")) == []
    assert list(check(schema, {"other": None}, "spec")) == [("spec", "m")]
