"""Hand-assembled envelopes must parse exactly like the generated messages."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from istio_sdk import xds
from istio_sdk.api.envoy.config.cluster.v3 import Cluster
from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryResponse, DiscoveryResponse
from istio_sdk.xds import wire

text = st.text(max_size=40)
names = st.lists(st.text(min_size=1, max_size=20), max_size=5, unique=True)


@given(version=text, nonce=text, cluster_names=names)
def test_sotw_response_bytes_parse_as_discovery_response(
    version: str, nonce: str, cluster_names: list[str]
) -> None:
    clusters = [Cluster(name=n) for n in cluster_names]
    data = wire.encode_discovery_response(
        version_info=version,
        type_url=xds.CLUSTER,
        nonce=nonce,
        resources=[wire.encode_any(xds.CLUSTER, bytes(c)) for c in clusters],
    )
    framed = wire.encode_discovery_response_framed(
        version_info=version,
        type_url=xds.CLUSTER,
        nonce=nonce,
        framed_resources=[
            wire.resource_field(wire.encode_any(xds.CLUSTER, bytes(c))) for c in clusters
        ],
    )
    assert framed == data
    parsed = DiscoveryResponse.parse(data)
    assert parsed.version_info == version
    assert parsed.nonce == nonce
    assert parsed.type_url == xds.CLUSTER
    assert [xds.unpack(a) for a in parsed.resources] == clusters
    env = wire.decode_discovery_response(data)
    assert (env.version_info, env.nonce, env.type_url) == (version, nonce, xds.CLUSTER)
    assert [wire.peek_name(r.value) for r in env.resources] == cluster_names


@given(version=text, nonce=text, cluster_names=names, removed=names)
def test_delta_response_bytes_parse_as_delta_response(
    version: str, nonce: str, cluster_names: list[str], removed: list[str]
) -> None:
    items = [
        wire.encode_delta_resource(
            n, f"v-{n}", wire.encode_any(xds.CLUSTER, bytes(Cluster(name=n)))
        )
        for n in cluster_names
    ]
    data = wire.encode_delta_response(
        system_version_info=version,
        type_url=xds.CLUSTER,
        nonce=nonce,
        resources=items,
        removed_resources=removed,
    )
    parsed = DeltaDiscoveryResponse.parse(data)
    assert parsed.system_version_info == version
    assert parsed.removed_resources == removed
    assert [(r.name, r.version) for r in parsed.resources] == [(n, f"v-{n}") for n in cluster_names]
    assert [xds.unpack(r.resource).name for r in parsed.resources] == cluster_names
    env = wire.decode_delta_response(data)
    assert env.removed_resources == tuple(removed)
    assert [r.name for r in env.resources] == cluster_names


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1])
def test_varint_round_trip(value: int) -> None:
    encoded = wire.encode_varint(value)
    assert wire._read_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize("garbage", [b"\x0a\xff", b"\x0a\x05ab", b"\x0f", b"\x80"])
def test_truncated_or_bad_bytes_raise_malformed(garbage: bytes) -> None:
    with pytest.raises(xds.MalformedMessageError):
        wire.decode_discovery_response(garbage)
