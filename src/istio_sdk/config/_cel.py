"""A small CEL interpreter for the validation rules in Istio's CRDs.

The kube-apiserver evaluates each ``x-kubernetes-validations`` rule with ``self`` bound to the
JSON value the rule is attached to, using cel-go with Kubernetes' extension libraries. Istio's
rules use a small part of CEL, which this module implements with cel-go's semantics:

- literals (int, double, string, bool, null, lists, maps), field selection, indexing, ``has()``,
  ``! - * / % + == != < <= > >= in && || ?:`` and the macros ``all``, ``exists``,
  ``exists_one`` and ``filter``; raw (``r"..."``) and triple-quoted string literals;
- ``size``, ``contains``, ``startsWith``, ``endsWith``, ``substring``, ``split``, ``matches``
  (RE2 syntax and semantics), ``int()``, ``string()``, ``duration()``;
- Kubernetes' ``isURL()`` and ``url()`` with ``getScheme()``, which follow Go's ``net/url``.

Anything else is a :class:`CelSyntaxError` when the rule is compiled.

As in CEL: ``&&``, ``||``, ``all`` and ``exists`` ignore an error on one side (one element)
when another decides the result; selecting a missing field is an error (use ``has``); values of
different types are never equal (numbers compare by value across int and double); int
arithmetic is 64-bit and overflow is an error; int ``/`` and ``%`` truncate toward zero, and
dividing an int by zero is an error while a double gives an infinity; durations count
nanoseconds exactly (as ``istio_sdk.timeutil.Duration``) and are parsed as Go's
``time.ParseDuration`` does; ``int()`` of a string takes an optional sign and ASCII digits only.
The Go behaviour (durations, integers, RE2, URLs) lives in ``_go``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any, TypeAlias

import attrs

from istio_sdk.config import _go as go
from istio_sdk.config._go import INT64_MAX, INT64_MIN
from istio_sdk.timeutil import Duration

Node: TypeAlias = tuple[Any, ...]


class CelError(Exception):
    """A rule failed to evaluate (missing field, wrong types, bad argument)."""


class CelSyntaxError(CelError):
    """A rule uses syntax or functions this interpreter does not support."""


# CEL's lexical grammar: ASCII digits only, whitespace is [ \t\n\r\f], ``//`` starts a comment.
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\n\r\f]+|//[^\n]*)
  | (?P<float>[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?
      |[0-9]+[eE][+-]?[0-9]+)
  | (?P<int>0x[0-9a-fA-F]+|[0-9]+)(?![A-Za-z0-9_.])
  | (?P<raw>[rR](?:"{3}[\s\S]*?"{3}|'{3}[\s\S]*?'{3}|"[^"\n\r]*"|'[^'\n\r]*'))
  | (?P<long>"{3}(?:[^\\]|\\[\s\S])*?"{3}|'{3}(?:[^\\]|\\[\s\S])*?'{3})
  | (?P<string>"(?:[^"\\\n\r]|\\.)*"|'(?:[^'\\\n\r]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "?": "?",
    '"': '"',
    "'": "'",
    "`": "`",
}
_HEX = frozenset("0123456789abcdefABCDEF")
_MACROS = frozenset({"all", "exists", "exists_one", "filter"})
_MAX_DEPTH = 50  # nesting of parentheses, lists, maps, calls and unary operators
_MAX_TREE_DEPTH = 200  # operands of one chain of binary operators included


def _unescape(body: str) -> str:
    """The value of a quoted CEL string literal's body (CEL's escape sequences, no others)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        escaped = body[i + 1 : i + 2]
        if escaped in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[escaped])
            i += 2
            continue
        width = {"x": 2, "X": 2, "u": 4, "U": 8}.get(escaped)
        if width is not None:
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not set(digits) <= _HEX:
                raise CelSyntaxError(f"bad \\{escaped} escape in string literal")
            point = int(digits, 16)
            if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
                raise CelSyntaxError(f"\\{escaped}{digits} is not a Unicode scalar value")
            out.append(chr(point))
            i += 2 + width
            continue
        octal = body[i + 1 : i + 4]
        if len(octal) == 3 and octal[0] in "0123" and set(octal[1:]) <= set("01234567"):
            out.append(chr(int(octal, 8)))
            i += 4
            continue
        raise CelSyntaxError(f"unsupported string escape \\{escaped}")
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise CelSyntaxError(f"unexpected character {text[pos]!r} at {pos}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group()
        if kind == "ws":
            continue
        if kind == "float":
            number = float(value)
            if math.isinf(number):
                raise CelSyntaxError(f"double literal {value} is out of range")
            tokens.append(("lit", number))
        elif kind == "int":
            if len(value) > 24:  # beyond int64 in any base (and Python's int() digit limit)
                raise CelSyntaxError(f"int literal {value[:24]}... does not fit in 64 bits")
            # The sign is folded in by the parser, so that -9223372036854775808 is a literal.
            tokens.append(("int", int(value[2:], 16) if value.startswith("0x") else int(value)))
        elif kind == "string":
            tokens.append(("lit", _unescape(value[1:-1])))
        elif kind == "long":
            tokens.append(("lit", _unescape(value[3:-3])))
        elif kind == "raw":  # no escapes in raw strings
            quote = 3 if value[1:4] in ('"""', "'''") else 1
            tokens.append(("lit", value[1 + quote : -quote]))
        elif kind == "ident" and value in ("true", "false"):
            tokens.append(("lit", value == "true"))
        elif kind == "ident" and value == "null":
            tokens.append(("lit", None))
        elif kind == "ident" and value == "in":
            tokens.append(("op", "in"))
        else:
            tokens.append((str(kind), value))
    tokens.append(("end", None))
    return tokens


def _int_literal(value: int) -> Node:
    if not INT64_MIN <= value <= INT64_MAX:
        raise CelSyntaxError(f"int literal {value} does not fit in 64 bits")
    return ("lit", value)


class _Parser:
    """Recursive descent over CEL's precedence levels; produces tuples (see ``_eval``)."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def peek(self, *ops: str) -> bool:
        kind, value = self.tokens[self.pos]
        return kind == "op" and value in ops

    def take(self, op: str) -> None:
        if not self.peek(op):
            raise CelSyntaxError(f"expected {op!r}, found {self.tokens[self.pos][1]!r}")
        self.pos += 1

    def parse(self) -> Node:
        node = self.expr()
        if self.tokens[self.pos][0] != "end":
            raise CelSyntaxError(f"unexpected {self.tokens[self.pos][1]!r}")
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise CelSyntaxError(f"expression nested deeper than {_MAX_DEPTH}")
        cond = self.binary(0)
        if self.peek("?"):
            self.pos += 1
            then = self.binary(0)
            self.take(":")
            cond = ("cond", cond, then, self.expr())
        self.depth -= 1
        return cond

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!=", "<", "<=", ">", ">=", "in"),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.peek(*self._LEVELS[level]):
            op = self.tokens[self.pos][1]
            self.pos += 1
            node = ("binary", op, node, self.binary(level + 1))
        return node

    def unary(self) -> Node:
        if self.peek("-") and self.tokens[self.pos + 1][0] == "int":
            self.pos += 1  # a negative int literal, as in CEL's grammar
            return self.member(_int_literal(-self.tokens[self.pos][1]))
        if self.peek("!", "-"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise CelSyntaxError(f"expression nested deeper than {_MAX_DEPTH}")
            node = ("unary", op, self.unary())
            self.depth -= 1
            return node
        return self.member(None)

    def args(self, close: str = ")") -> list[Node]:
        items: list[Node] = []
        while not self.peek(close):
            items.append(self.expr())
            if not self.peek(close):
                self.take(",")
        self.take(close)
        return items

    def member(self, literal: Node | None) -> Node:
        if literal is None:
            node = self.primary()
        else:
            self.pos += 1  # the int token
            node = literal
        while True:
            if self.peek("."):
                self.pos += 1
                kind, name = self.tokens[self.pos]
                if kind != "ident":
                    raise CelSyntaxError(f"expected a field name after '.', found {name!r}")
                self.pos += 1
                if self.peek("("):
                    self.pos += 1
                    node = ("call", name, node, self.args())
                else:
                    node = ("select", node, name)
            elif self.peek("["):
                self.pos += 1
                index = self.expr()
                self.take("]")
                node = ("index", node, index)
            else:
                return node

    def primary(self) -> Node:
        kind, value = self.tokens[self.pos]
        if kind == "int":
            self.pos += 1
            return _int_literal(value)
        if kind == "lit":
            self.pos += 1
            return ("lit", value)
        if kind == "ident":
            self.pos += 1
            if self.peek("("):
                self.pos += 1
                return ("call", value, None, self.args())
            return ("ident", value)
        if self.peek("("):
            self.pos += 1
            node = self.expr()
            self.take(")")
            return node
        if self.peek("["):
            self.pos += 1
            return ("list", self.args("]"))
        if self.peek("{"):
            self.pos += 1
            pairs: list[tuple[Node, Node]] = []
            while not self.peek("}"):
                key = self.expr()
                self.take(":")
                pairs.append((key, self.expr()))
                if not self.peek("}"):
                    self.take(",")
            self.take("}")
            return ("map", pairs)
        raise CelSyntaxError(f"unexpected {value!r}")


@attrs.frozen
class _Url:
    scheme: str


def _is_url(text: str) -> bool:
    """Kubernetes' isURL: Go's url.ParseRequestURI accepts ``text``."""
    try:
        go.parse_request_uri(text)
    except ValueError:
        return False
    return True


def _url(text: str) -> _Url:
    """Kubernetes' url(): ParseRequestURI must accept ``text``, then Parse gives the parts."""
    try:
        go.parse_request_uri(text)
        scheme = go.parse_url(text)
    except ValueError as exc:
        raise CelError(f"not a URL: {exc}") from None
    return _Url(scheme)


def _duration(text: str) -> Duration:
    try:
        return Duration.from_nanoseconds(go.parse_duration(text))
    except ValueError as exc:
        raise CelError(str(exc)) from None


# --- values --------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, Duration):
        return "duration"
    if value is None:
        return "null"
    return type(value).__name__


_CEL_NAMES = {"str": "string", "list": "list", "dict": "map", "_Url": "URL"}


def _type(value: Any) -> str:
    """CEL's name for a value's type (ints and doubles apart), for error messages."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "int"
    if isinstance(value, float):
        return "double"
    kind = _kind(value)
    return _CEL_NAMES.get(kind, kind)


def _equal(a: Any, b: Any) -> bool:
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            _has_key(b, k) and _equal(v, _get_key(b, k)) for k, v in a.items()
        )
    return bool(a == b)


def _has_key(mapping: dict[Any, Any], key: Any) -> bool:
    if isinstance(key, str):
        return key in mapping
    return any(_kind(k) == _kind(key) and k == key for k in mapping)


def _get_key(mapping: dict[Any, Any], key: Any) -> Any:
    if isinstance(key, str):
        if key in mapping:
            return mapping[key]
    else:
        for k, v in mapping.items():
            if _kind(k) == _kind(key) and k == key:
                return v
    raise CelError(f"no such key: {key!r}")


def _need(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CelError(f"{what} needs {getattr(kind, '__name__', kind)}, got {_type(value)}")
    return value


def _checked(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise CelError("int64 overflow")
    return value


def _size(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)  # a string's size counts code points, as in CEL
    raise CelError(f"size() of {_type(value)}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise CelError("int() of a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # cel-go refuses NaN, the infinities and anything outside the open int64 range.
        if not float(INT64_MIN) < value < float(INT64_MAX):
            raise CelError(f"int({value!r}) is out of the int64 range")
        return int(value)
    if isinstance(value, Duration):
        return value.total_nanoseconds()
    if isinstance(value, str):
        # Go's strconv.ParseInt(s, 10, 64): an optional sign and ASCII digits, nothing else.
        try:
            return go.parse_int(value)
        except ValueError as exc:
            raise CelError(f"int(): {exc}") from None
    raise CelError(f"int() of {_type(value)}")


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go.format_float(value)
    raise CelError(f"string() of {_type(value)} is not supported")


def _substring(text: Any, start: Any, end: Any = None) -> str:
    text = _need(text, str, "substring")
    stop = len(text) if end is None else _need(end, int, "substring")
    first = _need(start, int, "substring")
    if not 0 <= first <= stop <= len(text):
        raise CelError(f"substring({first}, {stop}) out of range for length {len(text)}")
    return str(text[first:stop])


def _matches(text: Any, pattern: Any) -> bool:
    text = _need(text, str, "matches")
    try:
        return go.regex_search(_need(pattern, str, "matches"), text)
    except go.RegexError as exc:
        raise CelError(str(exc)) from None


def _split(text: Any, separator: Any) -> list[str]:
    """Kubernetes' strings library ``split``: Go's ``strings.Split`` (an empty separator
    splits into characters)."""
    text = _need(text, str, "split")
    separator = _need(separator, str, "split")
    return list(text) if separator == "" else text.split(separator)


# name -> (callable, smallest and largest number of arguments, the target not counted)
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "size": (_size, 1, 1),
    "int": (_to_int, 1, 1),
    "string": (_to_string, 1, 1),
    "duration": (lambda text: _duration(_need(text, str, "duration")), 1, 1),
    "url": (lambda text: _url(_need(text, str, "url")), 1, 1),
    "isURL": (lambda text: _is_url(_need(text, str, "isURL")), 1, 1),
}
_METHODS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "size": (_size, 0, 0),
    "contains": (lambda s, sub: _need(sub, str, "contains") in _need(s, str, "contains"), 1, 1),
    "startsWith": (
        lambda s, p: _need(s, str, "startsWith").startswith(_need(p, str, "startsWith")),
        1,
        1,
    ),
    "endsWith": (
        lambda s, p: _need(s, str, "endsWith").endswith(_need(p, str, "endsWith")),
        1,
        1,
    ),
    "matches": (_matches, 1, 1),
    "substring": (_substring, 1, 2),
    "getScheme": (lambda u: _need(u, _Url, "getScheme").scheme, 0, 0),
    "split": (_split, 1, 1),
}


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op == "in":
        if isinstance(b, list):
            return any(_equal(a, item) for item in b)
        if isinstance(b, dict):
            return _has_key(b, a)
        raise CelError(f"'in' needs a list or map, got {_type(b)}")
    if _kind(a) != _kind(b) or _kind(a) not in ("number", "str", "bool", "duration"):
        raise CelError(f"cannot compare {_type(a)} {op} {_type(b)}")
    result: bool = {
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[op]
    return result


def _int_divide(a: int, b: int, op: str) -> int:
    if b == 0:
        raise CelError("division by zero" if op == "/" else "modulus by zero")
    quotient = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        quotient = -quotient
    if op == "/":
        return _checked(quotient)
    if a == INT64_MIN and b == -1:
        raise CelError("int64 overflow")
    return a - b * quotient  # the sign of the dividend, as in Go


def _float_arith(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "%":
        raise CelError("no such overload: double % double")
    if b == 0:
        if math.isnan(a) or a == 0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if op == "+" and isinstance(a, list) and isinstance(b, list):
        return a + b
    if op in "+-" and isinstance(a, Duration) and isinstance(b, Duration):
        total = a.total_nanoseconds() + (1 if op == "+" else -1) * b.total_nanoseconds()
        return Duration.from_nanoseconds(_checked(total))
    if _type(a) == _type(b) == "int":
        if op == "+":
            return _checked(a + b)
        if op == "-":
            return _checked(a - b)
        if op == "*":
            return _checked(a * b)
        return _int_divide(a, b, op)
    if _type(a) == _type(b) == "double":
        return _float_arith(op, a, b)
    raise CelError(f"no such overload: {_type(a)} {op} {_type(b)}")


def _eval(node: Node, env: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ident":
        if node[1] not in env:
            raise CelError(f"undeclared reference {node[1]!r}")
        return env[node[1]]
    if kind == "select":
        target = _eval(node[1], env)
        if not isinstance(target, dict):
            raise CelError(f"cannot select {node[2]!r} from {_type(target)}")
        if node[2] not in target:
            raise CelError(f"no such key: {node[2]}")
        return target[node[2]]
    if kind == "index":
        return _index(_eval(node[1], env), _eval(node[2], env))
    if kind == "list":
        return [_eval(item, env) for item in node[1]]
    if kind == "map":
        out: dict[Any, Any] = {}
        for key_node, value_node in node[1]:
            key = _eval(key_node, env)
            if _type(key) not in ("int", "string", "bool"):
                raise CelError(f"a map key cannot be {_type(key)}")
            if key in out:
                raise CelError(f"repeated key {key!r} in map literal")
            out[key] = _eval(value_node, env)
        return out
    if kind == "cond":
        cond = _eval(node[1], env)
        if not isinstance(cond, bool):
            raise CelError("the condition of ?: must be a bool")
        return _eval(node[2] if cond else node[3], env)
    if kind == "unary":
        value = _eval(node[2], env)
        if node[1] == "!":
            return not _need(value, bool, "!")
        if _type(value) == "int":
            return _checked(-value)
        if _type(value) == "double":
            return -value
        raise CelError(f"cannot negate {_type(value)}")
    if kind == "binary":
        return _eval_binary(node, env)
    if kind == "call":
        return _eval_call(node, env)
    raise CelSyntaxError(f"unknown node {kind}")


def _index(target: Any, index: Any) -> Any:
    if isinstance(target, list):
        if _type(index) != "int":
            raise CelError(f"a list index must be an int, got {_type(index)}")
        if not 0 <= index < len(target):
            raise CelError(f"index {index} out of range for a list of {len(target)}")
        return target[index]
    if isinstance(target, dict):
        return _get_key(target, index)
    raise CelError(f"cannot index {_type(target)}")


def _eval_binary(node: Node, env: dict[str, Any]) -> Any:
    op, left, right = node[1], node[2], node[3]
    if op in ("&&", "||"):
        decisive = op == "||"  # the value that decides the result on its own
        error: CelError | None = None
        for side in (left, right):
            try:
                value = _need(_eval(side, env), bool, op)
            except CelError as exc:
                error = error or exc
                continue
            if value is decisive:
                return decisive
        if error is not None:
            raise error
        return not decisive
    a = _eval(left, env)
    b = _eval(right, env)
    if op in ("==", "!=", "<", "<=", ">", ">=", "in"):
        return _compare(op, a, b)
    return _arith(op, a, b)


def _eval_macro(name: str, collection: Any, var: str, body: Node, env: dict[str, Any]) -> Any:
    if not isinstance(collection, list | dict):
        raise CelError(f"{name}() on {_type(collection)}")
    if name == "filter":  # the elements (map keys) the predicate holds for; errors propagate
        return [item for item in collection if _need(_eval(body, {**env, var: item}), bool, name)]
    if name == "exists_one":
        found = 0
        for item in collection:
            found += 1 if _need(_eval(body, {**env, var: item}), bool, name) else 0
        return found == 1
    decisive: bool = name == "exists"  # like || for exists and && for all
    error: CelError | None = None
    for item in collection:
        try:
            value = _need(_eval(body, {**env, var: item}), bool, name)
        except CelError as exc:
            error = error or exc
            continue
        if value is decisive:
            return bool(value)
    if error is not None:
        raise error
    return not decisive


def _eval_call(node: Node, env: dict[str, Any]) -> Any:
    name, target, args = node[1], node[2], node[3]
    if target is None and name == "has":
        (field,) = args
        obj = _eval(field[1], env)
        if not isinstance(obj, dict):
            raise CelError(f"has() on {_type(obj)}")
        return field[2] in obj
    if target is not None and name in _MACROS:
        return _eval_macro(name, _eval(target, env), args[0][1], args[1], env)
    values = [_eval(arg, env) for arg in args]
    if target is None:
        return _FUNCTIONS[name][0](*values)
    return _METHODS[name][0](_eval(target, env), *values)


def _children(node: Node) -> list[Node]:
    kind = node[0]
    if kind == "select":
        return [node[1]]
    if kind == "index":
        return [node[1], node[2]]
    if kind == "list":
        return list(node[1])
    if kind == "map":
        return [part for pair in node[1] for part in pair]
    if kind == "cond":
        return [node[1], node[2], node[3]]
    if kind == "unary":
        return [node[2]]
    if kind == "binary":
        return [node[2], node[3]]
    if kind == "call":
        return ([node[2]] if node[2] is not None else []) + list(node[3])
    return []


def _check_names(node: Node, depth: int = 0) -> None:
    """Reject unknown functions, wrong argument counts and bad literal regexes, at compile time."""
    if depth > _MAX_TREE_DEPTH:
        raise CelSyntaxError(f"expression tree deeper than {_MAX_TREE_DEPTH}")
    if node[0] == "call":
        name, target, args = node[1], node[2], node[3]
        if target is None and name == "has":
            if len(args) != 1 or args[0][0] != "select":
                raise CelSyntaxError("has() takes one field selection")
        elif target is not None and name in _MACROS:
            if len(args) != 2 or args[0][0] != "ident":
                raise CelSyntaxError(f"{name}() takes a variable and a predicate")
        else:
            table = _FUNCTIONS if target is None else _METHODS
            if name not in table:
                raise CelSyntaxError(f"unsupported function {name}()")
            low, high = table[name][1], table[name][2]
            if not low <= len(args) <= high:
                raise CelSyntaxError(f"{name}() takes {low}..{high} arguments, got {len(args)}")
            if name == "matches" and args[0][0] == "lit" and isinstance(args[0][1], str):
                try:
                    go.compile_regex(args[0][1])
                except go.RegexError as exc:
                    raise CelSyntaxError(str(exc)) from None
    for child in _children(node):
        _check_names(child, depth + 1)


@functools.cache
def compile_rule(rule: str) -> Node:
    """Parse a rule; raises :class:`CelSyntaxError` when it is outside the supported subset."""
    node = _Parser(rule).parse()
    _check_names(node)
    return node


def evaluate(rule: str, self_value: Any) -> bool:
    """Evaluate ``rule`` with ``self`` bound to ``self_value``; raises :class:`CelError`."""
    result = _eval(compile_rule(rule), {"self": self_value})
    if not isinstance(result, bool):
        raise CelError(f"rule evaluated to {_type(result)}, not bool")
    return result


def parse(text: str) -> Node:
    """Parse ``text`` as CEL syntax only (no check of names or functions, as Istio's Telemetry
    access log filters are checked); raises :class:`CelSyntaxError`."""
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise CelSyntaxError("expression nested too deeply") from None
