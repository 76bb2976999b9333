"""YAML and JSON text -> JSON-like documents, remembering the line of every field.

Kubernetes reads YAML by converting it to JSON: only JSON values exist (timestamps stay
strings, mapping keys become strings), and a key repeated in one mapping is an error. This
module does the same with PyYAML's node graph, so that each document also carries a map from
field path (``spec.http[0].route``) to its 1-based line, used to point errors at the source.

Before a document is converted, :func:`check_graph` holds it to
:class:`~istio_sdk.config.LoadLimits`: PyYAML composes aliases as shared nodes, so the composed
graph is no larger than the text, and its expanded size and depth are computed without
expanding it. A hostile document fails after work and memory bounded by its length. (libyaml
refuses nesting beyond 1,000 levels, so its recursive composer stays shallow; PyYAML's
pure-Python one raises RecursionError, reported as the same limit.)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn, TypeAlias

import attrs
import yaml

from istio_sdk.config._errors import LimitError, NumberError, Problem, YamlSyntaxError
from istio_sdk.config._limits import DEFAULT_LIMITS, LoadLimits

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None


def describe_json(value: object) -> str:
    """What kind of JSON value ``value`` is, for messages: ``a string``, ``null``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _KubeLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader without the timestamp resolver: Kubernetes keeps dates as strings."""


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def join_key(path: str, key: str) -> str:
    """Extend a field path by a mapping key: ``a.b``, or ``a["x.y"]`` for keys that need it."""
    if _IDENT.fullmatch(key):  # match() with "$" would pass a key ending in a newline
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def join_index(path: str, index: int) -> str:
    return f"{path}[{index}]"


@attrs.frozen
class Document:
    """One document of a YAML/JSON stream."""

    value: JsonValue
    index: int
    line: int | None
    """1-based line where the document starts (None for JSON text)."""
    lines: dict[str, int] = attrs.field(factory=dict, eq=False)
    """Field path -> 1-based line of the field's value."""

    def line_of(self, path: str) -> int | None:
        """The line of ``path``, or of its nearest enclosing field that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                return self.line
            path = path[:cut]


_INT_TAG = "tag:yaml.org,2002:int"


def limit_error(
    limits: LoadLimits,
    limit: str,
    what: str,
    *,
    source: str,
    index: int | None = None,
    line: int | None = None,
) -> LimitError:
    bound: int = getattr(limits, limit)
    return LimitError(
        Problem(
            message=f"{what} (limit {limit}={bound})",
            source=source,
            index=index,
            line=line,
        ),
        limit=limit,
        bound=bound,
    )


def check_size(text: str, source: str, limits: LoadLimits) -> None:
    """Refuse text longer than ``limits.max_bytes`` once encoded as UTF-8."""
    size = len(text)
    if size <= limits.max_bytes and size * 4 > limits.max_bytes:
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise limit_error(
            limits, "max_bytes", f"source is larger than {limits.max_bytes} bytes", source=source
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_graph(root: yaml.Node, source: str, index: int, limits: LoadLimits) -> None:
    """Check a composed document against ``limits`` before anything is expanded.

    PyYAML composes aliases as shared nodes, so the graph is no larger than the text; expanding
    it is what a "billion laughs" document makes expensive. Each distinct node is visited once
    to learn its expanded size and height; a document that would expand to more than
    ``max_alias_nodes`` nodes beyond its own, or nest deeper than ``max_depth``, is refused.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]

    def error(limit: str, what: str, node: yaml.Node) -> LimitError:
        line = node.start_mark.line + 1
        return limit_error(limits, limit, what, source=source, index=index, line=line)

    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            children = [sizes[id(child)] for child in _children(node)]
            size = 1 + sum(child[0] for child in children)
            height = 1 + max((child[1] for child in children), default=0)
            if height > limits.max_depth:
                raise error(
                    "max_depth", f"document is nested deeper than {limits.max_depth} levels", node
                )
            if size - len(sizes) - 1 > limits.max_alias_nodes:  # beyond the distinct nodes
                raise error(
                    "max_alias_nodes",
                    f"aliases expand to more than {limits.max_alias_nodes} nodes",
                    node,
                )
            sizes[key] = (size, height)
            visiting.discard(key)
            continue
        if key in sizes:
            continue
        if key in visiting:
            raise YamlSyntaxError(
                Problem(
                    message="invalid YAML: an alias refers to a node that contains it",
                    source=source,
                    index=index,
                    line=node.start_mark.line + 1,
                )
            )
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _INT_TAG and len(node.value) > limits.max_int_digits:
                raise error(
                    "max_int_digits",
                    f"integer has more than {limits.max_int_digits} digits",
                    node,
                )
            sizes[key] = (1, 0)
            continue
        visiting.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, source: str, index: int) -> None:
        self.loader = loader
        self.source = source
        self.index = index
        self.lines: dict[str, int] = {}

    def fail(self, node: yaml.Node, message: str, path: str) -> YamlSyntaxError:
        return YamlSyntaxError(
            Problem(
                message=message,
                source=self.source,
                index=self.index,
                path=path,
                line=node.start_mark.line + 1,
            )
        )

    def convert(self, node: yaml.Node, path: str) -> JsonValue:
        # Depth is bounded by the composer (LoadLimits.max_depth), so recursion is safe here.
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            written: set[str] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.scalar_key(key_node, path)
                if key in written:
                    raise self.fail(
                        key_node, f"mapping key {key!r} is repeated", join_key(path, key)
                    )
                written.add(key)
            # "<<" merge keys: merged pairs come first, so keys written here override them
            self.loader.flatten_mapping(node)
            result: dict[str, JsonValue] = {}
            for key_node, value_node in node.value:
                key = self.scalar_key(key_node, path)
                result[key] = self.convert(value_node, join_key(path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, join_index(path, i)) for i, item in enumerate(node.value)]
        value = self.construct(node, path)
        if isinstance(value, float) and not math.isfinite(value):
            raise NumberError(
                Problem(
                    message=f"{node.value!r} is not a finite number (JSON has no NaN or Infinity)",
                    source=self.source,
                    index=self.index,
                    path=path,
                    line=node.start_mark.line + 1,
                )
            )
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise self.fail(node, f"unsupported YAML value of type {type(value).__name__}", path)

    def construct(self, node: yaml.Node, path: str) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError as exc:  # e.g. an integer Python will not convert
            if isinstance(exc, yaml.YAMLError):
                raise
            raise self.fail(node, f"cannot read value: {exc}", path) from exc

    def scalar_key(self, node: yaml.Node, path: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "mapping keys must be scalars", path)
        key: Any = self.construct(node, path)
        if isinstance(key, bool):
            return "true" if key else "false"
        if key is None:
            return "null"
        if isinstance(key, int | float | str):
            return str(key)
        raise self.fail(node, f"unsupported mapping key of type {type(key).__name__}", path)


