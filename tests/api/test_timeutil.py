"""``istio_sdk.timeutil``: nanosecond-exact timedelta and datetime subclasses."""

from __future__ import annotations

import copy
import datetime
import pickle

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.timeutil import (
    Duration,
    Timestamp,
    duration_from_parts,
    duration_parts,
    timestamp_from_parts,
    timestamp_parts,
)

MAX_DURATION_NANOS = 315_576_000_000 * 10**9 + 999_999_999
TIMESTAMP_SECONDS = st.integers(-62_135_596_800, 253_402_300_799)
NANOS = st.integers(0, 999_999_999)


@given(st.integers(-MAX_DURATION_NANOS, MAX_DURATION_NANOS))
def test_duration_total_nanoseconds_round_trip(total: int) -> None:
    value = Duration.from_nanoseconds(total)
    assert value.total_nanoseconds() == total
    assert 0 <= value.nanoseconds <= 999
    seconds, nanos = duration_parts(value)
    assert seconds * 10**9 + nanos == total
    assert abs(nanos) < 10**9 and (seconds == 0 or nanos == 0 or (seconds < 0) == (nanos < 0))
    official = duration_pb2.Duration(seconds=seconds, nanos=nanos)
    assert official.ToNanoseconds() == total
    assert duration_from_parts(seconds, nanos) == value
    assert pickle.loads(pickle.dumps(value)) == value
    assert copy.copy(value) == value == copy.deepcopy(value)


@given(
    st.integers(-(10**15), 10**15),
    st.integers(-(10**15), 10**15),
)
def test_duration_order_and_hash_follow_nanoseconds(a: int, b: int) -> None:
    x, y = Duration.from_nanoseconds(a), Duration.from_nanoseconds(b)
    assert (x == y) == (a == b)
    assert (x != y) == (a != b)
    assert (x < y) == (a < b)
    assert (x <= y) == (a <= b)
    assert (x > y) == (a > b)
    assert (x >= y) == (a >= b)
    plain = datetime.timedelta(microseconds=b // 1000)
    assert (x == plain) == (a == b // 1000 * 1000)
    assert (plain < x) == (b // 1000 * 1000 < a)
    if a == b:
        assert hash(x) == hash(y)
    if a % 1000 == 0:
        assert hash(x) == hash(datetime.timedelta(microseconds=a // 1000))


@given(TIMESTAMP_SECONDS, NANOS)
def test_timestamp_parts_round_trip_like_the_official_runtime(seconds: int, nanos: int) -> None:
    value = timestamp_from_parts(seconds, nanos)
    assert timestamp_parts(value) == (seconds, nanos)
    assert isinstance(value, Timestamp) == (nanos % 1000 != 0)
    official = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert official.ToDatetime(datetime.UTC) == timestamp_from_parts(seconds, nanos // 1000 * 1000)
    text = official.ToJsonString()
    # json_format's text, apart from the "+00:00" vs "Z" spelling of UTC.
    assert value.isoformat().replace("+00:00", "Z") == text or nanos % 1000 == 0
    assert pickle.loads(pickle.dumps(value)) == value == copy.deepcopy(value)


def test_duration_construction_and_validation() -> None:
    assert Duration(seconds=1, nanoseconds=5).total_nanoseconds() == 1_000_000_005
    assert Duration(nanoseconds=0) == datetime.timedelta(0)
    assert not Duration()
    assert Duration(nanoseconds=1)
    for bad in (-1, 1000):
        with pytest.raises(ValueError, match=r"0\.\.999"):
            Duration(nanoseconds=bad)
        with pytest.raises(ValueError, match=r"0\.\.999"):
            Timestamp(2024, 1, 1, nanosecond=bad)
    with pytest.raises(TypeError):
        Duration(nanoseconds=1.5)  # type: ignore[arg-type]
    assert Duration.from_parts(-1, -500) == Duration.from_nanoseconds(-1_000_000_500)


def test_repr_and_str() -> None:
    value = Duration(seconds=1, nanoseconds=5)
    assert repr(value) == "istio_sdk.timeutil.Duration(seconds=1, nanoseconds=5)"
    assert str(value) == "0:00:01.000000005"
    assert repr(Duration()) == "istio_sdk.timeutil.Duration()"
    when = Timestamp(2024, 5, 1, 10, tzinfo=datetime.UTC, nanosecond=7)
    assert repr(when) == (
        "istio_sdk.timeutil.Timestamp(2024, 5, 1, 10, 0, tzinfo=datetime.timezone.utc, "
        "nanosecond=7)"
    )
    assert str(when) == "2024-05-01 10:00:00.000000007+00:00"
    assert when.isoformat(timespec="seconds") == "2024-05-01T10:00:00+00:00"


def test_arithmetic_drops_the_remainder() -> None:
    value = Duration(seconds=1, nanoseconds=5)
    for result in (value + value, value - value, -value, abs(value), value * 2, value / 2):
        assert type(result) is datetime.timedelta
    assert value + value == datetime.timedelta(seconds=2)
    when = Timestamp(2024, 5, 1, tzinfo=datetime.UTC, nanosecond=7)
    later = when + datetime.timedelta(seconds=1)
    assert later.nanosecond == 0
    assert type(when - when) is datetime.timedelta


def test_timestamp_keeps_the_remainder_through_replace_and_astimezone() -> None:
    when = Timestamp(2024, 5, 1, 12, tzinfo=datetime.UTC, nanosecond=7)
    assert when.replace(hour=1).nanosecond == 7
    assert when.replace(nanosecond=3).nanosecond == 3
    local = when.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    assert local.nanosecond == 7 and local.hour == 14
    assert local == when and hash(local) == hash(when)
    assert timestamp_parts(local) == timestamp_parts(when)


def test_timestamp_order_and_equality_with_plain_datetimes() -> None:
    base = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
    exact = Timestamp.from_datetime(base, 1)
    assert exact != base and base != exact
    assert base < exact < base + datetime.timedelta(microseconds=1)
    assert Timestamp.from_datetime(base) == base
    assert hash(Timestamp.from_datetime(base)) == hash(base)
    assert exact != "2024"
    with pytest.raises(ValueError, match="timezone-aware"):
        timestamp_parts(datetime.datetime(2024, 5, 1))


def test_duration_nanos_is_exact_for_any_timedelta() -> None:
    from istio_sdk.timeutil import Duration, duration_nanos

    assert duration_nanos(Duration.from_nanoseconds(-1_500_000_001)) == -1_500_000_001
    assert duration_nanos(datetime.timedelta(seconds=2, microseconds=7)) == 2_000_007_000
