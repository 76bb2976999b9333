"""Proto3 JSON for the generated messages, as ``google.protobuf.json_format`` writes and reads it.

betterproto2's own ``to_dict``/``from_dict`` get several cases wrong (Duration and Timestamp
precision and sign, 64-bit wrappers, BytesValue, FieldMask, JSON names with digits, float32
printing, empty Any). This module does not use them: it walks betterproto2's field metadata
itself and applies the proto3 JSON mapping:

- JSON names follow protoc's rule (drop each ``_`` and upper-case the letter after it); the
  reader also accepts the proto field names;
- 64-bit integers are strings, ``bytes`` are base64, enums are names (numbers when unknown),
  ``float`` prints the shortest decimal that reads back as the same float32, non-finite numbers
  are ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``;
- well-known types have their own forms: Any (``@type``), Duration (``"1.5s"``), Timestamp
  (RFC 3339), Struct/Value/ListValue (plain JSON), wrappers (the bare value), FieldMask
  (``"a.b,cD"``).

``message_from_json(..., lenient=True)`` also takes what Istio's YAML and documentation write
and Istio accepts: Go-style durations (``"1m30s"``, ``"100ms"``, ``"0"``) and numbers that YAML
produced as floats.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import dataclasses
import datetime
import functools
import json
import math
import re
import struct
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypeVar, cast

import betterproto2

from istio_sdk import timeutil
from istio_sdk._messages import find_message_class, full_name_of

__all__ = [
    "JsonParseError",
    "JsonSerializeError",
    "JsonValue",
    "ProtoJsonError",
    "duration_from_json",
    "duration_to_json",
    "field_mask_from_json",
    "field_mask_to_json",
    "json_name",
    "message_from_json",
    "message_from_json_text",
    "message_to_json",
    "message_to_json_text",
    "timestamp_from_json",
    "timestamp_to_json",
]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"

M = TypeVar("M", bound=betterproto2.Message)


_DURATION_MAX_SECONDS = 315_576_000_000
_TIMESTAMP_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_TIMESTAMP_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_NANOS = 1_000_000_000
_FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]


class ProtoJsonError(ValueError):
    """A value that has no proto3 JSON form, or JSON that does not fit the message.

    ``path`` locates the value (``spec.http[0].route[1].weight``; empty for the top level) and
    ``problem`` says what is wrong with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problem))


class JsonParseError(ProtoJsonError):
    """JSON (or YAML turned into JSON values) that does not match the message's schema."""


class JsonSerializeError(ProtoJsonError):
    """A message holding a value that proto3 JSON cannot express (e.g. an invalid Duration)."""


# --------------------------------------------------------------------------------------------
# Names and the message pool


def json_name(proto_name: str) -> str:
    """protoc's JSON name: drop each underscore and upper-case the character after it."""
    out: list[str] = []
    upper_next = False
    for char in proto_name:
        if char == "_":
            upper_next = True
        elif upper_next:
            out.append(char.upper())
            upper_next = False
        else:
            out.append(char)
    return "".join(out)


def _proto_name(attr: str) -> str:
    # betterproto2 appends "_" to Python keywords (``in`` -> ``in_``).
    if attr.endswith("_") and attr[:-1].isidentifier():
        import keyword

        if keyword.iskeyword(attr[:-1]):
            return attr[:-1]
    return attr


def _full_name(cls: type[betterproto2.Message]) -> str:
    return full_name_of(cls) or f"{cls.__module__}.{cls.__qualname__}"


def _class_for_type_url(type_url: str) -> type[betterproto2.Message] | None:
    """The generated class named by the part of ``type_url`` after its last ``/``."""
    name = type_url.rsplit("/", 1)[-1]
    if not name:
        return None
    return find_message_class(name)


# --------------------------------------------------------------------------------------------
# Field tables

_WKT = "google.protobuf."
_WRAPPERS = {
    "google.protobuf.BoolValue": betterproto2.TYPE_BOOL,
    "google.protobuf.BytesValue": betterproto2.TYPE_BYTES,
    "google.protobuf.DoubleValue": betterproto2.TYPE_DOUBLE,
    "google.protobuf.FloatValue": betterproto2.TYPE_FLOAT,
    "google.protobuf.Int32Value": betterproto2.TYPE_INT32,
    "google.protobuf.Int64Value": betterproto2.TYPE_INT64,
    "google.protobuf.StringValue": betterproto2.TYPE_STRING,
    "google.protobuf.UInt32Value": betterproto2.TYPE_UINT32,
    "google.protobuf.UInt64Value": betterproto2.TYPE_UINT64,
}
# Well-known types whose JSON form is not an object of their fields (inside an Any they go
# under "value").
_SPECIAL = {
    "google.protobuf.Any",
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "google.protobuf.FieldMask",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    *_WRAPPERS,
}

Writer = Callable[[Any, str], JsonValue]

