"""Attribute bags: the typed, immutable name -> value sets proxies send to Mixer.

A value is one of the Python types of ``istio.policy.v1beta1.ValueType``:

==============================  =====================================================
ValueType                       Python value
==============================  =====================================================
STRING, DNS_NAME, EMAIL, URI    ``str`` (the three typed kinds are strings the manifest types)
INT64                           ``int`` in the int64 range
DOUBLE                          ``float``
BOOL                            ``bool``
TIMESTAMP                       timezone-aware ``datetime`` (``istio_sdk.timeutil.Timestamp``
                                for nanoseconds)
DURATION                        ``timedelta`` (``istio_sdk.timeutil.Duration`` for nanoseconds)
IP_ADDRESS                      ``ipaddress.IPv4Address`` / ``IPv6Address``
STRING_MAP                      a ``Mapping[str, str]`` (held read-only)
(bytes on the wire)             ``bytes``: IP addresses travel as bytes; a bag decoded without
                                a manifest keeps them as bytes
==============================  =====================================================

:class:`AttributeBag` checks every value when it is built (so a bag always encodes), and never
changes afterwards; :meth:`AttributeBag.updated` and :meth:`AttributeBag.without` return new bags.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TypeAlias

from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.mixer.errors import AttributesError

__all__ = ["AttributeBag", "AttributeValue", "IpAddress", "check_value", "value_type_of"]

IpAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
AttributeValue: TypeAlias = (
    str
    | int
    | float
    | bool
    | datetime.datetime
    | datetime.timedelta
    | IpAddress
    | Mapping[str, str]
    | bytes
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# google.protobuf.Duration's documented range: +-10,000 years
_MAX_DURATION = datetime.timedelta(seconds=315_576_000_000)


def _show(text: str) -> str:
    return repr(text) if len(text) <= 64 else repr(text[:64]) + "..."


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AttributesError(f"{what} {_show(text)} is not valid UTF-8 text") from None


def check_value(name: str, value: object) -> AttributeValue:
    """``value`` as a bag holds it (maps read-only, bytearrays as bytes); AttributesError if not."""
    where = f"attribute {_show(name)}"
    if isinstance(value, str):
        _check_text(value, f"{where}: value")
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise AttributesError(f"{where}: {value} is outside the int64 range")
        return int(value)
    if isinstance(value, float):
        return value
    if isinstance(value, datetime.datetime):
        if value.utcoffset() is None:
            raise AttributesError(f"{where}: a timestamp needs a time zone")
        return value
    if isinstance(value, datetime.timedelta):
        if abs(value) > _MAX_DURATION:
            raise AttributesError(f"{where}: {value} is outside google.protobuf.Duration's range")
        return value
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, Mapping):
        entries: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, str):
                raise AttributesError(f"{where}: a string map holds only str keys and values")
            _check_text(key, f"{where}: key")
            _check_text(item, f"{where}: value")
            entries[key] = item
        return MappingProxyType(entries)
    raise AttributesError(f"{where}: {type(value).__name__} is not an attribute value type")


def value_type_of(value: AttributeValue) -> ValueType:
    """The ValueType a Python value travels as (bytes as IP_ADDRESS, the only bytes kind)."""
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, int):
        return ValueType.INT64
    if isinstance(value, float):
        return ValueType.DOUBLE
    if isinstance(value, datetime.datetime):
        return ValueType.TIMESTAMP
    if isinstance(value, datetime.timedelta):
        return ValueType.DURATION
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address | bytes):
        return ValueType.IP_ADDRESS
    if isinstance(value, Mapping):
        return ValueType.STRING_MAP
    raise AttributesError(f"{type(value).__name__} is not an attribute value type")


class AttributeBag(Mapping[str, AttributeValue]):
    """An immutable attribute bag: ``AttributeBag({"request.size": 12, ...})``.

    It compares equal to any mapping with the same items. Every value is checked when the bag
    is built (:class:`~istio_sdk.mixer.AttributesError` names the attribute).
    """

    __slots__ = ("_values",)
    _values: Mapping[str, AttributeValue]

    def __init__(self, values: Mapping[str, object] | None = None, /, **more: object) -> None:
        checked: dict[str, AttributeValue] = {}
        for source in (values or {}, more):
            for name, value in source.items():
                if not isinstance(name, str):
                    raise AttributesError(
                        f"an attribute name must be str, not {type(name).__name__}"
                    )
                _check_text(name, "attribute name")
                checked[name] = check_value(name, value)
        object.__setattr__(self, "_values", MappingProxyType(checked))

    @classmethod
    def _trusted(cls, values: dict[str, AttributeValue]) -> AttributeBag:
        # values already checked (the decoder builds them from typed wire fields)
        bag = cls.__new__(cls)
        object.__setattr__(bag, "_values", MappingProxyType(values))
        return bag

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("AttributeBag is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("AttributeBag is immutable")

    def __getitem__(self, name: str) -> AttributeValue:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        return self._values.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __repr__(self) -> str:
        items = ", ".join(f"{name!r}: {_plain(value)!r}" for name, value in self._values.items())
        return f"AttributeBag({{{items}}})"

    def __reduce__(self) -> tuple[object, ...]:
        return (AttributeBag, ({name: _plain(v) for name, v in self._values.items()},))

    def updated(
        self, values: Mapping[str, object] | None = None, /, **more: object
    ) -> AttributeBag:
        """A new bag with these values added or replaced."""
        merged: dict[str, object] = dict(self._values)
        merged.update(values or {})
        merged.update(more)
        return AttributeBag(merged)

    def without(self, *names: str) -> AttributeBag:
        """A new bag without these attributes (names that are absent are ignored)."""
        drop = set(names)
        return AttributeBag._trusted({n: v for n, v in self._values.items() if n not in drop})

    def value_type(self, name: str) -> ValueType:
        """The ValueType ``name``'s value travels as (KeyError when absent)."""
        return value_type_of(self._values[name])


def _plain(value: AttributeValue) -> object:
    return dict(value) if isinstance(value, MappingProxyType) else value
