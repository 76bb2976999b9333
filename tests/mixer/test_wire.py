"""Attribute bags through CompressedAttributes and Report batches, as Istio 1.3 encodes them."""

from __future__ import annotations

import datetime
import ipaddress
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.api.istio.mixer.v1 import CompressedAttributes, ReportRequest, StringMap
from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.codec import DecodeError
from istio_sdk.mixer import (
    DEFAULT_MANIFEST,
    GLOBAL_DICTIONARY,
    AttributeBag,
    AttributesError,
    GlobalWordCountError,
    ReportEncoding,
    decode_attributes,
    decode_report,
    encode_attributes,
    encode_report,
)
from istio_sdk.timeutil import Duration, Timestamp

words = st.one_of(st.sampled_from(GLOBAL_DICTIONARY), st.text(max_size=12))
values = st.one_of(
    words,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.builds(
        Timestamp.from_parts, st.integers(-62135596800, 253402300799), st.integers(0, 999_999_999)
    ),
    st.builds(Duration.from_parts, st.integers(-(10**11), 10**11), st.integers(0, 999_999_999)),
    st.ip_addresses(),
    st.dictionaries(words, words, max_size=4),
)
bags = st.dictionaries(words, values, max_size=8).map(AttributeBag)


def _manifest_for(*all_bags: AttributeBag) -> dict[str, ValueType]:
    return {n: b.value_type(n) for b in all_bags for n in b}


def _ips_as_bytes(bag: AttributeBag) -> AttributeBag:
    return AttributeBag(
        {
            n: v.packed if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address) else v
            for n, v in bag.items()
        }
    )


def _wire(message: CompressedAttributes) -> CompressedAttributes:
    return CompressedAttributes.parse(bytes(message))


@given(bags)
def test_a_bag_survives_compressed_attributes(bag: AttributeBag) -> None:
    decoded = decode_attributes(_wire(encode_attributes(bag)), manifest=_manifest_for(bag))
    assert decoded == bag
    assert all(decoded.value_type(n) == bag.value_type(n) for n in bag)


@given(st.lists(bags, max_size=5), st.sampled_from(list(ReportEncoding)))
def test_report_batches_survive_both_encodings(
    batch: list[AttributeBag], encoding: ReportEncoding
) -> None:
    requests = encode_report(batch, encoding=encoding)
    decoded = [
        bag for request in requests for bag in decode_report(ReportRequest.parse(bytes(request)))
    ]
    # without a manifest (a name may change type along the batch) addresses come back as bytes
    assert decoded == [_ips_as_bytes(bag) for bag in batch]
    if encoding is ReportEncoding.INDEPENDENT:
        assert len(requests) == 1
        assert all(not s.words for s in requests[0].attributes)


def test_check_attributes_use_global_indexes_and_negative_own_words() -> None:
    bag = AttributeBag({"request.method": "GET", "x-custom": "GET", "request.size": 5})
    message = encode_attributes(bag)
    assert message.words == ["x-custom"]
    method = GLOBAL_DICTIONARY.index("request.method")
    get = GLOBAL_DICTIONARY.index("GET")
    assert message.strings == {method: get, -1: get}
    assert message.int64s == {GLOBAL_DICTIONARY.index("request.size"): 5}


def test_quoted_dictionary_words_are_not_the_plain_strings() -> None:
    # "200" is word 136; "'200'" (with quotes) is word 94 and never what a bag's "200" means
    message = encode_attributes({"response.grpc_status": "200", "context.proxy_error_code": "-"})
    assert sorted(message.strings.values())[-1] == GLOBAL_DICTIONARY.index("200")
    assert message.words == ["-"]


def test_a_smaller_global_word_count_sends_later_words_as_own_words() -> None:
    message = encode_attributes({"destination.service.host": "a"}, global_word_count=111)
    assert message.words == ["destination.service.host", "a"]
    assert message.strings == {-1: -2}


def test_report_shares_one_word_list_as_default_words() -> None:
    [request] = encode_report([{"a": "b"}, {"a": "c"}])
    assert request.default_words == ["a", "b", "c"]
    assert request.repeated_attributes_semantics.value == ReportEncoding.INDEPENDENT
    assert [s.strings for s in request.attributes] == [{-1: -2}, {-1: -3}]


def test_delta_sends_changes_and_restarts_when_an_attribute_goes() -> None:
    first = {"a": "b", "n": 1}
    requests = encode_report([first, {"a": "b", "n": 2}, {"a": "b"}], encoding=ReportEncoding.DELTA)
    assert len(requests) == 2
    assert requests[0].attributes[1].strings == {} and requests[0].attributes[1].int64s == {-3: 2}
    assert decode_report(requests[1]) == [{"a": "b"}]


