"""Everything the translators produce for the bundled example mesh prints as proto3 JSON.

proxy-config prints resources through istio_sdk.protojson, which must resolve every Any type
URL the translators pack (HTTP filters, TLS contexts, retry predicates, ...) to a generated
class; a type missing from codegen/envoy_roots.txt fails here.
"""

from __future__ import annotations

import pathlib

import pytest

from istio_sdk import load_resources, xds
from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort, ServiceRegistry
from istio_sdk.pilot.translate import generate
from istio_sdk.protojson import message_to_json

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "src" / "istio_sdk" / "examples"

PROXIES = {
    "sidecar": ProxyInfo.from_node(
        Node(id="sidecar~10.0.0.9~productpage-v1-1.bookinfo~bookinfo.svc.cluster.local")
    ),
    "grpc": ProxyInfo("grpc-client", namespace="bookinfo", generator="grpc"),
}


def _bookinfo_registry() -> ServiceRegistry:
    """The Kubernetes services the example mesh's config refers to."""
    registry = ServiceRegistry()
    for number, (name, versions) in enumerate(
        {
            "productpage": ["v1"],
            "details": ["v1"],
            "reviews": ["v1", "v2", "v3"],
            "ratings": ["v1"],
        }.items()
    ):
        registry.register_service(
            Service(f"{name}.bookinfo.svc.cluster.local", "bookinfo", [ServicePort(9080, "http")]),
            [
                Endpoint(f"10.1.{number}.{i}", labels={"app": name, "version": v})
                for i, v in enumerate(versions, start=1)
            ],
        )
    return registry


@pytest.mark.parametrize("proxy", sorted(PROXIES))
@pytest.mark.parametrize("type_url", [xds.LISTENER, xds.ROUTE, xds.CLUSTER, xds.ENDPOINT])
def test_every_generated_resource_prints_as_json(proxy: str, type_url: str) -> None:
    context = PushContext.build(load_resources(EXAMPLES), _bookinfo_registry())
    resources = generate(context, PROXIES[proxy], type_url, None)
    assert resources, f"the example mesh gives a {proxy} proxy no {type_url}"
    for name, message in resources.items():
        rendered = message_to_json(message)
        assert isinstance(rendered, dict), name
