"""The Hypothesis strategies of ``istio_sdk.testing``: coverage and validity of what they draw."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import betterproto2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.testing import all_message_types, full_name, message_class, messages


def _depth_in(value: Any) -> int:
    """How many message levels ``value`` holds (a message of scalars counts 1).

    A google.protobuf Struct/Value/ListValue is a JSON value: the strategies bound its own
    nesting separately, so it counts as one level, like a scalar-only message.
    """
    from istio_sdk.api.google import protobuf as wkt

    if isinstance(value, (wkt.Struct, wkt.Value, wkt.ListValue)):
        return 1
    if isinstance(value, betterproto2.Message):
        return 1 + max(
            (_depth_in(getattr(value, f.name)) for f in dataclasses.fields(value)), default=0
        )
    if isinstance(value, list):
        return max((_depth_in(item) for item in value), default=0)
    if isinstance(value, dict):
        return max((_depth_in(item) for item in value.values()), default=0)
    return 0


def test_all_message_types_covers_istio_envoy_and_wkt() -> None:
    types = all_message_types()
    names = {full_name(cls) for cls in types}
    assert len(types) == len(names) > 500
    for name in (
        "istio.networking.v1alpha3.VirtualService",
        "istio.v1.auth.IstioCertificateRequest",
        "envoy.config.cluster.v3.Cluster",
        "envoy.service.discovery.v3.DiscoveryRequest",
        "google.protobuf.Duration",
        "google.protobuf.Any",
    ):
        assert name in names
        assert full_name(message_class(name)) == name
    assert all(issubclass(cls, betterproto2.Message) for cls in types)
    assert [full_name(cls) for cls in types] == sorted(names)


def test_message_class_unknown_name() -> None:
    with pytest.raises(KeyError, match=r"no\.such\.Message"):
        message_class("no.such.Message")


def test_messages_rejects_non_messages() -> None:
    with pytest.raises(TypeError):
        messages(int)  # type: ignore[type-var]
    from istio_sdk.api.google.protobuf import Empty

    with pytest.raises(ValueError):
        messages(Empty, max_depth=-1)


@given(st.data())
def test_any_type_draws_instances_within_depth(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(all_message_types()), label="type")
    depth = data.draw(st.integers(0, 3), label="max_depth")
    msg = data.draw(messages(cls, max_depth=depth), label="message")
    assert type(msg) is cls
    if full_name(cls).split(".")[:2] != ["google", "protobuf"]:
        # Struct/Value/Any nest on their own terms; everything else honours max_depth.
        assert _depth_in(msg) <= depth + 1
    bytes(msg)  # every drawn value is encodable


@given(st.data())
def test_oneofs_have_at_most_one_member(data: st.DataObject) -> None:
    from istio_sdk.api.envoy.config.core.v3 import Address, DataSource

    cls = data.draw(st.sampled_from([Address, DataSource]))
    msg = data.draw(messages(cls, max_depth=1))
    for group, fields in cls._betterproto.oneof_field_by_group.items():
        set_members = [f.name for f in fields if getattr(msg, f.name) is not None]
        assert len(set_members) <= 1, (group, set_members)


@given(messages(message_class("google.protobuf.Duration")))
def test_durations_are_valid(duration: Any) -> None:
    assert abs(duration.seconds) <= 315_576_000_000
    assert abs(duration.nanos) <= 999_999_999
    assert duration.seconds * duration.nanos >= 0


@given(messages(message_class("envoy.config.core.v3.HttpUri")))
def test_unwrapped_durations_are_timedeltas(uri: Any) -> None:
    assert uri.timeout is None or isinstance(uri.timeout, datetime.timedelta)