# message_to_json's include_defaults, seen by nested messages (also inside Any).
_INCLUDE_DEFAULTS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "istio_sdk_protojson_include_defaults", default=False
)
Reader = Callable[[Any, str, bool], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Codec:
    """How one item of a field goes to and from JSON."""

    write: Writer
    read: Reader
    is_zero: Callable[[Any], bool]
    null_is_value: bool = False  # JSON null is a real value (google.protobuf.Value, NullValue)


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    attr: str
    json_name: str
    proto_name: str
    group: str | None
    presence: bool  # message, oneof member, proto3 optional, unwrapped well-known type
    repeated: bool
    item: _Codec
    map_key: _Codec | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Table:
    name: str
    fields: tuple[_Field, ...]
    by_json_key: Mapping[str, _Field]
    groups: Mapping[str, tuple[str, ...]]


@functools.cache
def _table(cls: type[betterproto2.Message]) -> _Table:
    info: Any = cast(Any, cls)._betterproto
    fields: list[_Field] = []
    by_key: dict[str, _Field] = {}
    groups: dict[str, list[str]] = {}
    for attr, meta in info.meta_by_field_name.items():
        proto = _proto_name(attr)
        if meta.proto_type == betterproto2.TYPE_MAP:
            assert meta.map_meta is not None
            key_meta, value_meta = meta.map_meta
            item = _codec_for(value_meta, info.cls_by_field[f"{attr}.value"])
            key = _key_codec(key_meta.proto_type)
            field = _Field(attr, json_name(proto), proto, None, False, False, item, key)
        else:
            item = _codec_for(meta, info.cls_by_field[attr])
            presence = bool(
                meta.optional or meta.group or meta.proto_type == betterproto2.TYPE_MESSAGE
            )
            field = _Field(
                attr, json_name(proto), proto, meta.group, presence, bool(meta.repeated), item
            )
        fields.append(field)
        by_key[field.json_name] = field
        by_key.setdefault(field.proto_name, field)
        if field.group is not None:
            groups.setdefault(field.group, []).append(attr)
    return _Table(_full_name(cls), tuple(fields), by_key, {k: tuple(v) for k, v in groups.items()})


def _codec_for(meta: betterproto2.FieldMetadata, value_cls: Any) -> _Codec:
    if meta.proto_type == betterproto2.TYPE_ENUM:
        return _enum_codec(value_cls)
    if meta.proto_type == betterproto2.TYPE_MESSAGE:
        if meta.unwrap is not None:
            return _unwrapped_codec(_full_name(meta.unwrap()))
        return _message_codec(value_cls)
    return _SCALARS[meta.proto_type]


# --------------------------------------------------------------------------------------------
# Scalars


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _expected(what: str, value: object) -> str:
    return f"expected {what}, got {_type_name(value)} {_short(value)}"


def _short(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool) else ""
    return text if len(text) <= 40 else text[:37] + "..."


_INT_RE = re.compile(r"-?(0|[1-9][0-9]*)")
_NUMBER_RE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _int_codec(proto_type: str, lo: int, hi: int, as_string: bool) -> _Codec:
    def write(value: Any, path: str) -> JsonValue:
        return str(int(value)) if as_string else int(value)

    def read(value: Any, path: str, lenient: bool) -> int:
        if isinstance(value, bool):
            raise JsonParseError(path, _expected(f"an integer ({proto_type})", value))
        if isinstance(value, int):
            number = value
        elif isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                raise JsonParseError(path, f"{value!r} is not an integer ({proto_type})")
            number = int(value)
        elif isinstance(value, str):
            number = _int_from_string(value, path, proto_type, lenient)
        else:
            raise JsonParseError(path, _expected(f"an integer ({proto_type})", value))
        if not lo <= number <= hi:
            raise JsonParseError(path, f"{number} is out of range for {proto_type}")
        return number

    return _Codec(write, read, lambda v: v == 0)


def _int_from_string(text: str, path: str, proto_type: str, lenient: bool) -> int:
    if _INT_RE.fullmatch(text):
        return int(text)
    if _NUMBER_RE.fullmatch(text):
        # json_format accepts integral numbers in exponent or fraction form.
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and number.is_integer():
            exact = _exact_integral(text)
            if exact is not None:
                return exact
    raise JsonParseError(path, f"{json.dumps(text)} is not an integer ({proto_type})")


def _exact_integral(text: str) -> int | None:
    """The integer a decimal string like ``1.5e3`` denotes exactly, if it is one."""
    from decimal import Decimal, InvalidOperation

    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if number != number.to_integral_value():
        return None
    return int(number)


def _float_to_json(value: float) -> JsonValue:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(value)


def _to_float32(value: float) -> float:
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def _float32_to_json(value: float) -> JsonValue:
    if not math.isfinite(value):
        return _float_to_json(value)
    value = _to_float32(value)
    # As json_format: the fewest significant digits (at least 6) that read back as this float32.
    digits = 6
    while True:
        shortest = float(f"{value:.{digits}g}")
        if _to_float32(shortest) == value:
            return shortest
        digits += 1


def _read_float(value: Any, path: str, lenient: bool, proto_type: str) -> float:
    if isinstance(value, bool):
        raise JsonParseError(path, _expected(f"a number ({proto_type})", value))
    if isinstance(value, int):
        number = float(value)
    elif isinstance(value, float):
        if not math.isfinite(value) and not lenient:
            raise JsonParseError(
                path, f'{value!r} must be written as a string ("NaN", "Infinity", "-Infinity")'
            )
        number = value
    elif isinstance(value, str):
        if value == "NaN":
            number = math.nan
        elif value == "Infinity":
            number = math.inf
        elif value == "-Infinity":
            number = -math.inf
        elif _NUMBER_RE.fullmatch(value):
            number = float(value)
        else:
            raise JsonParseError(path, f"{json.dumps(value)} is not a number ({proto_type})")
    else:
        raise JsonParseError(path, _expected(f"a number ({proto_type})", value))
    if proto_type == betterproto2.TYPE_FLOAT and math.isfinite(number):
        if abs(number) > _FLOAT32_MAX:
            raise JsonParseError(path, f"{number!r} is out of range for float")
        number = _to_float32(number)
    elif math.isinf(number) and isinstance(value, int | float) and math.isfinite(value):
        raise JsonParseError(path, f"{value!r} is out of range for double")
    return number


def _float_codec(proto_type: str) -> _Codec:
    writer = _float32_to_json if proto_type == betterproto2.TYPE_FLOAT else _float_to_json

    def write(value: Any, path: str) -> JsonValue:
        return writer(float(value))

    def read(value: Any, path: str, lenient: bool) -> float:
        return _read_float(value, path, lenient, proto_type)

    # -0.0 is not the default: like upb, the codec writes it, and json_format prints it.
    return _Codec(write, read, lambda v: v == 0 and math.copysign(1.0, v) > 0)


def _bool_codec() -> _Codec:
    def read(value: Any, path: str, lenient: bool) -> bool:
        if not isinstance(value, bool):
            raise JsonParseError(path, _expected("true or false", value))
        return value

    return _Codec(lambda v, p: bool(v), read, lambda v: not v)


def _string_codec() -> _Codec:
    def write(value: Any, path: str) -> JsonValue:
        return str(value)

    def read(value: Any, path: str, lenient: bool) -> str:
        if not isinstance(value, str):
            raise JsonParseError(path, _expected("a string", value))
        return value

    return _Codec(write, read, lambda v: v == "")


def _bytes_to_json(value: bytes) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def _bytes_from_json(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise JsonParseError(path, _expected("a base64 string", value))
    text = value.strip().rstrip("=")
    alphabet = b"-_" if ("-" in text or "_" in text) else b"+/"
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        raise JsonParseError(path, f"{_short(value)} is not valid base64") from None


def _bytes_codec() -> _Codec:
    return _Codec(
        lambda v, p: _bytes_to_json(v),
        lambda v, p, lenient: _bytes_from_json(v, p),
        lambda v: not v,
    )


_SCALARS: dict[str, _Codec] = {
    betterproto2.TYPE_INT32: _int_codec("int32", -(2**31), 2**31 - 1, False),
    betterproto2.TYPE_SINT32: _int_codec("sint32", -(2**31), 2**31 - 1, False),
    betterproto2.TYPE_SFIXED32: _int_codec("sfixed32", -(2**31), 2**31 - 1, False),
    betterproto2.TYPE_UINT32: _int_codec("uint32", 0, 2**32 - 1, False),
    betterproto2.TYPE_FIXED32: _int_codec("fixed32", 0, 2**32 - 1, False),
    betterproto2.TYPE_INT64: _int_codec("int64", -(2**63), 2**63 - 1, True),
    betterproto2.TYPE_SINT64: _int_codec("sint64", -(2**63), 2**63 - 1, True),
    betterproto2.TYPE_SFIXED64: _int_codec("sfixed64", -(2**63), 2**63 - 1, True),
    betterproto2.TYPE_UINT64: _int_codec("uint64", 0, 2**64 - 1, True),
    betterproto2.TYPE_FIXED64: _int_codec("fixed64", 0, 2**64 - 1, True),
    betterproto2.TYPE_FLOAT: _float_codec(betterproto2.TYPE_FLOAT),
    betterproto2.TYPE_DOUBLE: _float_codec(betterproto2.TYPE_DOUBLE),
    betterproto2.TYPE_BOOL: _bool_codec(),
    betterproto2.TYPE_STRING: _string_codec(),
    betterproto2.TYPE_BYTES: _bytes_codec(),
}


def _key_codec(proto_type: str) -> _Codec:
    """Map keys are always JSON strings."""
    if proto_type == betterproto2.TYPE_STRING:
        return _SCALARS[proto_type]
    if proto_type == betterproto2.TYPE_BOOL:

        def read_bool(value: Any, path: str, lenient: bool) -> bool:
            if value in ("true", "false"):
                return bool(value == "true")
            raise JsonParseError(path, f'map key {_short(value)} is not "true" or "false"')

        return _Codec(lambda v, p: "true" if v else "false", read_bool, lambda v: not v)
    inner = _SCALARS[proto_type]

    def read_int(value: Any, path: str, lenient: bool) -> Any:
        return inner.read(value, path, lenient)

    return _Codec(lambda v, p: str(int(v)), read_int, lambda v: v == 0)


# --------------------------------------------------------------------------------------------
# Enums


@functools.cache
def _enum_codec(enum_cls: Any) -> _Codec:
    # betterproto2 strips a shared prefix from some enums' member names and keeps the proto
    # names in two tables; the other members carry their proto names. Aliases (allow_alias)
    # are only in __members__; the first name of a number is the one JSON writes.
    renamed_by_number: dict[int, str] = enum_cls.betterproto_value_to_renamed_proto_names()
    renamed_by_name: dict[str, int] = enum_cls.betterproto_renamed_proto_names_to_value()
    number_names: dict[int, str] = dict(renamed_by_number)
    names: dict[str, int] = dict(renamed_by_name)
    for member_name, member in enum_cls.__members__.items():
        number = int(member)
        if number in renamed_by_number:
            continue
        number_names.setdefault(number, member_name)
        names.setdefault(member_name, number)
    is_null = enum_cls.__name__ == "NullValue" and enum_cls.__module__.endswith("google.protobuf")
    closed = _is_closed_enum(enum_cls)

    def write(value: Any, path: str) -> JsonValue:
        if is_null:
            return None
        number = int(value)
        return number_names.get(number, number)

    def read(value: Any, path: str, lenient: bool) -> Any:
        if is_null and value is None:
            return enum_cls(0)
        if isinstance(value, str):
            number = names.get(value)
            if number is None:
                choices = ", ".join(list(names)[:12]) + (", ..." if len(names) > 12 else "")
                raise JsonParseError(
                    path,
                    f"unknown value {json.dumps(value)} for enum {enum_cls.__name__} "
                    f"(expected one of: {choices})",
                )
            return enum_cls(number)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise JsonParseError(path, f"{value!r} is not an enum number")
            number = int(value)
            if not -(2**31) <= number < 2**31:
                raise JsonParseError(path, f"{number} is out of range for an enum")
            if closed and number not in number_names:
                raise JsonParseError(path, f"{number} is not a value of enum {enum_cls.__name__}")
            return enum_cls(number)
        raise JsonParseError(path, _expected(f"an enum name for {enum_cls.__name__}", value))

    return _Codec(write, read, lambda v: int(v) == 0, null_is_value=is_null)


def _is_closed_enum(enum_cls: Any) -> bool:
    """proto2 enums (descriptor.proto, validate.proto) reject numbers they do not define."""
    module = enum_cls.__module__
    if module.endswith(".validate"):
        return True
    return bool(module.endswith(".google.protobuf") and enum_cls.__name__ != "NullValue")


# --------------------------------------------------------------------------------------------
# Messages


@functools.cache
def _message_codec(cls: type[betterproto2.Message]) -> _Codec:
    name = _full_name(cls)

    def write(value: Any, path: str) -> JsonValue:
        return _write_message(value, path, _INCLUDE_DEFAULTS.get())

    def read(value: Any, path: str, lenient: bool) -> Any:
        return _read_message(cls, value, path, lenient)

    return _Codec(write, read, lambda v: v is None, null_is_value=name == "google.protobuf.Value")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _write_message(msg: betterproto2.Message, path: str, include_defaults: bool) -> JsonValue:
    cls = type(msg)
    table = _table(cls)
    special = _SPECIAL_WRITERS.get(table.name)
    if special is not None:
        return special(msg, path)
    out: dict[str, JsonValue] = {}
    for field in table.fields:
        value = getattr(msg, field.attr)
        if field.map_key is not None:
            if not value and not include_defaults:
                continue
            where = f"{path}.{field.json_name}" if path else field.json_name
            key_write = field.map_key.write
            item_write = field.item.write
            out[field.json_name] = {
                cast(str, key_write(key, where)): item_write(item, f'{where}["{key}"]')
                for key, item in value.items()
            }
        elif field.repeated:
            if not value and not include_defaults:
                continue
            where = f"{path}.{field.json_name}" if path else field.json_name
            item_write = field.item.write
            out[field.json_name] = [
                item_write(item, f"{where}[{index}]") for index, item in enumerate(value)
            ]
        elif field.presence:
            if value is None:
                continue
            where = f"{path}.{field.json_name}" if path else field.json_name
            out[field.json_name] = field.item.write(value, where)
        else:
            if not include_defaults and field.item.is_zero(value):
                continue
            where = f"{path}.{field.json_name}" if path else field.json_name
            out[field.json_name] = field.item.write(value, where)
    return out


def _read_message(cls: type[M], value: Any, path: str, lenient: bool) -> M:
    table = _table(cls)
    special = _SPECIAL_READERS.get(table.name)
    if special is not None:
        return cast(M, special(cls, value, path, lenient))
    if not isinstance(value, dict) and not isinstance(value, Mapping):
        raise JsonParseError(path, _expected(f"an object ({table.name})", value))
    kwargs: dict[str, Any] = {}
    seen_group: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise JsonParseError(path, f"field names must be strings, got {key!r}")
        field = table.by_json_key.get(key)
        where = _join(path, key)
        if field is None:
            raise JsonParseError(where, f"unknown field {json.dumps(key)} in {table.name}")
        if field.attr in kwargs:
            raise JsonParseError(where, f"field {field.proto_name} is set more than once")
        if item is None and not (field.item.null_is_value and not field.repeated):
            continue  # null means "not set" (it does not count as a oneof member either)
        _check_group(field, key, where, seen_group)
        if field.map_key is not None:
            kwargs[field.attr] = _read_map(field, item, where, lenient)
        elif field.repeated:
            if not isinstance(item, list):
                raise JsonParseError(where, _expected("an array", item))
            items = []
            for index, element in enumerate(item):
                at = f"{where}[{index}]"
                if element is None and not field.item.null_is_value:
                    raise JsonParseError(at, "null is not allowed in a repeated field")
                items.append(field.item.read(element, at, lenient))
            kwargs[field.attr] = items
        else:
            kwargs[field.attr] = field.item.read(item, where, lenient)
    return cls(**kwargs)


def _check_group(field: _Field, key: str, where: str, seen: dict[str, str]) -> None:
    if field.group is None:
        return
    other = seen.get(field.group)
    if other is not None and other != key:
        raise JsonParseError(
            where, f"oneof {field.group} already has {json.dumps(other)} set; only one is allowed"
        )
    seen[field.group] = key


def _read_map(field: _Field, value: Any, path: str, lenient: bool) -> dict[Any, Any]:
    assert field.map_key is not None
    if not isinstance(value, Mapping):
        raise JsonParseError(path, _expected("an object (map)", value))
    out: dict[Any, Any] = {}
    for raw_key, item in value.items():
        at = f"{path}[{json.dumps(str(raw_key))}]"
        key = raw_key
        if not isinstance(raw_key, str):
            if lenient and isinstance(raw_key, int | bool):
                # YAML keys like `80:` or `true:` arrive as numbers/booleans.
                key = json.dumps(raw_key)
            else:
                raise JsonParseError(at, f"map keys must be strings, got {_type_name(raw_key)}")
        parsed_key = field.map_key.read(key, at, lenient)
        if item is None and not field.item.null_is_value:
            raise JsonParseError(at, "map values cannot be null")
        out[parsed_key] = field.item.read(item, at, lenient)
    return out


# --------------------------------------------------------------------------------------------
# Well-known types: Duration and Timestamp

_DURATION_RE = re.compile(r"(-)?([0-9]+)(?:\.([0-9]{1,9}))?s")
_GO_DURATION_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_GO_UNIT_NANOS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": _NANOS,
    "m": 60 * _NANOS,
    "h": 3600 * _NANOS,
}
_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)


