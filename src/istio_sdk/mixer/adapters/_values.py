"""How Mixer's Go adapters turn instance values into text and keys.

Three conversions matter for compatibility: ``adapter.Stringify`` (Prometheus labels, list
lookups), ``adapter.StringEquals`` (quota overrides compare configured strings with typed
dimension values) and the quota key (``name;k=v;...`` with dimensions sorted), which memquota
and redisquota build the same way. The key is a Redis key shared by every Mixer replica, so its
bytes follow Go's code exactly, quirks included: integers, floats and booleans are written after
32 NUL bytes (``strconv.AppendInt`` onto a 32-byte array rather than an empty slice), integers
in hexadecimal, floats in Go's ``'b'`` format (``4503599627370496p-52``), IP bytes raw.
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import math
import struct
from collections.abc import Mapping

from istio_sdk import timeutil
from istio_sdk.config import _go
from istio_sdk.mixer.templates import Value

_PAD = b"\x00" * 32
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def go_duration(value: datetime.timedelta) -> str:
    """Go's ``time.Duration.String()``: ``1h2m3.5s``, ``1.5ms``, ``0s``."""
    total = timeutil.duration_nanos(value)
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    left = abs(total)

    def fraction(number: int, digits: int) -> str:
        whole, rest = divmod(number, 10**digits)
        text = f"{rest:0{digits}d}".rstrip("0")
        return f"{whole}.{text}" if text else str(whole)

    if left < 1_000:
        return f"{sign}{left}ns"
    if left < 1_000_000:
        return f"{sign}{fraction(left, 3)}\u00b5s"
    if left < 1_000_000_000:
        return f"{sign}{fraction(left, 6)}ms"
    seconds_part = fraction(left % 60_000_000_000, 9) + "s"
    minutes = left // 60_000_000_000
    if minutes == 0:
        return sign + seconds_part
    hours, minutes = divmod(minutes, 60)
    if hours == 0:
        return f"{sign}{minutes}m{seconds_part}"
    return f"{sign}{hours}h{minutes}m{seconds_part}"


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value


def rfc3339_micros(value: datetime.datetime) -> str:
    """Mixer's ``serializeTime`` (and stdio's time field): UTC, 6 fractional digits, ``Z``."""
    moment = _utc(value).astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rjust(26, "0") + "Z"


def _go_time_string(value: datetime.datetime) -> str:
    # Go's time.Time.String() of a UTC time (bags hold timestamps in UTC).
    moment = _utc(value).astimezone(datetime.UTC)
    nanos = getattr(moment, "nanosecond", moment.microsecond * 1000)
    fraction = f".{nanos:09d}".rstrip("0").rstrip(".")
    return moment.strftime("%Y-%m-%d %H:%M:%S") + fraction + " +0000 UTC"


def ip_text(value: bytes | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Go's ``net.IP.String()``: dotted for IPv4 and IPv4-mapped IPv6, ``?hex`` for bad bytes."""
    if isinstance(value, bytes):
        if len(value) not in (4, 16):
            return "?" + value.hex() if value else "<nil>"
        value = ipaddress.ip_address(value)
    if isinstance(value, ipaddress.IPv6Address) and value.ipv4_mapped is not None:
        return str(value.ipv4_mapped)
    return str(value)


def _go_float_f(value: float) -> str:
    # strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, never an exponent.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(decimal.Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def stringify(value: Value | None) -> str:
    """Mixer's ``adapter.Stringify``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float_f(value)
    if isinstance(value, bytes | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ip_text(value)
    if isinstance(value, datetime.datetime):
        return rfc3339_micros(value)
    if isinstance(value, datetime.timedelta):
        return go_duration(value)
    return "&".join(f"{key}={value[key]}" for key in sorted(value))


_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _go_parse_float(text: str) -> float | None:
    if not text or any(c.isspace() or c == "_" for c in text):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def string_equals(text: str, value: Value | None) -> bool:
    """Mixer's ``StringEquals(configured string, instance value)``."""
    if value is None:
        return text == ""
    if isinstance(value, str):
        return value == text
    if isinstance(value, bool):
        if text in _GO_TRUE:
            return value
        return not value if text in _GO_FALSE else False
    if isinstance(value, int):
        try:
            return _go.parse_int(text) == value
        except ValueError:
            return False
    if isinstance(value, float):
        return _go_parse_float(text) == value
    if isinstance(value, datetime.datetime):
        from istio_sdk import protojson

        try:
            seconds, nanos = protojson.timestamp_from_json(text)
        except protojson.JsonParseError:
            return False
        moment = _utc(value)
        delta = moment - _EPOCH
        value_nanos = getattr(moment, "nanosecond", moment.microsecond * 1000)
        return (delta.days * 86400 + delta.seconds, value_nanos) == (seconds, nanos)
    if isinstance(value, datetime.timedelta):
        try:
            total = _go.parse_duration(text)
        except ValueError:
            return False
        seconds, nanos = timeutil.duration_parts(value)
        return total == seconds * 1_000_000_000 + nanos
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        try:
            other = ipaddress.ip_address(text)
        except ValueError:
            return False
        return ip_text(other) == ip_text(value)
    if isinstance(value, bytes):
        return ip_text(value) == text
    parsed: dict[str, str] = {}
    for entry in text.split("&"):
        parts = entry.split("=")
        if len(parts) == 2:
            parsed[parts[0]] = parts[1]
    return len(parsed) == len(value) and all(parsed.get(k) == v for k, v in value.items())


def _go_float_b(value: float) -> bytes:
    # strconv.FormatFloat(v, 'b', -1, 64): integer mantissa, 'p', binary exponent.
    if math.isnan(value):
        return b"NaN"
    if math.isinf(value):
        return b"+Inf" if value > 0 else b"-Inf"
    (bits,) = struct.unpack(">Q", struct.pack(">d", value))
    negative = bits >> 63
    exponent = (bits >> 52) & 0x7FF
    mantissa = bits & ((1 << 52) - 1)
    if exponent == 0:
        exponent = 1
    else:
        mantissa |= 1 << 52
    exponent = exponent - 1023 - 52
    sign = "+" if exponent >= 0 else ""
    return f"{'-' if negative else ''}{mantissa}p{sign}{exponent}".encode()


def _key_value(value: Value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bool):
        return _PAD + (b"true" if value else b"false")
    if isinstance(value, int):
        return _PAD + format(value, "x").encode()
    if isinstance(value, float):
        return _PAD + _go_float_b(value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value.packed  # Mixer's bags hold IP addresses as bytes
    if isinstance(value, datetime.datetime):
        return _go_time_string(value).encode()
    if isinstance(value, datetime.timedelta):
        return go_duration(value).encode()
    return b"".join(
        key.encode("utf-8", "surrogatepass") + value[key].encode("utf-8", "surrogatepass")
        for key in sorted(value)
    )


def quota_key(name: str, dimensions: Mapping[str, Value]) -> bytes:
    """memquota's and redisquota's ``makeKey``: ``name;k=v;...`` over sorted dimension names."""
    parts = [name.encode("utf-8", "surrogatepass")]
    for key in sorted(dimensions):
        parts.append(b";" + key.encode("utf-8", "surrogatepass") + b"=")
        parts.append(_key_value(dimensions[key]))
    return b"".join(parts)


def fnv32a(data: bytes) -> int:
    """FNV-1a, 32 bits (Go's ``hash/fnv.New32a``)."""
    result = 0x811C9DC5
    for byte in data:
        result = ((result ^ byte) * 0x01000193) & 0xFFFFFFFF
    return result
