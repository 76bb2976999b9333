"""The generated fast codec, case by case, against Google's upb runtime over the same schema.

Each case builds a message with the official runtime (xds-protos classes, or the Istio protos
compiled by ``tests/support/official.py``), checks that our class parses its deterministic bytes
and writes exactly those bytes back, and that parsing agrees with upb on the edge cases of the
wire format: limits of every scalar type, packed and unpacked repeated fields, oneofs, maps,
wrappers, Duration and Timestamp, unknown fields, wrong wire types, merging and malformed input.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

import betterproto2
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.route.v3 import route_components_pb2
from google.protobuf import any_pb2, descriptor_pb2, duration_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import DecodeError as OfficialDecodeError
from validate import validate_pb2

from istio_sdk import timeutil
from istio_sdk.api.envoy.config.cluster.v3 import Cluster
from istio_sdk.api.envoy.config.core.v3 import Metadata, SocketAddress
from istio_sdk.api.envoy.config.route.v3 import RetryPolicy
from istio_sdk.api.google import protobuf as wkt
from istio_sdk.api.validate import (
    DoubleRules,
    Fixed32Rules,
    Fixed64Rules,
    FloatRules,
    Int32Rules,
    Int64Rules,
    SFixed32Rules,
    SFixed64Rules,
    SInt32Rules,
    SInt64Rules,
    UInt32Rules,
    UInt64Rules,
)
from istio_sdk.codec import DecodeError, fast_codec_installed, reference_codec, varint


def same_as_official(
    ours_cls: type[betterproto2.Message], official: object
) -> betterproto2.Message:
    """Parse upb's deterministic bytes with ``ours_cls``; re-encoding must give the same bytes."""
    data = official.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
    ours = ours_cls.parse(data)
    assert bytes(ours) == data
    assert ours.SerializeToString() == data
    assert ours_cls.FromString(data) == ours
    with reference_codec():
        assert ours_cls.parse(data) == ours  # betterproto2's own parser agrees
    return ours


# ---------------------------------------------------------------------------- installation


def test_fast_path_is_installed_on_generated_classes() -> None:
    for cls in (Cluster, SocketAddress, Metadata, wkt.Struct, wkt.Any, Int32Rules):
        assert fast_codec_installed(cls), cls
        assert cls.__bytes__ is not betterproto2.Message.__bytes__
        assert cls._fast_encode.__module__.endswith("._codec")  # type: ignore[attr-defined]
        assert cls._fast_decode.__name__ == f"d_{cls.__name__}"  # type: ignore[attr-defined]


def test_reference_codec_switches_back_and_forth() -> None:
    with reference_codec():
        assert not fast_codec_installed(Cluster)
        assert Cluster.__bytes__ is betterproto2.Message.__bytes__
    assert fast_codec_installed(Cluster)


def test_subclasses_still_parse_to_their_own_type() -> None:
    class Custom(SocketAddress):
        pass

    parsed = Custom.parse(bytes(SocketAddress(address="10.0.0.1", port_value=80)))
    assert type(parsed) is Custom
    assert parsed.address == "10.0.0.1"


# ---------------------------------------------------------------------------- scalars