def _looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def _json_hooks(
    source: str, limits: LoadLimits
) -> tuple[Callable[[str], int], Callable[[str], float], Callable[[str], NoReturn]]:
    def not_finite(literal: str) -> NoReturn:
        raise NumberError(
            Problem(
                message=f"{literal} is not a JSON number (JSON has no NaN or Infinity)",
                source=source,
                index=0,
            )
        )

    def parse_int(literal: str) -> int:
        if len(literal) > limits.max_int_digits:
            raise limit_error(
                limits,
                "max_int_digits",
                f"integer has more than {limits.max_int_digits} digits",
                source=source,
                index=0,
            )
        return int(literal)

    def parse_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise NumberError(
                Problem(
                    message=f"{literal[:40]} is too large for a double",
                    source=source,
                    index=0,
                )
            )
        return value

    return parse_int, parse_float, not_finite


def _check_json_depth(value: JsonValue, source: str, limits: LoadLimits) -> None:
    stack: list[tuple[JsonValue, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limits.max_depth:
            raise limit_error(
                limits,
                "max_depth",
                f"document is nested deeper than {limits.max_depth} levels",
                source=source,
                index=0,
            )
        stack.extend((child, depth + 1) for child in children)


def parse_json(text: str, source: str, limits: LoadLimits = DEFAULT_LIMITS) -> list[Document]:
    parse_int, parse_float, not_finite = _json_hooks(source, limits)
    try:
        value = json.loads(
            text, parse_int=parse_int, parse_float=parse_float, parse_constant=not_finite
        )
    except json.JSONDecodeError as exc:
        raise YamlSyntaxError(
            Problem(message=f"invalid JSON: {exc.msg}", source=source, line=exc.lineno)
        ) from exc
    except RecursionError as exc:  # the C decoder's own guard, far beyond max_depth
        raise limit_error(
            limits,
            "max_depth",
            f"document is nested deeper than {limits.max_depth} levels",
            source=source,
            index=0,
        ) from exc
    _check_json_depth(value, source, limits)
    return [Document(value=value, index=0, line=1)]


def parse_documents(
    text: str, source: str = "<string>", limits: LoadLimits = DEFAULT_LIMITS
) -> list[Document]:
    """Parse a YAML stream (or JSON text) into documents. Empty documents are kept as None.

    Raises :class:`YamlSyntaxError` with the line of the first syntax error,
    :class:`LimitError` when the text breaks one of ``limits`` and :class:`NumberError` for
    NaN and Infinity.
    """
    check_size(text, source, limits)
    if _looks_like_json(text):
        try:
            return parse_json(text, source, limits)
        except YamlSyntaxError:
            pass  # YAML flow style also starts with "{" or "[": let the YAML parser judge
    try:
        loader = _KubeLoader(text)
    except UnicodeError as exc:  # a str holding lone surrogates cannot be encoded for libyaml
        raise YamlSyntaxError(Problem(message=f"not valid text: {exc}", source=source)) from exc
    except yaml.YAMLError as exc:  # PyYAML's pure-Python reader checks characters at once
        message = " ".join(str(exc).split())
        raise YamlSyntaxError(
            Problem(message=f"invalid YAML: {message}", source=source, index=0)
        ) from exc
    documents: list[Document] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            check_graph(node, source, index, limits)
            converter = _Converter(loader, source, index)
            value = converter.convert(node, "")
            lines = converter.lines
            lines.pop("", None)
            documents.append(
                Document(value=value, index=index, line=node.start_mark.line + 1, lines=lines)
            )
            index += 1
    except RecursionError as exc:  # PyYAML's pure-Python composer is recursive
        raise limit_error(
            limits,
            "max_depth",
            f"document is nested deeper than {limits.max_depth} levels",
            source=source,
            index=len(documents),
        ) from exc
    except yaml.MarkedYAMLError as exc:
        if "exceeded maximum nesting depth" in str(exc.problem):  # libyaml stops at 1000
            mark = exc.problem_mark
            raise limit_error(
                limits,
                "max_depth",
                f"document is nested deeper than {limits.max_depth} levels",
                source=source,
                index=len(documents),
                line=None if mark is None else mark.line + 1,
            ) from exc
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlSyntaxError(
            Problem(
                message=f"invalid YAML: {message}",
                source=source,
                index=len(documents),
                line=None if mark is None else mark.line + 1,
            )
        ) from exc
    except yaml.YAMLError as exc:  # e.g. a control character; keep the message on one line
        message = " ".join(str(exc).split())
        raise YamlSyntaxError(
            Problem(message=f"invalid YAML: {message}", source=source, index=len(documents))
        ) from exc
    finally:
        loader.dispose()
    return documents