def _check_duration(seconds: int, nanos: int, path: str, error: type[ProtoJsonError]) -> None:
    if not -_DURATION_MAX_SECONDS <= seconds <= _DURATION_MAX_SECONDS:
        raise error(path, f"duration of {seconds}s is out of range (at most 10000 years)")
    if not -_NANOS < nanos < _NANOS:
        raise error(path, f"duration nanos {nanos} out of range")
    if (seconds < 0 < nanos) or (nanos < 0 < seconds):
        raise error(path, "duration seconds and nanos must have the same sign")


def _fraction(nanos: int) -> str:
    """0, 3, 6 or 9 fractional digits, as the proto3 JSON mapping asks."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"


def duration_to_json(seconds: int, nanos: int, path: str = "") -> str:
    """Duration parts to JSON (``"-1.500s"``); invalid parts raise ``JsonSerializeError``."""
    _check_duration(seconds, nanos, path, JsonSerializeError)
    sign = "-" if seconds < 0 or nanos < 0 else ""
    return f"{sign}{abs(seconds)}{_fraction(abs(nanos))}s"


def _split_nanos(total: int) -> tuple[int, int]:
    """Total nanoseconds to (seconds, nanos), both truncated toward zero."""
    sign = -1 if total < 0 else 1
    seconds, nanos = divmod(abs(total), _NANOS)
    return sign * seconds, sign * nanos


def duration_from_json(value: Any, path: str = "", lenient: bool = False) -> tuple[int, int]:
    """``"1.5s"`` (and with ``lenient``, Go's ``"1m30s"``) to (seconds, nanos)."""
    if not isinstance(value, str):
        raise JsonParseError(path, _expected('a duration string like "1.5s"', value))
    match = _DURATION_RE.fullmatch(value)
    if match is not None:
        negative, whole, fraction = match.groups()
        seconds = int(whole)
        nanos = int((fraction or "").ljust(9, "0"))
        if negative:
            seconds, nanos = -seconds, -nanos
    elif lenient:
        seconds, nanos = _split_nanos(_go_duration_nanos(value, path))
    else:
        raise JsonParseError(path, f'invalid duration {json.dumps(value)} (expected e.g. "1.5s")')
    _check_duration(seconds, nanos, path, JsonParseError)
    return seconds, nanos


def _go_duration_nanos(text: str, path: str) -> int:
    """Go's time.ParseDuration grammar: ``[-+]?([0-9]*(\\.[0-9]*)?unit)+`` or ``0``."""
    from decimal import Decimal

    rest = text
    sign = 1
    if rest[:1] in ("-", "+"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    total = Decimal(0)
    position = 0
    while position < len(rest):
        match = _GO_DURATION_RE.match(rest, position)
        number = match.group(1) if match else ""
        if match is None or number in ("", "."):
            raise JsonParseError(
                path, f'invalid duration {json.dumps(text)} (expected e.g. "1.5s" or "1m30s")'
            )
        total += Decimal(number) * _GO_UNIT_NANOS[match.group(2)]
        position = match.end()
    if not rest:
        raise JsonParseError(path, "empty duration")
    return sign * int(total)


def timestamp_to_json(seconds: int, nanos: int, path: str = "") -> str:
    """Timestamp parts (seconds since the epoch, nanos) to RFC 3339 in UTC."""
    if not _TIMESTAMP_MIN_SECONDS <= seconds <= _TIMESTAMP_MAX_SECONDS:
        raise JsonSerializeError(path, f"timestamp seconds {seconds} outside years 0001-9999")
    if not 0 <= nanos < _NANOS:
        raise JsonSerializeError(path, f"timestamp nanos {nanos} out of range [0, 999999999]")
    moment = _EPOCH + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + _fraction(nanos) + "Z"


def timestamp_from_json(value: Any, path: str = "") -> tuple[int, int]:
    """RFC 3339 (``Z`` or an offset, up to 9 fractional digits) to (seconds, nanos)."""
    if not isinstance(value, str):
        raise JsonParseError(path, _expected("an RFC 3339 timestamp string", value))
    match = _TIMESTAMP_RE.fullmatch(value)
    if match is None:
        raise JsonParseError(
            path, f'invalid timestamp {json.dumps(value)} (expected e.g. "2024-01-02T03:04:05Z")'
        )
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        naive = datetime.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second)
        )
    except ValueError as exc:
        raise JsonParseError(path, f"invalid timestamp {json.dumps(value)}: {exc}") from None
    offset = 0
    if zone != "Z":
        offset = (int(zone[1:3]) * 60 + int(zone[4:6])) * 60 * (-1 if zone[0] == "-" else 1)
    delta = naive - datetime.datetime(1970, 1, 1)
    seconds = delta.days * 86400 + delta.seconds - offset
    nanos = int((fraction or "").ljust(9, "0"))
    if not _TIMESTAMP_MIN_SECONDS <= seconds <= _TIMESTAMP_MAX_SECONDS:
        raise JsonParseError(path, f"timestamp {json.dumps(value)} is outside years 0001-9999")
    return seconds, nanos


