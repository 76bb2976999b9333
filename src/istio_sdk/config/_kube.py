"""Kubernetes objects as resource bodies: typed lightkube models, their schema checks, JSON out.

A Kubernetes kind's :class:`~istio_sdk.config.Resource` keeps ``metadata`` and ``status`` as
every resource does; everything else the object carries (``spec``, a ConfigMap's ``data``, an
EndpointSlice's ``endpoints``, a webhook configuration's ``webhooks``) is its *body*, held in
``Resource.spec`` as the lightkube resource object with ``metadata`` and ``status`` left unset
(``resource.spec.spec.ports`` for a Service, ``resource.spec.data`` for a ConfigMap).

Checks follow the kube-apiserver:

- built-in kinds are checked against the lightkube model's types: unknown fields (rejected as
  ``kubectl apply``'s strict field validation does), wrong JSON types, and the fields the
  model marks required (``ports[0].port``, ``containers[0].name``): all stop loading, as the
  typed model cannot be built without them;
- Gateway API kinds are checked against their CRD's OpenAPI schema
  (:mod:`istio_sdk.config._gateway_api`): types, unknown fields, ``required``, list-map keys,
  then, on the defaulted value, the ranges, lengths, patterns, enums and CEL rules that
  :mod:`istio_sdk.config._crd_rules` checks for Istio's CRDs.

Type and unknown-field problems stop loading (:class:`FieldError`, like a proto type error in an
Istio spec); for Gateway API kinds, required fields and schema rules are what :func:`validate`
adds.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import typing
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from istio_sdk.config import _gateway_api as gateway_api
from istio_sdk.config._kinds import KindInfo
from istio_sdk.config._yaml import JsonValue, describe_json, join_index, join_key

__all__ = ["body_from_json", "body_problems", "body_to_json", "model_class"]

_NOT_BODY = frozenset({"metadata", "status"})


@functools.cache
def model_class(info: KindInfo) -> type[Any]:
    """The lightkube class of a Kubernetes kind (a generic resource class for CRD kinds)."""
    if info.model.startswith("crd:"):
        from lightkube import generic_resource

        version = info.storage_version
        make = (
            generic_resource.create_namespaced_resource
            if info.namespaced
            else generic_resource.create_global_resource
        )
        existing = generic_resource.get_generic_resource(  # type: ignore[no-untyped-call]
            f"{info.group}/{version}", info.kind
        )
        return existing or make(info.group, version, info.kind, info.plural)
    module, _, name = info.model.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


@functools.cache
def _fields(cls: type[Any]) -> dict[str, tuple[str, Any, bool]]:
    """JSON name -> (attribute, type without Optional, required) of a lightkube model."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[str, Any, bool]] = {}
    for field in dataclasses.fields(cls):
        json_name = field.metadata.get("json", field.name)
        hint = hints[field.name]
        args = typing.get_args(hint)
        if typing.get_origin(hint) is typing.Union and type(None) in args:
            rest = tuple(a for a in args if a is not type(None))
            hint = rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        out[json_name] = (field.name, hint, required)
    return out


def _type_problems(hint: Any, value: JsonValue, path: str) -> Iterator[tuple[str, str]]:
    """Problems of ``value`` against a lightkube type hint (types and unknown fields only)."""
    if value is None:
        return  # null is "not set" for every optional field; required ones are checked apart
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        if not any(_fits(arg, value) for arg in typing.get_args(hint)):
            names = " or ".join(_name(arg) for arg in typing.get_args(hint))
            yield path, f"expected {names}, got {describe_json(value)}"
        return
    if origin is list:
        if not isinstance(value, list):
            yield path, f"expected a list, got {describe_json(value)}"
            return
        (item,) = typing.get_args(hint)
        for i, element in enumerate(value):
            yield from _type_problems(item, element, join_index(path, i))
        return
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            yield path, f"expected an object, got {describe_json(value)}"
        return
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            yield path, f"expected an object, got {describe_json(value)}"
            return
        fields = _fields(hint)  # type: ignore[arg-type]
        for key, item in value.items():
            child = join_key(path, key)
            if key not in fields:
                yield child, f"unknown field {key!r}"
                continue
            yield from _type_problems(fields[key][1], item, child)
        return
    if not _fits(hint, value):
        yield path, f"expected {_name(hint)}, got {describe_json(value)}"


def _name(hint: Any) -> str:
    return {str: "a string", int: "a 64-bit integer", bool: "a boolean", float: "a number"}.get(
        hint, "an RFC 3339 time" if hint is datetime else str(hint)
    )


def _fits(hint: Any, value: JsonValue) -> bool:
    if hint is str:
        return isinstance(value, str)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # Kubernetes integers are int32 or int64
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is datetime:
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    return True


def _missing_required(hint: Any, value: JsonValue, path: str) -> Iterator[str]:
    origin = typing.get_origin(hint)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint)
        for i, element in enumerate(value):
            yield from _missing_required(item, element, join_index(path, i))
    elif dataclasses.is_dataclass(hint) and isinstance(value, dict):
        for key, (_attr, sub, required) in _fields(hint).items():  # type: ignore[arg-type]
            child = join_key(path, key)
            if key not in value or value[key] is None:
                if required and key not in ("apiVersion", "kind"):
                    yield child
                continue
            yield from _missing_required(sub, value[key], child)


def _body(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    return {key: item for key, item in value.items() if key not in _NOT_BODY}


def structural_problems(
    info: KindInfo, version: str, value: dict[str, JsonValue]
) -> list[tuple[str, str]]:
    """Type and unknown-field problems of a Kubernetes object (``metadata``/``status`` apart)."""
    body = _body(value)
    if info.model.startswith("crd:"):
        return list(gateway_api.structural_problems(info, version, body))
    cls = model_class(info)
    problems = list(_type_problems(cls, body, ""))
    # the typed model cannot be built without its required fields: those stop loading too
    problems.extend((path, "missing required field") for path in _missing_required(cls, body, ""))
    return problems


def body_from_json(info: KindInfo, value: dict[str, JsonValue]) -> Any:
    """The lightkube object for a structurally valid Kubernetes object (without metadata and
    status)."""
    body = _body(value)
    cls = model_class(info)
    try:
        if info.model.startswith("crd:"):
            return cls.from_dict(body)
        return cls.from_dict(body, lazy=False)
    except (TypeError, ValueError, AttributeError) as exc:  # a shape the checks above missed
        raise _BodyError("", f"cannot build a {info.kind}: {exc}") from None


class _BodyError(ValueError):
    """A Kubernetes object that cannot become its model: ``path`` and ``message``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def body_of(obj: Any) -> Any:
    """A lightkube object without its ``metadata`` and ``status`` (a copy)."""
    value = {k: v for k, v in obj.to_dict().items() if k not in _NOT_BODY}
    cls: Any = type(obj)
    return (
        cls.from_dict(value, lazy=False) if dataclasses.is_dataclass(obj) else cls.from_dict(value)
    )


def body_to_json(body: Any) -> dict[str, JsonValue]:
    """The JSON form of a body, without apiVersion, kind, metadata and status."""
    value: dict[str, JsonValue] = dict(body.to_dict())
    for key in ("apiVersion", "kind", "metadata", "status"):
        value.pop(key, None)
    return value


def body_problems(
    info: KindInfo, version: str, body: dict[str, JsonValue]
) -> Iterator[tuple[str, str]]:
    """Problems beyond structure: required fields, and for CRD kinds the schema's rules."""
    if info.model.startswith("crd:"):
        yield from gateway_api.rule_problems(info, version, body)
