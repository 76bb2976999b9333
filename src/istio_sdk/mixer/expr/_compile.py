"""Type-checked CEXL tree -> a tree of Python closures (mixer/pkg/lang/compiler, il/interpreter).

Each node becomes a closure taking the attribute mapping, built once; evaluating never looks at
the syntax tree again. A node has two forms, as Mixer's code generator has two nil modes:

- *strict*: a missing attribute is an error (``lookup failed: 'NAME'``);
- *maybe* (the left operands of ``|``): returns :data:`ABSENT` instead. An attribute is absent
  when missing, ``m[k]`` when the map or the key is missing, a ``|`` chain when all of it is;
  constants, ``conditional(...)`` and function calls are always present (their own arguments
  strict). Operators and ``size()`` are evaluated strictly and then count as absent: Mixer's
  generated code for them ignores the nil mode, so ``(a == b) | c`` yields ``c``.

Mixer's compiler also refuses some type-checked expressions ("internal compiler error"):
equality on DURATION and STRING_MAP, ordering on anything but strings, numbers and
timestamps, ``+`` on anything but STRING, INT64 and DOUBLE. Those are TypeCheckErrors here.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.mixer.errors import EvaluationError, TypeCheckError
from istio_sdk.mixer.expr import _externs
from istio_sdk.mixer.expr._syntax import Const, Fn, Node, Var
from istio_sdk.mixer.expr._types import type_of
from istio_sdk.timeutil import Duration, duration_from_parts

__all__ = ["ABSENT", "Evaluator", "compile_tree"]

Evaluator = Callable[[Mapping[str, Any]], Any]
ABSENT: Any = object()

_STRINGS = frozenset({ValueType.STRING, ValueType.DNS_NAME, ValueType.EMAIL_ADDRESS, ValueType.URI})
_IL_NAMES = {
    ValueType.STRING: "String",
    ValueType.DNS_NAME: "String",
    ValueType.EMAIL_ADDRESS: "String",
    ValueType.URI: "String",
    ValueType.BOOL: "Bool",
    ValueType.INT64: "Integer",
    ValueType.DOUBLE: "Double",
    ValueType.DURATION: "Duration",
    ValueType.TIMESTAMP: "Interface",
    ValueType.IP_ADDRESS: "Interface",
    ValueType.STRING_MAP: "Interface",
}
_INT64 = 2**63
_EXACT_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "int64": frozenset({int}),
    "double": frozenset({float}),
    "bool": frozenset({bool}),
    "duration": frozenset({datetime.timedelta, Duration}),
    "ip address": frozenset({ipaddress.IPv4Address, ipaddress.IPv6Address, bytes}),
    "string map": frozenset({dict, MappingProxyType}),
}
_BROKEN_IN_MAYBE = frozenset({"EQ", "NEQ", "LT", "LEQ", "GT", "GEQ", "LAND", "LOR", "ADD", "size"})


def _accepts(value_type: ValueType) -> tuple[Callable[[object], bool], str]:
    """How a value from the bag is checked for an attribute of ``value_type``."""
    if value_type in _STRINGS:
        return (lambda v: isinstance(v, str)), "string"
    if value_type == ValueType.INT64:
        return (lambda v: isinstance(v, int) and not isinstance(v, bool)), "int64"
    if value_type == ValueType.DOUBLE:
        return (lambda v: isinstance(v, float)), "double"
    if value_type == ValueType.BOOL:
        return (lambda v: isinstance(v, bool)), "bool"
    if value_type == ValueType.TIMESTAMP:
        return (
            lambda v: isinstance(v, datetime.datetime) and v.utcoffset() is not None
        ), "timestamp"
    if value_type == ValueType.DURATION:
        return (lambda v: isinstance(v, datetime.timedelta)), "duration"
    if value_type == ValueType.IP_ADDRESS:
        kinds = (ipaddress.IPv4Address, ipaddress.IPv6Address, bytes)
        return (lambda v: isinstance(v, kinds)), "ip address"
    if value_type == ValueType.STRING_MAP:
        return (lambda v: isinstance(v, Mapping)), "string map"
    raise TypeCheckError(
        f"internal compiler error -- unhandled expression type: '{value_type.name}'"
    )


def _conversion_error(kind: str, value: object) -> EvaluationError:
    shown = str(value)  # Go's %v
    if len(shown) > 64:
        shown = shown[:64] + "..."
    return EvaluationError(f"error converting value to {kind}: '{shown}'")


class _Compiler:
    def __init__(self, manifest: Mapping[str, ValueType]) -> None:
        self.manifest = manifest

    def type(self, node: Node) -> ValueType:
        return type_of(node, self.manifest)

    # --- strict ---------------------------------------------------------------------------

    def strict(self, node: Node) -> Evaluator:
        if isinstance(node, Const):
            value = self.constant(node)
            return lambda bag: value
        if isinstance(node, Var):
            return self.variable(node, strict=True)
        assert isinstance(node, Fn)
        name = node.name
        if name in ("EQ", "NEQ"):
            return self.equality(node, negate=name == "NEQ")
        if name in ("LT", "LEQ", "GT", "GEQ"):
            return self.ordering(node)
        if name == "LAND":
            left, right = self.strict(node.args[0]), self.strict(node.args[1])
            return lambda bag: left(bag) and right(bag)
        if name == "LOR":
            left, right = self.strict(node.args[0]), self.strict(node.args[1])
            return lambda bag: left(bag) or right(bag)
        if name == "INDEX":
            return self.index(node)
        if name == "OR":
            maybe_left, right = self.maybe(node.args[0]), self.strict(node.args[1])

            def first_present(bag: Mapping[str, Any]) -> Any:
                value = maybe_left(bag)
                return right(bag) if value is ABSENT else value

            return first_present
        if name == "conditional":
            test, yes, no = (self.strict(a) for a in node.args[:3])
            return lambda bag: yes(bag) if test(bag) else no(bag)
        if name == "ADD":
            return self.add(node)
        if name == "size" and isinstance(node.args[0], Const):
            length = _externs.size(str(node.args[0].value))
            return lambda bag: length
        return self.call(node)

    def constant(self, node: Const) -> object:
        if node.type == ValueType.DURATION:
            assert isinstance(node.value, int)
            return duration_from_parts(*divmod(node.value, 1_000_000_000))
        return node.value

    def variable(self, node: Var, *, strict: bool) -> Evaluator:
        name = node.name
        accepts, kind = _accepts(self.type(node))
        exact = _EXACT_TYPES.get(kind, frozenset())

        def resolve(bag: Mapping[str, Any]) -> Any:
            value = bag.get(name, ABSENT)
            if type(value) in exact:  # the common types, without isinstance on ABCs
                return value
            if value is ABSENT:
                if strict:
                    raise EvaluationError(f"lookup failed: '{name}'")
                return ABSENT
            if not accepts(value):
                raise _conversion_error(kind, value)
            return value

        return resolve

    def variable_equals(self, node: Var, constant: object, *, negate: bool) -> Evaluator:
        # the commonest rule shape, `attribute == "literal"`, in one closure
        name = node.name
        resolve = self.variable(node, strict=True)
        exact = type(constant)

        def equals(bag: Mapping[str, Any]) -> bool:
            value = bag.get(name, ABSENT)
            if type(value) is not exact:
                value = resolve(bag)  # absent or another type: the general path decides
            return bool(value != constant) if negate else bool(value == constant)

        return equals

    def equality(self, node: Fn, *, negate: bool) -> Evaluator:
        first_type = self.type(node.args[0])
        left, right = self.strict(node.args[0]), self.strict(node.args[1])
        test: Callable[[Any, Any], bool]
        if first_type in (ValueType.BOOL, ValueType.STRING, ValueType.INT64, ValueType.DOUBLE):
            if isinstance(node.args[1], Const):
                constant = self.constant(node.args[1])
                if isinstance(node.args[0], Var):
                    return self.variable_equals(node.args[0], constant, negate=negate)
                if negate:
                    return lambda bag: left(bag) != constant
                return lambda bag: left(bag) == constant
            if negate:
                return lambda bag: left(bag) != right(bag)
            return lambda bag: left(bag) == right(bag)
        if first_type == ValueType.DNS_NAME:
            test = _externs.dns_name_equal
        elif first_type == ValueType.EMAIL_ADDRESS:
            test = _externs.email_equal
        elif first_type == ValueType.URI:
            test = _externs.uri_equal
        elif first_type == ValueType.IP_ADDRESS:
            test = _externs.ip_equal
        elif first_type == ValueType.TIMESTAMP:
            test = _timestamp_equal
        else:
            raise TypeCheckError(
                "internal compiler error -- equality for type not yet implemented: "
                f"{_IL_NAMES.get(first_type, 'Unknown')}"
            )
        if negate:
            return lambda bag: not test(left(bag), right(bag))
        return lambda bag: test(left(bag), right(bag))

    def ordering(self, node: Fn) -> Evaluator:
        first_type = self.type(node.args[0])
        if first_type not in _STRINGS | {
            ValueType.INT64,
            ValueType.DOUBLE,
            ValueType.TIMESTAMP,
        }:
            wording = {
                "LT": "less than",
                "LEQ": "less or equal",
                "GT": "greater than",
                "GEQ": "greater or equal",
            }[node.name]
            raise TypeCheckError(
                f"internal compiler error -- {wording} for type not yet implemented: "
                f"{_IL_NAMES.get(first_type, 'Unknown')}"
            )
        left, right = self.strict(node.args[0]), self.strict(node.args[1])
        if node.name == "LT":
            return lambda bag: left(bag) < right(bag)
        if node.name == "LEQ":
            return lambda bag: left(bag) <= right(bag)
        if node.name == "GT":
            return lambda bag: left(bag) > right(bag)
        return lambda bag: left(bag) >= right(bag)

    def add(self, node: Fn) -> Evaluator:
        first_type = self.type(node.args[0])
        left, right = self.strict(node.args[0]), self.strict(node.args[1])
        if first_type in _STRINGS or first_type == ValueType.DOUBLE:
            return lambda bag: left(bag) + right(bag)
        if first_type == ValueType.INT64:  # Go's int64 addition wraps around
            return lambda bag: (left(bag) + right(bag) + _INT64) % (2 * _INT64) - _INT64
        raise TypeCheckError(
            "internal compiler error -- Add for type not yet implemented: "
            f"{_IL_NAMES.get(first_type, 'Unknown')}"
        )

    def index(self, node: Fn) -> Evaluator:
        target = self.strict(node.args[0])
        key_node = node.args[1]
        if isinstance(key_node, Const):
            key = key_node.value
            return lambda bag: target(bag).get(key, "")
        key_of = self.strict(key_node)
        return lambda bag: target(bag).get(key_of(bag), "")

    def call(self, node: Fn) -> Evaluator:
        name = node.name
        args = [self.strict(a) for a in node.args[: _ARITY.get(name, len(node.args))]]
        if node.target is not None:
            target = self.strict(node.target)
            (arg,) = args
            if name == "matches":
                if isinstance(node.target, Const):
                    search = _externs.regex_searcher(str(node.target.value))
                    return lambda bag: search(arg(bag))
                return lambda bag: _externs.matches(target(bag), arg(bag))
            if name == "startsWith":
                return lambda bag: target(bag).startswith(arg(bag))
            return lambda bag: target(bag).endswith(arg(bag))
        if name == "emptyStringMap":
            empty: Mapping[str, str] = MappingProxyType({})
            return lambda bag: empty
        if name == "conditionalString":
            test, yes, no = args
            return lambda bag: _pick(test(bag), yes(bag), no(bag))
        if name == "match":
            text, pattern = args
            if isinstance(node.args[1], Const):  # the usual case: the glob is a literal
                glob = str(node.args[1].value)
                if glob.endswith("*"):
                    prefix = glob[:-1]
                    return lambda bag: text(bag).startswith(prefix)
                if glob.startswith("*"):
                    suffix = glob[1:]
                    return lambda bag: text(bag).endswith(suffix)
                return lambda bag: text(bag) == glob
            return lambda bag: _externs.match(text(bag), pattern(bag))
        (only,) = args
        function: Callable[[Any], Any] = {
            "size": _externs.size,
            "ip": _externs.ip,
            "timestamp": _externs.timestamp,
            "dnsName": _externs.dns_name,
            "email": _externs.email,
            "uri": _externs.uri,
            "toLower": str.lower,
        }[name]
        return lambda bag: function(only(bag))

    # --- maybe (left of |) ----------------------------------------------------------------

    def maybe(self, node: Node) -> Evaluator:
        if isinstance(node, Var):
            return self.variable(node, strict=False)
        if isinstance(node, Fn) and node.name == "INDEX":
            target = self.maybe(node.args[0])
            key_node = node.args[1]
            key_of = self.maybe(key_node) if not isinstance(key_node, Const) else None
            constant = key_node.value if isinstance(key_node, Const) else None

            def lookup(bag: Mapping[str, Any]) -> Any:
                found = target(bag)
                if found is ABSENT:
                    return ABSENT
                key = constant if key_of is None else key_of(bag)
                if key is ABSENT:
                    return ABSENT
                return found.get(key, ABSENT)

            return lookup
        if isinstance(node, Fn) and node.name == "OR":
            left, right = self.maybe(node.args[0]), self.maybe(node.args[1])

            def chain(bag: Mapping[str, Any]) -> Any:
                value = left(bag)
                return right(bag) if value is ABSENT else value

            return chain
        evaluate = self.strict(node)
        if isinstance(node, Fn) and node.name in _BROKEN_IN_MAYBE:

            def discarded(bag: Mapping[str, Any]) -> Any:
                evaluate(bag)
                return ABSENT

            return discarded
        return evaluate


_ARITY = {
    "size": 1,
    "ip": 1,
    "timestamp": 1,
    "dnsName": 1,
    "email": 1,
    "uri": 1,
    "toLower": 1,
    "match": 2,
    "matches": 1,
    "startsWith": 1,
    "endsWith": 1,
    "emptyStringMap": 0,
    "conditionalString": 3,
}


def _pick(test: bool, yes: str, no: str) -> str:
    return yes if test else no


def _timestamp_equal(a: Any, b: Any) -> bool:
    return bool(a == b)


def compile_tree(node: Node, manifest: Mapping[str, ValueType]) -> tuple[ValueType, Evaluator]:
    """The result type and the evaluator of a parsed expression."""
    result = type_of(node, manifest)
    _accepts(result)  # Mixer's compiler refuses an expression whose type it cannot return
    return result, _Compiler(manifest).strict(node)