def _timedelta_parts(value: datetime.timedelta) -> tuple[int, int]:
    # Exact, including the nanoseconds of an istio_sdk.timeutil.Duration.
    return timeutil.duration_parts(value)


def _timedelta_from_parts(seconds: int, nanos: int, path: str) -> datetime.timedelta:
    try:
        return timeutil.duration_from_parts(seconds, nanos)
    except OverflowError:
        raise JsonParseError(path, "duration is too large for datetime.timedelta") from None


def _datetime_parts(value: datetime.datetime, path: str) -> tuple[int, int]:
    if value.tzinfo is None or value.utcoffset() is None:
        raise JsonSerializeError(path, "a Timestamp needs a timezone-aware datetime")
    return timeutil.timestamp_parts(value)


def _datetime_from_parts(seconds: int, nanos: int, path: str) -> datetime.datetime:
    try:
        return timeutil.timestamp_from_parts(seconds, nanos)
    except OverflowError:
        raise JsonParseError(path, "timestamp is outside what datetime.datetime holds") from None


# --------------------------------------------------------------------------------------------
# Well-known types: FieldMask


def _mask_path_to_json(path_text: str, where: str) -> str:
    out: list[str] = []
    upper_next = False
    for char in path_text:
        if char.isupper():
            raise JsonSerializeError(
                where, f"field mask path {json.dumps(path_text)} has an upper-case letter"
            )
        if char == "_":
            if upper_next:
                raise JsonSerializeError(
                    where, f"field mask path {json.dumps(path_text)} has a doubled underscore"
                )
            upper_next = True
        elif upper_next:
            if not char.islower():
                raise JsonSerializeError(
                    where,
                    f"field mask path {json.dumps(path_text)}: '_' must precede a lowercase letter",
                )
            out.append(char.upper())
            upper_next = False
        else:
            out.append(char)
    if upper_next:
        raise JsonSerializeError(
            where, f"field mask path {json.dumps(path_text)} ends with an underscore"
        )
    return "".join(out)


