"""JSON Patch (RFC 6902) between two JSON values, and applying one.

The webhook answers with the difference between the Pod it received and the injected Pod:
mappings are compared key by key (``add``/``remove``/``replace`` of members), lists are compared
element by element while they have the same length (a list whose length changed is replaced
whole, which keeps the patch valid however the list was reordered), scalars are replaced.
Keys are escaped as JSON Pointer requires (``~`` as ``~0``, ``/`` as ``~1``): annotation names
hold slashes.
"""

from __future__ import annotations

from typing import Any

from istio_sdk.proxy.inject._merge import copy_json

__all__ = ["JsonPatchError", "apply_patch", "create_patch", "pointer"]

Operation = dict[str, Any]


class JsonPatchError(ValueError):
    """A patch that cannot be applied to the document (a missing path, a bad operation)."""


def pointer(parts: list[str | int]) -> str:
    """The JSON Pointer of a path of keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _diff(old: Any, new: Any, path: list[str | int], ops: list[Operation]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": pointer([*path, key])})
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": pointer([*path, key]), "value": copy_json(value)})
            else:
                _diff(old[key], value, [*path, key], ops)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (before, after) in enumerate(zip(old, new, strict=True)):
            _diff(before, after, [*path, index], ops)
        return
    if type(old) is not type(new) or old != new:
        ops.append({"op": "replace", "path": pointer(path), "value": copy_json(new)})


def create_patch(old: Any, new: Any) -> list[Operation]:
    """The operations that turn ``old`` into ``new`` (both JSON values)."""
    ops: list[Operation] = []
    _diff(old, new, [], ops)
    return ops


def _parse_pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise JsonPatchError(f"path {text!r:.80} does not start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/")]


def _index(container: list[Any], token: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    if not (token.isascii() and token.isdigit()) or (token != "0" and token.startswith("0")):
        raise JsonPatchError(f"{token!r:.40} is not a list index")
    index = int(token)
    if index > len(container) or (index == len(container) and not adding):
        raise JsonPatchError(f"index {index} is out of range")
    return index


def apply_patch(document: Any, ops: list[Operation]) -> Any:
    """``document`` with ``ops`` applied (add, remove, replace; a copy, the input is kept)."""
    doc = copy_json(document)
    for op in ops:
        if not isinstance(op, dict):
            raise JsonPatchError(f"an operation must be an object, got {type(op).__name__}")
        kind, path = op.get("op"), op.get("path")
        if kind not in ("add", "remove", "replace") or not isinstance(path, str):
            raise JsonPatchError(f"unsupported operation {op!r:.80}")
        parts = _parse_pointer(path)
        if not parts:
            if kind == "remove":
                raise JsonPatchError("cannot remove the whole document")
            doc = copy_json(op.get("value"))
            continue
        parent = doc
        for token in parts[:-1]:
            if isinstance(parent, dict) and token in parent:
                parent = parent[token]
            elif isinstance(parent, list):
                parent = parent[_index(parent, token, adding=False)]
            else:
                raise JsonPatchError(f"path {path!r:.80} does not exist")
        last = parts[-1]
        if isinstance(parent, dict):
            if kind != "add" and last not in parent:
                raise JsonPatchError(f"path {path!r:.80} does not exist")
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = copy_json(op.get("value"))
        elif isinstance(parent, list):
            index = _index(parent, last, adding=kind == "add")
            if kind == "add":
                parent.insert(index, copy_json(op.get("value")))
            elif kind == "remove":
                del parent[index]
            else:
                parent[index] = copy_json(op.get("value"))
        else:
            raise JsonPatchError(f"path {path!r:.80} does not exist")
    return doc