@pytest.mark.parametrize(
    ("ours_cls", "official_cls", "values"),
    [
        (Int32Rules, validate_pb2.Int32Rules, [-(2**31), -1, 1, 2**31 - 1]),
        (Int64Rules, validate_pb2.Int64Rules, [-(2**63), -1, 1, 2**63 - 1]),
        (UInt32Rules, validate_pb2.UInt32Rules, [1, 127, 128, 2**32 - 1]),
        (UInt64Rules, validate_pb2.UInt64Rules, [1, 16383, 16384, 2**64 - 1]),
        (SInt32Rules, validate_pb2.SInt32Rules, [-(2**31), -1, 1, 2**31 - 1]),
        (SInt64Rules, validate_pb2.SInt64Rules, [-(2**63), -1, 1, 2**63 - 1]),
        (Fixed32Rules, validate_pb2.Fixed32Rules, [1, 2**32 - 1]),
        (Fixed64Rules, validate_pb2.Fixed64Rules, [1, 2**64 - 1]),
        (SFixed32Rules, validate_pb2.SFixed32Rules, [-(2**31), -1, 2**31 - 1]),
        (SFixed64Rules, validate_pb2.SFixed64Rules, [-(2**63), -1, 2**63 - 1]),
        (
            FloatRules,
            validate_pb2.FloatRules,
            [1.5, -2.25, math.inf, -math.inf, 3.4028234663852886e38],
        ),
        (DoubleRules, validate_pb2.DoubleRules, [1e-300, -1.5, math.inf, 1.7976931348623157e308]),
    ],
)
def test_scalar_limits_match_upb(
    ours_cls: type[betterproto2.Message], official_cls: type, values: list[float]
) -> None:
    # validate.proto is proto2: its repeated scalars are unpacked, `in` is field 6 or 4.
    in_field = "in" if "in" in official_cls.DESCRIPTOR.fields_by_name else None
    for value in values:
        official = official_cls(const=value, lt=value)
        if in_field:
            getattr(official, in_field).extend([value, value])
        ours = same_as_official(ours_cls, official)
        assert ours.const == value
        if in_field:
            assert ours.in_ == [value, value]


def test_negative_int32_is_a_ten_byte_varint() -> None:
    data = bytes(Int32Rules(const=-1))
    assert data == b"\x08" + b"\xff" * 9 + b"\x01"
    assert Int32Rules.parse(data).const == -1
    # A 64-bit value in an int32 field keeps its low 32 bits, as upb does.
    wide = b"\x08" + b"\x80\x80\x80\x80\x10"  # 2**32
    assert Int32Rules.parse(wide).const == validate_pb2.Int32Rules.FromString(wide).const == 0


def test_nan_and_negative_zero() -> None:
    official = struct_pb2.Value(number_value=-0.0)
    ours = same_as_official(wkt.Value, official)
    assert math.copysign(1.0, ours.number_value) == -1.0
    nan = wkt.Value.parse(struct_pb2.Value(number_value=math.nan).SerializeToString())
    assert math.isnan(nan.number_value)
    # In a wrapper (no presence inside it), -0.0 is written too.
    assert bytes(wkt.DoubleValue(value=-0.0)) == wrappers_pb2.DoubleValue(
        value=-0.0
    ).SerializeToString(deterministic=True)


def test_strings_and_bytes_utf8() -> None:
    from istio_sdk.api.envoy.config.core.v3 import DataSource

    official = base_pb2.DataSource(inline_string="héllo ☃ \U0001f600")
    ours = same_as_official(DataSource, official)
    assert ours.inline_string == "héllo ☃ \U0001f600"
    blob = base_pb2.DataSource(inline_bytes=bytes(range(256)))
    assert same_as_official(DataSource, blob).inline_bytes == bytes(range(256))


# ---------------------------------------------------------------------------- repeated


def test_packed_and_unpacked_repeated_scalars() -> None:
    official = route_components_pb2.RetryPolicy(retriable_status_codes=[503, 0, 1, 2**32 - 1])
    ours = same_as_official(RetryPolicy, official)
    assert ours.retriable_status_codes == [503, 0, 1, 2**32 - 1]
    # The unpacked form of the same field is accepted too, and mixed with the packed one.
    unpacked = b"\x38\xf7\x03" + b"\x38\x00"
    packed = b"\x3a\x02\x01\x02"
    mixed = RetryPolicy.parse(unpacked + packed)
    assert mixed.retriable_status_codes == [503, 0, 1, 2]
    assert mixed == RetryPolicy.parse(
        route_components_pb2.RetryPolicy.FromString(unpacked + packed).SerializeToString()
    )


