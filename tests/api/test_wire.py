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
from hypothesis import assume, event, given, settings
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


_FLOATS = ("float", "double")


def _holds_floats(cls: type[betterproto2.Message], depth: int) -> bool:
    """Whether ``cls`` has a float or double field at most ``depth`` message levels down."""
    meta = cls._betterproto
    for field_name, field_meta in meta.meta_by_field_name.items():
        is_map = field_meta.proto_type == "map"
        value_meta = field_meta.map_meta[1] if is_map else field_meta
        if value_meta.proto_type in _FLOATS:
            return True
        target = meta.cls_by_field.get(f"{field_name}.value" if is_map else field_name)
        if target is float:  # google.protobuf.DoubleValue / FloatValue, unwrapped
            return True
        if (
            depth > 0
            and isinstance(target, type)
            and issubclass(target, betterproto2.Message)
            and _holds_floats(target, depth - 1)
        ):
            return True
    return False


FLOAT_TYPES = [cls for cls in TYPES if _holds_floats(cls, 1)]
DIRECT_FLOAT_TYPES = [cls for cls in TYPES if _holds_floats(cls, 0)]


def floats_in(value: object, path: str = "") -> list[tuple[str, float]]:
    """Every float in a message, with its path: nested messages, repeated fields, map values."""
    if isinstance(value, float):
        return [(path, value)]
    if isinstance(value, betterproto2.Message):
        found: list[tuple[str, float]] = []
        for name in value._betterproto.sorted_field_names:
            found += floats_in(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in floats_in(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        # Map order is not part of the message: walk entries by key.
        entries = sorted(value.items(), key=lambda entry: entry[0])
        return [item for k, v in entries for item in floats_in(v, f"{path}[{k!r}]")]
    return []


def test_float_types_are_found_at_every_depth() -> None:
    from istio_sdk.api.envoy.config.cluster.v3 import Cluster
    from istio_sdk.api.envoy.type.v3 import Percent
    from istio_sdk.api.google.protobuf import Struct

    assert Percent in FLOAT_TYPES  # a double field
    assert Cluster in FLOAT_TYPES  # Cluster.outlier_detection... one level down
    assert Struct in FLOAT_TYPES  # map<string, Value>, Value.number_value
    assert len(FLOAT_TYPES) > 50


@settings(max_examples=max(settings().max_examples * 4, 100))
@given(
    # Types with a float field of their own half the time: most draws then hold a float.
    st.one_of(st.sampled_from(DIRECT_FLOAT_TYPES), st.sampled_from(FLOAT_TYPES)).flatmap(
        lambda cls: messages(cls, max_depth=2)
    )
)
def test_nan_free_floats_survive_exactly(message: betterproto2.Message) -> None:
    # Floats and doubles keep every bit, including -0.0 and infinities, wherever they sit.
    found = floats_in(message)
    # Only examples with a float that is not +0.0 (the unset default) test anything.
    interesting = [(p, v) for p, v in found if math.copysign(1.0, v) < 0 or v != 0.0]
    assume(interesting)
    event(f"non-zero floats: {min(len(interesting), 5)}{'+' if len(interesting) >= 5 else ''}")
    event(f"deepest float: {max(p.count('.') for p, _ in interesting) - 1} levels down")
    parsed = floats_in(type(message).parse(bytes(message)))
    assert [p for p, _ in parsed] == [p for p, _ in found]
    for (path, before), (_, after) in zip(found, parsed, strict=True):
        if math.isnan(before):
            assert math.isnan(after), path
            continue
        assert after == before, path
        assert math.copysign(1.0, after) == math.copysign(1.0, before), path
