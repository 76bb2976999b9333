"""Gateway API kinds checked against their CRDs' OpenAPI schemas, as the kube-apiserver does.

The CRDs (``gateway_api_crds/``, the standard channel of one Gateway API release) are facts
kept as data. For an object of a served version this module checks, in the kube-apiserver's
order:

1. structure: ``type`` (with ``x-kubernetes-int-or-string``), unknown fields (strict field
   validation), ``nullable``;
2. after applying the schema's ``default`` values: ``required``, duplicate keys of
   ``x-kubernetes-list-type: map`` / ``set`` lists, and through :mod:`._crd_rules` the number
   ranges, lengths, patterns, enums, sizes and CEL rules (``x-kubernetes-validations``).

Transition rules (those that read ``oldSelf``) only apply to updates and are skipped.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from importlib import resources
from typing import Any

import yaml

from istio_sdk.config._crd_rules import check as check_rules
from istio_sdk.config._kinds import KindInfo
from istio_sdk.config._yaml import JsonValue, describe_json, join_index, join_key

_RULE_KEYS = (
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
    "minItems",
    "maxItems",
    "maxProperties",
    "nullable",
)


@functools.cache
def _crd(file_name: str) -> dict[str, Any]:
    text = (
        resources.files("istio_sdk.config")
        .joinpath("gateway_api_crds", file_name)
        .read_text("utf-8")
    )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd: dict[str, Any] = yaml.load(text, Loader=loader)
    return crd


@functools.cache
def schema_of(info: KindInfo, version: str) -> dict[str, Any]:
    """The OpenAPI schema of the whole object at ``version`` (KeyError when not served)."""
    crd = _crd(info.model.removeprefix("crd:"))
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version and entry.get("served", False):
            schema: dict[str, Any] = entry["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"{info.kind} {version} is not served by its CRD")


@functools.cache
def _rules_of(info: KindInfo, version: str) -> dict[str, Any]:
    return _to_rules(schema_of(info, version))


def _to_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema in ``_crd_rules``' form: rule keywords, ``x-rules``, nested schemas."""
    out: dict[str, Any] = {key: schema[key] for key in _RULE_KEYS if key in schema}
    if schema.get("exclusiveMinimum") is True and "minimum" in out:
        out["exclusiveMinimum"] = out.pop("minimum")
    if schema.get("exclusiveMaximum") is True and "maximum" in out:
        out["exclusiveMaximum"] = out.pop("maximum")
    rules = [
        (rule["rule"], rule.get("message", ""))
        for rule in schema.get("x-kubernetes-validations", ())
        if "oldSelf" not in rule["rule"]
    ]
    if rules:
        out["x-rules"] = rules
    if "properties" in schema:
        out["properties"] = {k: _to_rules(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _to_rules(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = _to_rules(schema["items"])
    return out


def _type_ok(schema: dict[str, Any], value: JsonValue) -> str | None:
    """None when ``value`` has the schema's type, else what was expected."""
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        return None if ok else "an integer or a string"
    expected = schema.get("type")
    integer = isinstance(value, int) and not isinstance(value, bool)
    fits = {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": integer,
        "number": integer or isinstance(value, float),
    }
    names = {"object": "an object", "array": "a list", "boolean": "a boolean"}
    if expected not in fits or fits[expected]:
        return None
    return names.get(expected, f"a{'n' if expected == 'integer' else ''} {expected}")


def _structure(schema: dict[str, Any], value: JsonValue, path: str) -> Iterator[tuple[str, str]]:
    if value is None:
        if not schema.get("nullable"):
            return  # the kube-apiserver drops a null field that is not nullable
        return
    expected = _type_ok(schema, value)
    if expected is not None:
        yield path, f"expected {expected}, got {describe_json(value)}"
        return
    if isinstance(value, list):
        items = schema.get("items") or {}
        for i, item in enumerate(value):
            yield from _structure(items, item, join_index(path, i))
    elif isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            child = join_key(path, key)
            if key in properties:
                yield from _structure(properties[key], item, child)
            elif isinstance(extra, dict):
                yield from _structure(extra, item, child)
            elif extra is not True:
                yield child, f"unknown field {key!r}"


def structural_problems(
    info: KindInfo, version: str, body: dict[str, JsonValue]
) -> Iterator[tuple[str, str]]:
    """Type and unknown-field problems of an object (without ``metadata`` and ``status``)."""
    schema = schema_of(info, version)
    props = {k: v for k, v in schema.get("properties", {}).items() if k not in ("metadata",)}
    return _structure({**schema, "properties": props}, body, "")


def with_defaults(schema: dict[str, Any], value: JsonValue) -> JsonValue:
    """``value`` with the schema's ``default`` values filled in where a field is absent."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        out = {}
        for key, item in value.items():
            sub = properties.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            out[key] = with_defaults(sub or {}, item)
        for key, sub in properties.items():
            if key not in out and "default" in sub:
                out[key] = with_defaults(sub, copy.deepcopy(sub["default"]))
        return out
    if isinstance(value, list):
        items = schema.get("items") or {}
        return [with_defaults(items, item) for item in value]
    return value


def _required(schema: dict[str, Any], value: JsonValue, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if value.get(key) is None:
                yield join_key(path, key), "missing required field"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield from _required(sub, item, join_key(path, key))
    elif isinstance(value, list):
        items = schema.get("items") or {}
        list_type = schema.get("x-kubernetes-list-type")
        seen: dict[object, int] = {}
        for i, item in enumerate(value):
            if list_type == "map" and isinstance(item, dict):
                key_names = schema.get("x-kubernetes-list-map-keys", ())
                marker: object = tuple(repr(item.get(k)) for k in key_names)
                label = ", ".join(f"{k}={item.get(k)!r}" for k in key_names)
            elif list_type == "set":
                marker, label = repr(item), repr(item)
            else:
                marker = None
            if marker is not None:
                if marker in seen:
                    yield join_index(path, i), f"duplicate entry ({label}) of item {seen[marker]}"
                else:
                    seen[marker] = i
            yield from _required(items, item, join_index(path, i))


def rule_problems(
    info: KindInfo, version: str, body: dict[str, JsonValue]
) -> Iterator[tuple[str, str]]:
    """Required fields, list keys and the schema's rules, on the defaulted object."""
    schema = schema_of(info, version)
    rules = _rules_of(info, version)
    for key, item in body.items():
        if key in ("apiVersion", "kind", "metadata", "status"):
            continue
        sub = schema.get("properties", {}).get(key)
        if sub is None:
            continue
        defaulted = with_defaults(sub, item)
        yield from _required(sub, defaulted, key)
        yield from check_rules(rules["properties"][key], defaulted, key)
    for key in schema.get("required", ()):
        if key not in ("apiVersion", "kind", "metadata") and body.get(key) is None:
            yield key, "missing required field"