def test_proto2_repeated_scalars_stay_unpacked() -> None:
    official = descriptor_pb2.FileDescriptorProto(public_dependency=[1, 2, 300])
    ours = same_as_official(wkt.FileDescriptorProto, official)
    assert ours.public_dependency == [1, 2, 300]
    location = descriptor_pb2.SourceCodeInfo.Location(path=[4, 0, 2, 1], span=[1, 2, 3])
    same_as_official(wkt.SourceCodeInfoLocation, location)  # [packed = true] in proto2


def test_repeated_messages_keep_empty_items() -> None:
    official = cluster_pb2.Cluster(name="c")
    official.transport_socket_matches.add()
    official.transport_socket_matches.add(name="tls")
    ours = same_as_official(Cluster, official)
    assert len(ours.transport_socket_matches) == 2


# ---------------------------------------------------------------------------- oneofs


def test_oneof_last_member_wins() -> None:
    port_then_name = b"\x12\x01a" + b"\x18\x50" + b"\x22\x03abc"
    ours = SocketAddress.parse(port_then_name)
    official = address_pb2.SocketAddress.FromString(port_then_name)
    assert official.WhichOneof("port_specifier") == "named_port"
    assert (ours.port_value, ours.named_port) == (None, "abc")
    assert bytes(ours) == official.SerializeToString(deterministic=True)
    name_then_port = b"\x22\x03abc" + b"\x18\x50"
    assert SocketAddress.parse(name_then_port).port_value == 80
    assert SocketAddress.parse(name_then_port).named_port is None


def test_oneof_member_at_default_value_is_written() -> None:
    official = address_pb2.SocketAddress(port_value=0)
    ours = same_as_official(SocketAddress, official)
    assert ours.port_value == 0
    assert bytes(ours) == b"\x18\x00"


# ---------------------------------------------------------------------------- maps


def test_string_maps_are_ordered_like_upb() -> None:
    official = struct_pb2.Struct()
    for key in ["b", "a", "ab", "", "z", "é", "\U0001f600", "abc"]:
        official.fields[key].string_value = key
    ours = same_as_official(wkt.Struct, official)
    assert set(ours.fields) == set(official.fields)


def test_map_entries_carry_default_keys_and_values() -> None:
    official = base_pb2.Metadata()
    official.filter_metadata[""].SetInParent()
    official.filter_metadata["istio"].fields["x"].null_value = 0
    ours = same_as_official(Metadata, official)
    assert ours.filter_metadata[""] == wkt.Struct()
    # An entry without its value yields the default value.
    assert Metadata.parse(b"\x0a\x03\x0a\x01k").filter_metadata == {"k": wkt.Struct()}


def test_integer_key_maps_and_wrapped_values() -> None:
    from support.official import official_class

    from istio_sdk.api.istio.mixer.v1 import CompressedAttributes

    official = official_class("istio.mixer.v1.CompressedAttributes")()
    for key in (5, -1, 0, -300, 2**31 - 1):
        official.strings[key] = -key
        official.int64s[key] = key * 1000
        official.bools[key] = key % 2 == 0
        official.timestamps[key].seconds = 1_700_000_000 + key
        official.timestamps[key].nanos = 123_000
        official.durations[key].seconds = key
        official.bytes[key] = b"\x00\xff"
    ours = same_as_official(CompressedAttributes, official)
    assert ours.durations[-1] == datetime.timedelta(seconds=-1)
    assert ours.timestamps[0] == datetime.datetime(
        2023, 11, 14, 22, 13, 20, 123, tzinfo=datetime.UTC
    )


# ---------------------------------------------------------------------------- wrappers, time


