"""Codegen pass: write each message's dataclass ``__init__`` into the generated module.

``@dataclass`` builds ``__init__`` at import time by formatting its source and running
``exec`` on it, and documents the class by calling ``inspect.signature``; across the Envoy
packages that is most of the import time (about two thirds of cluster + route + discovery).
This pass moves that work to codegen time: it reads the betterproto2 output with ``ast`` and,
for every ``@dataclass(eq=False, repr=False)`` message class,

- writes the ``__init__`` that ``dataclasses`` would have built (same parameters, order,
  annotations, ``<factory>`` defaults, one fresh default per call, then ``__post_init__``) as
  plain code at the end of the class body, where the bytecode cache keeps it compiled;
- writes the docstring ``dataclasses`` would have set (``Name(field: 'type' = <factory>, ...)``)
  when the class has none;
- writes ``__match_args__`` (the field names, as ``dataclasses`` sets it);
- replaces each ``name: "type" = betterproto2.field(...)`` by the bare annotation, removes the
  ``@dataclass`` decorator and ends the class with
  ``__dataclass_fields__ = _LazyFields(lambda: {name: betterproto2.field(...), ...})``
  (``istio_sdk.codec.LazyFields``): the first read of ``__dataclass_fields__``
  (``dataclasses.fields``, ``is_dataclass``, betterproto2's class metadata) puts the fields on
  the class and applies ``@dataclass(eq=False, repr=False, init=False)`` then, so
  ``dataclasses`` still owns ``__dataclass_fields__`` and ``dataclasses.fields``, and the
  field metadata of a class nobody encodes, parses or compares is never built. That was most
  of the import time left after the static ``__init__``.

The defaults follow ``betterproto2.field``: a list for repeated fields, ``None`` for optional
and oneof fields, the field's own ``default_factory`` for enums, and the zero value of the
proto type otherwise. Literals (``[]``, ``""``, ``0``) build the same values the factories
return. Only the input text decides the output, so the pass is deterministic.
"""

from __future__ import annotations

import ast
import pathlib

from google.protobuf.compiler import plugin_pb2

DECORATOR = "@dataclass(eq=False, repr=False)"
NEW_DECORATOR = "@dataclass(eq=False, repr=False, init=False)"
SENTINEL = "_FACTORY"
SENTINEL_IMPORT = f"from istio_sdk.codec import FACTORY as {SENTINEL}, LazyFields as _LazyFields\n"
DATACLASS_IMPORT = "from dataclasses import dataclass\n"
# betterproto2.field's zero values, as literals building equal values.
ZERO_BY_TYPE = {
    "TYPE_BOOL": "False",
    "TYPE_INT32": "0",
    "TYPE_INT64": "0",
    "TYPE_UINT32": "0",
    "TYPE_UINT64": "0",
    "TYPE_SINT32": "0",
    "TYPE_SINT64": "0",
    "TYPE_FLOAT": "0.0",
    "TYPE_DOUBLE": "0.0",
    "TYPE_FIXED32": "0",
    "TYPE_SFIXED32": "0",
    "TYPE_FIXED64": "0",
    "TYPE_SFIXED64": "0",
    "TYPE_STRING": '""',
    "TYPE_BYTES": 'b""',
    "TYPE_MESSAGE": "None",
    "TYPE_MAP": "{}",
}


class StaticInitError(RuntimeError):
    """The betterproto2 output does not have the shape this pass expects."""


def _is_message_dataclass(node: ast.ClassDef) -> bool:
    return any(
        isinstance(d, ast.Call)
        and isinstance(d.func, ast.Name)
        and d.func.id == "dataclass"
        and ast.unparse(d) == DECORATOR[1:]
        for d in node.decorator_list
    )


def _default(where: str, call: ast.Call) -> str:
    """The literal (or the enum's factory body) ``betterproto2.field(...)`` defaults to."""
    keywords = {k.arg: k.value for k in call.keywords}

    def flag(name: str) -> bool:
        value = keywords.get(name)
        if value is None:
            return False
        if not isinstance(value, ast.Constant):
            raise StaticInitError(f"{where}: {name}= is not a constant")
        return bool(value.value)

    if flag("repeated"):
        return "[]"
    if flag("optional") or flag("group"):
        return "None"
    if len(call.args) < 2 or not isinstance(call.args[1], ast.Attribute):
        raise StaticInitError(f"{where}: no betterproto2.TYPE_* argument")
    proto_type = call.args[1].attr
    if proto_type == "TYPE_ENUM":
        factory = keywords.get("default_factory")
        if not isinstance(factory, ast.Lambda) or factory.args.args:
            raise StaticInitError(f"{where}: an enum field without a default_factory lambda")
        return ast.unparse(factory.body)
    if proto_type not in ZERO_BY_TYPE:
        raise StaticInitError(f"{where}: unknown proto type {proto_type}")
    return ZERO_BY_TYPE[proto_type]


