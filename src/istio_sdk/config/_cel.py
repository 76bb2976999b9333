"""A small CEL interpreter for the validation rules in Istio's CRDs.

The kube-apiserver evaluates each ``x-kubernetes-validations`` rule with ``self`` bound to the
JSON value the rule is attached to. Istio's rules use a small part of CEL, which this module
implements: literals (int, double, string, bool, null, lists, maps), field selection, ``has()``,
``! - * / % + == != < <= > >= in && || ?:``, ``size``, the string functions ``contains``,
``startsWith``, ``endsWith``, ``matches`` and ``substring``, the macros ``all``, ``exists`` and
``exists_one``, ``int()``, ``string()``, ``duration()``, and Kubernetes' ``url()``/``isURL()`` with
``getScheme()``. Anything else is a :class:`CelSyntaxError` when the rule is compiled.

As in CEL, ``&&`` and ``||`` ignore an error on one side when the other side decides the result,
selecting a missing field is an error (use ``has``), and values of different types are never
equal.
"""

from __future__ import annotations

import datetime
import functools
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeAlias

import attrs

Node: TypeAlias = tuple[Any, ...]


class CelError(Exception):
    """A rule failed to evaluate (missing field, wrong types, bad argument)."""


class CelSyntaxError(CelError):
    """A rule uses syntax or functions this interpreter does not support."""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<float>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>0x[0-9a-fA-F]+|\d+)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "/": "/"}
_MACROS = frozenset({"all", "exists", "exists_one"})


def _unescape(body: str) -> str:
    out: list[str] = []
    chars = iter(body)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        escaped = next(chars, "")
        if escaped not in _ESCAPES:
            raise CelSyntaxError(f"unsupported string escape \\{escaped}")
        out.append(_ESCAPES[escaped])
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
            tokens.append(("lit", float(value)))
        elif kind == "int":
            tokens.append(("lit", int(value, 0)))
        elif kind == "string":
            tokens.append(("lit", _unescape(value[1:-1])))
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