def test_wrappers_with_default_values_are_present() -> None:
    official = cluster_pb2.Cluster(name="c")
    official.per_connection_buffer_limit_bytes.value = 0
    official.respect_dns_ttl = False
    official.common_lb_config.healthy_panic_threshold.value = 0.0
    official.upstream_connection_options.tcp_keepalive.keepalive_probes.value = 2**32 - 1
    ours = same_as_official(Cluster, official)
    assert ours.per_connection_buffer_limit_bytes == 0
    assert ours.upstream_connection_options.tcp_keepalive.keepalive_probes == 2**32 - 1
    assert ours.respect_dns_ttl is False
    assert ours.common_lb_config.healthy_panic_threshold.value == 0.0


def test_durations_with_nanos_and_negative_durations() -> None:
    official = cluster_pb2.Cluster()
    official.connect_timeout.seconds = 1
    official.connect_timeout.nanos = 500_000
    ours = same_as_official(Cluster, official)
    assert ours.connect_timeout == datetime.timedelta(seconds=1, microseconds=500)
    # Negative timedeltas encode as upb's FromTimedelta: seconds and nanos share the sign.
    for delta in (
        datetime.timedelta(seconds=-1.5),
        datetime.timedelta(microseconds=-1),
        datetime.timedelta(days=-3, seconds=5),
    ):
        expected = duration_pb2.Duration()
        expected.FromTimedelta(delta)
        official = cluster_pb2.Cluster()
        official.connect_timeout.CopyFrom(expected)
        assert bytes(Cluster(connect_timeout=delta)) == official.SerializeToString(
            deterministic=True
        )
        assert Cluster.parse(bytes(Cluster(connect_timeout=delta))).connect_timeout == delta
    # Below a microsecond the value is exact (betterproto2 would round 1500 ns to 2 us).
    sub_micro = cluster_pb2.Cluster()
    sub_micro.connect_timeout.nanos = 1500
    data = sub_micro.SerializeToString()
    parsed = Cluster.parse(data)
    assert parsed.connect_timeout == timeutil.Duration(microseconds=1, nanoseconds=500)
    assert bytes(parsed) == data
    with reference_codec():
        slow = Cluster.parse(data)
    assert slow.connect_timeout == datetime.timedelta(microseconds=2)
    assert parsed != slow


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 1),
        (0, -1),
        (1, 999_999_999),
        (-1, -999_999_999),
        (-5, -1_500),
        (315_576_000_000, 999_999_999),
        (-315_576_000_000, -999_999_999),
        (0, 123_456_789),
    ],
)
def test_duration_nanoseconds_are_exact_both_ways(seconds: int, nanos: int) -> None:
    official = cluster_pb2.Cluster()
    official.connect_timeout.seconds = seconds
    official.connect_timeout.nanos = nanos
    data = official.SerializeToString(deterministic=True)
    ours = Cluster.parse(data)
    assert isinstance(ours.connect_timeout, timeutil.Duration)
    assert timeutil.duration_parts(ours.connect_timeout) == (seconds, nanos)
    assert ours.connect_timeout.total_nanoseconds() == seconds * 10**9 + nanos
    assert bytes(ours) == data
    built = Cluster(connect_timeout=timeutil.Duration.from_parts(seconds, nanos))
    assert bytes(built) == data
    assert cluster_pb2.Cluster.FromString(bytes(built)) == official


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(0, 1), (-1, 999_999_999), (1_700_000_000, 123_456_789), (-62_135_596_800, 7)],
)
def test_timestamp_nanoseconds_are_exact_both_ways(seconds: int, nanos: int) -> None:
    from envoy.admin.v3 import config_dump_shared_pb2

    from istio_sdk.api.envoy.admin.v3 import UpdateFailureState

    official = config_dump_shared_pb2.UpdateFailureState()
    official.last_update_attempt.seconds = seconds
    official.last_update_attempt.nanos = nanos
    data = official.SerializeToString(deterministic=True)
    ours = UpdateFailureState.parse(data)
    when = ours.last_update_attempt
    assert isinstance(when, timeutil.Timestamp)
    assert when.nanosecond == nanos % 1000
    assert timeutil.timestamp_parts(when) == (seconds, nanos)
    assert bytes(ours) == data
    built = UpdateFailureState(last_update_attempt=timeutil.Timestamp.from_parts(seconds, nanos))
    assert bytes(built) == data


