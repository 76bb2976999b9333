"""What pilot-agent writes for a sidecar, a gateway and a router, from their Pods."""

from __future__ import annotations

import json
from typing import Any

import pytest
from proxy.bootstrap.pods import GATEWAY, ROUTER, SIDECAR, Pod

from istio_sdk.api.istio.mesh.v1alpha1 import ProxyConfigTracingServiceName as TracingServiceName
from istio_sdk.proxy.bootstrap import (
    ProxyRole,
    bootstrap_for_pod,
    bootstrap_to_json,
    resolve_proxy_config,
)


def _json(pod: Pod) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(bootstrap_to_json(pod.bootstrap()))
    return value


def _cluster(doc: dict[str, Any], name: str) -> dict[str, Any]:
    clusters = {c["name"]: c for c in doc["staticResources"]["clusters"]}
    return clusters[name]


def _endpoint_address(cluster: dict[str, Any]) -> dict[str, Any]:
    lb = cluster["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]
    address: dict[str, Any] = lb["endpoint"]["address"]
    return address


def test_sidecar_node_identity_and_metadata() -> None:
    doc = _json(SIDECAR)
    node = doc["node"]
    assert node["id"] == (
        "sidecar~10.244.1.17~reviews-v1-5b7c9c5f4b-x2x9z.bookinfo~bookinfo.svc.cluster.local"
    )
    assert node["cluster"] == "reviews.bookinfo"
    assert node["locality"] == {"region": "us-east1", "zone": "us-east1-b"}
    meta = node["metadata"]
    assert meta["NAME"] == "reviews-v1-5b7c9c5f4b-x2x9z"
    assert meta["NAMESPACE"] == "bookinfo"
    assert meta["SERVICE_ACCOUNT"] == "bookinfo-reviews"
    assert meta["INSTANCE_IPS"] == "10.244.1.17"
    assert meta["CLUSTER_ID"] == "Kubernetes"
    assert meta["DNS_CAPTURE"] == "true"
    assert meta["POD_PORTS"] == '[{"containerPort":9080,"protocol":"TCP"}]'
    assert meta["PILOT_SAN"] == ["istiod.istio-system.svc"]
    assert "pod-template-hash" not in meta["LABELS"]
    assert meta["LABELS"]["istio-locality"] == "us-east1/us-east1-b"
    assert meta["ANNOTATIONS"]["sidecar.istio.io/status"] == '{"initContainers":["istio-init"]}'
    # The annotation's ProxyConfig on top of PROXY_CONFIG on top of Istio's defaults.
    proxy_config = meta["PROXY_CONFIG"]
    assert proxy_config["concurrency"] == 2
    assert proxy_config["holdApplicationUntilProxyStarts"] is True
    assert proxy_config["tracing"] == {"zipkin": {"address": "zipkin.istio-system:9411"}}
    assert proxy_config["drainDuration"] == "45s"


def test_sidecar_clusters_listeners_and_stats() -> None:
    doc = _json(SIDECAR)
    assert _endpoint_address(_cluster(doc, "xds-grpc")) == {
        "pipe": {"path": "./etc/istio/proxy/XDS"}
    }
    assert _endpoint_address(_cluster(doc, "sds-grpc")) == {
        "pipe": {"path": "./var/run/secrets/workload-spiffe-uds/socket"}
    }
    assert _endpoint_address(_cluster(doc, "zipkin"))["socketAddress"] == {
        "address": "zipkin.istio-system",
        "portValue": 9411,
    }
    assert doc["tracing"]["http"]["name"] == "envoy.tracers.zipkin"
    assert doc["dynamicResources"]["adsConfig"]["apiType"] == "DELTA_GRPC"
    assert doc["admin"]["address"]["socketAddress"] == {"address": "127.0.0.1", "portValue": 15000}
    listeners = {entry["name"]: entry for entry in doc["staticResources"]["listeners"]}
    assert set(listeners) == {"0.0.0.0_15090", "0.0.0.0_15021"}
    ready = listeners["0.0.0.0_15021"]["filterChains"][0]["filters"][0]["typedConfig"]
    route = ready["routeConfig"]["virtualHosts"][0]["routes"][0]
    assert route == {"match": {"prefix": "/healthz/ready"}, "route": {"cluster": "agent"}}
    assert _endpoint_address(_cluster(doc, "agent"))["socketAddress"]["portValue"] == 15020
    patterns = doc["statsConfig"]["statsMatcher"]["inclusionList"]["patterns"]
    # The annotation's {pod_ip} pattern, expanded for the Pod's IP.
    assert {"prefix": "http.10.244.1.17_"} in patterns
    assert patterns[0] == {"prefix": "reporter="}


def test_gateway_is_a_router_with_the_mesh_config_file() -> None:
    doc = _json(GATEWAY)
    assert doc["node"]["id"].startswith("router~10.244.0.9~istio-ingressgateway-")
    assert doc["node"]["cluster"] == "istio-ingressgateway.istio-system"
    assert doc["node"]["metadata"]["ROUTER_MODE"] == "sni-dnat"
    # Tracing from the mounted mesh config; $(HOST_IP) resolved from the environment.
    datadog = _cluster(doc, "datadog_agent")
    assert _endpoint_address(datadog)["socketAddress"] == {
        "address": "192.168.0.7",
        "portValue": 8126,
    }
    assert doc["tracing"]["http"]["typedConfig"]["serviceName"] == (
        "istio-ingressgateway.istio-system"
    )


def test_router_on_ipv6_with_state_of_the_world_ads() -> None:
    doc = _json(ROUTER)
    assert doc["node"]["id"] == "router~fd00:10::5~edge-0.edge~edge.svc.cluster.local"
    assert doc["admin"]["address"]["socketAddress"]["address"] == "::1"
    names = {entry["name"] for entry in doc["staticResources"]["listeners"]}
    assert names == {"::_15090", "::_15021"}
    assert doc["dynamicResources"]["adsConfig"]["apiType"] == "GRPC"
    # controlPlaneAuthPolicy NONE: no istiod certificate name to check.
    assert "PILOT_SAN" not in doc["node"]["metadata"]


def test_layers_of_proxy_config_in_pilot_agents_order() -> None:
    env = {
        "POD_NAME": "p",
        "POD_NAMESPACE": "ns",
        "INSTANCE_IP": "10.0.0.1",
        "PROXY_CONFIG": (
            '{"proxyAdminPort": 15100, "statusPort": 15120, "proxyMetadata": {"A": "env"},'
            ' "concurrency": 4}'
        ),
    }
    mesh = (
        "defaultConfig:\n  proxyAdminPort: 15200\n  drainDuration: 1m30s\n"
        "  proxyMetadata: {B: mesh}\n"
    )
    annotations = {
        "proxy.istio.io/config": "proxyAdminPort: 15300\nproxyMetadata:\n  A: annotation\n",
        "sidecar.istio.io/discoveryAddress": "istiod-canary.istio-system.svc:15012",
    }
    doc = json.loads(
        bootstrap_to_json(
            bootstrap_for_pod(env, ProxyRole.SIDECAR, annotations=annotations, mesh_config=mesh)
        )
    )
    proxy_config = doc["node"]["metadata"]["PROXY_CONFIG"]
    assert proxy_config["proxyAdminPort"] == 15300  # annotation beats PROXY_CONFIG and mesh
    assert proxy_config["statusPort"] == 15120  # PROXY_CONFIG beats the default
    assert proxy_config["drainDuration"] == "90s"  # the mesh file beats the default
    assert proxy_config["concurrency"] == 4
    assert proxy_config["proxyMetadata"] == {"A": "annotation", "B": "mesh"}  # merged per key
    assert proxy_config["discoveryAddress"] == "istiod-canary.istio-system.svc:15012"
    assert doc["node"]["metadata"]["PILOT_SAN"] == ["istiod-canary.istio-system.svc"]
    assert doc["admin"]["address"]["socketAddress"]["portValue"] == 15300
    assert _endpoint_address(_cluster(doc, "agent"))["socketAddress"]["portValue"] == 15120


def test_a_later_layer_names_fields_and_null_or_empty_names_none() -> None:
    env = '{"concurrency": 4, "serviceCluster": "from-env"}'
    # null keeps the layer below; a comment-only annotation changes nothing
    config = resolve_proxy_config(
        proxy_config_env=env, annotations={"proxy.istio.io/config": "concurrency: null"}
    )
    assert (config.concurrency, config.service_cluster) == (4, "from-env")
    config = resolve_proxy_config(
        proxy_config_env=env, annotations={"proxy.istio.io/config": "# nothing here"}
    )
    assert config.concurrency == 4
    # one member of the oneof replaces the other, as the later layer meant
    config = resolve_proxy_config(
        proxy_config_env=env,
        annotations={"proxy.istio.io/config": "tracingServiceName: CANONICAL_NAME_ONLY"},
    )
    assert (config.service_cluster, config.tracing_service_name) == (
        None,
        TracingServiceName.CANONICAL_NAME_ONLY,
    )


def test_environment_ports_and_flags() -> None:
    env = {
        "POD_NAME": "p",
        "POD_NAMESPACE": "ns",
        "INSTANCE_IP": "10.0.0.1",
        "ENVOY_STATUS_PORT": "16021",
        "ENVOY_PROMETHEUS_PORT": "16090",
        "EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true",
        "ISTIO_META_ENABLE_HBONE": "true",
        "WORKLOAD_IDENTITY_SOCKET_FILE": "spire.sock",
    }
    doc = json.loads(bootstrap_to_json(bootstrap_for_pod(env)))
    names = {entry["name"] for entry in doc["staticResources"]["listeners"]}
    assert names == {"0.0.0.0_16090", "0.0.0.0_16021"}
    meta = doc["node"]["metadata"]
    assert meta["ENVOY_STATUS_PORT"] == 16021
    assert meta["EXIT_ON_ZERO_ACTIVE_CONNECTIONS"] == "true"
    assert meta["METADATA_DISCOVERY"] == "true"  # follows ENABLE_HBONE
    assert doc["bootstrapExtensions"][0]["name"] == "metadata_discovery"
    patterns = doc["statsConfig"]["statsMatcher"]["inclusionList"]["patterns"]
    assert {"suffix": "downstream_cx_active"} in patterns
    sds = _endpoint_address(_cluster(doc, "sds-grpc"))
    assert sds == {"pipe": {"path": "./var/run/secrets/workload-spiffe-uds/spire.sock"}}


@pytest.mark.parametrize("role", list(ProxyRole))
def test_node_type_of_each_role(role: ProxyRole) -> None:
    env = {"POD_NAME": "p", "POD_NAMESPACE": "ns", "INSTANCE_IP": "10.0.0.1"}
    doc = json.loads(bootstrap_to_json(bootstrap_for_pod(env, role)))
    expected = "router" if role is ProxyRole.GATEWAY else role.value
    assert doc["node"]["id"] == f"{expected}~10.0.0.1~p.ns~ns.svc.cluster.local"
    # Waypoints always use delta ADS and metadata discovery.
    if role is ProxyRole.WAYPOINT:
        assert doc["bootstrapExtensions"][0]["name"] == "metadata_discovery"


def test_dual_stack_listeners_and_proxy_protocol_on_the_status_port() -> None:
    env = {
        "POD_NAME": "p",
        "POD_NAMESPACE": "ns",
        "ISTIO_DUAL_STACK": "true",
        "ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL": "true",
        "PROXY_CONFIG": '{"proxyMetadata": {"METRICS_LOCALHOST_ACCESS_ONLY": "true"}}',
    }
    result = bootstrap_for_pod(env, instance_ips=("fd00::7", "10.0.0.7"))
    doc = json.loads(bootstrap_to_json(result))
    assert doc["node"]["id"] == "sidecar~fd00::7~p.ns~ns.svc.cluster.local"
    listeners = {entry["name"]: entry for entry in doc["staticResources"]["listeners"]}
    # The first IP's family leads; metrics only on loopback when asked.
    assert set(listeners) == {"::1_15090", "::_15021"}
    extra = listeners["::1_15090"]["additionalAddresses"][0]["address"]["socketAddress"]
    assert extra["address"] == "127.0.0.1"
    ready = listeners["::_15021"]
    assert ready["additionalAddresses"][0]["address"]["socketAddress"]["address"] == "0.0.0.0"
    assert ready["listenerFilters"][0]["typedConfig"] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3."
        "ProxyProtocol",
        "allowRequestsWithoutProxyProtocol": True,
    }
    zipkin_free = {c["name"] for c in doc["staticResources"]["clusters"]}
    assert "zipkin" not in zipkin_free
    # Without ISTIO_DUAL_STACK a mixed proxy stays on IPv4, as in pilot-agent.
    single = bootstrap_for_pod(
        {"POD_NAME": "p", "POD_NAMESPACE": "ns"}, instance_ips=("fd00::7", "10.0.0.7")
    )
    assert single.admin is not None and single.admin.address is not None
    assert single.admin.address.socket_address is not None
    assert single.admin.address.socket_address.address == "127.0.0.1"


