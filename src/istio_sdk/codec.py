"""Runtime support for the generated fast protobuf codec.

``codegen/fastcodec.py`` emits, next to every generated package in ``istio_sdk.api``, a
``_codec.py`` module with one encoder and one decoder per message. The first encode or parse
of one of a package's classes imports its ``_codec``, which installs them on the message
classes (``install_lazily``), so betterproto2's own API (``bytes(msg)``,
``msg.SerializeToString()``, ``Cls.parse(data)``, ``Cls.FromString(data)``) takes the fast path.
This module holds what those generated modules share: varint and fixed-width helpers, the
well-known wrapper types, unknown-field skipping, the short names they import (``PRELUDE``),
the installers, the default marker of the generated ``__init__`` methods and the error type.

Wire format choices (the same as Google's upb runtime with ``deterministic=True``):

- fields are written in field-number order, unknown fields last;
- map entries always carry their key and value, in the order upb's deterministic mode uses:
  string keys byte-wise on their UTF-8 form (when one key is a prefix of another, the longer
  key first), integer keys descending by their unsigned bit pattern (-1 first, 0 last);
- ``-0.0`` in a float or double field without presence is written (it is not the default);
- decoding follows proto3: the last value of a scalar wins, a repeated singular message is
  merged, a oneof keeps its last member, packed and unpacked repeated scalars are both accepted,
  and a known field with the wrong wire type is kept as an unknown field.
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import datetime
import gc
import importlib
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import betterproto2

from istio_sdk.timeutil import Duration as ExactDuration
from istio_sdk.timeutil import Timestamp as ExactTimestamp

__all__ = ["DecodeError", "fast_codec_installed", "load_codec", "reference_codec"]

T = TypeVar("T")
Encoder = Callable[[Any], "bytes | bytearray"]
Decoder = Callable[[bytes, int, int], Any]

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the message being parsed."""


def _make_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _small_varints() -> tuple[bytes, ...]:
    # Slices of one buffer interleaving low bytes (with the continuation bit) and high bytes:
    # about twice as fast to build as 16,000 bytes((lo, hi)) calls, at every import.
    pairs = bytearray(2 * 127 * 128)
    pairs[0::2] = bytes(range(0x80, 0x100)) * 127
    pairs[1::2] = bytes(hi for hi in range(1, 128) for _ in range(128))
    two = bytes(pairs)
    return tuple(bytes((i,)) for i in range(128)) + tuple(
        [two[k : k + 2] for k in range(0, len(two), 2)]
    )


# Precomputed encodings of 0..16383 (every one- and two-byte varint).
VARINTS: tuple[bytes, ...] = _small_varints()
VARINT_TABLE_SIZE = 1 << 14


# Length-prefixed bodies of integer wrappers holding 0..127: b"\x00", b"\x02\x08\x01", ...
WRAPPED_SMALL_INTS: tuple[bytes, ...] = (
    b"\x00",
    *tuple(b"\x02\x08" + bytes([i]) for i in range(1, 128)),
)


def varint(value: int) -> bytes:
    """Encode an integer as a varint; negatives as 64-bit two's complement (10 bytes)."""
    if 0 <= value < VARINT_TABLE_SIZE:
        return VARINTS[value]
    if value < 0:
        if value < -(1 << 63):
            raise ValueError(f"{value} does not fit in a 64-bit protobuf integer")
        value += 1 << 64
    elif value > _MASK64:
        raise ValueError(f"{value} does not fit in a 64-bit protobuf integer")
    return _make_varint(value)


def zigzag32(value: int) -> int:
    """ZigZag-encode a sint32 value."""
    return ((value << 1) ^ (value >> 31)) & _MASK32