def test_a_delta_report_cannot_expand_into_millions_of_values() -> None:
    # 0.6 MB on the wire: 20,000 attributes, then 20,000 sets that change one of them; decoded
    # naively that is 400 million values (half a minute of CPU and gigabytes)
    count = 20_000
    first = CompressedAttributes(
        words=[f"w{i}" for i in range(count)], int64s={-i - 1: i for i in range(count)}
    )
    later = [CompressedAttributes(words=["w0"], int64s={-1: i}) for i in range(count)]
    raw = bytes(ReportRequest(attributes=[first, *later]))
    assert len(raw) < 600_000
    with pytest.raises(AttributesError, match="more than 1000000 attribute values"):
        decode_report(ReportRequest.parse(raw))
    # unchanged sets cost nothing: they are the bag before them, not a copy
    empty = ReportRequest(attributes=[first, *[CompressedAttributes(words=["x"])] * count])
    bags = decode_report(ReportRequest.parse(bytes(empty)))
    assert len(bags) == count + 1 and bags[-1] == bags[0] and len(bags[-1]) == count
    # an honest batch within the bound still decodes in full
    batch = [{"a": str(i), "n": i} for i in range(1000)]
    for request in encode_report(batch, encoding=ReportEncoding.DELTA):
        assert decode_report(request) == batch


def test_delta_later_set_with_a_bad_index_is_an_error_even_when_lenient() -> None:
    first_bad = ReportRequest(
        attributes=[
            CompressedAttributes(strings={0: 1, -9: 1}),
            CompressedAttributes(int64s={1: 2}),
        ]
    )
    assert decode_report(first_bad, strict=False) == [
        {"source.ip": "source.port"},
        {"source.ip": "source.port", "source.port": 2},
    ]
    later_bad = ReportRequest(
        attributes=[CompressedAttributes(strings={0: 1}), CompressedAttributes(strings={-9: 1})]
    )
    with pytest.raises(AttributesError, match="invalid attributes: attribute name index -9"):
        decode_report(later_bad, strict=False)


def test_independent_sets_with_bad_indexes_are_absent_when_lenient() -> None:
    request = ReportRequest(
        attributes=[CompressedAttributes(strings={0: 1, -4: 1, 1: 999})],
        repeated_attributes_semantics=ReportEncoding.INDEPENDENT.value,  # type: ignore[arg-type]
    )
    assert decode_report(request, strict=False) == [{"source.ip": "source.port"}]
    with pytest.raises(AttributesError, match="index -4 names no word"):
        decode_report(request)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (CompressedAttributes(strings={-1: 0}), "name index -1"),
        (CompressedAttributes(int64s={500: 1}), "name index 500"),
        (CompressedAttributes(strings={0: 2**30}), "value index 1073741824"),
        (CompressedAttributes(string_maps={15: StringMap(entries={-3: 0})}), "map key index -3"),
        (CompressedAttributes(words=["a"], strings={-1: 0}, int64s={-1: 1}), "more than once"),
        (CompressedAttributes(words=["source.ip"], strings={0: 0}), "not under the index"),
    ],
)
def test_undecodable_attributes_are_typed_errors(
    message: CompressedAttributes, reason: str
) -> None:
    with pytest.raises(AttributesError, match=reason):
        decode_attributes(_wire(message))


def test_lenient_decoding_reads_as_mixers_check() -> None:
    # the value index is unknown: that attribute is absent, the rest stands
    message = CompressedAttributes(strings={0: 2**30, 1: 0}, int64s={1: 7})
    assert decode_attributes(message, strict=False) == {"source.port": "source.ip"}
    # one index in several typed maps: strings > string_maps > int64s > ... > bytes
    both = CompressedAttributes(int64s={0: 5}, bytes={0: b"x"}, string_maps={0: StringMap()})
    assert decode_attributes(both, strict=False) == {"source.ip": {}}
    assert decode_attributes(
        CompressedAttributes(int64s={0: 5}, bools={0: True}), strict=False
    ) == {"source.ip": 5}
    # a name that is also a message word resolves to the message word, not its global index
    shadowed = CompressedAttributes(words=["source.ip"], strings={0: 1, -1: 2})
    assert decode_attributes(shadowed, strict=False) == {"source.ip": GLOBAL_DICTIONARY[2]}