def _mask_path_from_json(text: str, where: str) -> str:
    out: list[str] = []
    for char in text:
        if char == "_":
            raise JsonParseError(
                where, f"field mask path {json.dumps(text)} must be lowerCamelCase (no '_')"
            )
        if char.isupper():
            out.append("_" + char.lower())
        else:
            out.append(char)
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Well-known types: writers and readers of the message classes


def _wkt(name: str) -> Any:
    from istio_sdk.api.google import protobuf

    return getattr(protobuf, name)


def _write_any(msg: Any, path: str) -> JsonValue:
    if not msg.type_url and not msg.value:
        return {}
    cls = _class_for_type_url(msg.type_url)
    if cls is None:
        raise JsonSerializeError(
            path, f"cannot write Any with type URL {json.dumps(msg.type_url)}: unknown type"
        )
    inner = cls.parse(msg.value)
    out: dict[str, JsonValue] = {"@type": msg.type_url}
    if _full_name(cls) in _SPECIAL:
        out["value"] = _write_message(inner, _join(path, "value"), _INCLUDE_DEFAULTS.get())
    else:
        body = _write_message(inner, path, _INCLUDE_DEFAULTS.get())
        assert isinstance(body, dict)
        out.update(body)
    return out


def _read_any(cls: Any, value: Any, path: str, lenient: bool) -> Any:
    if not isinstance(value, Mapping):
        raise JsonParseError(path, _expected('an object with "@type" (Any)', value))
    if not value:
        return cls()
    type_url = value.get("@type")
    if not isinstance(type_url, str) or not type_url:
        raise JsonParseError(_join(path, "@type"), 'an Any needs a "@type" string')
    inner_cls = _class_for_type_url(type_url)
    if inner_cls is None:
        raise JsonParseError(
            _join(path, "@type"), f"unknown type URL {json.dumps(type_url)} (no such message)"
        )
    rest = {k: v for k, v in value.items() if k != "@type"}
    if _full_name(inner_cls) in _SPECIAL:
        extra = sorted(set(rest) - {"value"})
        if extra:
            raise JsonParseError(
                _join(path, extra[0]), f'unexpected key next to "value" in Any of {type_url}'
            )
        if "value" not in rest:
            raise JsonParseError(_join(path, "value"), f'an Any of {type_url} needs "value"')
        inner = _read_message(inner_cls, rest["value"], _join(path, "value"), lenient)
    else:
        inner = _read_message(inner_cls, rest, path, lenient)
    return cls(type_url=type_url, value=bytes(inner))


