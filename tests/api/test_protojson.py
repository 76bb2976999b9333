"""Proto3 JSON (``istio_sdk.protojson``) against ``google.protobuf.json_format`` on the same schema.

The property tests draw a message type from every generated class, then a message, and compare
with what Google's runtime makes of the same bytes. The targeted tests pin each defect of
betterproto2's own JSON that this module exists to avoid, and the error paths.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from support.official import official_class, official_pool, to_official

from istio_sdk import timeutil
from istio_sdk.api.envoy.config.cluster.v3 import (
    ClusterCommonLbConfigZoneAwareLbConfig,
    OutlierDetection,
)
from istio_sdk.api.envoy.config.core.v3 import HttpUri, Locality
from istio_sdk.api.google import protobuf as wkt
from istio_sdk.api.istio.mesh.v1alpha1 import MeshConfigExtensionProviderStackdriverProvider
from istio_sdk.api.istio.networking.v1alpha3 import (
    ClientTlsSettingsTlSmode,
    ConnectionPoolSettingsTcpSettings,
    Destination,
    DestinationRule,
    VirtualService,
)
from istio_sdk.api.istio.networking.v1alpha3 import (
    OutlierDetection as IstioOutlierDetection,
)
from istio_sdk.protojson import (
    JsonParseError,
    JsonSerializeError,
    field_mask_from_json,
    field_mask_to_json,
    message_from_json,
    message_from_json_text,
    message_to_json,
    message_to_json_text,
)
from istio_sdk.testing import all_message_types, full_name, messages


def official_dict(msg: Any) -> Any:
    return json_format.MessageToDict(
        to_official(msg), preserving_proto_field_name=False, descriptor_pool=official_pool()
    )


def official_from_json(cls: type[Any], value: Any) -> Any:
    """json_format.ParseDict into the official class named like ``cls``, as bytes."""
    pb = official_class(full_name(cls))()
    json_format.ParseDict(value, pb, descriptor_pool=official_pool())
    return pb.SerializeToString(deterministic=True)


def wire(msg: Any) -> bytes:
    """Canonical bytes: the official runtime's deterministic serialization of ``bytes(msg)``."""
    result: bytes = to_official(msg).SerializeToString(deterministic=True)
    return result


# --------------------------------------------------------------------------------------------
# Properties over every generated type


@given(st.data())
def test_to_json_equals_json_format(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(all_message_types()), label="type")
    msg = data.draw(messages(cls), label="message")
    assert message_to_json(msg) == official_dict(msg)


@given(st.data())
def test_from_json_of_json_format_output_gives_the_message_back(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(all_message_types()), label="type")
    msg = data.draw(messages(cls), label="message")
    back = message_from_json(cls, official_dict(msg))
    assert wire(back) == wire(msg)


@given(st.data())
def test_json_text_round_trip(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(all_message_types()), label="type")
    msg = data.draw(messages(cls), label="message")
    text = message_to_json_text(msg, indent=2)
    assert wire(message_from_json_text(cls, text)) == wire(msg)
    # and json_format reads our text to the same message. Compared as JSON, not bytes: when
    # json_format rebuilds an Any it re-serializes the payload, and map entries inside it may
    # come out in another (equally valid) order.
    back = cls.parse(official_from_json(cls, message_to_json(msg)))
    assert message_to_json(back) == message_to_json(msg)


@given(messages(VirtualService), st.booleans())
def test_include_defaults_matches_json_format(vs: VirtualService, _: bool) -> None:
    want = json_format.MessageToDict(
        to_official(vs),
        always_print_fields_with_no_presence=True,
        descriptor_pool=official_pool(),
    )
    got = message_to_json(vs, include_defaults=True)
    assert got == want


# --------------------------------------------------------------------------------------------
# Each betterproto2 defect, fixed