def test_our_pilot_reads_the_node_it_writes() -> None:
    """The node in the bootstrap is what Pilot parses a proxy from (ProxyInfo.from_node)."""
    from istio_sdk.pilot.proxy import ProxyInfo, ProxyType

    sidecar = ProxyInfo.from_node(SIDECAR.bootstrap().node)
    assert sidecar.type is ProxyType.SIDECAR
    assert sidecar.namespace == "bookinfo"
    assert sidecar.ip_addresses == ("10.244.1.17",)
    assert sidecar.labels["app"] == "reviews"
    assert sidecar.locality == "us-east1/us-east1-b/"
    assert sidecar.dns_domain == "bookinfo.svc.cluster.local"
    gateway = ProxyInfo.from_node(GATEWAY.bootstrap().node)
    assert gateway.type is ProxyType.ROUTER
    assert gateway.selected_by({"istio": "ingressgateway"})


def test_telemetry_services_tls_modes_and_sinks() -> None:
    from proxy.bootstrap.pods import TELEMETRY

    doc = _json(TELEMETRY)
    zipkin = _cluster(doc, "zipkin")["transportSocket"]["typedConfig"]
    # ISTIO_MUTUAL: the workload certificate and root over SDS, SNI "tracer", no ALPN
    # (Zipkin speaks HTTP/1.1).
    assert zipkin["sni"] == "tracer"
    common = zipkin["commonTlsContext"]
    assert common["tlsCertificateSdsSecretConfigs"][0]["name"] == "default"
    assert common["combinedValidationContext"]["validationContextSdsSecretConfig"]["name"] == (
        "ROOTCA"
    )
    validation = common["combinedValidationContext"]["defaultValidationContext"]
    assert validation["matchSubjectAltNames"] == [{"exact": "zipkin.obs"}]
    assert "alpnProtocols" not in common
    metrics = _cluster(doc, "envoy_metrics_service")
    assert metrics["transportSocket"]["typedConfig"]["commonTlsContext"]["alpnProtocols"] == [
        "istio",
        "h2",
    ]
    assert metrics["upstreamConnectionOptions"]["tcpKeepalive"] == {
        "keepaliveProbes": 3,
        "keepaliveTime": 60,
        "keepaliveInterval": 10,
    }
    als = _cluster(doc, "envoy_accesslog_service")["transportSocket"]["typedConfig"]
    root = als["commonTlsContext"]["combinedValidationContext"]["validationContextSdsSecretConfig"]
    assert root["name"] == "file-root:/etc/als/ca.pem"
    assert [sink["name"] for sink in doc["statsSinks"]] == [
        "envoy.stat_sinks.metrics_service",
        "envoy.stat_sinks.statsd",
    ]
    assert doc["clusterManager"]["loadStatsConfig"] == {
        "apiType": "GRPC",
        "transportApiVersion": "V3",
    }
    # runtimeValues "" removes one of Istio's default flags.
    static_layer = doc["layeredRuntime"]["layers"][0]["staticLayer"]
    assert "re2.max_program_size.error_level" not in static_layer
