"""The collector every semantic check writes to, and the context a check may read.

Istio's validators return a multierror of errors and a separate one of warnings, with no
field paths. Here each finding carries its level, the field path it is about and Istio's
message text, and the checks keep going after a finding so a document's every problem is
reported at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from istio_sdk.config._yaml import join_index, join_key

Level = Literal["error", "warning"]


@attrs.frozen
class Finding:
    """One semantic problem: ``level``, the field ``path`` and Istio's ``message``."""

    level: Level
    path: str
    message: str


@attrs.frozen
class Context:
    """What a check may know about the resource beyond its spec."""

    kind: str
    name: str = ""
    namespace: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    annotations: Mapping[str, str] = attrs.field(factory=dict)


class Report:
    """Findings in the order the checks make them; ``prefix`` is put before error texts."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.findings: list[Finding] = []
        self.error_prefix = ""

    def error(self, path: str, message: str) -> None:
        self.findings.append(Finding("error", path, self.error_prefix + message))

    def warn(self, path: str, message: str) -> None:
        self.findings.append(Finding("warning", path, message))

    def add(self, path: str, message: str | None) -> bool:
        """Record ``message`` as an error when it is not None; True when it was recorded."""
        if message is None:
            return False
        self.error(path, message)
        return True


# --- reading the proto3 JSON form -----------------------------------------------------------
# The checks read a spec as ``message_to_json`` writes it: lowerCamelCase names, default values
# left out, 64-bit integers as strings, enums as names, wrappers as their bare values.


def obj(value: Any, key: str) -> dict[str, Any] | None:
    """The message field ``key`` of ``value`` when it is set (an empty message is set)."""
    if not isinstance(value, dict):
        return None
    item = value.get(key)
    return item if isinstance(item, dict) else None


def items(value: Any, key: str) -> list[Any]:
    if not isinstance(value, dict):
        return []
    item = value.get(key)
    return item if isinstance(item, list) else []


def mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    item = value.get(key)
    return item if isinstance(item, dict) else {}


def text(value: Any, key: str) -> str:
    if not isinstance(value, dict):
        return ""
    item = value.get(key)
    return item if isinstance(item, str) else ""


def number(value: Any, key: str) -> int:
    """An integer field (0 when unset; 64-bit integers arrive as strings)."""
    if not isinstance(value, dict):
        return 0
    item = value.get(key)
    if isinstance(item, bool):
        return int(item)
    if isinstance(item, int):
        return item
    if isinstance(item, str):
        try:
            return int(item)
        except ValueError:
            return 0
    if isinstance(item, float) and item.is_integer():
        return int(item)
    return 0


def real(value: Any, key: str) -> float:
    """A floating point field (proto3 JSON writes NaN and the infinities as strings)."""
    if not isinstance(value, dict):
        return 0.0
    item = value.get(key)
    if isinstance(item, bool):
        return float(item)
    if isinstance(item, int | float):
        return float(item)
    if isinstance(item, str):
        try:
            return float(item)
        except ValueError:
            return 0.0
    return 0.0


def flag(value: Any, key: str) -> bool:
    return isinstance(value, dict) and value.get(key) is True


def has(value: Any, key: str) -> bool:
    return isinstance(value, dict) and key in value and value[key] is not None


__all__ = [
    "Context",
    "Finding",
    "Level",
    "Report",
    "flag",
    "has",
    "items",
    "join_index",
    "join_key",
    "mapping",
    "number",
    "obj",
    "real",
    "text",
]
