"""Structural rules from Istio's CRD schemas (``crd_rules.json``, made by codegen/crd_rules.py).

The kube-apiserver checks a spec against its CRD's OpenAPI schema before Istio sees it. The
keywords that go beyond the protobuf types (number ranges, string lengths and patterns, list
and map sizes, enums) and the CEL rules (``x-kubernetes-validations``, see ``_cel``) are
checked here on the spec's JSON form. ``pattern`` is a Go (RE2) regular expression searched for
anywhere in the string, as the kube-apiserver does: it is matched with RE2 here too, and a
pattern RE2 rejects is reported as a problem of the schema, never passed silently.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

from istio_sdk.config import _cel as cel
from istio_sdk.config import _go as go
from istio_sdk.config._yaml import join_index, join_key


@functools.cache
def _rules() -> dict[str, dict[str, Any]]:
    text = resources.files("istio_sdk.config").joinpath("crd_rules.json").read_text("utf-8")
    rules: dict[str, dict[str, Any]] = json.loads(text)
    return rules


def rules_for(api_version: str, kind: str) -> dict[str, Any] | None:
    """The pruned spec schema of a kind at an apiVersion, or None when it has no rules."""
    return _rules().get(f"{api_version}/{kind}")


def _pattern_problem(pattern: str, value: str) -> str | None:
    try:
        if go.regex_search(pattern, value):
            return None
    except go.RegexError as exc:
        return f"the schema's pattern cannot be checked: {exc}"
    return f"{value!r} does not match the pattern {pattern}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):  # 64-bit integers are strings in proto3 JSON
        try:
            return int(value)
        except ValueError:
            return None
    return None


def without_nulls(schema: dict[str, Any], value: Any) -> Any:
    """``value`` as the kube-apiserver validates it: a null field is dropped unless nullable.

    (It prunes such nulls before defaulting and validation, so ``credentialName: null`` is
    no field at all for ``has(self.credentialName)``.) Fields the pruned schema does not
    list count as not nullable.
    """
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None) or {}
            if item is None and not sub.get("nullable"):
                continue
            out[key] = without_nulls(sub, item)
        return out
    if isinstance(value, list):
        items = schema.get("items") or {}
        return [without_nulls(items, item) for item in value]
    return value


def check(
    schema: dict[str, Any], value: Any, path: str, *, cel: bool = True
) -> Iterator[tuple[str, str]]:
    """``(path, message)`` for every rule of ``schema`` that ``value`` breaks.

    Nulls are dropped first, as the kube-apiserver drops them (see :func:`without_nulls`).
    CEL rules (``x-rules``) run on values that are present, as the kube-apiserver runs them; a
    rule that fails to evaluate (e.g. it selects a field that is not there) is a problem too.
    ``cel=False`` leaves the CEL rules out (to measure what they cost).
    """
    return _check(schema, without_nulls(schema, value), path, cel)


def _check(
    schema: dict[str, Any], value: Any, path: str, cel_rules: bool = True
) -> Iterator[tuple[str, str]]:
    if value is not None and cel_rules:
        for rule, message in schema.get("x-rules", ()):
            try:
                passed = cel.evaluate(rule, value)
            except cel.CelError as exc:
                yield path, f"{message or rule} (rule could not be evaluated: {exc})"
                continue
            if not passed:
                yield path, message or f"failed rule {rule}"
    number = (
        _number(value)
        if not isinstance(value, str) or "maximum" in schema or "minimum" in schema
        else None
    )
    if number is not None:
        if "minimum" in schema and number < schema["minimum"]:
            yield path, f"must be at least {schema['minimum']}, got {value}"
        if "maximum" in schema and number > schema["maximum"]:
            yield path, f"must be at most {schema['maximum']}, got {value}"
        if "exclusiveMinimum" in schema and number <= schema["exclusiveMinimum"]:
            yield path, f"must be greater than {schema['exclusiveMinimum']}, got {value}"
        if "exclusiveMaximum" in schema and number >= schema["exclusiveMaximum"]:
            yield path, f"must be less than {schema['exclusiveMaximum']}, got {value}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield path, f"must be at least {schema['minLength']} characters long"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield path, f"must be at most {schema['maxLength']} characters long"
        if "pattern" in schema:
            problem = _pattern_problem(schema["pattern"], value)
            if problem is not None:
                yield path, problem
    if "enum" in schema and value not in schema["enum"]:
        yield path, f"{value!r} is not one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield path, f"must have at least {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield path, f"must have at most {schema['maxItems']} items, got {len(value)}"
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                yield from _check(items, item, join_index(path, i), cel_rules)
    if isinstance(value, dict):
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            yield path, f"must have at least {schema['minProperties']} entries"
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield path, f"must have at most {schema['maxProperties']} entries, got {len(value)}"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra)
            if sub is not None:
                yield from _check(sub, item, join_key(path, key), cel_rules)
