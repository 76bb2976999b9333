"""Wire equality with Google's protobuf runtime, for every generated message type.

Hypothesis draws a message type from all of ``istio_sdk.api`` and then a message of that type
(``istio_sdk.testing.messages``). For each one:

- our bytes parse back to the same message (the fast codec round-trips);
- upb parses our bytes and, asked for deterministic output, writes exactly the same bytes
  (field-number order, map entries in upb's order: see ``istio_sdk.codec``);
- our parser reads upb's bytes back to the same message;
- betterproto2's own generic parser agrees with ours on those bytes.

``SerializePartialToString`` is used on the upb side because a few proto2 messages
(``google.protobuf.UninterpretedOption.NamePart``) have required fields that betterproto2 treats
as ordinary implicit-presence fields.
"""

from __future__ import annotations

import math
from typing import Any

import betterproto2
from hypothesis import given, settings
from hypothesis import strategies as st
from support.official import official_class

from istio_sdk.codec import reference_codec
from istio_sdk.testing import all_message_types, full_name, messages

TYPES = all_message_types()


def has_nan(message: betterproto2.Message) -> bool:
    """NaN never equals itself inside lists and dicts: such messages are compared as bytes."""
    return "nan" in repr(message)


@st.composite
def any_message(draw: st.DrawFn) -> betterproto2.Message:
    cls = draw(st.sampled_from(TYPES))
    message: betterproto2.Message = draw(messages(cls, max_depth=2))
    return message


def below_a_microsecond(message: betterproto2.Message) -> bool:
    """betterproto2's own parser rounds Durations and Timestamps to the microsecond."""
    return "istio_sdk.timeutil." in repr(message)


def check_against_official(message: betterproto2.Message) -> None:
    cls = type(message)
    encoded = bytes(message)
    assert encoded == message.SerializeToString()
    parsed = cls.parse(encoded)
    assert bytes(parsed) == encoded
    if not has_nan(message):
        assert parsed == message

    official: Any = official_class(full_name(cls)).FromString(encoded)
    assert official.SerializePartialToString(deterministic=True) == encoded

    from_official = cls.parse(official.SerializePartialToString())
    assert bytes(from_official) == encoded
    if not has_nan(message):
        assert from_official == message

    if below_a_microsecond(message):
        return
    with reference_codec():
        slow = cls.parse(encoded)
    assert slow == parsed or has_nan(message)


@settings(max_examples=max(settings().max_examples * 8, 200))
@given(any_message())
def test_every_type_matches_the_official_runtime(message: betterproto2.Message) -> None:
    check_against_official(message)


def test_every_type_has_the_fast_codec_and_round_trips_empty() -> None:
    from istio_sdk.codec import fast_codec_installed

    for cls in TYPES:
        assert fast_codec_installed(cls), full_name(cls)
        empty = cls()
        assert bytes(empty) == b""
        assert cls.parse(b"") == empty
        assert official_class(full_name(cls)).FromString(b"").SerializePartialToString() == b""


@given(st.sampled_from(TYPES).flatmap(lambda cls: messages(cls, max_depth=1)))
def test_nan_free_floats_survive_exactly(message: betterproto2.Message) -> None:
    # Floats and doubles keep every bit, including -0.0 and infinities.
    parsed = type(message).parse(bytes(message))
    for name in message._betterproto.sorted_field_names:
        value = getattr(message, name)
        if isinstance(value, float) and not math.isnan(value):
            assert math.copysign(1.0, getattr(parsed, name)) == math.copysign(1.0, value)
            assert getattr(parsed, name) == value
