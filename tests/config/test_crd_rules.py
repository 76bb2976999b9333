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
