"""Go's text forms that keys, labels and overrides depend on."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.mixer.adapters._values import go_duration, quota_key, string_equals, stringify
from istio_sdk.timeutil import Duration


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime.timedelta(0), "0s"),
        (Duration.from_nanoseconds(1), "1ns"),
        (Duration.from_nanoseconds(1500), "1.5\u00b5s"),
        (datetime.timedelta(milliseconds=1), "1ms"),
        (datetime.timedelta(seconds=1.5), "1.5s"),
        (datetime.timedelta(minutes=1), "1m0s"),
        (datetime.timedelta(hours=1, seconds=0.5), "1h0m0.5s"),
        (-datetime.timedelta(seconds=90), "-1m30s"),
        (datetime.timedelta(days=2), "48h0m0s"),
    ],
)
def test_go_duration_string(value: datetime.timedelta, text: str) -> None:
    assert go_duration(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e21, "1000000000000000000000"),
        (0.1, "0.1"),
        (-0.0, "-0"),
        (float("inf"), "+Inf"),
        (12, "12"),
        (True, "true"),
        (bytes([10, 0, 0, 1]), "10.0.0.1"),
        (ipaddress.ip_address("::ffff:1.2.3.4"), "1.2.3.4"),
        (b"\x01\x02", "?0102"),
        ({"b": "2", "a": "1"}, "a=1&b=2"),
        (datetime.datetime(2020, 1, 2, 3, 4, 5, 6), "2020-01-02T03:04:05.000006Z"),
    ],
)
def test_stringify(value: object, text: str) -> None:
    assert stringify(value) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "value", "equal"),
    [
        ("200", 200, True),
        ("0x10", 16, False),
        ("T", True, True),
        ("yes", True, False),
        ("1.50", 1.5, True),
        ("1m30s", datetime.timedelta(seconds=90), True),
        ("10.0.0.1", bytes([10, 0, 0, 1]), True),
        ("::ffff:10.0.0.1", ipaddress.ip_address("10.0.0.1"), True),
        ("a=1&b=2", {"b": "2", "a": "1"}, True),
        ("a=1", {"a": "1", "b": "2"}, False),
        ("2020-01-02T03:04:05Z", datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), True),
        ("", None, True),
        ("x", None, False),
    ],
)
def test_string_equals(text: str, value: object, equal: bool) -> None:
    assert string_equals(text, value) is equal  # type: ignore[arg-type]


def test_quota_key_follows_go_byte_for_byte() -> None:
    key = quota_key(
        "q", {"s": "x", "i": -255, "f": 0.0, "b": False, "ip": bytes([1, 2, 3, 4]), "m": {"k": "v"}}
    )
    pad = b"\x00" * 32
    assert key == (
        b"q;b="
        + pad
        + b"false;f="
        + pad
        + b"0p-1074;i="
        + pad
        + b"-ff;ip=\x01\x02\x03\x04;m=kv;s=x"
    )


@given(
    st.dictionaries(
        st.text(max_size=5),
        st.one_of(st.text(max_size=5), st.integers(), st.booleans()),
        max_size=5,
    )
)
def test_quota_keys_do_not_depend_on_dimension_order(dims: dict[str, object]) -> None:
    reordered = dict(reversed(list(dims.items())))
    assert quota_key("q", dims) == quota_key("q", reordered)  # type: ignore[arg-type]
