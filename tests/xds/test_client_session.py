"""ClientSession: the requests an ADS client sends, SotW and delta."""

from __future__ import annotations

import pytest

from istio_sdk import xds
from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest

NODE = Node(id="sidecar~10.0.0.1~a.default~default.svc.cluster.local")


def sotw() -> xds.ClientSession:
    return xds.ClientSession(NODE, mode="sotw")


def test_first_request_carries_node_later_ones_do_not() -> None:
    c = sotw()
    first = c.subscribe(xds.CLUSTER)
    second = c.subscribe(xds.ENDPOINT, ["a"])
    assert isinstance(first, DiscoveryRequest) and first.node == NODE
    assert isinstance(second, DiscoveryRequest) and second.node is None
    assert first.resource_names == ["*"]
    assert second.resource_names == ["a"]


def test_resubscribing_the_same_names_sends_nothing() -> None:
    c = sotw()
    c.subscribe(xds.ENDPOINT, ["a", "b"])
    assert c.subscribe(xds.ENDPOINT, ["b"]) is None
    assert c.subscribe(xds.ENDPOINT, []) is None


def test_ack_carries_version_and_nonce_nack_keeps_old_version_and_reason() -> None:
    c = sotw()
    c.subscribe(xds.CLUSTER)
    u1 = c.receive_sotw(type_url=xds.CLUSTER, version_info="1", nonce="n1", resources={"a": 1})
    ack = c.ack(u1)
    assert (ack.version_info, ack.response_nonce, ack.error_detail) == ("1", "n1", None)
    u2 = c.receive_sotw(type_url=xds.CLUSTER, version_info="2", nonce="n2", resources={"b": 2})
    assert u2.removed == {"a"}
    nack = c.nack(u2, "bad cluster b")
    assert isinstance(nack, DiscoveryRequest)
    assert nack.version_info == "1"
    assert nack.response_nonce == "n2"
    assert nack.error_detail is not None and nack.error_detail.message == "bad cluster b"
    assert c.held_versions(xds.CLUSTER) == {"a": "1"}  # NACK keeps what was there
    assert c.accepted_version(xds.CLUSTER) == "1"


def test_answering_without_a_pending_response_is_a_protocol_error() -> None:
    c = sotw()
    c.subscribe(xds.CLUSTER)
    u = c.receive_sotw(type_url=xds.CLUSTER, version_info="1", nonce="n1", resources={})
    c.ack(u)
    with pytest.raises(xds.XdsProtocolError, match="state IDLE"):
        c.ack(u)


def test_superseded_response_cannot_be_answered() -> None:
    c = sotw()
    c.subscribe(xds.CLUSTER)
    old = c.receive_sotw(type_url=xds.CLUSTER, version_info="1", nonce="n1", resources={})
    c.receive_sotw(type_url=xds.CLUSTER, version_info="2", nonce="n2", resources={})
    with pytest.raises(xds.XdsProtocolError, match="superseded"):
        c.ack(old)


def test_response_for_unsubscribed_type_is_a_protocol_error() -> None:
    c = sotw()
    with pytest.raises(xds.XdsProtocolError, match="never subscribed"):
        c.receive_sotw(type_url=xds.ROUTE, version_info="1", nonce="n", resources={})


def test_subscription_change_while_awaiting_uses_last_answered_nonce() -> None:
    c = sotw()
    c.subscribe(xds.ENDPOINT, ["a"])
    u1 = c.receive_sotw(type_url=xds.ENDPOINT, version_info="1", nonce="n1", resources={})
    c.ack(u1)
    c.receive_sotw(type_url=xds.ENDPOINT, version_info="2", nonce="n2", resources={})
    change = c.subscribe(xds.ENDPOINT, ["b"])
    assert isinstance(change, DiscoveryRequest)
    assert change.response_nonce == "n1"  # n2 is not validated yet
    assert change.resource_names == ["a", "b"]


def test_unsubscribe_drops_names_and_held_resources() -> None:
    c = sotw()
    c.subscribe(xds.ENDPOINT, ["a", "b"])
    u = c.receive_sotw(
        type_url=xds.ENDPOINT, version_info="1", nonce="n1", resources={"a": 1, "b": 2}
    )
    c.ack(u)
    req = c.unsubscribe(xds.ENDPOINT, ["a"])
    assert isinstance(req, DiscoveryRequest) and req.resource_names == ["b"]
    assert c.held_versions(xds.ENDPOINT) == {"b": "1"}


def test_delta_subscribe_ack_nack_and_reconnect_with_initial_versions() -> None:
    c = xds.ClientSession(NODE, mode="delta")
    req = c.subscribe(xds.CLUSTER)
    assert isinstance(req, DeltaDiscoveryRequest)
    assert req.resource_names_subscribe == ["*"] and req.node == NODE
    u = c.receive_delta(
        type_url=xds.CLUSTER,
        system_version_info="1",
        nonce="n1",
        resources={"a": ("va", None), "b": ("vb", None)},
    )
    ack = c.ack(u)
    assert isinstance(ack, DeltaDiscoveryRequest)
    assert ack.response_nonce == "n1" and ack.error_detail is None
    assert not ack.resource_names_subscribe
    u2 = c.receive_delta(
        type_url=xds.CLUSTER, system_version_info="2", nonce="n2", resources={}, removed=["a"]
    )
    nack = c.nack(u2, "no")
    assert isinstance(nack, DeltaDiscoveryRequest) and nack.error_detail is not None
    c.subscribe(xds.ENDPOINT, ["x"])
    again = c.reconnect()
    assert [r.type_url for r in again] == [xds.CLUSTER, xds.ENDPOINT]
    first = again[0]
    assert isinstance(first, DeltaDiscoveryRequest)
    assert first.node == NODE
    assert first.initial_resource_versions == {"a": "va", "b": "vb"}
    assert first.resource_names_subscribe == ["*"]


def test_sotw_reconnect_resubscribes_with_last_accepted_version() -> None:
    c = sotw()
    c.subscribe(xds.LISTENER, ["l1"])
    c.ack(c.receive_sotw(type_url=xds.LISTENER, version_info="7", nonce="n", resources={}))
    (req,) = c.reconnect()
    assert isinstance(req, DiscoveryRequest)
    assert (req.version_info, req.response_nonce, req.resource_names) == ("7", "", ["l1"])
    assert req.node == NODE


def test_mode_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        xds.ClientSession(NODE, mode="both")  # type: ignore[arg-type]
    c = sotw()
    c.subscribe(xds.CLUSTER)
    with pytest.raises(xds.XdsProtocolError, match="delta response on a SotW session"):
        c.receive_delta(type_url=xds.CLUSTER, system_version_info="1", nonce="n", resources={})