@pytest.mark.parametrize(
    ("seconds", "nanos", "text"),
    [
        (1, 1, "1.000000001s"),
        (0, 5, "0.000000005s"),
        (3, 0, "3s"),
        (3, 100_000_000, "3.100s"),
        (3, 1_000, "3.000001s"),
        (-1, -500_000_000, "-1.500s"),
        (0, -1, "-0.000000001s"),
        (-315_576_000_000, -999_999_999, "-315576000000.999999999s"),
    ],
)
def test_duration_keeps_nanos_and_sign(seconds: int, nanos: int, text: str) -> None:
    duration = wkt.Duration(seconds=seconds, nanos=nanos)
    assert message_to_json(duration) == text == official_dict(duration)
    back = message_from_json(wkt.Duration, text)
    assert (back.seconds, back.nanos) == (seconds, nanos)


def test_negative_timedelta_field() -> None:
    uri = HttpUri(uri="http://x", timeout=-datetime.timedelta(seconds=1, microseconds=500_000))
    assert message_to_json(uri)["timeout"] == "-1.500s"  # type: ignore[index,call-overload]
    assert message_to_json(uri) == official_dict(uri)
    assert message_from_json(HttpUri, {"timeout": "-1.5s"}).timeout == uri.timeout


@pytest.mark.parametrize(
    ("text", "seconds", "nanos"),
    [
        ("1.000000001s", 1, 1),
        ("0.000000001s", 0, 1),
        ("-0.000000001s", 0, -1),
        ("-2.123456789s", -2, -123_456_789),
        ("315576000000.999999999s", 315_576_000_000, 999_999_999),
    ],
)
def test_nanoseconds_in_timedelta_fields_are_kept(text: str, seconds: int, nanos: int) -> None:
    uri = message_from_json(HttpUri, {"timeout": text})
    assert isinstance(uri.timeout, timeutil.Duration)
    assert timeutil.duration_parts(uri.timeout) == (seconds, nanos)
    assert message_to_json(uri) == {"timeout": text} == official_dict(uri)
    assert wire(uri) == official_from_json(HttpUri, {"timeout": text})
    assert HttpUri.parse(bytes(uri)) == uri


def test_nanoseconds_in_datetime_fields_are_kept() -> None:
    from istio_sdk.api.envoy.admin.v3 import UpdateFailureState

    text = "2024-05-01T10:00:00.123456789Z"
    state = message_from_json(UpdateFailureState, {"lastUpdateAttempt": text})
    assert isinstance(state.last_update_attempt, timeutil.Timestamp)
    assert state.last_update_attempt.nanosecond == 789
    assert message_to_json(state) == {"lastUpdateAttempt": text} == official_dict(state)
    assert wire(state) == official_from_json(UpdateFailureState, {"lastUpdateAttempt": text})
    # An offset moves the instant, not the digits.
    shifted = message_from_json(
        UpdateFailureState, {"lastUpdateAttempt": "2024-05-01T12:00:00.123456789+02:00"}
    )
    assert shifted == state


def test_lenient_go_durations_keep_nanoseconds() -> None:
    tcp = message_from_json(
        ConnectionPoolSettingsTcpSettings, {"connectTimeout": "1s1ns"}, lenient=True
    )
    assert tcp.connect_timeout == timeutil.Duration(seconds=1, nanoseconds=1)
    assert message_to_json(tcp) == {"connectTimeout": "1.000000001s"}


@pytest.mark.parametrize(
    ("seconds", "nanos", "text"),
    [
        (0, 123_456_789, "1970-01-01T00:00:00.123456789Z"),
        (0, 0, "1970-01-01T00:00:00Z"),
        (-62_135_596_800, 0, "0001-01-01T00:00:00Z"),
        (253_402_300_799, 999_000_000, "9999-12-31T23:59:59.999Z"),
        (1_700_000_000, 5_000, "2023-11-14T22:13:20.000005Z"),
    ],
)
def test_timestamp_precision(seconds: int, nanos: int, text: str) -> None:
    ts = wkt.Timestamp(seconds=seconds, nanos=nanos)
    assert message_to_json(ts) == text == official_dict(ts)
    back = message_from_json(wkt.Timestamp, text)
    assert (back.seconds, back.nanos) == (seconds, nanos)


