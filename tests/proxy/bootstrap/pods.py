"""Pods as pilot-agent sees them: the istio-proxy container's environment, labels, annotations.

``SIDECAR`` is what the sidecar injector writes (``PROXY_CONFIG`` from the mesh's default
config, ``ISTIO_META_*`` identity, downward-API variables); ``GATEWAY`` is an ingress gateway
Deployment (``pilot-agent proxy router``, mesh config from a mounted file); ``ROUTER`` a plain
router with an IPv6 address.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs

from istio_sdk.api.envoy.config.bootstrap.v3 import Bootstrap
from istio_sdk.proxy.bootstrap import ProxyRole, bootstrap_for_pod


@attrs.frozen
class Pod:
    role: ProxyRole
    env: Mapping[str, str]
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None
    mesh_config: str | None = None

    instance_ips: tuple[str, ...] | None = None

    def bootstrap(self) -> Bootstrap:
        return bootstrap_for_pod(
            self.env,
            self.role,
            annotations=self.annotations,
            labels=self.labels,
            mesh_config=self.mesh_config,
            instance_ips=self.instance_ips,
        )


_COMMON = {
    "PILOT_CERT_PROVIDER": "istiod",
    "CA_ADDR": "istiod.istio-system.svc:15012",
    "SERVICE_ACCOUNT": "bookinfo-reviews",
    "HOST_IP": "192.168.0.7",
    "ISTIO_CPU_LIMIT": "2",
    "ISTIO_META_CLUSTER_ID": "Kubernetes",
    "ISTIO_META_NODE_NAME": "node-1",
    "ISTIO_META_INTERCEPTION_MODE": "REDIRECT",
    "ISTIO_META_MESH_ID": "cluster.local",
    "TRUST_DOMAIN": "cluster.local",
}

SIDECAR = Pod(
    ProxyRole.SIDECAR,
    env={
        **_COMMON,
        "POD_NAME": "reviews-v1-5b7c9c5f4b-x2x9z",
        "POD_NAMESPACE": "bookinfo",
        "INSTANCE_IP": "10.244.1.17",
        "PROXY_CONFIG": json.dumps(
            {
                "discoveryAddress": "istiod.istio-system.svc:15012",
                "tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}},
                "proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"},
            }
        ),
        "ISTIO_META_POD_PORTS": '[{"containerPort":9080,"protocol":"TCP"}]',
        "ISTIO_META_APP_CONTAINERS": "reviews",
        "ISTIO_META_WORKLOAD_NAME": "reviews-v1",
        "ISTIO_META_OWNER": "kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/reviews-v1",
        "ISTIO_META_DNS_CAPTURE": "true",
    },
    labels={
        "app": "reviews",
        "version": "v1",
        "pod-template-hash": "5b7c9c5f4b",
        "service.istio.io/canonical-name": "reviews",
        "topology.istio.io/locality": "us-east1.us-east1-b",
    },
    annotations={
        "sidecar.istio.io/status": '{"initContainers":["istio-init"]}',
        "proxy.istio.io/config": "holdApplicationUntilProxyStarts: true\nconcurrency: 2\n",
        "sidecar.istio.io/statsInclusionPrefixes": "http.{pod_ip}_",
    },
)

GATEWAY = Pod(
    ProxyRole.GATEWAY,
    env={
        **_COMMON,
        "POD_NAME": "istio-ingressgateway-7d4f8b9c6d-abcde",
        "POD_NAMESPACE": "istio-system",
        "INSTANCE_IP": "10.244.0.9",
        "SERVICE_ACCOUNT": "istio-ingressgateway-service-account",
        "ISTIO_META_WORKLOAD_NAME": "istio-ingressgateway",
        "ISTIO_META_ROUTER_MODE": "sni-dnat",
        "ISTIO_META_UNPRIVILEGED_POD": "true",
    },
    labels={"app": "istio-ingressgateway", "istio": "ingressgateway"},
    annotations={},
    mesh_config=(
        "defaultConfig:\n"
        "  discoveryAddress: istiod.istio-system.svc:15012\n"
        "  tracing:\n"
        "    datadog:\n"
        "      address: $(HOST_IP):8126\n"
        "trustDomain: cluster.local\n"
    ),
)

ROUTER = Pod(
    ProxyRole.ROUTER,
    env={
        "POD_NAME": "edge-0",
        "POD_NAMESPACE": "edge",
        "INSTANCE_IP": "fd00:10::5",
        "PROXY_CONFIG": '{"controlPlaneAuthPolicy": "NONE", "discoveryAddress": "istiod:15010"}',
        "ISTIO_DELTA_XDS": "false",
    },
)

DUAL_STACK = Pod(
    ProxyRole.SIDECAR,
    env={
        "POD_NAME": "dual-0",
        "POD_NAMESPACE": "ns",
        "INSTANCE_IP": "10.0.0.7",
        "ISTIO_DUAL_STACK": "true",
        "ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL": "true",
        "ENVOY_SECURE_METRICS_PORT": "15091",
        "ENVOY_SECURE_MERGED_METRICS_PORT": "15092",
        "ISTIO_META_ENABLE_SELF_DISCOVERY": "true",
    },
    annotations={"proxy.istio.io/config": "tracing: {lightstep: {address: 'ls:8080'}}"},
    instance_ips=("10.0.0.7", "fd00::7"),
)

TELEMETRY = Pod(
    ProxyRole.SIDECAR,
    env={
        "POD_NAME": "tele-0",
        "POD_NAMESPACE": "obs",
        "INSTANCE_IP": "10.0.0.8",
        "ISTIO_META_LOAD_STATS_CONFIG_JSON": '{"api_type": "GRPC", "transport_api_version": "V3"}',
        "PROXY_CONFIG": json.dumps(
            {
                "statsdUdpAddress": "statsd.obs:9125",
                "tracing": {
                    "zipkin": {"address": "zipkin.obs:9411"},
                    "tlsSettings": {"mode": "ISTIO_MUTUAL", "subjectAltNames": ["zipkin.obs"]},
                },
                "envoyMetricsService": {
                    "address": "ms.obs:15000",
                    "tlsSettings": {"mode": "ISTIO_MUTUAL"},
                    "tcpKeepalive": {"probes": 3, "time": "60s", "interval": "10s"},
                },
                "envoyAccessLogService": {
                    "address": "als.obs:15000",
                    "tlsSettings": {"mode": "SIMPLE", "caCertificates": "/etc/als/ca.pem"},
                },
                "runtimeValues": {"re2.max_program_size.error_level": ""},
            }
        ),
    },
)

PODS = {"sidecar": SIDECAR, "gateway": GATEWAY, "router": ROUTER}
"""The three roles; ``DUAL_STACK`` and ``TELEMETRY`` exercise the optional listeners,
clusters, TLS modes and sinks."""