def _write_duration(msg: Any, path: str) -> JsonValue:
    return duration_to_json(msg.seconds, msg.nanos, path)


def _read_duration(cls: Any, value: Any, path: str, lenient: bool) -> Any:
    seconds, nanos = duration_from_json(value, path, lenient)
    return cls(seconds=seconds, nanos=nanos)


def _write_timestamp(msg: Any, path: str) -> JsonValue:
    return timestamp_to_json(msg.seconds, msg.nanos, path)


def _read_timestamp(cls: Any, value: Any, path: str, lenient: bool) -> Any:
    seconds, nanos = timestamp_from_json(value, path)
    return cls(seconds=seconds, nanos=nanos)


def field_mask_to_json(paths: list[str], path: str = "") -> str:
    """FieldMask paths (``["a.b_c", "d"]``) to JSON (``"a.bC,d"``)."""
    return ",".join(_mask_path_to_json(p, path) for p in paths)


def field_mask_from_json(value: Any, path: str = "") -> list[str]:
    """JSON FieldMask text (``"a.bC,d"``) to paths (``["a.b_c", "d"]``)."""
    if not isinstance(value, str):
        raise JsonParseError(path, _expected('a field mask string like "a.b,c"', value))
    return [_mask_path_from_json(p, path) for p in value.split(",")] if value else []