def test_global_word_count_as_mixer_checks_it() -> None:
    message = CompressedAttributes(strings={221: 0})
    assert decode_attributes(message, global_word_count=0) == {"context.proxy_version": "source.ip"}
    with pytest.raises(GlobalWordCountError) as caught:
        decode_attributes(message, global_word_count=223)
    assert str(caught.value) == (
        "inconsistent global dictionary versions used: mixer knows 222 words, caller knows 223"
    )
    with pytest.raises(GlobalWordCountError):
        decode_report(ReportRequest(global_word_count=300))


def test_ip_bytes_become_addresses_by_the_manifest() -> None:
    message = encode_attributes(
        {"source.ip": ipaddress.ip_address("::1"), "origin.ip": b"\x01\x02\x03\x04"}
    )
    assert decode_attributes(message) == {
        "source.ip": b"\x00" * 15 + b"\x01",
        "origin.ip": b"\x01\x02\x03\x04",
    }
    typed = decode_attributes(message, manifest=DEFAULT_MANIFEST)
    assert typed == {
        "source.ip": ipaddress.IPv6Address("::1"),
        "origin.ip": ipaddress.IPv4Address("1.2.3.4"),
    }


def test_garbage_bytes_are_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        CompressedAttributes.parse(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")


def test_a_one_megabyte_value_round_trips() -> None:
    big = "x" * 1_000_000
    assert decode_attributes(_wire(encode_attributes({"request.path": big}))) == {
        "request.path": big
    }


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"a": 2**63}, "int64 range"),
        ({"a": datetime.datetime(2020, 1, 1)}, "time zone"),
        ({"a": object()}, "not an attribute value type"),
        ({"a": {"k": 1}}, "only str keys and values"),
        ({"a": "\ud800"}, "not valid UTF-8"),
        ({"\udc00": "a"}, "not valid UTF-8"),
        ({"a": datetime.timedelta(days=10**8)}, "Duration's range"),
    ],
)
def test_bad_values_are_refused_when_the_bag_is_built(
    values: dict[str, object], reason: str
) -> None:
    with pytest.raises(AttributesError, match=reason):
        AttributeBag(values)


def test_bags_are_immutable_mappings() -> None:
    headers = {"a": "b"}
    bag = AttributeBag({"request.headers": headers, "n": math.pi})
    headers["a"] = "changed"
    assert bag["request.headers"] == {"a": "b"}
    with pytest.raises(TypeError):
        bag["request.headers"]["a"] = "c"  # type: ignore[index]
    with pytest.raises(AttributeError):
        bag._values = {}  # type: ignore[misc]
    assert bag.updated(n=1) == {"request.headers": {"a": "b"}, "n": 1}
    assert bag.without("n") == {"request.headers": {"a": "b"}}
    assert bag == {"request.headers": {"a": "b"}, "n": math.pi}


indexes = st.integers(-6, 230)
random_messages = st.builds(
    CompressedAttributes,
    words=st.lists(words, max_size=5),
    strings=st.dictionaries(indexes, indexes, max_size=4),
    int64s=st.dictionaries(indexes, st.integers(-(2**63), 2**63 - 1), max_size=3),
    bools=st.dictionaries(indexes, st.booleans(), max_size=3),
    bytes=st.dictionaries(indexes, st.binary(max_size=17), max_size=3),
    durations=st.dictionaries(
        indexes,
        st.builds(Duration.from_parts, st.integers(-(10**12), 10**12), st.integers(0, 10**9 - 1)),
        max_size=2,
    ),
    string_maps=st.dictionaries(
        indexes,
        st.builds(StringMap, entries=st.dictionaries(indexes, indexes, max_size=3)),
        max_size=2,
    ),
)


@given(random_messages)
def test_random_messages_decode_to_a_bag_or_a_typed_error(message: CompressedAttributes) -> None:
    wire = _wire(message)
    lenient = decode_attributes(wire, strict=False, manifest=DEFAULT_MANIFEST)
    assert isinstance(lenient, AttributeBag)
    try:
        strict = decode_attributes(wire, manifest=DEFAULT_MANIFEST)
    except AttributesError:
        return
    # what decodes strictly, Mixer's lenient reading sees the same way
    assert strict == lenient


def test_invalid_utf8_words_fail_in_the_codec() -> None:
    raw = bytes(CompressedAttributes(words=["a"], strings={-1: 0})).replace(b"a", b"\xff")
    with pytest.raises(DecodeError, match="UTF-8"):
        CompressedAttributes.parse(raw)
