"""Hypothesis strategies for every generated message in ``istio_sdk.api``.

The strategies are derived from betterproto2's own field metadata (``FieldMetadata``: proto type,
repeated, map, oneof group, proto3 ``optional``, unwrapped well-known types), so they follow the
generated code without a hand-written list of types. Values cover the full range of each wire
type; well-known types whose JSON form has rules (Duration, Timestamp, Struct, Value, ListValue,
Any) only get values that protobuf's own runtimes accept.

Messages nest at most ``max_depth`` levels; at the last level no message-typed field is set. Each
message sets a small random subset of its fields so that large Envoy messages stay cheap.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

import betterproto2
from hypothesis import strategies as st

from istio_sdk import timeutil
from istio_sdk._messages import (
    TYPE_URL_PREFIX,
    find_message_class,
    full_name_of,
    import_all_api_modules,
    message_pool,
)
from istio_sdk.codec import load_codec

__all__ = [
    "all_message_types",
    "full_name",
    "message_class",
    "messages",
]

M = TypeVar("M", bound=betterproto2.Message)


INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

# Duration and Timestamp limits from google/protobuf/duration.proto and timestamp.proto.
DURATION_MAX_SECONDS = 315_576_000_000
TIMESTAMP_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
TIMESTAMP_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z

_MAX_FIELDS_PER_MESSAGE = 8
_MAX_ITEMS = 3
_MAX_TEXT = 12

_INT_RANGES: dict[str, tuple[int, int]] = {
    betterproto2.TYPE_INT32: INT32,
    betterproto2.TYPE_SINT32: INT32,
    betterproto2.TYPE_SFIXED32: INT32,
    betterproto2.TYPE_INT64: INT64,
    betterproto2.TYPE_SINT64: INT64,
    betterproto2.TYPE_SFIXED64: INT64,
    betterproto2.TYPE_UINT32: UINT32,
    betterproto2.TYPE_FIXED32: UINT32,
    betterproto2.TYPE_UINT64: UINT64,
    betterproto2.TYPE_FIXED64: UINT64,
}

# Well-known wrapper messages that betterproto2 replaces by an optional Python value.
_WRAPPER_SCALAR: dict[str, str] = {
    "BoolValue": betterproto2.TYPE_BOOL,
    "BytesValue": betterproto2.TYPE_BYTES,
    "DoubleValue": betterproto2.TYPE_DOUBLE,
    "FloatValue": betterproto2.TYPE_FLOAT,
    "Int32Value": betterproto2.TYPE_INT32,
    "Int64Value": betterproto2.TYPE_INT64,
    "StringValue": betterproto2.TYPE_STRING,
    "UInt32Value": betterproto2.TYPE_UINT32,
    "UInt64Value": betterproto2.TYPE_UINT64,
}

# Messages an ``Any`` is filled with: a few well-known types (JSON ``value`` form) and a few
# ordinary Istio and Envoy messages (JSON ``@type`` plus fields).
ANY_PAYLOAD_TYPES: tuple[str, ...] = (
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "google.protobuf.StringValue",
    "google.protobuf.UInt32Value",
    "google.protobuf.Struct",
    "google.protobuf.Empty",
    "google.protobuf.FieldMask",
    "envoy.config.core.v3.Locality",
    "istio.networking.v1alpha3.Destination",
)


# --------------------------------------------------------------------------------------------
# Enumerating the generated classes


@functools.cache
def _all_message_types() -> tuple[type[betterproto2.Message], ...]:
    import_all_api_modules()
    pool = message_pool()
    return tuple(pool.url_to_type[url] for url in sorted(pool.url_to_type))


def all_message_types() -> list[type[betterproto2.Message]]:
    """Every generated message class (Istio, Envoy, google, udpa, xds, validate).

    Importing all of ``istio_sdk.api`` takes a few seconds the first time. The order is stable:
    sorted by full proto name.
    """
    return list(_all_message_types())


def full_name(cls: type[betterproto2.Message]) -> str:
    """The full proto name of a generated class, e.g. ``envoy.config.cluster.v3.Cluster``."""
    name = full_name_of(cls)
    if name is None:
        raise KeyError(f"{cls.__module__}.{cls.__qualname__} is not a registered message")
    return name


def message_class(name: str) -> type[betterproto2.Message]:
    """The generated class for a full proto name, importing ``istio_sdk.api`` if needed."""
    cls = find_message_class(name)
    if cls is None:
        raise KeyError(f"no generated message class named {name!r}")
    return cls


# --------------------------------------------------------------------------------------------
# Scalars


def _text() -> st.SearchStrategy[str]:
    # Proto strings are UTF-8: no lone surrogates.
    return st.text(st.characters(codec="utf-8"), max_size=_MAX_TEXT)


def _scalar(proto_type: str) -> st.SearchStrategy[Any]:
    if proto_type in _INT_RANGES:
        lo, hi = _INT_RANGES[proto_type]
        return st.one_of(
            st.sampled_from(sorted({lo, hi, 0, 1, -1 if lo < 0 else 2})), st.integers(lo, hi)
        )
    if proto_type == betterproto2.TYPE_BOOL:
        return st.booleans()
    if proto_type == betterproto2.TYPE_FLOAT:
        return st.floats(width=32)
    if proto_type == betterproto2.TYPE_DOUBLE:
        return st.floats()
    if proto_type == betterproto2.TYPE_STRING:
        return _text()
    if proto_type == betterproto2.TYPE_BYTES:
        return st.binary(max_size=_MAX_TEXT)
    raise TypeError(f"not a scalar proto type: {proto_type!r}")


def _is_closed_enum(enum_cls: type[enum.Enum]) -> bool:
    """True for proto2 enums, whose unknown values the official runtimes do not keep."""
    module = enum_cls.__module__
    if module.endswith(".validate"):
        return True
    return module.endswith(".google.protobuf") and enum_cls.__name__ != "NullValue"


def _enum(enum_cls: type[enum.Enum]) -> st.SearchStrategy[Any]:
    known = st.sampled_from(list(enum_cls))
    if enum_cls.__name__ == "NullValue" or _is_closed_enum(enum_cls):
        return known
    # betterproto2 keeps numbers it does not know as nameless members; so does proto3.
    unknown = st.integers(*INT32).map(cast(Callable[[int], Any], enum_cls))
    return st.one_of(known, unknown)


# --------------------------------------------------------------------------------------------
# Well-known types


def _duration_parts() -> st.SearchStrategy[tuple[int, int]]:
    """(seconds, nanos) of a valid Duration: same sign, |nanos| < 1e9, within +-10000 years."""

    def signed(pair: tuple[int, int, bool]) -> tuple[int, int]:
        seconds, nanos, negative = pair
        if seconds == 0 and nanos == 0:
            return 0, 0
        return (-seconds, -nanos) if negative else (seconds, nanos)

    seconds = st.one_of(st.integers(0, 100_000), st.integers(0, DURATION_MAX_SECONDS))
    nanos = st.one_of(
        st.just(0),
        st.integers(0, 999).map(lambda n: n * 1_000_000),
        st.integers(0, 999_999).map(lambda n: n * 1_000),
        st.integers(0, 999_999_999),
    )
    return st.tuples(seconds, nanos, st.booleans()).map(signed)


def _timestamp_parts() -> st.SearchStrategy[tuple[int, int]]:
    seconds = st.one_of(
        st.integers(0, 4_000_000_000), st.integers(TIMESTAMP_MIN_SECONDS, TIMESTAMP_MAX_SECONDS)
    )
    nanos = st.one_of(
        st.just(0),
        st.integers(0, 999).map(lambda n: n * 1_000_000),
        st.integers(0, 999_999).map(lambda n: n * 1_000),
        st.integers(0, 999_999_999),
    )
    return st.tuples(seconds, nanos)


def _timedelta() -> st.SearchStrategy[datetime.timedelta]:
    # betterproto2 holds Duration fields as timedelta; digits below a microsecond come as an
    # istio_sdk.timeutil.Duration (what the codec and protojson produce for them).
    return _duration_parts().map(lambda p: timeutil.duration_from_parts(*p))


def _datetime() -> st.SearchStrategy[datetime.datetime]:
    # Likewise: a UTC datetime, or an istio_sdk.timeutil.Timestamp below a microsecond.
    return _timestamp_parts().map(lambda p: timeutil.timestamp_from_parts(*p))


def _unwrapped(wrapper_name: str) -> st.SearchStrategy[Any]:
    if wrapper_name == "Duration":
        return _timedelta()
    if wrapper_name == "Timestamp":
        return _datetime()
    if wrapper_name in _WRAPPER_SCALAR:
        return _scalar(_WRAPPER_SCALAR[wrapper_name])
    raise TypeError(f"betterproto2 unwraps an unexpected type: google.protobuf.{wrapper_name}")


def _json_value(depth: int) -> st.SearchStrategy[Any]:
    """A ``google.protobuf.Value`` with exactly one kind set (finite numbers only)."""
    from istio_sdk.api.google import protobuf as wkt

    leaves: list[st.SearchStrategy[Any]] = [
        st.just(wkt.Value(null_value=wkt.NullValue.NULL_VALUE)),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda v: wkt.Value(number_value=v)),
        _text().map(lambda v: wkt.Value(string_value=v)),
        st.booleans().map(lambda v: wkt.Value(bool_value=v)),
    ]
    if depth <= 0:
        return st.one_of(leaves)
    return st.one_of(
        *leaves,
        _json_struct(depth - 1).map(lambda v: wkt.Value(struct_value=v)),
        _json_list(depth - 1).map(lambda v: wkt.Value(list_value=v)),
    )


def _json_struct(depth: int) -> st.SearchStrategy[Any]:
    from istio_sdk.api.google import protobuf as wkt

    return st.dictionaries(
        _text(), st.deferred(lambda: _json_value(depth)), max_size=_MAX_ITEMS
    ).map(lambda fields: wkt.Struct(fields=fields))


def _json_list(depth: int) -> st.SearchStrategy[Any]:
    from istio_sdk.api.google import protobuf as wkt

    return st.lists(st.deferred(lambda: _json_value(depth)), max_size=_MAX_ITEMS).map(
        lambda values: wkt.ListValue(values=values)
    )


def _any(depth: int) -> st.SearchStrategy[Any]:
    from istio_sdk.api.google import protobuf as wkt

    empty = st.just(wkt.Any())
    if depth <= 0:
        return empty

    def packed(name: str) -> st.SearchStrategy[Any]:
        cls = message_class(name)
        return _message(cls, depth - 1).map(
            lambda inner: wkt.Any(type_url=TYPE_URL_PREFIX + name, value=bytes(inner))
        )

    return st.one_of(empty, *(packed(name) for name in ANY_PAYLOAD_TYPES))


def _special(cls: type[betterproto2.Message], depth: int) -> st.SearchStrategy[Any] | None:
    """Strategies for well-known types whose valid values are narrower than their fields."""
    if not cls.__module__.endswith("google.protobuf"):
        return None
    from istio_sdk.api.google import protobuf as wkt

    name = cls.__name__
    if name == "Duration":
        return _duration_parts().map(lambda p: wkt.Duration(seconds=p[0], nanos=p[1]))
    if name == "Timestamp":
        return _timestamp_parts().map(lambda p: wkt.Timestamp(seconds=p[0], nanos=p[1]))
    if name == "Value":
        return _json_value(min(depth, 2))
    if name == "Struct":
        return _json_struct(min(depth, 2))
    if name == "ListValue":
        return _json_list(min(depth, 2))
    if name == "Any":
        return _any(depth)
    if name == "UninterpretedOptionNamePart":
        # Its two proto2 ``required`` fields must be on the wire; betterproto2 only writes them
        # when they are not zero, so keep them non-zero.
        return st.builds(cls, name_part=_text().filter(bool), is_extension=st.just(True))
    if name == "FieldMask":
        segment = st.from_regex(r"[a-z]([a-z0-9]|_[a-z])*", fullmatch=True).filter(
            lambda s: len(s) <= _MAX_TEXT
        )
        path = st.lists(segment, min_size=1, max_size=3).map(".".join)
        field_mask = cast(Any, cls)
        return st.lists(path, max_size=_MAX_ITEMS).map(lambda paths: field_mask(paths=paths))
    return None


# --------------------------------------------------------------------------------------------
# Messages


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    meta: betterproto2.FieldMetadata
    value_cls: Any  # enum or message class of the value (map: of the map value)
    is_message: bool  # holds (or contains) a nested, not unwrapped message


@functools.cache
def _units(cls: type[betterproto2.Message]) -> tuple[tuple[_Field, ...], ...]:
    """Fields grouped into units: a oneof is one unit, any other field is a unit of its own.

    betterproto2 marks oneof members with ``group``; proto3 ``optional`` fields have
    ``optional=True`` and no group.
    """
    info: Any = cast(Any, cls)._betterproto
    units: list[list[_Field]] = []
    by_group: dict[str, list[_Field]] = {}
    for name in info.sorted_field_names:
        meta = info.meta_by_field_name[name]
        if meta.proto_type == betterproto2.TYPE_MAP:
            assert meta.map_meta is not None
            value_cls = info.cls_by_field[f"{name}.value"]
            value_meta = meta.map_meta[1]
        else:
            value_cls = info.cls_by_field[name]
            value_meta = meta
        is_message = (
            value_meta.proto_type == betterproto2.TYPE_MESSAGE and value_meta.unwrap is None
        )
        item = _Field(name, meta, value_cls, is_message)
        if meta.group is None:
            units.append([item])
        elif meta.group in by_group:
            by_group[meta.group].append(item)
        else:
            by_group[meta.group] = [item]
            units.append(by_group[meta.group])
    return tuple(tuple(unit) for unit in units)


def _single(field: _Field, depth: int) -> st.SearchStrategy[Any]:
    """One value of a non-repeated, non-map field (or one item of a repeated field)."""
    return _value_of(field.meta, field.value_cls, depth)


def _map_value(field: _Field, depth: int) -> st.SearchStrategy[Any]:
    assert field.meta.map_meta is not None
    return _value_of(field.meta.map_meta[1], field.value_cls, depth)


def _value_of(
    meta: betterproto2.FieldMetadata, value_cls: Any, depth: int
) -> st.SearchStrategy[Any]:
    """A value of the type ``meta`` describes; ``value_cls`` is its enum or message class."""
    if meta.proto_type == betterproto2.TYPE_ENUM:
        return _enum(value_cls)
    if meta.proto_type == betterproto2.TYPE_MESSAGE:
        if meta.unwrap is not None:
            return _unwrapped(meta.unwrap().__name__)
        return _message(value_cls, depth - 1)
    return _scalar(meta.proto_type)


def _field_value(field: _Field, depth: int) -> st.SearchStrategy[Any]:
    meta = field.meta
    if meta.proto_type == betterproto2.TYPE_MAP:
        assert meta.map_meta is not None
        keys = _scalar(meta.map_meta[0].proto_type)
        return st.dictionaries(keys, _map_value(field, depth), max_size=_MAX_ITEMS)
    if meta.repeated:
        return st.lists(_single(field, depth), max_size=_MAX_ITEMS)
    return _single(field, depth)


def _message(cls: type[M], depth: int) -> st.SearchStrategy[M]:
    special = _special(cls, depth)
    if special is not None:
        return cast(st.SearchStrategy[M], special)
    return _generic_message(cls, depth)


@functools.cache
def _generic_message(cls: type[M], depth: int) -> st.SearchStrategy[M]:
    units = tuple(u for u in _units(cls) if depth > 0 or not any(f.is_message for f in u))
    if not units:
        return st.builds(cls)

    @st.composite
    def build(draw: st.DrawFn) -> M:
        count = draw(st.integers(0, min(len(units), _MAX_FIELDS_PER_MESSAGE)))
        chosen = draw(
            st.lists(st.integers(0, len(units) - 1), min_size=count, max_size=count, unique=True)
        )
        kwargs: dict[str, Any] = {}
        for index in sorted(chosen):
            unit = units[index]
            field = unit[0] if len(unit) == 1 else draw(st.sampled_from(unit))
            kwargs[field.name] = draw(_field_value(field, depth))
        with warnings.catch_warnings():
            # Deprecated fields are still part of the schema: set them without the noise.
            warnings.simplefilter("ignore", DeprecationWarning)
            return cls(**kwargs)

    return build()


def messages(cls: type[M], *, max_depth: int = 3) -> st.SearchStrategy[M]:
    """A strategy for instances of the generated message class ``cls``.

    Nested messages go at most ``max_depth`` levels down. Oneofs get at most one member;
    proto3 ``optional`` fields are either unset (``None``) or set, possibly to their zero value.
    """
    if not (isinstance(cls, type) and issubclass(cls, betterproto2.Message)):
        raise TypeError(f"messages() needs a generated message class, got {cls!r}")
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    # The codec otherwise loads on the first encode, inside the first example's deadline.
    load_codec(cls)
    return _message(cls, max_depth)
