"""Attribute bags on the wire: ``CompressedAttributes``, Check's attributes and Report batches.

The encoding is Istio 1.3's (istio/api mixer/v1/attributes.proto): every attribute name and
every string (value, map key, map value) is a word index. An index ``i >= 0`` is
``GLOBAL_DICTIONARY[i]``; ``i < 0`` is the message's own word ``-i - 1`` (so -1 is the first).
Values go to one typed map per kind; IP addresses travel as bytes, DNS names, e-mail addresses
and URIs as strings.

Decoding follows Mixer (mixer/pkg/attribute/protoBag.go, api/grpcServer.go):

- a caller's ``global_word_count`` above Mixer's 222 words is :class:`GlobalWordCountError`
  (Mixer answers INTERNAL); a smaller one, 0 included, is accepted, and non-negative indexes are
  still read against the full list;
- a name resolves through the message words first, then the global dictionary; when one index
  sits in several typed maps, strings > string_maps > int64s > doubles > bools > timestamps >
  durations > bytes;
- ``strict=True`` (the default) raises :class:`AttributesError` for any index that names no
  word and for a name set twice; ``strict=False`` reads as Mixer's Check does: such attributes
  are absent and the rest of the bag stands;
- a Report set with empty ``words`` uses the request's ``default_words``. INDEPENDENT_ENCODING
  decodes each set on its own; DELTA_ENCODING (the proto's zero value) applies each later set
  onto the bag so far (values replaced, nothing removed), and there a bad index is an error
  even with ``strict=False``, as in Mixer. A set that changes nothing is the bag before it
  (the same object); sets expanding to more than :data:`MAX_REPORT_VALUES` values in all are
  an :class:`AttributesError` (a delta of one value would otherwise copy the whole bag).

Encoding follows Istio 1.3's proxy (src/istio/mixerclient/attribute_compressor.cc): a word in
the first ``global_word_count`` global words is sent as its index, any other word is added once
to the message's words. A Report batch shares one word list (``default_words``) and leaves each
set's ``words`` empty.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from istio_sdk.api.istio.mixer.v1 import (
    CompressedAttributes,
    ReportRequest,
    ReportRequestRepeatedAttributesSemantics,
    StringMap,
)
from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.mixer.attributes import AttributeBag, AttributeValue, IpAddress, check_value
from istio_sdk.mixer.dictionary import GLOBAL_DICTIONARY, GLOBAL_WORD_INDEX
from istio_sdk.mixer.errors import AttributesError, GlobalWordCountError

__all__ = [
    "MAX_REPORT_VALUES",
    "ReportEncoding",
    "WordList",
    "check_global_word_count",
    "decode_attributes",
    "decode_report",
    "encode_attributes",
    "encode_report",
]

GLOBAL_WORD_COUNT = len(GLOBAL_DICTIONARY)
MAX_REPORT_VALUES = 1_000_000
"""At most this many attribute values over all the bags one Report request decodes to."""


class ReportEncoding(enum.IntEnum):
    """``ReportRequest.repeated_attributes_semantics``."""

    DELTA = ReportRequestRepeatedAttributesSemantics.DELTA_ENCODING.value
    INDEPENDENT = ReportRequestRepeatedAttributesSemantics.INDEPENDENT_ENCODING.value


def check_global_word_count(count: int) -> None:
    """Mixer's test of a caller's ``global_word_count``: larger than its list is an error."""
    if count > GLOBAL_WORD_COUNT:
        raise GlobalWordCountError(GLOBAL_WORD_COUNT, count)


class WordList:
    """Word indexes for an encoder: the first ``global_word_count`` global words, then own words."""

    __slots__ = ("_global_count", "_index", "words")

    def __init__(self, global_word_count: int = GLOBAL_WORD_COUNT) -> None:
        if not 0 <= global_word_count <= GLOBAL_WORD_COUNT:
            raise GlobalWordCountError(GLOBAL_WORD_COUNT, global_word_count)
        self._global_count = global_word_count
        self._index: dict[str, int] = {}
        self.words: list[str] = []

    @property
    def global_word_count(self) -> int:
        return self._global_count

    def index(self, word: str) -> int:
        found = GLOBAL_WORD_INDEX.get(word)
        if found is not None and found < self._global_count:
            return found
        own = self._index.get(word)
        if own is None:
            self.words.append(word)
            own = self._index[word] = -len(self.words)
        return own


def _ip_bytes(value: IpAddress) -> bytes:
    return value.packed


def _fill(
    message: CompressedAttributes, bag: Mapping[str, AttributeValue], words: WordList
) -> None:
    index = words.index
    for name, value in bag.items():
        key = index(name)
        if isinstance(value, str):
            message.strings[key] = index(value)
        elif isinstance(value, bool):
            message.bools[key] = value
        elif isinstance(value, int):
            message.int64s[key] = value
        elif isinstance(value, float):
            message.doubles[key] = value
        elif isinstance(value, datetime.datetime):
            message.timestamps[key] = value
        elif isinstance(value, datetime.timedelta):
            message.durations[key] = value
        elif isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            message.bytes[key] = _ip_bytes(value)
        elif isinstance(value, bytes):
            message.bytes[key] = value
        else:
            message.string_maps[key] = StringMap(
                entries={index(k): index(v) for k, v in value.items()}
            )


def encode_attributes(
    bag: Mapping[str, object], *, global_word_count: int = GLOBAL_WORD_COUNT
) -> CompressedAttributes:
    """``bag`` as Check sends it: its own words in ``words``, global words below the count."""
    checked = bag if isinstance(bag, AttributeBag) else AttributeBag(bag)
    words = WordList(global_word_count)
    message = CompressedAttributes()
    _fill(message, checked, words)
    message.words = words.words
    return message


def encode_report(
    bags: Iterable[Mapping[str, object]],
    *,
    encoding: ReportEncoding = ReportEncoding.INDEPENDENT,
    global_word_count: int = GLOBAL_WORD_COUNT,
) -> list[ReportRequest]:
    """Report requests carrying ``bags`` in order, sharing one word list per request.

    INDEPENDENT (what 1.3's proxy sends) always gives one request. DELTA sends each bag as its
    changes from the one before; as a delta cannot remove an attribute, a bag that drops one of
    its predecessor's attributes starts a new request.
    """
    checked = [b if isinstance(b, AttributeBag) else AttributeBag(b) for b in bags]
    requests: list[ReportRequest] = []
    words = WordList(global_word_count)
    sets: list[CompressedAttributes] = []
    previous: AttributeBag | None = None

    def flush() -> None:
        requests.append(
            ReportRequest(
                attributes=list(sets),
                repeated_attributes_semantics=ReportRequestRepeatedAttributesSemantics(
                    encoding.value
                ),
                default_words=list(words.words),
                global_word_count=global_word_count,
            )
        )

    for bag in checked:
        dropped = previous is not None and any(name not in bag for name in previous)
        if encoding is ReportEncoding.DELTA and dropped:
            flush()
            words, sets, previous = WordList(global_word_count), [], None
        if encoding is ReportEncoding.DELTA and previous is not None:
            before = previous
            changes = {n: v for n, v in bag.items() if n not in before or not _same(before[n], v)}
        else:
            changes = dict(bag)
        message = CompressedAttributes()
        _fill(message, changes, words)
        sets.append(message)
        previous = bag
    if sets or not requests:
        flush()
    return requests


def _same(a: AttributeValue, b: AttributeValue) -> bool:
    # equal *and* of the same kind: 1 == 1.0 == True, but they travel in different maps
    return type(a) is type(b) and a == b


# --- decoding -----------------------------------------------------------------------------

_PRECEDENCE = (
    "strings",
    "string_maps",
    "int64s",
    "doubles",
    "bools",
    "timestamps",
    "durations",
    "bytes",
)


class _Words:
    """Index -> word for one set: the message words, then the global dictionary."""

    __slots__ = ("first_slot", "own")

    def __init__(self, own: Sequence[str]) -> None:
        self.own = own
        # a repeated word resolves to its first slot (reversed, so the first one is written last)
        self.first_slot = {word: -slot - 1 for slot, word in reversed(list(enumerate(own)))}

    def word(self, index: int) -> str | None:
        if index >= 0:
            return GLOBAL_DICTIONARY[index] if index < GLOBAL_WORD_COUNT else None
        slot = -index - 1
        return self.own[slot] if slot < len(self.own) else None

    def lookup_index(self, name: str) -> int | None:
        # Mixer's ProtoBag resolves a name through the message words first
        own = self.first_slot.get(name)
        return own if own is not None else GLOBAL_WORD_INDEX.get(name)


def _bad_index(index: int, what: str) -> AttributesError:
    return AttributesError(f"attribute {what} index {index} names no word")


def _value(
    field: str, raw: Any, words: _Words, name: str, manifest: Mapping[str, ValueType] | None
) -> AttributeValue:
    if field == "strings":
        text = words.word(raw)
        if text is None:
            raise _bad_index(raw, f"{name!r} value")
        return text
    if field == "string_maps":
        entries: dict[str, str] = {}
        for k, v in raw.entries.items():
            key, item = words.word(k), words.word(v)
            if key is None:
                raise _bad_index(k, f"{name!r} map key")
            if item is None:
                raise _bad_index(v, f"{name!r} map value")
            entries[key] = item
        return entries
    if field == "bytes" and manifest is not None and manifest.get(name) == ValueType.IP_ADDRESS:
        if len(raw) == 4:
            return ipaddress.IPv4Address(raw)
        if len(raw) == 16:
            return ipaddress.IPv6Address(raw)
    if field == "timestamps" and raw.utcoffset() is None:
        return raw.replace(tzinfo=datetime.UTC)  # type: ignore[no-any-return]
    return raw  # type: ignore[no-any-return]


def _decode_clean(
    message: CompressedAttributes, words: _Words, manifest: Mapping[str, ValueType] | None
) -> dict[str, AttributeValue] | None:
    """The common case in one pass; None when anything needs the careful path below."""
    own, first = words.own, words.first_slot
    own_count = len(own)
    values: dict[str, AttributeValue] = {}

    def text(index: int) -> str | None:
        if index >= 0:
            return GLOBAL_DICTIONARY[index] if index < GLOBAL_WORD_COUNT else None
        return own[-index - 1] if -index <= own_count else None

    for field in _PRECEDENCE:
        entries = getattr(message, field)
        if not entries:
            continue
        for key, raw in entries.items():
            name = text(key)
            # unknown, repeated, or not where Mixer's lookup would find it
            if name is None or name in values or first.get(name, key) != key:
                return None
            value: Any
            if field == "strings":
                if 0 <= raw < GLOBAL_WORD_COUNT:  # the usual case, without a call
                    value = GLOBAL_DICTIONARY[raw]
                else:
                    value = text(raw)
                    if value is None:
                        return None
            elif field == "string_maps":
                pairs = {text(k): text(v) for k, v in raw.entries.items()}
                if None in pairs or None in pairs.values():
                    return None
                value = MappingProxyType(pairs)
            elif field in ("bytes", "timestamps", "durations"):
                try:
                    value = _value(field, raw, words, name, manifest)
                    if field == "durations":
                        value = check_value(name, value)
                except AttributesError:
                    return None
            else:
                value = raw
            values[name] = value
    return values


def _decode_set(
    message: CompressedAttributes,
    own_words: Sequence[str],
    *,
    strict: bool,
    manifest: Mapping[str, ValueType] | None,
) -> dict[str, AttributeValue]:
    words = _Words(own_words)
    clean = _decode_clean(message, words, manifest)
    if clean is not None:
        return clean
    seen: dict[str, list[tuple[str, int]]] = {}
    for field in _PRECEDENCE:
        for key in getattr(message, field):
            name = words.word(key)
            if name is None:
                if strict:
                    raise _bad_index(key, "name")
                continue
            seen.setdefault(name, []).append((field, key))
    values: dict[str, AttributeValue] = {}
    for name, places in seen.items():
        if strict and len(places) > 1:
            raise AttributesError(f"attribute {name!r} is set more than once")
        wanted = words.lookup_index(name)
        for field, key in places:  # in precedence order
            if key != wanted:
                continue  # Mixer never reaches an entry under a name's other index
            try:
                value = _value(field, getattr(message, field)[key], words, name, manifest)
            except AttributesError:
                if strict:
                    raise
                break
            if isinstance(value, dict):
                value = MappingProxyType(value)
            elif isinstance(value, datetime.timedelta):  # the only wire kind with a range rule
                try:
                    value = check_value(name, value)
                except AttributesError:
                    if strict:
                        raise
                    break
            values[name] = value  # the wire types are attribute types: nothing else to check
            break
        else:
            if strict:  # e.g. sent under its global index while also a message word
                raise AttributesError(
                    f"attribute {name!r} is not under the index Mixer looks it up by"
                )
    return values


def decode_attributes(
    message: CompressedAttributes,
    *,
    global_word_count: int = GLOBAL_WORD_COUNT,
    strict: bool = True,
    manifest: Mapping[str, ValueType] | None = None,
    default_words: Sequence[str] = (),
) -> AttributeBag:
    """The bag a ``CompressedAttributes`` carries.

    ``manifest`` types IP_ADDRESS attributes (their bytes become ``ipaddress`` values); without
    it bytes stay bytes. ``default_words`` stand in for empty ``words`` (Report's rule).
    """
    check_global_word_count(global_word_count)
    own = message.words or default_words
    return AttributeBag._trusted(_decode_set(message, own, strict=strict, manifest=manifest))


def decode_report(
    request: ReportRequest,
    *,
    strict: bool = True,
    manifest: Mapping[str, ValueType] | None = None,
) -> list[AttributeBag]:
    """The bags of a Report request, one per attribute set, in both encodings."""
    check_global_word_count(request.global_word_count)
    delta = (
        request.repeated_attributes_semantics
        == ReportRequestRepeatedAttributesSemantics.DELTA_ENCODING
    )
    bags: list[AttributeBag] = []
    accumulated: dict[str, AttributeValue] = {}
    total = 0
    for position, message in enumerate(request.attributes):
        own = message.words or request.default_words
        if delta and position > 0:
            try:
                changes = _decode_set(message, own, strict=True, manifest=manifest)
            except AttributesError as exc:
                raise AttributesError(
                    f"request could not be processed due to invalid attributes: {exc}"
                ) from None
            if not changes:  # the bag before, unchanged: bags are immutable, so share it
                bags.append(bags[-1])
                continue
            accumulated = {**accumulated, **changes}
        else:
            accumulated = _decode_set(message, own, strict=strict, manifest=manifest)
        # each delta set is a full copy of the bag so far: small changes must not multiply it
        total += len(accumulated)
        if total > MAX_REPORT_VALUES:
            raise AttributesError(
                f"request could not be processed due to invalid attributes: its sets expand to "
                f"more than {MAX_REPORT_VALUES} attribute values"
            )
        bags.append(AttributeBag._trusted(dict(accumulated)))
    return bags