def zigzag64(value: int) -> int:
    """ZigZag-encode a sint64 value."""
    return ((value << 1) ^ (value >> 63)) & _MASK64


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return its value (low 64 bits) and the next position."""
    byte = data[pos]
    pos += 1
    result = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift >= 70:
            raise DecodeError(f"varint at offset {pos - 10} is longer than 10 bytes")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
    return result & _MASK64, pos


def to_int32(value: int) -> int:
    """Interpret the low 32 bits of a decoded varint as a signed int32."""
    value &= _MASK32
    return value - (1 << 32) if value & 0x80000000 else value


def to_int64(value: int) -> int:
    """Interpret a decoded 64-bit varint as a signed int64."""
    return value - (1 << 64) if value & 0x8000000000000000 else value


def unzigzag32(value: int) -> int:
    value &= _MASK32
    return (value >> 1) ^ -(value & 1)


def unzigzag64(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def truncated(what: str = "a length-delimited field") -> DecodeError:
    return DecodeError(f"truncated message: {what} runs past the end of its enclosing message")


def overrun(pos: int, end: int) -> DecodeError:
    return DecodeError(f"truncated message: last field ends at offset {pos}, message at {end}")


def skip_field(data: bytes, pos: int, tag: int, end: int) -> int:
    """Skip the value of a field whose tag was just read; return the position after it."""
    number = tag >> 3
    wire = tag & 7
    if number == 0:
        raise DecodeError(f"invalid field number 0 at offset {pos}")
    if wire == 0:
        if data[pos] < 0x80:
            pos += 1
        else:
            _, pos = read_varint(data, pos)
    elif wire == 1:
        pos += 8
    elif wire == 2:
        length = data[pos]
        if length < 0x80:
            pos += 1
        else:
            length, pos = read_varint(data, pos)
        pos += length
    elif wire == 5:
        pos += 4
    elif wire == 3:
        while True:
            if pos >= end:
                raise DecodeError(f"group {number} is not closed")
            inner = data[pos]
            if inner < 0x80:
                pos += 1
            else:
                inner, pos = read_varint(data, pos)
            if inner & 7 == 4:
                if inner >> 3 != number:
                    raise DecodeError(f"group {number} closed by end-group {inner >> 3}")
                break
            pos = skip_field(data, pos, inner, end)
    else:
        raise DecodeError(f"invalid wire type {wire} for field {number} at offset {pos}")
    if pos > end:
        raise truncated(f"field {number}")
    return pos


def read_length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a length prefix; return (start, stop) of the payload, checked against ``end``."""
    length = data[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = read_varint(data, pos)
    stop = pos + length
    if stop > end:
        raise truncated()
    return pos, stop


def merge(  # noqa: PLR0917  (called positionally from generated code)
    decode: Decoder, encode: Encoder, old: Any, data: bytes, pos: int, end: int
) -> Any:
    """Merge a repeated occurrence of a singular message field into the earlier value.

    Protobuf defines merging as parsing the concatenation, which is what this does.
    """
    joined = bytes(encode(old)) + data[pos:end]
    return decode(joined, 0, len(joined))


# ---------------------------------------------------------------------------- repeated scalars


def pack_varints(values: Iterable[int]) -> bytes:
    return b"".join([VARINTS[v] if 0 <= v < VARINT_TABLE_SIZE else varint(v) for v in values])


def pack_zigzag32(values: Iterable[int]) -> bytes:
    return b"".join([varint(zigzag32(v)) for v in values])


def pack_zigzag64(values: Iterable[int]) -> bytes:
    return b"".join([varint(zigzag64(v)) for v in values])


def pack_bools(values: Iterable[bool]) -> bytes:
    return bytes([1 if v else 0 for v in values])


def pack_fixed(fmt: str, values: list[Any]) -> bytes:
    return struct.pack(f"<{len(values)}{fmt}", *values)


def unpack_varints(data: bytes, pos: int, end: int) -> list[int]:
    out: list[int] = []
    append = out.append
    while pos < end:
        value = data[pos]
        if value < 0x80:
            pos += 1
        else:
            second = data[pos + 1]
            if second < 0x80:
                value = (value & 0x7F) | (second << 7)
                pos += 2
            else:
                value, pos = read_varint(data, pos)
        append(value)
    if pos != end:
        raise truncated("a packed varint")
    return out


def unpack_fixed(fmt: str, size: int, data: bytes, pos: int, end: int) -> list[Any]:
    length = end - pos
    if length % size:
        raise DecodeError(f"packed field of {length} bytes is not a multiple of {size}")
    return list(struct.unpack_from(f"<{length // size}{fmt}", data, pos))


# ---------------------------------------------------------------------------- map ordering


def _string_key_order(key: str) -> bytes:
    # 0xff never occurs in UTF-8, so among keys sharing a prefix the longer one sorts first,
    # which is how upb orders string map keys when asked for deterministic output.
    return key.encode() + b"\xff"


def sorted_string_keys(mapping: Mapping[str, Any]) -> Iterable[str]:
    if len(mapping) < 2:
        return mapping
    return sorted(mapping, key=_string_key_order)


def sorted_int_keys(mapping: Mapping[int, Any], mask: int) -> Iterable[int]:
    # upb's deterministic order for integer keys: descending by the key's unsigned bit pattern
    # (so -1 comes first and 0 last). ``mask`` is the key width: 2**32 - 1 or 2**64 - 1.
    if len(mapping) < 2:
        return mapping
    return sorted(mapping, key=lambda key: key & mask, reverse=True)


# ---------------------------------------------------------------------------- wrapper bodies
# betterproto2 represents google.protobuf wrappers, Duration and Timestamp as Python values; the
# functions below encode those values as the message body and decode a body back.

_pack_float = struct.Struct("<f").pack
_pack_double = struct.Struct("<d").pack
_unpack_float = struct.Struct("<f").unpack_from
_unpack_double = struct.Struct("<d").unpack_from


def _scalar_wrapper_decoder(
    wire: int, convert: Callable[[Any], Any], default: Any
) -> Callable[[bytes, int, int], Any]:
    """Decoder of a wrapper body (field 1 only); the common one-field case takes a short cut."""
    expected = 8 | wire

    def decode(data: bytes, pos: int, end: int) -> Any:
        if pos == end:
            return default
        if data[pos] == expected and wire == 0:
            # The usual body: field 1 alone, as a varint running to the end.
            raw = data[pos + 1]
            if raw < 0x80:
                if pos + 2 == end:
                    return convert(raw)
            else:
                raw, after = read_varint(data, pos + 1)
                if after == end:
                    return convert(raw)
        value = default
        while pos < end:
            tag = data[pos]
            if tag < 0x80:
                pos += 1
            else:
                tag, pos = read_varint(data, pos)
            if tag != expected:
                pos = skip_field(data, pos, tag, end)
            elif wire == 0:
                raw = data[pos]
                if raw < 0x80:
                    pos += 1
                else:
                    raw, pos = read_varint(data, pos)
                value = convert(raw)
            elif wire == 2:
                start, pos = read_length(data, pos, end)
                value = convert(data[start:pos])
            elif wire == 5:
                value = _unpack_float(data, pos)[0]
                pos += 4
            else:
                value = _unpack_double(data, pos)[0]
                pos += 8
        if pos != end:
            raise overrun(pos, end)
        return value

    return decode


def _same(value: T) -> T:
    return value


def _utf8(value: bytes) -> str:
    return value.decode()


def _uint32(value: int) -> int:
    return value & _MASK32


def enc_bool_value(value: bool) -> bytes:
    return b"\x08\x01" if value else b""


def enc_int_value(value: int) -> bytes:
    return b"\x08" + varint(value) if value else b""


def enc_string_value(value: str) -> bytes:
    if not value:
        return b""
    raw = value.encode()
    return b"\x0a" + varint(len(raw)) + raw


def enc_bytes_value(value: bytes) -> bytes:
    if not value:
        return b""
    return b"\x0a" + varint(len(value)) + bytes(value)


def enc_float_value(value: float) -> bytes:
    raw = _pack_float(value)
    return b"\x0d" + raw if raw != b"\x00\x00\x00\x00" else b""


def enc_double_value(value: float) -> bytes:
    raw = _pack_double(value)
    return b"\x09" + raw if raw != b"\x00" * 8 else b""


dec_bool_value = _scalar_wrapper_decoder(0, bool, False)
dec_int32_value = _scalar_wrapper_decoder(0, to_int32, 0)
dec_int64_value = _scalar_wrapper_decoder(0, to_int64, 0)
dec_uint32_value = _scalar_wrapper_decoder(0, _uint32, 0)
dec_uint64_value = _scalar_wrapper_decoder(0, _same, 0)
dec_string_value = _scalar_wrapper_decoder(2, _utf8, "")
dec_bytes_value = _scalar_wrapper_decoder(2, _same, b"")
dec_float_value = _scalar_wrapper_decoder(5, _same, 0.0)
dec_double_value = _scalar_wrapper_decoder(1, _same, 0.0)


def _seconds_nanos_body(seconds: int, nanos: int) -> bytes:
    out = b""
    if seconds:
        out += b"\x08" + varint(seconds)
    if nanos:
        out += b"\x10" + varint(nanos)
    return out


def _read_seconds_nanos(data: bytes, pos: int, end: int) -> tuple[int, int]:
    seconds = nanos = 0
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(data, pos)
        if tag in {8, 16}:
            raw = data[pos]
            if raw < 0x80:
                pos += 1
            else:
                raw, pos = read_varint(data, pos)
            if tag == 8:
                seconds = to_int64(raw)
            else:
                nanos = to_int32(raw)
        else:
            pos = skip_field(data, pos, tag, end)
    if pos != end:
        raise overrun(pos, end)
    return seconds, nanos


def enc_duration(value: datetime.timedelta) -> bytes:
    """A ``timedelta`` as a Duration body: seconds and nanos truncated toward zero, same sign.

    A ``istio_sdk.timeutil.Duration`` adds its nanoseconds below the microsecond.
    """
    if type(value) is _timedelta:
        # Whole seconds 0..127, the usual Envoy timeouts: a precomputed body.
        body = _SMALL_SECONDS_BODIES.get(value)
        if body is not None:
            return body
    nanos = ((value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds) * 1000
    if type(value) is not datetime.timedelta and isinstance(value, ExactDuration):
        nanos += value.nanoseconds
    if nanos < 0:
        seconds, nanos = divmod(-nanos, 1_000_000_000)
        return _seconds_nanos_body(-seconds, -nanos)
    seconds, nanos = divmod(nanos, 1_000_000_000)
    return _seconds_nanos_body(seconds, nanos)


_timedelta = datetime.timedelta
# timedelta objects are immutable: decoding shares one per whole number of seconds 0..127,
# the common Envoy/Istio timeouts, instead of building a new one each time.
_SMALL_SECONDS: tuple[datetime.timedelta, ...] = tuple(
    datetime.timedelta(seconds=i) for i in range(128)
)


_SMALL_SECONDS_BODIES: dict[datetime.timedelta, bytes] = {
    delta: _seconds_nanos_body(i, 0) for i, delta in enumerate(_SMALL_SECONDS)
}


def dec_duration(data: bytes, pos: int, end: int) -> datetime.timedelta:
    """A Duration body as a ``timedelta``; an exact ``timeutil.Duration`` below a microsecond."""
    if pos == end:
        return _SMALL_SECONDS[0]
    if end - pos == 2 and data[pos] == 8 and data[pos + 1] < 128:
        return _SMALL_SECONDS[data[pos + 1]]
    seconds, nanos = _read_seconds_nanos(data, pos, end)
    if nanos % 1000:
        return ExactDuration.from_parts(seconds, nanos)
    return _timedelta(0, seconds, nanos // 1000)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def enc_timestamp(value: datetime.datetime) -> bytes:
    """A timezone-aware ``datetime`` as a Timestamp body (nanos always non-negative).

    A ``istio_sdk.timeutil.Timestamp`` adds its nanoseconds below the microsecond.
    """
    if value.tzinfo is None:
        raise ValueError("a Timestamp field needs a timezone-aware datetime")
    offset = value - _EPOCH
    nanos = ((offset.days * 86400 + offset.seconds) * 1_000_000 + offset.microseconds) * 1000
    if type(value) is not datetime.datetime and isinstance(value, ExactTimestamp):
        nanos += value.nanosecond
    seconds, nanos = divmod(nanos, 1_000_000_000)
    return _seconds_nanos_body(seconds, nanos)


def dec_timestamp(data: bytes, pos: int, end: int) -> datetime.datetime:
    """A Timestamp body as a UTC ``datetime``; an exact ``timeutil.Timestamp`` below a µs."""
    seconds, nanos = _read_seconds_nanos(data, pos, end)
    if nanos % 1000:
        return ExactTimestamp.from_parts(seconds, nanos)
    return _EPOCH + _timedelta(0, seconds, nanos // 1000)


# Full proto name of a wrapped well-known type -> (encode body, decode body).
WRAPPERS: dict[str, tuple[Callable[[Any], bytes], Decoder]] = {
    "google.protobuf.BoolValue": (enc_bool_value, dec_bool_value),
    "google.protobuf.Int32Value": (enc_int_value, dec_int32_value),
    "google.protobuf.Int64Value": (enc_int_value, dec_int64_value),
    "google.protobuf.UInt32Value": (enc_int_value, dec_uint32_value),
    "google.protobuf.UInt64Value": (enc_int_value, dec_uint64_value),
    "google.protobuf.StringValue": (enc_string_value, dec_string_value),
    "google.protobuf.BytesValue": (enc_bytes_value, dec_bytes_value),
    "google.protobuf.FloatValue": (enc_float_value, dec_float_value),
    "google.protobuf.DoubleValue": (enc_double_value, dec_double_value),
    "google.protobuf.Duration": (enc_duration, dec_duration),
    "google.protobuf.Timestamp": (enc_timestamp, dec_timestamp),
}


# ---------------------------------------------------------------------------- constructors


class _Factory:
    """The default of every parameter of a generated message ``__init__``: "use the factory".

    ``codegen/static_init.py`` writes those ``__init__`` methods as dataclasses would build
    them; this object plays the part of dataclasses' own marker, and prints the same.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


FACTORY: Any = _Factory()

_DATACLASS_LOCK = _thread.RLock()  # _thread: threading is not loaded yet here


class LazyFields:
    """The ``__dataclass_fields__`` of a generated message class, until something reads it.

    ``@dataclass`` collects a class's fields when the class is created, and betterproto2's
    ``field()`` builds their metadata then: for the Envoy packages that was most of what was
    left of their import time. ``codegen/static_init.py`` writes each message class with plain
    annotations, a static ``__init__`` and ``__match_args__``, and this descriptor holding a
    function that returns the ``betterproto2.field(...)`` of each field. The first read of
    ``__dataclass_fields__`` (``dataclasses.fields``, ``is_dataclass``, betterproto2's own
    class metadata, ...) puts those fields on the class and applies
    ``dataclass(eq=False, repr=False, init=False)`` to it, exactly what the decorator would
    have done at import, and returns the fields it made.
    """

    __slots__ = ("_build", "_owner")

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self._build = build
        self._owner: type | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self._owner = owner

    def __get__(self, instance: object, objtype: type | None = None) -> Any:
        owner = self._owner
        if owner is None:
            raise TypeError("LazyFields is only usable as a class attribute")
        with _DATACLASS_LOCK:
            if owner.__dict__.get("__dataclass_fields__") is self:
                fields = self._build()
                delattr(owner, "__dataclass_fields__")
                for name, value in fields.items():
                    setattr(owner, name, value)
                dataclasses.dataclass(eq=False, repr=False, init=False)(owner)
        return owner.__dict__["__dataclass_fields__"]


# ---------------------------------------------------------------------------- the prelude
# The names every generated ``_codec.py`` imports (``from istio_sdk.codec import V, W, ...``),
# short because the emitted code uses them thousands of times. Defined once here instead of
# repeated at the top of each generated module.

V = VARINTS
W = WRAPPED_SMALL_INTS
new = object.__new__
cs = math.copysign
over = overrun
rv = read_varint
skip = skip_field
i32 = to_int32
trunc = truncated
uz32 = unzigzag32
vi = varint
zz32 = zigzag32
zz64 = zigzag64
pI = struct.Struct("<I").pack
uI = struct.Struct("<I").unpack_from
pi = struct.Struct("<i").pack
ui = struct.Struct("<i").unpack_from
pQ = struct.Struct("<Q").pack
uQ = struct.Struct("<Q").unpack_from
pq = struct.Struct("<q").pack
uq = struct.Struct("<q").unpack_from
pf = struct.Struct("<f").pack
uf = struct.Struct("<f").unpack_from
pd = struct.Struct("<d").pack
ud = struct.Struct("<d").unpack_from

PRELUDE: tuple[str, ...] = (
    "V",
    "W",
    "WRAPPERS",
    "cs",
    "i32",
    "install",
    "merge",
    "new",
    "over",
    "pI",
    "pQ",
    "pack_bools",
    "pack_fixed",
    "pack_varints",
    "pack_zigzag32",
    "pack_zigzag64",
    "pd",
    "pf",
    "pi",
    "pq",
    "rv",
    "skip",
    "sorted_int_keys",
    "sorted_string_keys",
    "trunc",
    "uI",
    "uQ",
    "ud",
    "uf",
    "ui",
    "unpack_fixed",
    "unpack_varints",
    "uq",
    "uz32",
    "vi",
    "zz32",
    "zz64",
)


# ---------------------------------------------------------------------------- installation

_INSTALLED: dict[type[betterproto2.Message], tuple[Encoder, Decoder]] = {}
_METHODS = ("__bytes__", "SerializeToString", "parse", "FromString")


def parse_bytes(decode: Decoder, data: bytes | bytearray | memoryview) -> Any:
    """Run a generated decoder over a whole buffer, turning low-level failures into DecodeError."""
    if type(data) is not bytes:
        data = bytes(data)
    # A large message allocates thousands of objects that all stay alive: pausing the cyclic
    # collector while they are built saves the collections that would find no garbage.
    pause = len(data) > 4096 and gc.isenabled()
    try:
        if pause:
            gc.disable()
        return decode(data, 0, len(data))
    except DecodeError:
        raise
    except (IndexError, struct.error) as exc:
        raise DecodeError("truncated message: the data ends inside a field") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"a string field is not valid UTF-8: {exc.reason}") from exc
    except RecursionError as exc:
        raise DecodeError("messages are nested too deeply to decode") from exc
    except OverflowError as exc:
        raise DecodeError(
            "a Duration or Timestamp is outside what datetime.timedelta/datetime can hold"
        ) from exc
    finally:
        if pause:
            gc.enable()


def _build_methods(
    cls: type[betterproto2.Message], encode: Encoder, decode: Decoder
) -> dict[str, Any]:
    slow_parse = betterproto2.Message.parse.__func__  # type: ignore[attr-defined]

    def __bytes__(self: betterproto2.Message) -> bytes:
        return bytes(encode(self))

    def SerializeToString(self: betterproto2.Message) -> bytes:
        """The binary encoding of this message (generated fast codec)."""
        return bytes(encode(self))

    fields = set(getattr(cls, "__dataclass_fields__", ()))

    def parse(klass: type[betterproto2.Message], data: bytes) -> Any:
        """Parse the binary encoding of this message (generated fast codec)."""
        if klass is cls:
            return parse_bytes(decode, data)
        if set(getattr(klass, "__dataclass_fields__", ())) == fields:
            # A user subclass without fields of its own: same layout, so re-class the result.
            message = parse_bytes(decode, data)
            message.__class__ = klass
            return message
        return slow_parse(klass, data)

    __bytes__.__doc__ = "The binary encoding of this message (generated fast codec)."
    return {
        "__bytes__": __bytes__,
        "SerializeToString": SerializeToString,
        "parse": classmethod(parse),
        "FromString": classmethod(parse),
    }


def install(cls: type[betterproto2.Message], encode: Encoder, decode: Decoder) -> None:
    """Make ``cls`` serialize with ``encode`` and parse with ``decode`` (generated functions)."""
    for name, method in _build_methods(cls, encode, decode).items():
        setattr(cls, name, method)
    cls._fast_encode = staticmethod(encode)  # type: ignore[attr-defined]
    cls._fast_decode = staticmethod(decode)  # type: ignore[attr-defined]
    _INSTALLED[cls] = (encode, decode)
    _PENDING.pop(cls, None)


# ---------------------------------------------------------------------------- lazy installation
# A generated package's __init__ ends with install_lazily(__name__, (its message classes)):
# each class gets the four methods below, which import the package's _codec module (building
# its encoders and decoders, and those of the packages it refers to) on first use and then
# hand over to the methods that module installed. Importing a package therefore costs nothing
# for the codecs it never uses.

_PENDING: dict[type[betterproto2.Message], str] = {}  # class -> its package


def _load_codec(cls: type) -> None:
    for klass in cls.__mro__:
        package = _PENDING.get(klass)
        if package is not None:
            importlib.import_module(f"{package}._codec")
            return
        if klass in _INSTALLED:  # loaded since this method was looked up
            return
    raise TypeError(f"{cls.__qualname__} has no generated codec to load")


def _lazy_bytes(self: betterproto2.Message) -> bytes:
    _load_codec(type(self))
    return self.__bytes__()


def _lazy_serialize(self: betterproto2.Message) -> bytes:
    _load_codec(type(self))
    return self.SerializeToString()


def _lazy_parse(klass: type[betterproto2.Message], data: bytes) -> Any:
    _load_codec(klass)
    return klass.parse(data)


def _lazy_from_string(klass: type[betterproto2.Message], data: bytes) -> Any:
    _load_codec(klass)
    return klass.FromString(data)


_LAZY_METHODS: dict[str, Any] = {
    "__bytes__": _lazy_bytes,
    "SerializeToString": _lazy_serialize,
    "parse": classmethod(_lazy_parse),
    "FromString": classmethod(_lazy_from_string),
}


def install_lazily(package: str, classes: Iterable[type[betterproto2.Message]]) -> None:
    """Give ``classes`` methods that install ``<package>._codec`` the first time they run."""
    for cls in classes:
        if cls in _INSTALLED:
            continue
        _PENDING[cls] = package
        for name, method in _LAZY_METHODS.items():
            setattr(cls, name, method)


def load_codec(cls: type[betterproto2.Message]) -> None:
    """Load the generated codec of ``cls`` now instead of on its first encode or parse.

    For code that wants the one-off cost (tens of milliseconds for a large package such as
    ``envoy.config.cluster.v3``, with the packages it refers to) up front: servers before they
    accept peers, tests with deadlines. Does nothing for a class whose codec is loaded.
    """
    if any(klass in _PENDING for klass in cls.__mro__):
        _load_codec(cls)


def fast_codec_installed(cls: type[betterproto2.Message]) -> bool:
    """True when ``cls`` serializes and parses through its generated codec.

    A class whose codec has not been needed yet has it loaded now.
    """
    load_codec(cls)
    pair = _INSTALLED.get(cls)
    return pair is not None and "__bytes__" in vars(cls) and "parse" in vars(cls)


@contextlib.contextmanager
def reference_codec() -> Iterator[None]:
    """Temporarily serialize and parse with betterproto2's own (slow) implementation.

    For comparisons and benchmarks: every generated class falls back to the methods it
    inherits from ``betterproto2.Message``, including nested messages, until the block exits.
    Not thread-safe: other threads see the switch too.
    """
    installed = dict(_INSTALLED)
    pending = dict(_PENDING)
    for cls in [*installed, *pending]:
        for name in _METHODS:
            if name in vars(cls):
                delattr(cls, name)
    try:
        yield
    finally:
        for cls, (encode, decode) in installed.items():
            for name, method in _build_methods(cls, encode, decode).items():
                setattr(cls, name, method)
        for cls in pending:
            if cls not in _INSTALLED:
                for name, method in _LAZY_METHODS.items():
                    setattr(cls, name, method)