def test_whole_microseconds_decode_to_plain_values() -> None:
    official = cluster_pb2.Cluster()
    official.connect_timeout.nanos = 5_000
    ours = Cluster.parse(official.SerializeToString())
    assert type(ours.connect_timeout) is datetime.timedelta
    with reference_codec():
        assert Cluster.parse(official.SerializeToString()) == ours


def test_duration_or_timestamp_out_of_python_range_is_a_decode_error() -> None:
    body = b"\x08" + varint(2**62)
    with pytest.raises(DecodeError, match="Duration or Timestamp"):
        Cluster.parse(b"\x22" + bytes([len(body)]) + body)


def test_timestamps() -> None:
    from istio_sdk.api.envoy.admin.v3 import UpdateFailureState

    when = datetime.datetime(1969, 7, 20, 20, 17, 40, 5, tzinfo=datetime.UTC)
    ours = UpdateFailureState(last_update_attempt=when)
    parsed = UpdateFailureState.parse(bytes(ours))
    assert parsed.last_update_attempt == when
    from envoy.admin.v3 import config_dump_shared_pb2

    official = config_dump_shared_pb2.UpdateFailureState.FromString(bytes(ours))
    assert official.last_update_attempt.ToDatetime(datetime.UTC) == when
    assert official.last_update_attempt.nanos == 5000
    with pytest.raises(ValueError, match="timezone-aware"):
        bytes(UpdateFailureState(last_update_attempt=when.replace(tzinfo=None)))


def test_any_payloads_round_trip() -> None:
    inner = cluster_pb2.Cluster(name="inner")
    inner.connect_timeout.FromMilliseconds(250)
    packed = any_pb2.Any()
    packed.Pack(inner)
    ours = same_as_official(wkt.Any, packed)
    assert ours.type_url == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    assert Cluster.parse(ours.value).name == "inner"


# ---------------------------------------------------------------------------- parse semantics


def test_unknown_fields_are_kept_and_written_last() -> None:
    unknown = (
        b"\xb8\x3e\x96\x01"  # field 999 varint
        + b"\xc2\x3e\x03abc"  # field 1000 length-delimited
        + b"\xcd\x3e\x01\x02\x03\x04"  # field 1001 fixed32
        + b"\xd1\x3e"
        + b"\x00" * 8  # field 1002 fixed64
        + b"\xdb\x3e\x08\x01\xdc\x3e"  # field 1003 group holding field 1
    )
    data = b"\x0a\x01c" + unknown[:4] + b"\x10\x03" + unknown[4:]
    ours = Cluster.parse(data)
    assert ours._unknown_fields == unknown
    official = cluster_pb2.Cluster.FromString(data)
    assert bytes(ours) == official.SerializeToString(deterministic=True)
    without_group = data[: -len(b"\xdb\x3e\x08\x01\xdc\x3e")]
    with reference_codec():  # betterproto2 keeps the same bytes (it cannot skip groups)
        slow = Cluster.parse(without_group)
    assert slow._unknown_fields == Cluster.parse(without_group)._unknown_fields


def test_known_field_with_wrong_wire_type_is_unknown() -> None:
    data = b"\x08\x05" + b"\x0a\x01c"  # field 1 (name, a string) first sent as a varint
    ours = Cluster.parse(data)
    official = cluster_pb2.Cluster.FromString(data)
    assert ours.name == official.name == "c"
    assert ours._unknown_fields == b"\x08\x05"
    assert bytes(ours) == official.SerializeToString(deterministic=True)