class _Parser:
    """Recursive descent over CEL's precedence levels; produces tuples (see ``_eval``)."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

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
        cond = self.binary(0)
        if self.peek("?"):
            self.pos += 1
            then = self.expr()
            self.take(":")
            return ("cond", cond, then, self.expr())
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
        if self.peek("!", "-"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            return ("unary", op, self.unary())
        return self.member()

    def args(self) -> list[Node]:
        self.take("(")
        items: list[Node] = []
        while not self.peek(")"):
            items.append(self.expr())
            if not self.peek(")"):
                self.take(",")
        self.take(")")
        return items

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.peek("."):
                self.pos += 1
                kind, name = self.tokens[self.pos]
                if kind != "ident":
                    raise CelSyntaxError(f"expected a field name after '.', found {name!r}")
                self.pos += 1
                node = (
                    ("call", name, node, self.args()) if self.peek("(") else ("select", node, name)
                )
            elif self.peek("["):
                self.pos += 1
                index = self.expr()
                self.take("]")
                node = ("index", node, index)
            else:
                return node

    def primary(self) -> Node:
        kind, value = self.tokens[self.pos]
        if kind == "lit":
            self.pos += 1
            return ("lit", value)
        if kind == "ident":
            self.pos += 1
            if self.peek("("):
                return ("call", value, None, self.args())
            return ("ident", value)
        if self.peek("("):
            self.pos += 1
            node = self.expr()
            self.take(")")
            return node
        if self.peek("["):
            self.pos += 1
            items: list[Node] = []
            while not self.peek("]"):
                items.append(self.expr())
                if not self.peek("]"):
                    self.take(",")
            self.take("]")
            return ("list", items)
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
    # Kubernetes' isURL accepts what Go's url.ParseRequestURI accepts: an absolute URL or path.
    if text.startswith("/"):
        return True
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) is not None and " " not in text


def _url(text: str) -> _Url:
    if not _is_url(text):
        raise CelError(f"{text!r} is not a URL")
    return _Url(urllib.parse.urlsplit(text).scheme)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _duration(text: str) -> datetime.timedelta:
    """Go's duration syntax (``1h30m``, ``1.5s``, ``250ms``, ``-2s``, ``0``)."""
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if body == "0":
        return datetime.timedelta(0)
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(body) or not body:
        raise CelError(f"invalid duration {text!r}")
    return datetime.timedelta(seconds=sign * total)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _equal(a: Any, b: Any) -> bool:
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _size(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise CelError(f"size() of {_kind(value)}")


def _need(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CelError(f"{what} needs {getattr(kind, '__name__', kind)}, got {_kind(value)}")
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise CelError("int() of a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value, 10)
        except ValueError:
            raise CelError(f"int({value!r})") from None
    raise CelError(f"int() of {_kind(value)}")


def _substring(text: Any, start: Any, end: Any = None) -> str:
    text = _need(text, str, "substring")
    stop = len(text) if end is None else _need(end, int, "substring")
    first = _need(start, int, "substring")
    if not 0 <= first <= stop <= len(text):
        raise CelError(f"substring({first}, {stop}) out of range for length {len(text)}")
    return str(text[first:stop])


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "int": _to_int,
    "string": lambda value: value if isinstance(value, str) else str(value),
    "duration": lambda text: _duration(_need(text, str, "duration")),
    "url": lambda text: _url(_need(text, str, "url")),
    "isURL": lambda text: _is_url(_need(text, str, "isURL")),
}
_METHODS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "contains": lambda s, sub: _need(sub, str, "contains") in _need(s, str, "contains"),
    "startsWith": lambda s, p: _need(s, str, "startsWith").startswith(_need(p, str, "startsWith")),
    "endsWith": lambda s, p: _need(s, str, "endsWith").endswith(_need(p, str, "endsWith")),
    "matches": lambda s, p: (
        re.search(_need(p, str, "matches"), _need(s, str, "matches")) is not None
    ),
    "substring": _substring,
    "getScheme": lambda u: _need(u, _Url, "getScheme").scheme,
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
            return a in b
        raise CelError(f"'in' needs a list or map, got {_kind(b)}")
    if _kind(a) != _kind(b) or isinstance(a, bool | list | dict) or a is None:
        raise CelError(f"cannot compare {_kind(a)} {op} {_kind(b)}")
    result: bool = {
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[op]
    return result


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if op == "+" and isinstance(a, list) and isinstance(b, list):
        return a + b
    if _kind(a) != "number" or _kind(b) != "number":
        raise CelError(f"cannot apply {op} to {_kind(a)} and {_kind(b)}")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise CelError("division by zero")
    if op == "/":
        return a // b if isinstance(a, int) and isinstance(b, int) else a / b
    return a % b


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
            raise CelError(f"cannot select {node[2]!r} from {_kind(target)}")
        if node[2] not in target:
            raise CelError(f"no such key: {node[2]}")
        return target[node[2]]
    if kind == "index":
        target = _eval(node[1], env)
        index = _eval(node[2], env)
        try:
            return target[index]
        except (KeyError, IndexError, TypeError):
            raise CelError(f"no such index {index!r}") from None
    if kind == "list":
        return [_eval(item, env) for item in node[1]]
    if kind == "map":
        return {_eval(k, env): _eval(v, env) for k, v in node[1]}
    if kind == "cond":
        cond = _eval(node[1], env)
        if not isinstance(cond, bool):
            raise CelError("the condition of ?: must be a bool")
        return _eval(node[2] if cond else node[3], env)
    if kind == "unary":
        value = _eval(node[2], env)
        if node[1] == "!":
            return not _need(value, bool, "!")
        if _kind(value) != "number":
            raise CelError(f"cannot negate {_kind(value)}")
        return -value
    if kind == "binary":
        return _eval_binary(node, env)
    if kind == "call":
        return _eval_call(node, env)
    raise CelSyntaxError(f"unknown node {kind}")


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


def _eval_call(node: Node, env: dict[str, Any]) -> Any:
    name, target, args = node[1], node[2], node[3]
    if target is None and name == "has":
        (field,) = args
        obj = _eval(field[1], env)
        if not isinstance(obj, dict):
            raise CelError(f"has() on {_kind(obj)}")
        return field[2] in obj
    if target is not None and name in _MACROS:
        collection = _eval(target, env)
        if not isinstance(collection, list | dict):
            raise CelError(f"{name}() on {_kind(collection)}")
        var = args[0][1]
        results = [_need(_eval(args[1], {**env, var: item}), bool, name) for item in collection]
        if name == "all":
            return all(results)
        if name == "exists":
            return any(results)
        return results.count(True) == 1
    values = [_eval(arg, env) for arg in args]
    if target is None:
        return _FUNCTIONS[name](*values)
    return _METHODS[name](_eval(target, env), *values)


def _check_names(node: Node) -> None:
    """Reject functions and macros the interpreter does not know, at compile time."""
    if node[0] == "call":
        name, target, args = node[1], node[2], node[3]
        if target is None and name == "has":
            if len(args) != 1 or args[0][0] != "select":
                raise CelSyntaxError("has() takes one field selection")
        elif target is not None and name in _MACROS:
            if len(args) != 2 or args[0][0] != "ident":
                raise CelSyntaxError(f"{name}() takes a variable and a predicate")
        elif (target is None and name not in _FUNCTIONS) or (
            target is not None and name not in _METHODS
        ):
            raise CelSyntaxError(f"unsupported function {name}()")
    for child in node[1:]:
        if isinstance(child, tuple) and child and isinstance(child[0], str):
            _check_names(child)
        elif isinstance(child, list):
            for item in child:
                if isinstance(item, tuple) and item and isinstance(item[0], str):
                    _check_names(item)
                elif isinstance(item, tuple):  # map pairs
                    for part in item:
                        _check_names(part)


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
        raise CelError(f"rule evaluated to {_kind(result)}, not bool")
    return result
