"""YAML and JSON text -> JSON-like documents, remembering the line of every field.

Kubernetes reads YAML by converting it to JSON: only JSON values exist (timestamps stay
strings, mapping keys become strings), and a key repeated in one mapping is an error. This
module does the same with PyYAML's node graph, so that each document also carries a map from
field path (``spec.http[0].route``) to its 1-based line, used to point errors at the source.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeAlias

import attrs
import yaml

from istio_sdk.config._errors import Problem, YamlSyntaxError

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

    def convert(self, node: yaml.Node, path: str, depth: int = 0) -> JsonValue:
        if depth > 200:
            raise self.fail(node, "document is nested too deeply (recursive alias?)", path)
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
                result[key] = self.convert(value_node, join_key(path, key), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [
                self.convert(item, join_index(path, i), depth + 1)
                for i, item in enumerate(node.value)
            ]
        value: Any = self.loader.construct_object(node, deep=True)
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise self.fail(node, f"unsupported YAML value of type {type(value).__name__}", path)

    def scalar_key(self, node: yaml.Node, path: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "mapping keys must be scalars", path)
        key: Any = self.loader.construct_object(node)
        if isinstance(key, bool):
            return "true" if key else "false"
        if key is None:
            return "null"
        if isinstance(key, int | float | str):
            return str(key)
        raise self.fail(node, f"unsupported mapping key of type {type(key).__name__}", path)


def _looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def parse_json(text: str, source: str) -> list[Document]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise YamlSyntaxError(
            Problem(message=f"invalid JSON: {exc.msg}", source=source, line=exc.lineno)
        ) from exc
    return [Document(value=value, index=0, line=1)]


def parse_documents(text: str, source: str = "<string>") -> list[Document]:
    """Parse a YAML stream (or JSON text) into documents. Empty documents are kept as None.

    Raises :class:`YamlSyntaxError` with the line of the first syntax error.
    """
    if _looks_like_json(text):
        try:
            return parse_json(text, source)
        except YamlSyntaxError:
            pass  # YAML flow style also starts with "{" or "[": let the YAML parser judge
    loader = _KubeLoader(text)
    documents: list[Document] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            converter = _Converter(loader, source, index)
            if node is None:
                documents.append(Document(value=None, index=index, line=None))
            else:
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
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(
            Problem(message=f"invalid YAML: {exc}", source=source, index=len(documents))
        ) from exc
    finally:
        loader.dispose()
    return documents
