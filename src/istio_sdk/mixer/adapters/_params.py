"""Reading a handler's ``params`` (a JSON/YAML mapping) into typed values, with field paths.

Mixer unmarshals ``params`` with jsonpb over a copy of the adapter's default config, so a key
may be the proto field name (``max_amount``) or its JSON name (``maxAmount``), a missing key keeps
the default, durations are strings (``"1.5s"``, and Go's ``"1m30s"`` that Istio's YAML uses),
enums are names or numbers and 64-bit integers may be quoted. Anything else is a
:class:`AdapterParamsError` naming the field.
"""

from __future__ import annotations

import datetime
import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from istio_sdk import protojson, timeutil
from istio_sdk.config import _go
from istio_sdk.mixer.adapters.base import AdapterParamsError

E = TypeVar("E", bound=enum.Enum)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "..."
        return f"the string {shown!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__


class Reader:
    """Params errors of one adapter: each ``read_*`` raises :class:`AdapterParamsError`."""

    def __init__(self, adapter: str) -> None:
        self.adapter = adapter

    def error(self, path: str, problem: str) -> AdapterParamsError:
        return AdapterParamsError(self.adapter, path, problem)

    def fields(self, data: object, path: str, names: Sequence[str]) -> dict[str, tuple[str, Any]]:
        """``data``'s entries by proto field name: ``{proto_name: (path, value)}``.

        Unknown keys, non-string keys and a field given twice (``max_amount`` and
        ``maxAmount``) are errors. ``null`` counts as absent, as in proto3 JSON.
        """
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise self.error(path, f"expected an object, got {_kind(data)}")
        by_key = {name: name for name in names}
        by_key.update({protojson.json_name(name): name for name in names})
        found: dict[str, tuple[str, Any]] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise self.error(path, f"field names must be strings, got {_kind(key)}")
            field_path = f"{path}.{key}" if path else key
            name = by_key.get(key)
            if name is None:
                known = ", ".join(protojson.json_name(n) for n in names) or "none"
                raise self.error(field_path, f"unknown field (known fields: {known})")
            if name in found:
                raise self.error(field_path, f"field {name} is given twice")
            if value is not None:
                found[name] = (field_path, value)
        return found

    def string(self, path: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"expected a string, got {_kind(value)}")
        return value

    def boolean(self, path: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"expected true or false, got {_kind(value)}")
        return value

    def integer(self, path: str, value: object, *, bits: int = 64) -> int:
        low, high = _INT32 if bits == 32 else _INT64
        number: int
        if isinstance(value, bool):
            raise self.error(path, f"expected an integer, got {_kind(value)}")
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            try:
                number = _go.parse_int(value)
            except ValueError:
                raise self.error(path, f"expected an integer, got {_kind(value)}") from None
        else:
            raise self.error(path, f"expected an integer, got {_kind(value)}")
        if not low <= number <= high:
            raise self.error(path, f"{number} is out of the int{bits} range")
        return number

    def number(self, path: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.error(path, f"expected a number, got {_kind(value)}")
        if isinstance(value, str):
            try:
                return float({"Infinity": "inf", "-Infinity": "-inf"}.get(value, value))
            except ValueError:
                raise self.error(path, f"expected a number, got {_kind(value)}") from None
        try:
            return float(value)
        except OverflowError:
            raise self.error(path, f"{value} is too large for a double") from None

    def duration(self, path: str, value: object) -> datetime.timedelta:
        if isinstance(value, str) and len(value) > 64:  # no valid duration is this long
            raise self.error(path, f"invalid duration {_kind(value)}")
        try:
            seconds, nanos = protojson.duration_from_json(value, path, lenient=True)
            return timeutil.duration_from_parts(seconds, nanos)
        except protojson.JsonParseError as exc:
            raise self.error(path, exc.problem) from None
        except OverflowError:
            raise self.error(path, "duration is too large") from None

    def enum(self, path: str, value: object, cls: type[E]) -> E:
        names = ", ".join(member.name for member in cls)
        if isinstance(value, str):
            try:
                return cls[value]
            except KeyError:
                raise self.error(path, f"unknown value {value!r} (one of {names})") from None
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                raise self.error(path, f"unknown value {value} (one of {names})") from None
        raise self.error(path, f"expected one of {names}, got {_kind(value)}")

    def items(self, path: str, value: object) -> list[tuple[str, Any]]:
        """A list's elements with their paths (``path[0]``...)."""
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise self.error(path, f"expected a list, got {_kind(value)}")
        return [(f"{path}[{index}]", item) for index, item in enumerate(value)]

    def string_map(self, path: str, value: object) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected an object of strings, got {_kind(value)}")
        result: dict[str, str] = {}
        for key, item in value.items():
            key_text = self.string(path, key)
            result[key_text] = self.string(f"{path}.{key_text}", item)
        return result

    def strings(self, path: str, value: object) -> list[str]:
        return [self.string(item_path, item) for item_path, item in self.items(path, value)]
