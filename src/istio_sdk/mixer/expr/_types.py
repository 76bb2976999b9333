"""CEXL's function table and type checker (mixer/pkg/lang/ast/func.go, EvalType).

An argument typed ``VALUE_TYPE_UNSPECIFIED`` binds a template type (the first such argument's
type, or an instance target's); every later unspecified argument must have it, and an
unspecified result is it. Only too few arguments are an error: extra ones pass unchecked, as in
Mixer. The messages are Mixer's, with the expression printed in its postfix form.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.mixer.errors import TypeCheckError
from istio_sdk.mixer.expr._syntax import Const, Fn, Node, Var

__all__ = ["FUNCTIONS", "FunctionInfo", "type_of"]

_U = ValueType.VALUE_TYPE_UNSPECIFIED
_S = ValueType.STRING
_B = ValueType.BOOL


@attrs.frozen
class FunctionInfo:
    """One entry of the function table."""

    name: str
    result: ValueType
    args: tuple[ValueType, ...]
    instance: bool = False
    target: ValueType = _U


def _table(*infos: FunctionInfo) -> Mapping[str, FunctionInfo]:
    return {info.name: info for info in infos}


# Mixer's intrinsics plus its externs' metadata: exactly what a user may call.
FUNCTIONS: Mapping[str, FunctionInfo] = _table(
    FunctionInfo("EQ", _B, (_U, _U)),
    FunctionInfo("NEQ", _B, (_U, _U)),
    FunctionInfo("LT", _B, (_U, _U)),
    FunctionInfo("LEQ", _B, (_U, _U)),
    FunctionInfo("GT", _B, (_U, _U)),
    FunctionInfo("GEQ", _B, (_U, _U)),
    FunctionInfo("OR", _U, (_U, _U)),
    FunctionInfo("LOR", _B, (_B, _B)),
    FunctionInfo("LAND", _B, (_B, _B)),
    FunctionInfo("INDEX", _S, (ValueType.STRING_MAP, _S)),
    FunctionInfo("conditional", _U, (_B, _U, _U)),
    FunctionInfo("ADD", _U, (_U, _U)),
    FunctionInfo("size", ValueType.INT64, (_S,)),
    FunctionInfo("ip", ValueType.IP_ADDRESS, (_S,)),
    FunctionInfo("timestamp", ValueType.TIMESTAMP, (_S,)),
    FunctionInfo("dnsName", ValueType.DNS_NAME, (_S,)),
    FunctionInfo("email", ValueType.EMAIL_ADDRESS, (_S,)),
    FunctionInfo("uri", ValueType.URI, (_S,)),
    FunctionInfo("match", _B, (_S, _S)),
    FunctionInfo("matches", _B, (_S,), instance=True, target=_S),
    FunctionInfo("startsWith", _B, (_S,), instance=True, target=_S),
    FunctionInfo("endsWith", _B, (_S,), instance=True, target=_S),
    FunctionInfo("emptyStringMap", ValueType.STRING_MAP, ()),
    FunctionInfo("conditionalString", _S, (_B, _S, _S)),
    FunctionInfo("toLower", _S, (_S,)),
)


def type_name(value_type: ValueType) -> str:
    return value_type.name or str(value_type.value)


def type_of(node: Node, manifest: Mapping[str, ValueType]) -> ValueType:
    """``node``'s result type under ``manifest``; :class:`TypeCheckError` as Mixer words it."""
    if isinstance(node, Const):
        return node.type
    if isinstance(node, Var):
        found = manifest.get(node.name)
        if found is None:
            raise TypeCheckError(f"unknown attribute {node.name}")
        return ValueType(found)
    assert isinstance(node, Fn)
    info = FUNCTIONS.get(node.name)
    if info is None:
        raise TypeCheckError(f"unknown function: {node.name}")
    template = _U
    if node.target is not None:
        if not info.instance:
            raise TypeCheckError(f"invoking regular function on instance method: {node.name}")
        target_type = type_of(node.target, manifest)
        if info.target == _U:
            template = target_type
        elif target_type != info.target:
            raise TypeCheckError(
                f"{node} target typeError got {type_name(target_type)}, "
                f"expected {type_name(info.target)}"
            )
    elif info.instance:
        raise TypeCheckError(f"invoking instance method without an instance: {node.name}")
    if len(node.args) < len(info.args):
        raise TypeCheckError(
            f"{node} arity mismatch. Got {len(node.args)} arg(s), expected {len(info.args)} arg(s)"
        )
    for position, (arg, declared) in enumerate(zip(node.args, info.args, strict=False), 1):
        got = type_of(arg, manifest)
        expected = declared
        if declared == _U:
            if template == _U:
                template = got
                continue
            expected = template
        if got != expected:
            raise TypeCheckError(
                f"{node} arg {position} ({arg}) typeError got {type_name(got)}, "
                f"expected {type_name(expected)}"
            )
    return info.result if info.result != _U else template
