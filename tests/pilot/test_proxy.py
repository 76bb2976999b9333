"""Proxy identity (istio_sdk.pilot.proxy): Istio node ids, node metadata, label selectors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.api.envoy.config.core.v3 import Locality, Node
from istio_sdk.api.google.protobuf import Struct
from istio_sdk.pilot.proxy import NodeId, ProxyInfo, ProxyType, parse_node_id


def test_an_istio_node_id() -> None:
    assert parse_node_id("router~10.0.0.1,10.0.0.2~gw-1.ingress~ingress.svc.cluster.local") == (
        NodeId(ProxyType.ROUTER, ("10.0.0.1", "10.0.0.2"), "ingress", "ingress.svc.cluster.local")
    )
    # Without POD.NAMESPACE, the namespace comes from the DNS domain.
    assert parse_node_id("sidecar~10.0.0.1~pod~prod.svc.cluster.local").namespace == "prod"


@pytest.mark.parametrize("node_id", ["", "x", "a~b~c", "a~b~c~d~e", "~~~"])
def test_other_ids_still_name_a_sidecar(node_id: str) -> None:
    parsed = parse_node_id(node_id)
    assert parsed.type is ProxyType.SIDECAR
    assert parsed.namespace == "" or node_id.count("~") == 3


@given(st.text(max_size=200))
def test_any_node_id_parses(node_id: str) -> None:
    proxy = ProxyInfo.from_node(Node(id=node_id))
    assert proxy.id == node_id
    assert proxy.namespace


def test_metadata_wins_over_the_id() -> None:
    node = Node(
        id="sidecar~10.0.0.1~pod.from-id~from-id.svc.cluster.local",
        metadata=Struct.from_dict(
            {
                "NAMESPACE": "from-meta",
                "INSTANCE_IPS": "10.9.9.9, 10.9.9.8",
                "LABELS": {"app": "web", "version": 2},
                "GENERATOR": "grpc",
            }
        ),
        locality=Locality(region="eu", zone="eu-1", sub_zone="a"),
    )
    proxy = ProxyInfo.from_node(node)
    assert proxy.namespace == "from-meta"
    assert proxy.ip_addresses == ("10.9.9.9", "10.9.9.8")
    assert dict(proxy.labels) == {"app": "web", "version": "2"}
    assert proxy.is_grpc
    assert proxy.locality == "eu/eu-1/a"


def test_selected_by() -> None:
    proxy = ProxyInfo("p", labels={"app": "web", "version": "v1"})
    assert proxy.selected_by({})
    assert proxy.selected_by({"app": "web"})
    assert not proxy.selected_by({"app": "web", "version": "v2"})
    assert not proxy.selected_by({"team": "x"})
