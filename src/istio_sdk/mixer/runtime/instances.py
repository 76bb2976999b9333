"""``instance`` params compiled into builders of template instances (pure).

An instance's params hold one CEXL expression per template field (``value: request.size | 0``,
``dimensions: {source: source.workload.name | "unknown"}``); maps hold one per entry. A YAML
number or boolean is taken as its text (``value: 1`` is the INT64 constant 1, as ``"1"``).
Keys may be the proto field name or its JSON name (``monitored_resource_type`` or
``monitoredResourceType``). :func:`compile_instance` compiles them once against the manifest;
:meth:`InstanceBuilder.build` evaluates them for one request. A field that fails to evaluate is
a :class:`~istio_sdk.mixer.errors.DispatchError` naming the instance and the field (Mixer fails
the call: INTERNAL for Check, UNKNOWN for Report).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.mixer.errors import DispatchError, EvaluationError, InstanceParamsError
from istio_sdk.mixer.expr import Expression, compile
from istio_sdk.mixer.runtime.referenced import plain_value
from istio_sdk.mixer.templates import (
    TEMPLATES,
    Action,
    Authorization,
    CheckNothing,
    Instance,
    ListEntry,
    LogEntry,
    Metric,
    Quota,
    ReportNothing,
    Subject,
    Variety,
)
from istio_sdk.protojson import json_name

__all__ = ["InstanceBuilder", "compile_instance"]

# template -> {field: shape}; a shape is "expr", "map", or a nested {field: shape}
_Shape = str | Mapping[str, Any]
_FIELDS: Mapping[str, Mapping[str, _Shape]] = {
    "checknothing": {},
    "reportnothing": {},
    "listentry": {"value": "expr"},
    "quota": {"dimensions": "map"},
    "metric": {
        "value": "expr",
        "dimensions": "map",
        "monitored_resource_type": "expr",
        "monitored_resource_dimensions": "map",
    },
    "logentry": {
        "variables": "map",
        "timestamp": "expr",
        "severity": "expr",
        "monitored_resource_type": "expr",
        "monitored_resource_dimensions": "map",
    },
    "authorization": {
        "subject": {"user": "expr", "groups": "expr", "properties": "map"},
        "action": {
            "namespace": "expr",
            "service": "expr",
            "method": "expr",
            "path": "expr",
            "properties": "map",
        },
    },
}

Fields = Mapping[str, Any]
"""Compiled fields: name -> Expression, or name -> {key: Expression}, or nested Fields."""


def _text(value: object, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    raise InstanceParamsError(f"{path}: expected an expression (a string), got {value!r:.80}")


def _compile_expr(value: object, path: str, manifest: Mapping[str, ValueType]) -> Expression:
    text = _text(value, path)
    try:
        return compile(text, manifest)
    except Exception as exc:  # ParseError, TypeCheckError: the field path says where
        raise type(exc)(f"{path}: {exc}") from None


def _compile_fields(
    params: Mapping[str, Any],
    shapes: Mapping[str, _Shape],
    manifest: Mapping[str, ValueType],
    prefix: str,
) -> dict[str, Any]:
    aliases = {json_name(name): name for name in shapes} | {name: name for name in shapes}
    compiled: dict[str, Any] = {}
    for key, value in params.items():
        field = aliases.get(key)
        path = f"{prefix}{key}"
        if field is None:
            known = ", ".join(shapes) or "none"
            raise InstanceParamsError(f"{path}: unknown field (the template has: {known})")
        if value is None:
            continue
        shape = shapes[field]
        if shape == "expr":
            compiled[field] = _compile_expr(value, path, manifest)
        elif shape == "map":
            if not isinstance(value, Mapping):
                raise InstanceParamsError(f"{path}: expected a map of expressions")
            compiled[field] = {
                str(k): _compile_expr(v, f"{path}.{k}", manifest) for k, v in value.items()
            }
        else:
            assert isinstance(shape, Mapping)
            if not isinstance(value, Mapping):
                raise InstanceParamsError(f"{path}: expected an object")
            compiled[field] = _compile_fields(value, shape, manifest, f"{path}.")
    return compiled


def _evaluate(instance: str, path: str, expression: Expression, bag: Mapping[str, Any]) -> Any:
    try:
        return plain_value(expression.evaluate(bag))
    except EvaluationError as exc:
        raise DispatchError(f"instance {instance}: {path}: {exc}") from None


def _values(instance: str, fields: Fields, bag: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, compiled in fields.items():
        if isinstance(compiled, Expression):
            out[field] = _evaluate(instance, prefix + field, compiled, bag)
        elif all(isinstance(v, Expression) for v in compiled.values()):
            out[field] = {
                key: _evaluate(instance, f"{prefix}{field}.{key}", expression, bag)
                for key, expression in compiled.items()
            }
        else:
            out[field] = _values(instance, compiled, bag, f"{prefix}{field}.")
    return out


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _timestamp(value: Any) -> datetime.datetime | None:
    return value if isinstance(value, datetime.datetime) else None


def _make_instance(template: str, name: str, values: dict[str, Any]) -> Instance:
    if template == "checknothing":
        return CheckNothing(name)
    if template == "reportnothing":
        return ReportNothing(name)
    if template == "listentry":
        return ListEntry(name, values.get("value", ""))
    if template == "quota":
        return Quota(name, values.get("dimensions", {}))
    if template == "metric":
        return Metric(
            name,
            values.get("value", 0),
            values.get("dimensions", {}),
            _str(values.get("monitored_resource_type")),
            values.get("monitored_resource_dimensions", {}),
        )
    if template == "logentry":
        return LogEntry(
            name,
            values.get("variables", {}),
            _timestamp(values.get("timestamp")),
            _str(values.get("severity")),
            _str(values.get("monitored_resource_type")),
            values.get("monitored_resource_dimensions", {}),
        )
    subject = values.get("subject", {})
    action = values.get("action", {})
    return Authorization(
        name,
        Subject(
            _str(subject.get("user")),
            _str(subject.get("groups")),
            subject.get("properties", {}),
        ),
        Action(
            _str(action.get("namespace")),
            _str(action.get("service")),
            _str(action.get("method")),
            _str(action.get("path")),
            action.get("properties", {}),
        ),
    )


@attrs.frozen
class InstanceBuilder:
    """A compiled instance: :meth:`build` evaluates its fields for one request."""

    name: str
    template: str
    fields: Fields = attrs.field(repr=False)
    _make: Callable[[str, str, dict[str, Any]], Instance] = attrs.field(
        default=_make_instance, repr=False
    )

    @property
    def variety(self) -> Variety:
        return TEMPLATES[self.template].variety

    @property
    def short_name(self) -> str:
        """The name before the first dot (what a Check's quota names refer to)."""
        return self.name.split(".", 1)[0]

    def build(self, bag: Mapping[str, Any]) -> Instance:
        """The instance for ``bag``; :class:`DispatchError` when a field cannot be evaluated."""
        values = _values(self.name, self.fields, bag, "")
        return self._make(self.template, self.name, values)


def compile_instance(
    name: str, template: str, params: Mapping[str, Any], manifest: Mapping[str, ValueType]
) -> InstanceBuilder:
    """The builder of instance ``name`` of ``template``; :class:`InstanceParamsError` or an
    :class:`~istio_sdk.mixer.errors.ExpressionError` (with the field path) when it cannot be."""
    shapes = _FIELDS.get(template)
    if shapes is None:
        raise InstanceParamsError(f"template {template!r} is not available")
    return InstanceBuilder(name, template, _compile_fields(params, shapes, manifest, ""))
