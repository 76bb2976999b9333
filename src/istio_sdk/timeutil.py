"""Nanosecond-exact values for ``google.protobuf.Duration`` and ``Timestamp`` fields, and "now".

:func:`utcnow` is the one clock reading of the project (an aware ``datetime`` in UTC); code that
must be testable takes a clock argument defaulting to it.

betterproto2 holds Duration fields as ``datetime.timedelta`` and Timestamp fields as
``datetime.datetime``; both stop at the microsecond, while the protobuf types count
nanoseconds. istio-sdk keeps betterproto2's types and adds two subclasses that carry the
missing digits:

- ``Duration(timedelta)`` with ``nanoseconds``, the nanoseconds below the microsecond
  (0..999, the way ``timedelta.microseconds`` is the part below the second);
- ``Timestamp(datetime)`` with ``nanosecond`` (0..999, next to ``datetime.microsecond``).

The timedelta/datetime part is the value floored to the microsecond and the remainder is
always non-negative: -1 ns is ``timedelta(microseconds=-1)`` plus 999 ns. The fast codec and
``istio_sdk.protojson`` produce these classes only when a value has digits below the
microsecond, and plain ``timedelta``/``datetime`` otherwise, so values without such digits are
exactly what betterproto2 produces. Fields accept either; plain values simply have no
nanoseconds.

Equality, ordering, hashing and ``repr`` include the remainder: ``Duration(seconds=1,
nanoseconds=5) != timedelta(seconds=1)``, and a remainder of 0 compares and hashes like the
plain value. Pickling and copying keep it. Arithmetic does not: ``+``, ``-``, ``*``, ``/``,
``abs`` and unary minus work on the microsecond part, as the base classes do, and return
plain ``timedelta`` (``Timestamp + timedelta`` returns a ``Timestamp`` with ``nanosecond``
0). ``Timestamp.replace`` and ``Timestamp.astimezone`` keep the remainder.
"""

from __future__ import annotations

import datetime
import operator
from typing import Any, SupportsIndex

__all__ = [
    "Duration",
    "Timestamp",
    "duration_from_parts",
    "duration_nanos",
    "duration_parts",
    "timestamp_from_parts",
    "timestamp_parts",
    "utcnow",
]

_NANOS_PER_SECOND = 1_000_000_000
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def utcnow() -> datetime.datetime:
    """The current time as an aware ``datetime`` in UTC (never a naive one)."""
    return datetime.datetime.now(datetime.UTC)


def _check_remainder(value: SupportsIndex, what: str) -> int:
    number = operator.index(value)
    if not 0 <= number <= 999:
        raise ValueError(f"{what} must be in 0..999 (the part below a microsecond), got {number}")
    return number


