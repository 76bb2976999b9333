"""istio_sdk.testing.resources: every drawn resource is valid Istio config, and Pilot builds it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from istio_sdk import validate
from istio_sdk.config import Resource
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import ServiceRegistry
from istio_sdk.testing import resources

KINDS = {
    "VirtualService": resources.virtual_services(),
    "DestinationRule": resources.destination_rules(),
    "ServiceEntry": resources.service_entries(),
    "Gateway": resources.gateways(),
    "AuthorizationPolicy": resources.authorization_policies(),
    "PeerAuthentication": resources.peer_authentications(),
}


@given(st.sampled_from(sorted(KINDS)).flatmap(lambda kind: st.tuples(st.just(kind), KINDS[kind])))
def test_every_drawn_resource_is_valid(drawn: tuple[str, Resource]) -> None:
    kind, resource = drawn
    assert resource.kind == kind
    assert [p for p in validate(resource) if p.is_error] == []


@settings(max_examples=10)
@given(st.lists(resources.istio_resources(namespace="default"), max_size=6))
def test_pilot_builds_a_push_context_from_drawn_config(drawn: list[Resource]) -> None:
    unique = list({r.key: r for r in drawn}.values())
    PushContext.build(unique, ServiceRegistry().snapshot())


@given(resources.virtual_services(namespace="shop", hosts=["reviews"]))
def test_pinned_fields_are_kept(vs: Resource) -> None:
    assert vs.metadata.namespace == "shop"
    assert list(vs.spec.hosts) == ["reviews"]
    for route in vs.spec.http:
        assert sum(d.weight for d in route.route) == 100
