"""YAML/JSON text to documents the way Kubernetes reads it, with field lines."""

from __future__ import annotations

import pytest

from istio_sdk.config import YamlSyntaxError
from istio_sdk.config._yaml import parse_documents


def test_values_are_json_values_as_kubernetes_sees_them() -> None:
    [doc] = parse_documents(
        "date: 2024-01-02\nwhen: 2024-01-02T03:04:05Z\nflag: true\n1: one\nnull: x\nn: 0x10\n"
    )
    assert doc.value == {
        "date": "2024-01-02",
        "when": "2024-01-02T03:04:05Z",
        "flag": True,
        "1": "one",
        "null": "x",
        "n": 16,
    }


def test_merge_keys_are_overridden_by_explicit_keys() -> None:
    [doc] = parse_documents("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n")
    assert doc.value == {"base": {"x": 1, "y": 2}, "d": {"x": 1, "y": 3}}


def test_repeated_keys_are_errors_with_their_line() -> None:
    with pytest.raises(YamlSyntaxError) as info:
        parse_documents("a: 1\nb:\n  c: 1\n  c: 2\n", "f.yaml")
    assert str(info.value) == "f.yaml[0]:4: b.c: mapping key 'c' is repeated"


def test_field_lines_and_document_indexes() -> None:
    docs = parse_documents("a: 1\n---\n---\nspec:\n  list:\n  - x: 1\n  - y: 2\n")
    assert [d.index for d in docs] == [0, 1, 2]
    assert docs[1].value is None
    spec = docs[2]
    assert spec.line_of("spec.list[1].y") == 7
    assert spec.line_of("spec.list[1].missing") == 7  # nearest enclosing field
    assert spec.line_of("spec.list[0]") == 6


def test_json_text_and_unsupported_values() -> None:
    [doc] = parse_documents('{"a": [1, 2.5, null]}')
    assert doc.value == {"a": [1, 2.5, None]}
    with pytest.raises(YamlSyntaxError, match="unsupported YAML value"):
        parse_documents("b: !!binary aGVsbG8=\n")
    with pytest.raises(YamlSyntaxError) as info:
        parse_documents("a: 1\n b: 2\n")
    assert info.value.problem.line == 2