def _write_field_mask(msg: Any, path: str) -> JsonValue:
    return field_mask_to_json(list(msg.paths), path)


def _read_field_mask(cls: Any, value: Any, path: str, lenient: bool) -> Any:
    return cls(paths=field_mask_from_json(value, path))


def _write_value(msg: Any, path: str) -> JsonValue:
    if msg.null_value is not None:
        return None
    if msg.number_value is not None:
        if not math.isfinite(msg.number_value):
            raise JsonSerializeError(path, "a Value's number must be finite")
        return float(msg.number_value)
    if msg.string_value is not None:
        return str(msg.string_value)
    if msg.bool_value is not None:
        return bool(msg.bool_value)
    if msg.struct_value is not None:
        return _write_struct(msg.struct_value, path)
    if msg.list_value is not None:
        return _write_list_value(msg.list_value, path)
    raise JsonSerializeError(path, "a Value must have one of its kinds set")


def _read_value(cls: Any, value: Any, path: str, lenient: bool) -> Any:
    if value is None:
        return cls(null_value=_wkt("NullValue")(0))
    if isinstance(value, bool):
        return cls(bool_value=value)
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise JsonParseError(path, "a Value's number must be finite")
        return cls(number_value=number)
    if isinstance(value, str):
        return cls(string_value=value)
    if isinstance(value, list):
        return cls(list_value=_read_list_value(_wkt("ListValue"), value, path, lenient))
    if isinstance(value, Mapping):
        return cls(struct_value=_read_struct(_wkt("Struct"), value, path, lenient))
    raise JsonParseError(path, f"{_type_name(value)} is not a JSON value")


def _write_struct(msg: Any, path: str) -> JsonValue:
    return {
        key: _write_value(item, f"{path}[{json.dumps(key)}]") for key, item in msg.fields.items()
    }


def _read_struct(cls: Any, value: Any, path: str, lenient: bool) -> Any:
    if not isinstance(value, Mapping):
        raise JsonParseError(path, _expected("an object (Struct)", value))
    value_cls = _wkt("Value")
    fields = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise JsonParseError(path, f"Struct keys must be strings, got {key!r}")
        fields[key] = _read_value(value_cls, item, f"{path}[{json.dumps(key)}]", lenient)
    return cls(fields=fields)


def _write_list_value(msg: Any, path: str) -> JsonValue:
    return [_write_value(item, f"{path}[{index}]") for index, item in enumerate(msg.values)]


def _read_list_value(cls: Any, value: Any, path: str, lenient: bool) -> Any:
    if not isinstance(value, list):
        raise JsonParseError(path, _expected("an array (ListValue)", value))
    value_cls = _wkt("Value")
    return cls(
        values=[
            _read_value(value_cls, item, f"{path}[{index}]", lenient)
            for index, item in enumerate(value)
        ]
    )


def _wrapper_writer(proto_type: str) -> Callable[[Any, str], JsonValue]:
    scalar = _SCALARS[proto_type]
    return lambda msg, path: scalar.write(msg.value, path)


