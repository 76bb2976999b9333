"""The type URL registry, Any packing and push ordering."""

from __future__ import annotations

import pytest

from istio_sdk import xds
from istio_sdk.api.envoy.config.cluster.v3 import Cluster
from istio_sdk.api.envoy.config.endpoint.v3 import ClusterLoadAssignment
from istio_sdk.api.envoy.config.listener.v3 import Listener
from istio_sdk.api.google.protobuf import Any
from istio_sdk.api.istio.networking.v1alpha3 import VirtualService


def test_every_registered_type_resolves_to_its_generated_class() -> None:
    for url in xds.known_type_urls():
        cls = xds.message_class(url)
        assert xds.type_url_of(cls) == url


def test_short_names_resolve() -> None:
    assert xds.resolve_type_url("clusters") == xds.CLUSTER
    assert xds.resolve_type_url("EDS") == xds.ENDPOINT
    assert xds.resolve_type_url("envoy.config.listener.v3.Listener") == xds.LISTENER
    with pytest.raises(xds.UnknownTypeUrlError, match="nope"):
        xds.resolve_type_url("nope")


def test_pack_unpack_round_trip_envoy_and_istio() -> None:
    cluster = Cluster(name="outbound|80||a.default.svc.cluster.local")
    packed = xds.pack(cluster)
    assert isinstance(packed, Any)
    assert packed.type_url == xds.CLUSTER
    assert xds.unpack(packed) == cluster
    vs = VirtualService(hosts=["a"])
    assert xds.unpack(xds.pack(vs)) == vs
    assert xds.type_url_of(vs) == "type.googleapis.com/istio.networking.v1alpha3.VirtualService"


def test_unpack_checks_expected_type_and_unknown_urls() -> None:
    packed = xds.pack(Listener(name="l"))
    with pytest.raises(ValueError, match="expected an Any of"):
        xds.unpack(packed, xds.CLUSTER)
    with pytest.raises(xds.UnknownTypeUrlError):
        xds.unpack(Any(type_url="type.googleapis.com/no.Such", value=b""))


def test_resource_names() -> None:
    assert xds.resource_name(Cluster(name="c")) == "c"
    assert xds.resource_name(ClusterLoadAssignment(cluster_name="c")) == "c"


def test_full_state_and_legacy_wildcard_types() -> None:
    assert xds.is_full_state(xds.LISTENER) and xds.is_full_state(xds.CLUSTER)
    assert not xds.is_full_state(xds.ROUTE) and not xds.is_full_state(xds.ENDPOINT)
    assert xds.is_legacy_wildcard(xds.CLUSTER) and not xds.is_legacy_wildcard(xds.SECRET)


def test_make_before_break_order() -> None:
    order = xds.in_push_order([xds.ROUTE, xds.LISTENER, xds.SECRET, xds.ENDPOINT, xds.CLUSTER])
    assert order == [xds.CLUSTER, xds.ENDPOINT, xds.LISTENER, xds.ROUTE, xds.SECRET]
