"""Which attributes a decision read: Mixer's ReferencedAttributes (mixer/pkg/attribute/protoBag.go).

A :class:`RecordingBag` wraps a request's bag and notes every read an expression makes: a name
found is EXACT, a name missing is ABSENCE. Reading a STRING_MAP records nothing for the map
itself (as Mixer's bag); each key looked up in it records ``(name, key)``, EXACT or ABSENCE.
:func:`encode_referenced` writes the record as ``ReferencedAttributes``: a word is a global
index when it is among the caller's first ``global_word_count`` global words, else one of the
message's own words (negative); a missing map key is 0.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from istio_sdk.api.istio.mixer.v1 import (
    ReferencedAttributes,
    ReferencedAttributesAttributeMatch,
    ReferencedAttributesCondition,
)
from istio_sdk.mixer.wire import WordList

__all__ = ["ABSENCE", "EXACT", "RecordingBag", "encode_referenced", "plain_value"]

EXACT = ReferencedAttributesCondition.EXACT
ABSENCE = ReferencedAttributesCondition.ABSENCE

Reference = tuple[str, str | None]
"""``(attribute name, map key or None)``."""

_MISSING: Any = object()


class _RecordingMap(Mapping[str, str]):
    """A STRING_MAP value whose key lookups are recorded."""

    __slots__ = ("_name", "_record", "plain")

    def __init__(self, name: str, plain: Mapping[str, str], record: dict[Reference, Any]) -> None:
        self._name = name
        self.plain = plain
        self._record = record

    def get(self, key: str, default: Any = None) -> Any:
        value = self.plain.get(key, _MISSING)
        if value is _MISSING:
            self._record.setdefault((self._name, key), ABSENCE)
            return default
        self._record.setdefault((self._name, key), EXACT)
        return value

    def __getitem__(self, key: str) -> str:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return str(value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        return iter(self.plain)

    def __len__(self) -> int:
        return len(self.plain)


_SCALARS = frozenset(
    {
        str, int, float, bool, bytes, datetime.datetime, datetime.timedelta,
        ipaddress.IPv4Address, ipaddress.IPv6Address,
    }
)  # fmt: skip
"""Value types that are never a map (most of a bag)."""


class RecordingBag(Mapping[str, Any]):
    """A read-only view of ``values`` that records every attribute read (see the module doc)."""

    __slots__ = ("_values", "record")

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values
        self.record: dict[Reference, Any] = {}

    def get(self, name: str, default: Any = None) -> Any:
        value = self._values.get(name, _MISSING)
        if value is _MISSING:
            self.record.setdefault((name, None), ABSENCE)
            return default
        if type(value) not in _SCALARS and isinstance(value, Mapping):  # skip the ABC check
            return _RecordingMap(name, value, self.record)
        self.record.setdefault((name, None), EXACT)
        return value

    def __getitem__(self, name: str) -> Any:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name, _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def plain_value(value: Any) -> Any:
    """``value`` without the recording wrapper (what adapters receive)."""
    return value.plain if type(value) is _RecordingMap else value


_ENCODED: dict[tuple[int, tuple[tuple[Reference, Any], ...]], ReferencedAttributes] = {}
_ENCODED_MAX = 4096


def encode_referenced(
    record: Mapping[Reference, Any], global_word_count: int
) -> ReferencedAttributes:
    """``record`` as ``ReferencedAttributes`` for a caller that knows ``global_word_count``
    global words (sorted by name and key, so equal records encode to equal bytes).

    A record holds names, not values, and requests that take the same path through the rules
    read the same names: encodings of small records are kept (up to :data:`_ENCODED_MAX`) and
    shared. Treat the returned message as read-only.
    """
    shape = (global_word_count, tuple(record.items()))
    found = _ENCODED.get(shape)
    if found is not None:
        return found
    words = WordList(global_word_count)
    matches = [
        ReferencedAttributesAttributeMatch(
            name=words.index(name),
            condition=condition,
            map_key=0 if key is None else words.index(key),
        )
        for (name, key), condition in sorted(record.items(), key=lambda i: (i[0][0], i[0][1] or ""))
    ]
    encoded = ReferencedAttributes(words=words.words, attribute_matches=matches)
    # a map key may come from the request (request.headers[request.path]): keep small ones only
    if len(record) > 64 or any(key is not None and len(key) > 128 for _, key in record):
        return encoded
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.clear()  # a bound, not an LRU: distinct shapes are few in practice
    _ENCODED[shape] = encoded
    return encoded