def _wrapper_reader(proto_type: str) -> Callable[[Any, Any, str, bool], Any]:
    scalar = _SCALARS[proto_type]

    def read(cls: Any, value: Any, path: str, lenient: bool) -> Any:
        if value is None:
            return cls()
        return cls(value=scalar.read(value, path, lenient))

    return read


_SPECIAL_WRITERS: dict[str, Callable[[Any, str], JsonValue]] = {
    "google.protobuf.Any": _write_any,
    "google.protobuf.Duration": _write_duration,
    "google.protobuf.Timestamp": _write_timestamp,
    "google.protobuf.FieldMask": _write_field_mask,
    "google.protobuf.Struct": _write_struct,
    "google.protobuf.Value": _write_value,
    "google.protobuf.ListValue": _write_list_value,
    **{name: _wrapper_writer(proto_type) for name, proto_type in _WRAPPERS.items()},
}
_SPECIAL_READERS: dict[str, Callable[[Any, Any, str, bool], Any]] = {
    "google.protobuf.Any": _read_any,
    "google.protobuf.Duration": _read_duration,
    "google.protobuf.Timestamp": _read_timestamp,
    "google.protobuf.FieldMask": _read_field_mask,
    "google.protobuf.Struct": _read_struct,
    "google.protobuf.Value": _read_value,
    "google.protobuf.ListValue": _read_list_value,
    **{name: _wrapper_reader(proto_type) for name, proto_type in _WRAPPERS.items()},
}


@functools.cache
def _unwrapped_codec(wrapper: str) -> _Codec:
    """Fields where betterproto2 holds a wrapper, Duration or Timestamp as a Python value."""
    if wrapper == "google.protobuf.Duration":

        def write_duration(value: Any, path: str) -> JsonValue:
            return duration_to_json(*_timedelta_parts(value), path)

        def read_duration(value: Any, path: str, lenient: bool) -> Any:
            return _timedelta_from_parts(*duration_from_json(value, path, lenient), path)

        return _Codec(write_duration, read_duration, lambda v: v is None)
    if wrapper == "google.protobuf.Timestamp":

        def write_timestamp(value: Any, path: str) -> JsonValue:
            return timestamp_to_json(*_datetime_parts(value, path), path)

        def read_timestamp(value: Any, path: str, lenient: bool) -> Any:
            return _datetime_from_parts(*timestamp_from_json(value, path), path)

        return _Codec(write_timestamp, read_timestamp, lambda v: v is None)
    if wrapper in _WRAPPERS:
        scalar = _SCALARS[_WRAPPERS[wrapper]]
        return _Codec(scalar.write, scalar.read, lambda v: v is None)
    raise TypeError(f"betterproto2 unwraps an unexpected type: {wrapper}")


# --------------------------------------------------------------------------------------------
# Public API


def message_to_json(msg: betterproto2.Message, *, include_defaults: bool = False) -> JsonValue:
    """The canonical proto3 JSON value of ``msg`` (what ``json_format.MessageToDict`` returns).

    Field names are lowerCamelCase JSON names. With ``include_defaults``, fields without
    presence (scalars, enums, repeated fields and maps) are written even when empty or zero.
    Raises ``JsonSerializeError`` for values JSON cannot express (an invalid Duration, an Any
    of an unknown type, a Value with no kind).
    """
    if not isinstance(msg, betterproto2.Message):
        raise TypeError(f"message_to_json needs a generated message, got {type(msg).__name__}")
    token = _INCLUDE_DEFAULTS.set(include_defaults)
    try:
        return _write_message(msg, "", include_defaults)
    finally:
        _INCLUDE_DEFAULTS.reset(token)


def message_to_json_text(
    msg: betterproto2.Message, indent: int | None = None, *, include_defaults: bool = False
) -> str:
    """``message_to_json`` as JSON text (non-ASCII characters kept as they are)."""
    return json.dumps(
        message_to_json(msg, include_defaults=include_defaults), indent=indent, ensure_ascii=False
    )


def message_from_json(cls: type[M], value: object, *, path: str = "", lenient: bool = False) -> M:
    """Build a ``cls`` message from its proto3 JSON value (as ``json.loads`` returns it).

    Accepts JSON names and proto field names, enum names or numbers, 64-bit integers as strings
    or numbers, ``"NaN"``/``"Infinity"``/``"-Infinity"``, standard and URL-safe base64, and
    ``null`` for "not set". ``path`` prefixes the field paths in errors (e.g. ``"spec"``).
    ``lenient`` also accepts Go-style durations (``"1m30s"``, ``"100ms"``, ``"0"``),
    non-finite floats given as numbers, and numeric or boolean map keys (as YAML produces).
    Raises ``JsonParseError`` naming the path and the problem.
    """
    if not (isinstance(cls, type) and issubclass(cls, betterproto2.Message)):
        raise TypeError(f"message_from_json needs a generated message class, got {cls!r}")
    return _read_message(cls, value, path, lenient)


def message_from_json_text(
    cls: type[M], text: str | bytes, *, path: str = "", lenient: bool = False
) -> M:
    """Parse JSON text, then ``message_from_json``; bad JSON is a ``JsonParseError`` too."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise JsonParseError(path, f"invalid JSON: {exc}") from None
    return message_from_json(cls, value, path=path, lenient=lenient)
