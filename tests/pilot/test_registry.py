"""The service registry: programmatic services, ServiceEntry and WorkloadEntry semantics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.api.istio.networking import v1alpha3 as networking
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.push_context import PushContext, PushContextError
from istio_sdk.pilot.registry import (
    Endpoint,
    RegistryError,
    Resolution,
    Service,
    ServicePort,
    ServiceRegistry,
    endpoints_from_service_entry,
    fqdn,
    register_service_entry,
    services_from_service_entry,
)

SE = networking.ServiceEntry
WE = networking.WorkloadEntry


def test_fqdn_expands_short_names_only() -> None:
    assert fqdn("reviews", "bookinfo") == "reviews.bookinfo.svc.cluster.local"
    assert fqdn("reviews.bookinfo.svc.cluster.local", "x") == "reviews.bookinfo.svc.cluster.local"
    assert fqdn("api.example.com", "x") == "api.example.com"
    assert fqdn("*", "x") == "*"
    assert fqdn("svc", "ns", "corp.local") == "svc.ns.svc.corp.local"


def test_programmatic_registration_and_snapshot_isolation() -> None:
    registry = ServiceRegistry()
    svc = Service("a.ns.svc.cluster.local", "ns", [ServicePort(80, "http")])
    registry.register_service(svc, [Endpoint("10.0.0.1")])
    snap = registry.snapshot()
    registry.set_endpoints(svc.hostname, "ns", [Endpoint("10.0.0.2"), Endpoint("10.0.0.3")])
    assert [e.address for e in snap.endpoints_of(svc)] == ["10.0.0.1"]
    assert [e.address for e in registry.snapshot().endpoints_of(svc)] == ["10.0.0.2", "10.0.0.3"]
    assert registry.snapshot().revision > snap.revision
    # Re-registering without endpoints keeps the existing ones.
    registry.register_service(svc)
    assert len(registry.snapshot().endpoints_of(svc)) == 2
    registry.remove_service(svc.hostname, "ns")
    assert registry.services() == []
    with pytest.raises(RegistryError, match=r"no service a\.ns"):
        registry.set_endpoints(svc.hostname, "ns", [])


def test_invalid_values_raise_registry_errors() -> None:
    with pytest.raises(RegistryError, match=r"number must be in 1\.\.65535"):
        ServicePort(0)
    with pytest.raises(RegistryError, match="weight"):
        Endpoint("10.0.0.1", weight=0)
    with pytest.raises(RegistryError, match="declares a port number twice"):
        Service("a.b", "ns", [ServicePort(80), ServicePort(80, "other")])
    with pytest.raises(RegistryError, match="needs a namespace"):
        Service("a.b", "", [ServicePort(80)])


def test_protocol_is_inferred_from_port_name() -> None:
    assert ServicePort(80, "http-web").is_http
    assert ServicePort(80, "grpc").effective_protocol == "GRPC"
    assert ServicePort(80, "grpc-web").effective_protocol == "GRPC-WEB"
    assert ServicePort(80, "grpc-web-ui").effective_protocol == "GRPC-WEB"
    assert not ServicePort(3306, "mysql").is_http
    assert ServicePort(80, "x", protocol="http2").effective_protocol == "HTTP2"


def test_static_service_entry_with_port_maps_and_target_port() -> None:
    spec = SE(
        hosts=["db.internal", "legacy"],
        addresses=["240.0.0.1"],
        ports=[
            networking.ServicePort(number=80, name="http", protocol="HTTP", target_port=8080),
            networking.ServicePort(number=9000, name="grpc", protocol="GRPC"),
        ],
        resolution=networking.ServiceEntryResolution.STATIC,
        endpoints=[
            WE(address="10.0.0.1", ports={"http": 18080}, labels={"v": "1"}, locality="r/z"),
            WE(address="10.0.0.2", weight=5),
        ],
    )
    services = services_from_service_entry(spec, "se", "ops")
    assert [s.hostname for s in services] == ["db.internal", "legacy.ops.svc.cluster.local"]
    assert services[0].resolution is Resolution.STATIC
    assert services[0].addresses == ("240.0.0.1",)
    eps = endpoints_from_service_entry(spec, "ops")
    http, grpc = services[0].ports
    assert eps[0].port_for(http) == 18080  # the endpoint's own port map wins
    assert eps[1].port_for(http) == 8080  # then targetPort
    assert eps[1].port_for(grpc) == 9000  # then the service port itself
    assert eps[1].weight == 5
    assert eps[0].locality_parts == ("r", "z", "")


def test_dns_service_entry_without_endpoints_resolves_each_host() -> None:
    spec = SE(
        hosts=["a.example.com", "b.example.com"],
        ports=[networking.ServicePort(number=443, name="tls", protocol="TLS")],
        resolution=networking.ServiceEntryResolution.DNS,
        location=networking.ServiceEntryLocation.MESH_EXTERNAL,
    )
    registry = ServiceRegistry()
    services = register_service_entry(registry, spec, "ext", "default")
    snap = registry.snapshot()
    assert all(s.mesh_external and s.resolution is Resolution.DNS for s in services)
    assert [e.address for e in snap.endpoints_of(services[0])] == ["a.example.com"]
    assert [e.address for e in snap.endpoints_of(services[1])] == ["b.example.com"]


def test_none_resolution_has_no_endpoints() -> None:
    spec = SE(
        hosts=["*.wiki.org"],
        ports=[networking.ServicePort(number=80, name="http")],
        resolution=networking.ServiceEntryResolution.NONE,
    )
    (svc,) = services_from_service_entry(spec, "wiki", "default")
    assert svc.resolution is Resolution.NONE
    assert endpoints_from_service_entry(spec, "default", host=svc.hostname) == ()


def test_workload_selector_picks_workload_entries_in_the_same_namespace() -> None:
    spec = SE(
        hosts=["vm.example"],
        ports=[networking.ServicePort(number=80, name="http")],
        resolution=networking.ServiceEntryResolution.STATIC,
        workload_selector=networking.WorkloadSelector(labels={"app": "vm"}),
    )
    configs = [
        ConfigEntry("ServiceEntry", "vm", "prod", spec),
        ConfigEntry("WorkloadEntry", "vm1", "prod", WE(address="1.1.1.1", labels={"app": "vm"})),
        ConfigEntry(
            "WorkloadEntry", "vm2", "prod", WE(address="1.1.1.2", labels={"app": "vm", "x": "y"})
        ),
        ConfigEntry("WorkloadEntry", "other", "prod", WE(address="1.1.1.3", labels={"app": "no"})),
        ConfigEntry(
            "WorkloadEntry", "elsewhere", "dev", WE(address="1.1.1.4", labels={"app": "vm"})
        ),
    ]
    ctx = PushContext.build(configs)
    svc = ctx.service_for_host("vm.example")
    assert svc is not None
    assert sorted(e.address for e in ctx.endpoints_of(svc)) == ["1.1.1.1", "1.1.1.2"]
    assert dict(ctx.endpoints_of(svc)[1].labels) == {"app": "vm", "x": "y"}


def test_bad_service_entry_is_reported_with_its_name() -> None:
    good = SE(hosts=["ok.example"], ports=[networking.ServicePort(number=80, name="http")])
    ctx_configs = [
        ConfigEntry("ServiceEntry", "broken", "ns", SE(hosts=[])),
        ConfigEntry("ServiceEntry", "fine", "ns", good),
    ]
    with pytest.raises(PushContextError, match=r"ServiceEntry ns/broken: spec\.hosts"):
        PushContext.build(ctx_configs, strict=True)
    # Lenient (the default): the bad entry is skipped and reported, the rest still works.
    ctx = PushContext.build(ctx_configs)
    assert ctx.service_for_host("ok.example") is not None
    (problem,) = ctx.errors
    assert "ServiceEntry ns/broken" in problem
    bad_port = SE(hosts=["x.y"], ports=[networking.ServicePort(number=70000, name="http")])
    with pytest.raises(RegistryError, match=r"spec\.ports\[0\]"):
        services_from_service_entry(bad_port, "p", "ns")


def test_export_to_limits_visibility() -> None:
    svc = Service("a.b", "ns", [ServicePort(80)], export_to=["."])
    assert svc.visible_from("ns")
    assert not svc.visible_from("other")
    assert Service("a.b", "ns", [ServicePort(80)], export_to=["x"]).visible_from("x")
    assert Service("a.b", "ns", [ServicePort(80)]).visible_from("anything")


@given(
    number=st.integers(1, 65535),
    target=st.integers(0, 65535),
    mapped=st.one_of(st.none(), st.integers(1, 65535)),
)
def test_endpoint_port_precedence(number: int, target: int, mapped: int | None) -> None:
    port = ServicePort(number, "http", target_port=target)
    ep = Endpoint("10.0.0.1", ports={"http": mapped} if mapped else {})
    expected = mapped or target or number
    assert ep.port_for(port) == expected