def test_datetime_fields_need_a_timezone() -> None:
    from istio_sdk.api.envoy.admin.v3 import UpdateFailureState

    aware = datetime.datetime(
        2024, 5, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    state = UpdateFailureState(last_update_attempt=aware)
    assert message_to_json(state) == {"lastUpdateAttempt": "2024-05-01T10:00:00Z"}
    assert message_to_json(state) == official_dict(state)
    naive = UpdateFailureState(last_update_attempt=datetime.datetime(2024, 5, 1))
    with pytest.raises(JsonSerializeError) as info:
        message_to_json(naive)
    assert info.value.path == "lastUpdateAttempt"


def test_timestamp_with_offset() -> None:
    back = message_from_json(wkt.Timestamp, "1970-01-01T01:00:00.5+01:00")
    assert (back.seconds, back.nanos) == (0, 500_000_000)


def test_64_bit_wrappers_are_strings_both_ways() -> None:
    assert message_to_json(wkt.Int64Value(value=-(2**63))) == "-9223372036854775808"
    assert message_to_json(wkt.UInt64Value(value=2**64 - 1)) == "18446744073709551615"
    zone = ClusterCommonLbConfigZoneAwareLbConfig(min_cluster_size=2**64 - 1)
    assert message_to_json(zone) == {"minClusterSize": "18446744073709551615"}
    assert message_to_json(zone) == official_dict(zone)
    back = message_from_json(
        ClusterCommonLbConfigZoneAwareLbConfig, {"minClusterSize": "18446744073709551615"}
    )
    assert back.min_cluster_size == 2**64 - 1
    with pytest.warns(DeprecationWarning):  # the field is deprecated in Istio's API
        provider = message_from_json(
            MeshConfigExtensionProviderStackdriverProvider, {"maxNumberOfAttributes": "-5"}
        )
    assert provider.max_number_of_attributes == -5


def test_bytes_value() -> None:
    assert message_to_json(wkt.BytesValue(value=b"\xff\xfe")) == "//4="
    assert message_to_json_text(wkt.BytesValue(value=b"\xff\xfe")) == '"//4="'
    assert message_from_json(wkt.BytesValue, "__4").value == b"\xff\xfe"  # URL-safe, no padding
    assert message_from_json(wkt.BytesValue, "//4=").value == b"\xff\xfe"
    with pytest.raises(JsonParseError, match="base64"):
        message_from_json(wkt.BytesValue, "not base64!")


def test_json_names_with_digits() -> None:
    envoy = OutlierDetection(consecutive_5xx=3, enforcing_consecutive_5xx=100)
    assert message_to_json(envoy) == {"consecutive5xx": 3, "enforcingConsecutive5xx": 100}
    assert message_to_json(envoy) == official_dict(envoy)
    istio = IstioOutlierDetection(consecutive_5xx_errors=0)
    assert message_to_json(istio) == {"consecutive5xxErrors": 0} == official_dict(istio)
    # proto field names are accepted too, as json_format does
    assert message_from_json(OutlierDetection, {"consecutive_5xx": 3}).consecutive_5xx == 3
    with pytest.raises(JsonParseError, match="more than once"):
        message_from_json(OutlierDetection, {"consecutive_5xx": 3, "consecutive5xx": 4})


@pytest.mark.parametrize("value", [0.1, 1e-45, 3.4028234663852886e38, 16777217.0, -2.5, 1 / 3])
def test_float32_prints_shortest_form(value: float) -> None:
    msg = wkt.FloatValue(value=value)
    assert message_to_json(msg) == official_dict(msg)
    assert message_to_json_text(msg) == str(official_dict(msg))
    assert message_to_json(wkt.FloatValue(value=0.1)) == 0.1


def test_negative_zero_is_not_the_default() -> None:
    from istio_sdk.api.envoy.type.v3 import Percent

    assert (
        message_to_json(Percent(value=-0.0))
        == {"value": -0.0}
        == official_dict(Percent(value=-0.0))
    )
    assert message_to_json(Percent(value=0.0)) == {} == official_dict(Percent(value=0.0))


def test_non_finite_floats() -> None:
    assert message_to_json(wkt.DoubleValue(value=math.inf)) == "Infinity"
    assert message_to_json(wkt.FloatValue(value=-math.inf)) == "-Infinity"
    assert message_to_json(wkt.DoubleValue(value=math.nan)) == "NaN"
    assert math.isnan(message_from_json(wkt.DoubleValue, "NaN").value)
    with pytest.raises(JsonParseError, match="string"):
        message_from_json(wkt.DoubleValue, math.nan)
    assert math.isinf(message_from_json(wkt.DoubleValue, math.inf, lenient=True).value)
    with pytest.raises(JsonParseError, match="out of range for float"):
        message_from_json(wkt.FloatValue, 1e39)


def test_any() -> None:
    assert message_to_json(wkt.Any()) == {} == official_dict(wkt.Any())
    assert message_from_json(wkt.Any, {}) == wkt.Any()
    with pytest.raises(JsonSerializeError):
        message_to_json(wkt.Any(value=b"\x08\x01"))
    packed = wkt.Any.pack(Locality(region="eu", zone="a"))
    assert message_to_json(packed) == {
        "@type": "type.googleapis.com/envoy.config.core.v3.Locality",
        "region": "eu",
        "zone": "a",
    }
    duration = wkt.Any.pack(wkt.Duration(seconds=1))
    as_json = {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s"}
    assert message_to_json(duration) == as_json == official_dict(duration)
    assert message_from_json(wkt.Any, as_json) == duration
    with pytest.raises(JsonParseError) as info:
        message_from_json(wkt.Any, {"@type": "type.googleapis.com/no.such.Type"})
    assert info.value.path == "@type"


@pytest.mark.parametrize(
    "paths", [[], ["a"], ["foo_bar.baz_qux", "x"], ["a1.b2_c"], ["spec.http_route"]]
)
def test_field_mask_string_form(paths: list[str]) -> None:
    from google.protobuf import field_mask_pb2

    official = field_mask_pb2.FieldMask(paths=paths)
    text = field_mask_to_json(paths)
    assert text == official.ToJsonString()
    assert field_mask_from_json(text) == paths
    # The generated class: its JSON form is the string, both ways, as json_format has it.
    mask = wkt.FieldMask(paths=paths)
    assert bytes(mask) == official.SerializeToString(deterministic=True)
    assert message_to_json(mask) == text == official_dict(mask)
    assert message_from_json(wkt.FieldMask, text) == mask
    assert wire(mask) == official_from_json(wkt.FieldMask, text)
    packed = wkt.Any.pack(mask)
    as_json = {"@type": "type.googleapis.com/google.protobuf.FieldMask", "value": text}
    assert message_to_json(packed) == as_json == official_dict(packed)
    assert message_from_json(wkt.Any, as_json) == packed


@given(messages(wkt.FieldMask))
def test_generated_field_masks_match_json_format(mask: Any) -> None:
    text = message_to_json(mask)
    assert text == official_dict(mask)
    assert official_from_json(wkt.FieldMask, text) == wire(mask)
    assert message_from_json(wkt.FieldMask, text) == mask


def test_field_mask_json_must_be_a_string() -> None:
    with pytest.raises(JsonParseError):
        message_from_json(wkt.FieldMask, ["a"])
    with pytest.raises(JsonParseError):
        message_from_json(wkt.FieldMask, "a_b")


@pytest.mark.parametrize("bad", ["Foo", "a__b", "a_", "a_1"])
def test_field_mask_paths_without_json_form(bad: str) -> None:
    with pytest.raises(JsonSerializeError):
        field_mask_to_json([bad])


def test_struct_value_list() -> None:
    data = {"a": [1.5, "x", None, True, {"b": []}], "c": {}}
    struct = message_from_json(wkt.Struct, data)
    assert message_to_json(struct) == data == official_dict(struct)
    assert message_to_json(message_from_json(wkt.Value, None)) is None
    with pytest.raises(JsonSerializeError):
        message_to_json(wkt.Value())


def test_enums_by_name_and_number() -> None:
    rule = {"host": "a", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
    dr = message_from_json(DestinationRule, rule)
    assert dr.traffic_policy is not None and dr.traffic_policy.tls is not None
    assert dr.traffic_policy.tls.mode == ClientTlsSettingsTlSmode.ISTIO_MUTUAL
    assert message_to_json(dr) == rule
    by_number = message_from_json(DestinationRule, {"trafficPolicy": {"tls": {"mode": 3}}})
    assert by_number == message_from_json(DestinationRule, {"trafficPolicy": rule["trafficPolicy"]})
    unknown = message_from_json(DestinationRule, {"trafficPolicy": {"tls": {"mode": 42}}})
    assert message_to_json(unknown) == {"trafficPolicy": {"tls": {"mode": 42}}}


def test_int64_as_number_or_string_and_integral_floats() -> None:
    as_number = message_from_json(wkt.Int64Value, 2**62)
    assert as_number.value == 2**62 == message_from_json(wkt.Int64Value, str(2**62)).value
    dest = message_from_json(Destination, {"host": "h", "port": {"number": 80.0}})
    assert dest.port is not None and dest.port.number == 80
    with pytest.raises(JsonParseError, match="not an integer"):
        message_from_json(Destination, {"port": {"number": 80.5}})


def test_null_means_default() -> None:
    dest = message_from_json(Destination, {"host": None, "subset": "v1", "port": None})
    assert dest == Destination(subset="v1")


# --------------------------------------------------------------------------------------------
# Lenient input, as Istio's YAML writes it


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5m", datetime.timedelta(minutes=5)),
        ("1h30m", datetime.timedelta(hours=1, minutes=30)),
        ("100ms", datetime.timedelta(milliseconds=100)),
        ("1.5s", datetime.timedelta(seconds=1.5)),
        ("10us", datetime.timedelta(microseconds=10)),
        ("10\u00b5s", datetime.timedelta(microseconds=10)),
        ("0", datetime.timedelta(0)),
        ("-1m", datetime.timedelta(minutes=-1)),
        ("2h45m30.5s", datetime.timedelta(hours=2, minutes=45, seconds=30.5)),
        ("1000ns", datetime.timedelta(microseconds=1)),
    ],
)
def test_lenient_go_durations(text: str, expected: datetime.timedelta) -> None:
    tcp = message_from_json(
        ConnectionPoolSettingsTcpSettings, {"connectTimeout": text}, lenient=True
    )
    assert tcp.connect_timeout == expected
    if not text.endswith("s") or not text[:-1].replace(".", "").lstrip("-").isdigit():
        with pytest.raises(JsonParseError):
            message_from_json(ConnectionPoolSettingsTcpSettings, {"connectTimeout": text})


def go_duration_string(nanos: int) -> str:
    """What Go's time.Duration.String() prints (e.g. "1h2m3.5s", "1.5ms", "0s")."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    rest = abs(nanos)

    def frac(value: int, scale: int) -> str:
        whole, part = divmod(value, scale)
        digits = str(part).rjust(len(str(scale)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if rest < 1_000:
        return f"{sign}{rest}ns"
    if rest < 1_000_000:
        return f"{sign}{frac(rest, 1_000)}\u00b5s"
    if rest < 1_000_000_000:
        return f"{sign}{frac(rest, 1_000_000)}ms"
    hours, rest = divmod(rest, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = frac(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


@given(st.integers(-(2**63) + 1, 2**63 - 1))
def test_lenient_reads_every_go_duration_string(nanos: int) -> None:
    text = go_duration_string(nanos)
    duration = message_from_json(wkt.Duration, text, lenient=True)
    assert duration.seconds * 10**9 + duration.nanos == nanos
    assert message_from_json(wkt.Duration, message_to_json(duration)) == duration


@given(st.data(), st.text(min_size=1, max_size=8))
def test_unknown_top_level_field_is_named(data: st.DataObject, key: str) -> None:
    cls = data.draw(st.sampled_from(all_message_types()), label="type")
    value = message_to_json(data.draw(messages(cls, max_depth=1), label="message"))
    if not isinstance(value, dict) or full_name(cls).startswith("google.protobuf."):
        return  # well-known types have their own JSON forms
    names = {f for f in dir(cls) if not f.startswith("__")}
    if key in value or key in names or key in ("@type",):
        return
    from istio_sdk.protojson import json_name

    if any(json_name(n.rstrip("_")) == key for n in names):
        return
    with pytest.raises(JsonParseError) as info:
        message_from_json(cls, {**value, key: 1}, path="spec")
    assert info.value.path == f"spec.{key}"
    assert "unknown field" in info.value.problem


@pytest.mark.parametrize("text", ["5x", "m", "1.5", "", "1h-5m", ".s", "1 s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(JsonParseError) as info:
        message_from_json(
            DestinationRule,
            {"trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": text}}}},
            path="spec",
            lenient=True,
        )
    assert info.value.path == "spec.trafficPolicy.connectionPool.tcp.connectTimeout"
    assert "duration" in info.value.problem


def test_lenient_yaml_map_keys() -> None:
    from istio_sdk.api.istio.mixer.v1 import CompressedAttributes

    msg = message_from_json(CompressedAttributes, {"int64s": {1: "5"}}, lenient=True)
    assert msg.int64s == {1: 5}
    with pytest.raises(JsonParseError, match="map keys must be strings"):
        message_from_json(CompressedAttributes, {"int64s": {1: "5"}})


# --------------------------------------------------------------------------------------------
# Errors name the path and the problem


def _vs_error(spec: Any) -> JsonParseError:
    with pytest.raises(JsonParseError) as info:
        message_from_json(VirtualService, spec, path="spec", lenient=True)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == f"{info.value.path}: {info.value.problem}"
    return info.value


def test_error_paths() -> None:
    route = [{"destination": {"host": "a"}}, {"destination": {"host": "b"}, "weight": "x"}]
    error = _vs_error({"hosts": ["h"], "http": [{"route": route}]})
    assert error.path == "spec.http[0].route[1].weight"
    assert "not an integer" in error.problem

    error = _vs_error({"http": [{"rout": []}]})
    assert error.path == "spec.http[0].rout"
    assert "unknown field" in error.problem

    error = _vs_error({"hosts": "h"})
    assert (error.path, error.problem) == ("spec.hosts", 'expected an array, got string "h"')

    error = _vs_error({"http": [{"route": [{"weight": 2**31}]}]})
    assert error.path == "spec.http[0].route[0].weight"
    assert "out of range for int32" in error.problem

    error = _vs_error({"http": [{"match": [{"uri": {"exact": "/", "prefix": "/"}}]}]})
    assert error.path == "spec.http[0].match[0].uri.prefix"
    assert "oneof" in error.problem

    error = _vs_error({"hosts": [None]})
    assert error.path == "spec.hosts[0]"

    error = _vs_error({"http": [{"headers": {"request": {"set": {"a": 1}}}}]})
    assert error.path == 'spec.http[0].headers.request.set["a"]'

    error = _vs_error([])
    assert error.path == "spec"
    assert "istio.networking.v1alpha3.VirtualService" in error.problem


def test_bad_enum_name() -> None:
    with pytest.raises(JsonParseError) as info:
        message_from_json(DestinationRule, {"trafficPolicy": {"tls": {"mode": "istio_mutual"}}})
    assert info.value.path == "trafficPolicy.tls.mode"
    assert "ISTIO_MUTUAL" in info.value.problem


def test_invalid_json_text() -> None:
    with pytest.raises(JsonParseError, match="invalid JSON"):
        message_from_json_text(VirtualService, "{")


def test_type_errors_for_non_messages() -> None:
    with pytest.raises(TypeError):
        message_to_json({"a": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        message_from_json(dict, {})  # type: ignore[type-var]