def _fields(node: ast.ClassDef) -> list[tuple[str, str, str]]:
    """(name, annotation source, default source) of each field, in declaration order."""
    fields = []
    for item in node.body:
        if isinstance(item, ast.AnnAssign):
            if not isinstance(item.target, ast.Name) or not isinstance(item.value, ast.Call):
                raise StaticInitError(f"{node.name}: a class attribute that is not a field")
            func = ast.unparse(item.value.func)
            if func != "betterproto2.field":
                raise StaticInitError(f"{node.name}.{item.target.id}: made by {func}")
            where = f"{node.name}.{item.target.id}"
            annotation = item.annotation
            if not isinstance(annotation, ast.Constant) or not isinstance(annotation.value, str):
                raise StaticInitError(f"{where}: the annotation is not a string")
            fields.append((item.target.id, annotation.value, _default(where, item.value)))
        elif isinstance(item, ast.FunctionDef) and item.name == "__init__":
            raise StaticInitError(f"{node.name} already defines __init__")
    return fields


def dataclass_doc(name: str, fields: list[tuple[str, str, str]]) -> str:
    """The docstring ``dataclasses`` gives a class without one (its ``__init__`` signature)."""
    params = ", ".join(f"{field}: {annotation!r} = <factory>" for field, annotation, _ in fields)
    return f"{name}({params})"


def init_source(fields: list[tuple[str, str, str]]) -> list[str]:
    """The lines (indented for a class body) of the ``__init__`` dataclasses would build."""
    # As in dataclasses: a field called "self" renames the instance parameter.
    me = "__dataclass_self__" if any(field == "self" for field, _, _ in fields) else "self"
    params = "".join(f", {field}: {annotation!r} = {SENTINEL}" for field, annotation, _ in fields)
    lines = [f"    def __init__({me}{params}) -> None:"]
    for field, _, default in fields:
        lines.append(f"        {me}.{field} = {default} if {field} is {SENTINEL} else {field}")
    lines.append(f"        {me}.__post_init__()")
    return lines


def lazy_fields_source(node: ast.ClassDef, text: str) -> list[str]:
    """The class-body lines deferring the ``betterproto2.field(...)`` calls to first use."""
    lines = ["    __dataclass_fields__ = _LazyFields(", "        lambda: {"]
    for item in node.body:
        if isinstance(item, ast.AnnAssign):
            assert isinstance(item.target, ast.Name) and item.value is not None
            lines.append(f"            {item.target.id!r}: {ast.unparse(item.value)},")
    lines += ["        }", "    )"]
    return lines


def rewrite_module(text: str) -> str:
    """The module with every message dataclass given a static ``__init__`` (see above)."""
    tree = ast.parse(text)
    lines = text.splitlines()
    # Edits (start, end, new lines) by line index, applied bottom-up so indices stay valid.
    edits: list[tuple[int, int, list[str]]] = []
    changed = False
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not _is_message_dataclass(node):
            continue
        fields = _fields(node)
        (decorator,) = node.decorator_list
        index = decorator.lineno - 1
        if lines[index].strip() != DECORATOR:
            raise StaticInitError(f"{node.name}: decorator not on a line of its own")
        edits.append((index, index + 1, []))
        for item in node.body:
            if isinstance(item, ast.AnnAssign):
                assert isinstance(item.target, ast.Name) and item.end_lineno is not None
                annotation = ast.get_source_segment(text, item.annotation)
                edits.append(
                    (item.lineno - 1, item.end_lineno, [f"    {item.target.id}: {annotation}"])
                )
        match_args = "".join(f"{field!r}, " for field, _, _ in fields).rstrip(" ")
        assert node.end_lineno is not None
        tail = [
            "",
            f"    __match_args__ = ({match_args})",
            "",
            *init_source(fields),
            "",
            *lazy_fields_source(node, text),
        ]
        edits.append((node.end_lineno, node.end_lineno, tail))
        if ast.get_docstring(node, clean=False) is None:
            first = node.body[0]
            start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
            edits.append((start - 1, start - 1, [f"    {dataclass_doc(node.name, fields)!r}", ""]))
        changed = True
    if not changed:
        return text
    for start, end, new_lines in sorted(edits, key=lambda edit: edit[:2], reverse=True):
        lines[start:end] = new_lines
    result = "\n".join(lines) + "\n"
    marker = "import betterproto2\n"
    if marker not in result:
        raise StaticInitError("no 'import betterproto2' line to put the sentinel import after")
    result = result.replace(marker, marker + SENTINEL_IMPORT, 1)
    if "@dataclass" not in result:
        result = result.replace(DATACLASS_IMPORT, "", 1)
    return result


def static_init_pass(out: pathlib.Path, request: plugin_pb2.CodeGeneratorRequest) -> None:
    """Rewrite every generated package ``__init__.py`` that defines message dataclasses."""
    del request  # the betterproto2 output says all this pass needs
    for path in sorted(out.rglob("__init__.py")):
        text = path.read_text()
        if DECORATOR not in text:
            continue
        path.write_text(rewrite_module(text))