def _micros(value: datetime.timedelta) -> int:
    return (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds


class Duration(datetime.timedelta):
    """A ``timedelta`` that also counts the nanoseconds below its microseconds.

    ``Duration(seconds=1, microseconds=2, nanoseconds=3)`` takes ``timedelta``'s arguments
    plus ``nanoseconds`` (0..999). ``Duration.from_nanoseconds(total)`` and
    ``Duration.from_parts(seconds, nanos)`` (a protobuf Duration's fields) build any value.
    """

    __slots__ = ("_nanoseconds",)
    _nanoseconds: int

    def __new__(  # noqa: PLR0917  (timedelta's signature)
        cls,
        days: float = 0,
        seconds: float = 0,
        microseconds: float = 0,
        milliseconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        weeks: float = 0,
        *,
        nanoseconds: SupportsIndex = 0,
    ) -> Duration:
        self = super().__new__(
            cls,
            days=days,
            seconds=seconds,
            microseconds=microseconds,
            milliseconds=milliseconds,
            minutes=minutes,
            hours=hours,
            weeks=weeks,
        )
        self._nanoseconds = _check_remainder(nanoseconds, "nanoseconds")
        return self

    @classmethod
    def from_nanoseconds(cls, total: int) -> Duration:
        """The duration of ``total`` nanoseconds (any sign)."""
        micros, rest = divmod(int(total), 1000)
        return cls(microseconds=micros, nanoseconds=rest)

    @classmethod
    def from_parts(cls, seconds: int, nanos: int) -> Duration:
        """A protobuf Duration's ``seconds`` and ``nanos`` (same sign, |nanos| < 1e9)."""
        return cls.from_nanoseconds(int(seconds) * _NANOS_PER_SECOND + int(nanos))

    @property
    def nanoseconds(self) -> int:
        """Nanoseconds below the microsecond, 0..999 (always non-negative)."""
        return self._nanoseconds

    def total_nanoseconds(self) -> int:
        """The whole duration in nanoseconds."""
        return _micros(self) * 1000 + self._nanoseconds

    def _key(self) -> tuple[int, int]:
        return _micros(self), self._nanoseconds

    def __eq__(self, other: object) -> bool:
        if isinstance(other, datetime.timedelta):
            return self._key() == (_micros(other), _remainder(other))
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if isinstance(other, datetime.timedelta):
            return self._key() != (_micros(other), _remainder(other))
        return NotImplemented

    def __lt__(self, other: datetime.timedelta) -> bool:
        if isinstance(other, datetime.timedelta):
            return self._key() < (_micros(other), _remainder(other))
        return NotImplemented

    def __le__(self, other: datetime.timedelta) -> bool:
        if isinstance(other, datetime.timedelta):
            return self._key() <= (_micros(other), _remainder(other))
        return NotImplemented

    def __gt__(self, other: datetime.timedelta) -> bool:
        if isinstance(other, datetime.timedelta):
            return self._key() > (_micros(other), _remainder(other))
        return NotImplemented

    def __ge__(self, other: datetime.timedelta) -> bool:
        if isinstance(other, datetime.timedelta):
            return self._key() >= (_micros(other), _remainder(other))
        return NotImplemented

    def __hash__(self) -> int:
        base = super().__hash__()
        return base if not self._nanoseconds else hash((base, self._nanoseconds))

    def __bool__(self) -> bool:
        return bool(self._nanoseconds) or super().__bool__()

    def __repr__(self) -> str:
        base = super().__repr__()
        inner = base[base.index("(") + 1 : -1]
        parts = [inner] if inner and inner != "0" else []
        if self._nanoseconds:
            parts.append(f"nanoseconds={self._nanoseconds}")
        return f"istio_sdk.timeutil.Duration({', '.join(parts)})"

    def __str__(self) -> str:
        base = super().__str__()
        if not self._nanoseconds:
            return base
        if "." not in base:
            base += ".000000"
        return f"{base}{self._nanoseconds:03d}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_duration, (self.total_nanoseconds(),))

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return self.__reduce__()


def _make_duration(total: int) -> Duration:
    # Unpickling (a module-level function keeps the pickle independent of classmethods).
    return Duration.from_nanoseconds(total)


class Timestamp(datetime.datetime):
    """A ``datetime`` that also counts the nanoseconds below its microsecond.

    ``Timestamp(2024, 1, 2, tzinfo=datetime.UTC, nanosecond=5)`` takes ``datetime``'s
    arguments plus ``nanosecond`` (0..999). ``Timestamp.from_parts(seconds, nanos)`` builds
    one in UTC from a protobuf Timestamp's fields; ``Timestamp.from_datetime(value, n)`` adds
    a remainder to any datetime.
    """

    __slots__ = ("_nanosecond",)
    _nanosecond: int

    def __new__(cls, *args: Any, nanosecond: SupportsIndex = 0, **kwargs: Any) -> Timestamp:
        self = super().__new__(cls, *args, **kwargs)
        self._nanosecond = _check_remainder(nanosecond, "nanosecond")
        return self

    @classmethod
    def from_datetime(cls, value: datetime.datetime, nanosecond: SupportsIndex = 0) -> Timestamp:
        """``value`` (its date, time, tzinfo and fold) with ``nanosecond`` below its microsecond."""
        return cls(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            value.tzinfo,
            fold=value.fold,
            nanosecond=nanosecond,
        )

    @classmethod
    def from_parts(cls, seconds: int, nanos: int) -> Timestamp:
        """A protobuf Timestamp's ``seconds`` since the epoch and ``nanos``, in UTC."""
        micros, rest = divmod(int(seconds) * _NANOS_PER_SECOND + int(nanos), 1000)
        return cls.from_datetime(_EPOCH + datetime.timedelta(microseconds=micros), rest)

    @property
    def nanosecond(self) -> int:
        """Nanoseconds below the microsecond, 0..999."""
        return self._nanosecond

    def replace(self, *args: Any, nanosecond: SupportsIndex | None = None, **kwargs: Any) -> Any:
        """``datetime.replace``, keeping ``nanosecond`` unless it is given."""
        value = datetime.datetime.replace(self, *args, **kwargs)
        kept = self._nanosecond if nanosecond is None else nanosecond
        return Timestamp.from_datetime(value, kept)

    def astimezone(self, tz: datetime.tzinfo | None = None) -> Any:
        """``datetime.astimezone``, keeping ``nanosecond`` (the instant is the same)."""
        return Timestamp.from_datetime(datetime.datetime.astimezone(self, tz), self._nanosecond)

    def _compare(self, other: datetime.datetime) -> int:
        plain = datetime.datetime
        if plain.__eq__(self, other) is True:
            mine, theirs = self._nanosecond, _remainder(other)
            return (mine > theirs) - (mine < theirs)
        return -1 if plain.__lt__(self, other) else 1

    def __eq__(self, other: object) -> bool:
        if isinstance(other, datetime.datetime):
            result = datetime.datetime.__eq__(self, other)
            if result is not True:
                return result
            return self._nanosecond == _remainder(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __lt__(self, other: datetime.date) -> bool:
        if isinstance(other, datetime.datetime):
            return self._compare(other) < 0
        return NotImplemented

    def __le__(self, other: datetime.date) -> bool:
        if isinstance(other, datetime.datetime):
            return self._compare(other) <= 0
        return NotImplemented

    def __gt__(self, other: datetime.date) -> bool:
        if isinstance(other, datetime.datetime):
            return self._compare(other) > 0
        return NotImplemented

    def __ge__(self, other: datetime.date) -> bool:
        if isinstance(other, datetime.datetime):
            return self._compare(other) >= 0
        return NotImplemented

    def __hash__(self) -> int:
        base = super().__hash__()
        return base if not self._nanosecond else hash((base, self._nanosecond))

    def __repr__(self) -> str:
        base = super().__repr__()
        inner = base[base.index("(") + 1 : -1]
        if self._nanosecond:
            inner += f", nanosecond={self._nanosecond}"
        return f"istio_sdk.timeutil.Timestamp({inner})"

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        """ISO 8601; with a remainder and ``timespec="auto"``, nine fractional digits."""
        if not self._nanosecond or timespec != "auto":
            return super().isoformat(sep, timespec)
        text = super().isoformat(sep, "microseconds")
        cut = text.index(".") + 7
        return f"{text[:cut]}{self._nanosecond:03d}{text[cut:]}"

    def __str__(self) -> str:
        return self.isoformat(" ")

    def __reduce__(self) -> tuple[Any, ...]:
        plain = datetime.datetime(
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.microsecond,
            self.tzinfo,
            fold=self.fold,
        )
        return (_make_timestamp, (plain, self._nanosecond))

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return self.__reduce__()


def _make_timestamp(value: datetime.datetime, nanosecond: int) -> Timestamp:
    return Timestamp.from_datetime(value, nanosecond)


def _remainder(value: object) -> int:
    if isinstance(value, Duration):
        return value._nanoseconds
    if isinstance(value, Timestamp):
        return value._nanosecond
    return 0


def duration_from_parts(seconds: int, nanos: int) -> datetime.timedelta:
    """A protobuf Duration as a ``timedelta``; a ``Duration`` only with digits below a µs."""
    if nanos % 1000 == 0:
        return datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    return Duration.from_parts(seconds, nanos)


def duration_nanos(value: datetime.timedelta) -> int:
    """The length of any timedelta in whole nanoseconds (exact for a :class:`Duration`)."""
    total = _micros(value) * 1000
    if isinstance(value, Duration):
        total += value._nanoseconds
    return total


def duration_parts(value: datetime.timedelta) -> tuple[int, int]:
    """``(seconds, nanos)`` of a timedelta as a protobuf Duration: both truncated toward zero."""
    total = duration_nanos(value)
    if total < 0:
        seconds, nanos = divmod(-total, _NANOS_PER_SECOND)
        return -seconds, -nanos
    seconds, nanos = divmod(total, _NANOS_PER_SECOND)
    return seconds, nanos


def timestamp_from_parts(seconds: int, nanos: int) -> datetime.datetime:
    """A protobuf Timestamp as a UTC ``datetime``: a ``Timestamp`` only with digits below µs."""
    if nanos % 1000 == 0:
        return _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    return Timestamp.from_parts(seconds, nanos)


def timestamp_parts(value: datetime.datetime) -> tuple[int, int]:
    """``(seconds, nanos)`` since the epoch of a timezone-aware datetime (nanos 0..999999999).

    Raises ``ValueError`` for a naive datetime: it names no instant.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a Timestamp field needs a timezone-aware datetime")
    total = _micros(value - _EPOCH) * 1000
    if isinstance(value, Timestamp):
        total += value._nanosecond
    seconds, nanos = divmod(total, _NANOS_PER_SECOND)
    return seconds, nanos