def test_repeated_singular_message_is_merged() -> None:
    first = cluster_pb2.Cluster()
    first.load_assignment.cluster_name = "a"
    first.load_assignment.endpoints.add().priority = 1
    second = cluster_pb2.Cluster()
    second.load_assignment.endpoints.add().priority = 2
    second.per_connection_buffer_limit_bytes.value = 7
    third = cluster_pb2.Cluster()
    third.per_connection_buffer_limit_bytes.SetInParent()  # empty body keeps 7
    data = first.SerializeToString() + second.SerializeToString() + third.SerializeToString()
    ours = Cluster.parse(data)
    official = cluster_pb2.Cluster.FromString(data)
    assert ours.load_assignment.cluster_name == "a"
    assert [e.priority for e in ours.load_assignment.endpoints] == [1, 2]
    assert ours.per_connection_buffer_limit_bytes == 7
    assert bytes(ours) == official.SerializeToString(deterministic=True)


def test_unknown_enum_values_survive() -> None:
    data = b"\x30\x63"  # lb_policy = 99
    ours = Cluster.parse(data)
    assert int(ours.lb_policy) == 99
    assert bytes(ours) == data


def test_every_prefix_of_a_message_parses_like_upb() -> None:
    official = cluster_pb2.Cluster(name="outbound|80||a.b.svc")
    official.connect_timeout.FromMilliseconds(1500)
    lb_endpoint = official.load_assignment.endpoints.add().lb_endpoints.add()
    lb_endpoint.endpoint.address.socket_address.address = "10.0.0.1"
    official.metadata.filter_metadata["istio"].fields["k"].string_value = "v"
    data = official.SerializeToString(deterministic=True)
    for cut in range(len(data)):
        prefix = data[:cut]
        try:
            expected = cluster_pb2.Cluster.FromString(prefix)
        except OfficialDecodeError:
            with pytest.raises(DecodeError):
                Cluster.parse(prefix)
        else:
            assert bytes(Cluster.parse(prefix)) == expected.SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\x05ab", "truncated"),
        (b"\x0a", "truncated"),
        (b"\x10" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x0e", "wire type 6"),
        (b"\x0f", "wire type 7"),
        (b"\x00\x01", "field number 0"),
        (b"\x0a\x02\xc3\x28", "UTF-8"),
        (b"\xdb\x3e\x08\x01", "not closed"),
        (b"\x1a\x03\x0a\x05abcde", "truncated"),
    ],
)
def test_malformed_input_raises_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        Cluster.parse(data)
    assert issubclass(DecodeError, ValueError)


def test_parse_accepts_bytearray_and_memoryview() -> None:
    data = bytes(SocketAddress(address="x", port_value=1))
    assert SocketAddress.parse(bytearray(data)) == SocketAddress.parse(memoryview(data))


# ---------------------------------------------------------------------------- object identity


def test_parsed_objects_match_betterproto2_objects() -> None:
    official = cluster_pb2.Cluster(name="c", type=cluster_pb2.Cluster.EDS)
    official.eds_cluster_config.service_name = "svc"
    official.circuit_breakers.thresholds.add().max_connections.value = 5
    official.metadata.filter_metadata["istio"].fields["n"].number_value = 1.5
    data = official.SerializeToString()
    fast = Cluster.parse(data)
    with reference_codec():
        slow = Cluster.parse(data)
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert fast.to_dict() == slow.to_dict()
    assert list(vars(fast)) == list(vars(slow))
    assert [f.name for f in dataclasses.fields(fast)] == [f.name for f in dataclasses.fields(slow)]
    assert fast._unknown_fields == slow._unknown_fields == b""
    assert type(fast.type) is type(slow.type)


def test_codegen_and_runtime_agree_on_the_wrapped_types() -> None:
    import pathlib
    import sys

    from istio_sdk.codec import WRAPPERS

    codegen = pathlib.Path(__file__).resolve().parents[2] / "codegen"
    sys.path.insert(0, str(codegen))
    try:
        import fastcodec
    finally:
        sys.path.remove(str(codegen))
    assert set(fastcodec.KNOWN_WRAPPERS) == set(WRAPPERS)
