"""Codegen pass: imports that betterproto2's output only needs inside a function move there.

``google.protobuf``'s generated module imports ``dateutil.parser`` at the top for one call in
``Timestamp.from_dict``; every program importing any Envoy type paid about 6 ms for it. For
each module listed in ``LAZY_MODULES``, this pass deletes the top-level ``import`` and puts the
same statement in front of each statement that uses the module (same indentation), which is
cheap after the first time (the module is in ``sys.modules``). A listed module used at module
level, or in the header of a compound statement, stops codegen with ``LazyImportError``.
"""

from __future__ import annotations

import ast
import pathlib

from google.protobuf.compiler import plugin_pb2

LAZY_MODULES = ("dateutil.parser",)


class LazyImportError(RuntimeError):
    """A module listed in LAZY_MODULES is used outside a function."""


def _uses(node: ast.AST, module: str) -> bool:
    return any(
        isinstance(n, ast.Attribute) and ast.unparse(n).startswith(module + ".")
        for n in ast.walk(node)
    )


BLOCKS = ("body", "orelse", "finalbody")


def _header_uses(stmt: ast.stmt, module: str) -> bool:
    """Whether ``stmt`` uses ``module`` outside the statements nested in it."""
    nested = [s for block in BLOCKS for s in getattr(stmt, block, [])]
    nested += [h for h in getattr(stmt, "handlers", [])]
    return _uses(stmt, module) and not any(_uses(s, module) for s in nested)


def rewrite_module(text: str, module: str) -> str:
    """``text`` with ``import <module>`` moved from the top into the functions using it."""
    statement = f"import {module}"
    tree = ast.parse(text)
    top = [n for n in tree.body if isinstance(n, ast.Import) and ast.unparse(n) == statement]
    if not top:
        return text
    lines = text.splitlines()
    inserts: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        in_function = node is not tree
        for block in BLOCKS:
            statements = getattr(node, block, None)
            if not isinstance(statements, list):  # a lambda's or an IfExp's body
                continue
            for stmt in statements:
                if stmt in top or not _uses(stmt, module):
                    continue
                if not in_function and not isinstance(stmt, ast.ClassDef | ast.FunctionDef):
                    raise LazyImportError(f"{module} is used at module level (line {stmt.lineno})")
                if any(getattr(stmt, b, None) for b in BLOCKS) or hasattr(stmt, "handlers"):
                    if _header_uses(stmt, module):
                        raise LazyImportError(f"{module} is used in a header (line {stmt.lineno})")
                    continue  # its nested statements are visited on their own
                indent = lines[stmt.lineno - 1][: stmt.col_offset]
                inserts.add((stmt.lineno - 1, f"{indent}{statement}"))
    for node in top:
        lines[node.lineno - 1] = ""
    for at, line in sorted(inserts, reverse=True):
        lines.insert(at, line)
    return "\n".join(lines) + "\n"


def lazy_imports_pass(out: pathlib.Path, request: plugin_pb2.CodeGeneratorRequest) -> None:
    """Apply ``rewrite_module`` for every module of ``LAZY_MODULES`` to every generated file."""
    del request  # the betterproto2 output says all this pass needs
    for path in sorted(out.rglob("*.py")):
        text = path.read_text()
        new = text
        for module in LAZY_MODULES:
            if f"import {module}\n" in new:
                new = rewrite_module(new, module)
        if new != text:
            path.write_text(new)
