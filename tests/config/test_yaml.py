"""YAML/JSON text to documents the way Kubernetes reads it, with field lines."""

from __future__ import annotations

import tracemalloc

import pytest

from istio_sdk.config import LimitError, LoadLimits, NumberError, YamlSyntaxError
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


# -- hostile input: every case fails with a typed error naming the source and the limit --------


def billion_laughs() -> str:
    """The classic alias bomb: 9 levels of 9 aliases, 9**9 strings once expanded (~340 bytes)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_fails_before_expanding() -> None:
    text = billion_laughs()
    assert len(text) < 500
    tracemalloc.start()
    try:
        with pytest.raises(LimitError) as info:
            parse_documents(text, "bomb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.limit == "max_alias_nodes"
    assert str(info.value).startswith("bomb.yaml[0]:")
    assert "max_alias_nodes=100000" in str(info.value)
    assert peak < 64 * 1024 * 1024  # expanding would take gigabytes


def test_ordinary_aliases_still_load_and_count_against_the_bound() -> None:
    text = "labels: &l {app: reviews, version: v1}\na: {x: *l}\nb: [*l, *l]\n"
    [doc] = parse_documents(text)
    assert doc.value == {
        "labels": {"app": "reviews", "version": "v1"},
        "a": {"x": {"app": "reviews", "version": "v1"}},
        "b": [{"app": "reviews", "version": "v1"}] * 2,
    }
    # each use of *l costs its five nodes (the mapping, two keys, two values): 3 uses = 15
    parse_documents(text, limits=LoadLimits(max_alias_nodes=15))
    with pytest.raises(LimitError, match="max_alias_nodes=14"):
        parse_documents(text, limits=LoadLimits(max_alias_nodes=14))


def test_recursive_and_undefined_aliases_are_syntax_errors() -> None:
    with pytest.raises(YamlSyntaxError, match="alias refers to a node that contains it"):
        parse_documents("a: &x [1, *x]\n")
    with pytest.raises(YamlSyntaxError, match="undefined alias"):
        parse_documents("a: *nope\n")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 2000 + "]" * 2000, id="json-2000-deep"),
        pytest.param('{"a":' * 150 + "1" + "}" * 150, id="json-150-deep-objects"),
        pytest.param("a: " + "[" * 500 + "]" * 500 + "\n", id="yaml-flow-500-deep"),
        pytest.param("".join("  " * i + f"k{i}:\n" for i in range(300)), id="yaml-block-maps"),
        pytest.param("".join("  " * i + "-\n" for i in range(300)), id="yaml-block-lists"),
        pytest.param(
            "x: &x " + "[" * 60 + "]" * 60 + "\ny: " + "[" * 60 + "*x" + "]" * 60 + "\n",
            id="depth-reached-through-an-alias",
        ),
    ],
)
def test_deep_nesting_is_refused(text: str) -> None:
    with pytest.raises(LimitError) as info:
        parse_documents(text, "deep.yaml")
    assert info.value.limit == "max_depth"
    assert info.value.problem.source == "deep.yaml"
    assert info.value.problem.index == 0
    assert "nested deeper than 100 levels" in str(info.value)


def test_the_depth_bound_is_inclusive_and_configurable() -> None:
    for text in ("[" * 100 + "]" * 100, "a: " + "[" * 99 + "]" * 99):
        parse_documents(text)
    with pytest.raises(LimitError):
        parse_documents("a: [[1]]\n", limits=LoadLimits(max_depth=2))
    parse_documents("a: [1]\n", limits=LoadLimits(max_depth=2))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"port": ' + "9" * 5000 + "}", id="json"),
        pytest.param("port: " + "9" * 5000 + "\n", id="yaml"),
        pytest.param("---\na: 1\n---\nport: -" + "9" * 5000 + "\n", id="yaml-second-document"),
    ],
)
def test_huge_integers_are_refused_by_name(text: str) -> None:
    with pytest.raises(LimitError) as info:
        parse_documents(text, "big.json")
    assert info.value.limit == "max_int_digits"
    assert "integer has more than 4300 digits" in str(info.value)
    assert info.value.problem.index == (1 if text.startswith("---") else 0)


@pytest.mark.parametrize(
    "text", ['{"w": NaN}', '{"w": -Infinity}', '{"w": 1e400}', "w: .nan\n", "w: [-.inf]\n"]
)
def test_nan_and_infinity_are_refused(text: str) -> None:
    with pytest.raises(NumberError, match=r"^f\.yaml"):
        parse_documents(text, "f.yaml")


def test_strings_that_spell_nan_are_strings() -> None:
    [doc] = parse_documents("a: NaN\nb: '.inf'\nc: 1e400\n")
    assert doc.value == {"a": "NaN", "b": ".inf", "c": "1e400"}


def test_text_over_the_size_bound_is_refused() -> None:
    with pytest.raises(LimitError) as info:
        parse_documents("a: " + "x" * 100 + "\n", "big.yaml", limits=LoadLimits(max_bytes=100))
    assert info.value.limit == "max_bytes"
    assert str(info.value) == "big.yaml: source is larger than 100 bytes (limit max_bytes=100)"
    # bytes, not characters: 40 two-byte characters are 80 bytes
    parse_documents("a: " + "é" * 40, limits=LoadLimits(max_bytes=85))
    with pytest.raises(LimitError):
        parse_documents("a: " + "é" * 45, limits=LoadLimits(max_bytes=85))


@pytest.mark.parametrize("text", ["\x00\x01\x02", "a: \x07\n", "\ud800: x", "{[}\x1b"])
def test_garbage_is_a_one_line_syntax_error(text: str) -> None:
    with pytest.raises(YamlSyntaxError) as info:
        parse_documents(text, "junk.yaml")
    assert str(info.value).startswith("junk.yaml")
    assert "\n" not in str(info.value)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        LoadLimits(max_depth=0)


@pytest.fixture
def without_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse with PyYAML's pure-Python loader, as on a machine where libyaml is missing."""
    import yaml

    from istio_sdk.config import _yaml

    class PureKubeLoader(yaml.SafeLoader):
        yaml_implicit_resolvers = _yaml._KubeLoader.yaml_implicit_resolvers

    monkeypatch.setattr(_yaml, "_KubeLoader", PureKubeLoader)


@pytest.mark.usefixtures("without_libyaml")
@pytest.mark.parametrize(
    ("text", "error", "limit"),
    [
        (billion_laughs(), LimitError, "max_alias_nodes"),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", LimitError, "max_depth"),
        ("".join("  " * i + "-\n" for i in range(2000)), LimitError, "max_depth"),
        ("n: " + "1" * 5000 + "\n", LimitError, "max_int_digits"),
        ("a: \x00\n", YamlSyntaxError, None),
    ],
    ids=["alias-bomb", "deep-flow", "deep-block", "digits", "control-character"],
)
def test_limits_hold_without_libyaml(text: str, error: type[Exception], limit: str | None) -> None:
    with pytest.raises(error) as info:
        parse_documents(text, "f.yaml")
    assert getattr(info.value, "limit", None) == limit
    assert str(info.value).startswith("f.yaml")
    [doc] = parse_documents("date: 2024-01-02\nn: 0x10\n")  # and it still reads like Kubernetes
    assert doc.value == {"date": "2024-01-02", "n": 16}
