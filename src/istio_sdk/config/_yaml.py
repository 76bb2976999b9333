"""YAML and JSON text -> JSON-like documents, remembering the line of every field.

Kubernetes reads YAML by converting it to JSON: only JSON values exist (timestamps stay
strings, mapping keys become strings), and a key repeated in one mapping is an error. This
module does the same with PyYAML's node graph, so that each document also carries a map from
field path (``spec.http[0].route``) to its 1-based line, used to point errors at the source.

Documents are composed from PyYAML's event stream by a loop of our own (not PyYAML's recursive
composer), so that :class:`~istio_sdk.config.LoadLimits` holds while the text is read: nesting
depth, nodes produced through aliases and integer length are checked as each event arrives, and
a hostile document fails after a bounded amount of work and memory.
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
    if _IDENT.match(key):
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


class _Open:
    """A mapping or sequence whose end event has not arrived yet."""

    __slots__ = ("anchor", "height", "items", "node", "size")

    def __init__(self, node: yaml.CollectionNode, anchor: str | None) -> None:
        self.node = node
        self.anchor = anchor
        self.items: list[yaml.Node] = []
        self.size = 1
        self.height = 1


class _Composer:
    """Build one document's node graph from events, enforcing the limits as it goes.

    Each node's expanded size (nodes, aliases followed) and height are known when it closes, so
    an alias costs its target's size and depth without being expanded here.
    """

    def __init__(
        self, loader: yaml.SafeLoader, source: str, index: int, limits: LoadLimits
    ) -> None:
        self.loader: Any = loader  # PyYAML's event API is untyped
        self.source = source
        self.index = index
        self.limits = limits
        self.anchors: dict[str, tuple[yaml.Node, int, int]] = {}
        self.aliased = 0

    def syntax(self, mark: Any, message: str) -> YamlSyntaxError:
        return YamlSyntaxError(
            Problem(
                message=f"invalid YAML: {message}",
                source=self.source,
                index=self.index,
                line=None if mark is None else mark.line + 1,
            )
        )

    def too_deep(self, mark: Any) -> LimitError:
        return limit_error(
            self.limits,
            "max_depth",
            f"document is nested deeper than {self.limits.max_depth} levels",
            source=self.source,
            index=self.index,
            line=mark.line + 1,
        )

    def compose(self) -> yaml.Node:
        loader = self.loader
        event: Any = loader.get_event()  # DocumentStartEvent
        stack: list[_Open] = []
        open_anchors: set[str] = set()
        while True:
            event = loader.get_event()
            start: Any = event.start_mark
            end: Any = event.end_mark
            node: yaml.Node
            if isinstance(event, yaml.ScalarEvent):
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
                if tag == _INT_TAG and len(event.value) > self.limits.max_int_digits:
                    raise limit_error(
                        self.limits,
                        "max_int_digits",
                        f"integer has more than {self.limits.max_int_digits} digits",
                        source=self.source,
                        index=self.index,
                        line=start.line + 1,
                    )
                node = yaml.ScalarNode(tag, event.value, start, end, style=event.style)
                size, height = 1, 0
                if event.anchor is not None:
                    self.anchors[event.anchor] = (node, 1, 0)
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                if len(stack) >= self.limits.max_depth:
                    raise self.too_deep(start)
                kind: type[yaml.CollectionNode] = (
                    yaml.MappingNode
                    if isinstance(event, yaml.MappingStartEvent)
                    else yaml.SequenceNode
                )
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(kind, None, event.implicit)
                collection = kind(tag, [], start, start, flow_style=event.flow_style)
                stack.append(_Open(collection, event.anchor))
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
                continue
            elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                done = stack.pop()
                node = done.node
                node.end_mark = end
                if isinstance(node, yaml.MappingNode):
                    items = done.items
                    node.value = list(zip(items[::2], items[1::2], strict=True))
                else:
                    node.value = done.items
                size, height = done.size, done.height
                if done.anchor is not None:
                    open_anchors.discard(done.anchor)
                    self.anchors[done.anchor] = (node, size, height)
            elif isinstance(event, yaml.AliasEvent):
                anchor = event.anchor
                if anchor in open_anchors:
                    raise self.syntax(start, f"alias *{anchor} is inside its own anchor")
                if anchor not in self.anchors:
                    raise self.syntax(start, f"found undefined alias *{anchor}")
                node, size, height = self.anchors[anchor]
                self.aliased += size
                if self.aliased > self.limits.max_alias_nodes:
                    raise limit_error(
                        self.limits,
                        "max_alias_nodes",
                        f"aliases expand to more than {self.limits.max_alias_nodes} nodes",
                        source=self.source,
                        index=self.index,
                        line=start.line + 1,
                    )
            else:
                raise self.syntax(start, f"unexpected {type(event).__name__}")
            if not stack:
                loader.get_event()  # DocumentEndEvent
                return node
            if len(stack) + height > self.limits.max_depth:
                raise self.too_deep(start)
            parent = stack[-1]
            parent.items.append(node)
            parent.size += size
            parent.height = max(parent.height, height + 1)


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
    documents: list[Document] = []
    events: Any = loader  # PyYAML's event API is untyped
    try:
        events.get_event()  # StreamStartEvent
        index = 0
        while not events.check_event(yaml.StreamEndEvent):
            node = _Composer(loader, source, index, limits).compose()
            converter = _Converter(loader, source, index)
            value = converter.convert(node, "")
            lines = converter.lines
            lines.pop("", None)
            documents.append(
                Document(value=value, index=index, line=node.start_mark.line + 1, lines=lines)
            )
            index += 1
    except yaml.MarkedYAMLError as exc:
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
