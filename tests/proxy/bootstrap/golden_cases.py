"""The inputs of Istio's bootstrap golden tests (``pkg/bootstrap/instance_test.go``), as data.

Each case names a golden file in ``golden/`` (Istio's ``testdata/*_golden.json`` at
istio/istio commit 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c, kept verbatim; Apache 2.0)
and the inputs Istio's test used: the ProxyConfig (transcribed from its ``.proxycfg`` text
proto into proto3 JSON), extra environment and Pod annotations. Every case
shares the fixed options of that test: node id ``sidecar~1.2.3.4~foo~bar``, four instance
IPs (one repeated), the pilot SAN, ``/dev/stdout`` for outlier events, ports 15090/15021,
socket file ``test.sock`` and Istio version ``binary-1.0``.

Istio's testdata also holds ``legacy_stats_tags_regex_golden.json``, which no case of its
``TestGolden`` produces any more (it predates the overload manager and the compressors); it
is not kept here.

Istio's test also sets ``configPath`` to a temporary folder ``.../bootstrap/CASE`` (its
golden files show ``/tmp/bootstrap/CASE`` after its own path rewrite), ``customConfigFile``
to its template and ``statusPort`` to 15020 when unset; those are inputs here too.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import attrs

from istio_sdk import protojson
from istio_sdk.api.envoy.config.bootstrap.v3 import Bootstrap
from istio_sdk.api.istio.mesh.v1alpha1 import ProxyConfig
from istio_sdk.proxy.bootstrap import AgentOptions, build_bootstrap, node_metadata

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"

_BASE: dict[str, Any] = {
    "binaryPath": "/usr/local/bin/envoy",
    "serviceCluster": "istio-proxy",
    "drainDuration": "2s",
    "discoveryAddress": "istio-pilot:15010",
    "proxyAdminPort": 15000,
    "controlPlaneAuthPolicy": "NONE",
}
_BUSY: dict[str, Any] = {
    **_BASE,
    "drainDuration": "5s",
    "discoveryAddress": "mypilot:15011",
    "statsdUdpAddress": "10.1.1.1:9125",
    "envoyMetricsService": {
        "address": "metrics-service:15000",
        "tlsSettings": {
            "mode": "MUTUAL",
            "clientCertificate": "/etc/istio/ms/client.pem",
            "privateKey": "/etc/istio/ms/key.pem",
            "caCertificates": "/etc/istio/ms/ca.pem",
        },
    },
    "envoyAccessLogService": {"address": "accesslog-service:15000"},
    "proxyAdminPort": 15005,
    "controlPlaneAuthPolicy": "MUTUAL_TLS",
    "statNameLength": 200,
    "tracing": {"zipkin": {"address": "localhost:6000"}},
}
_RUNNING: dict[str, Any] = {
    **_BASE,
    "drainDuration": "5s",
    "discoveryAddress": "mypilot:1001",
    "statsdUdpAddress": "10.1.1.1:9125",
    "proxyAdminPort": 15005,
    "controlPlaneAuthPolicy": "MUTUAL_TLS",
    "statNameLength": 200,
    "tracing": {"zipkin": {"address": "localhost:6000"}},
}
_RUNNING_ENV = {
    "ISTIO_META_ISTIO_PROXY_SHA": "istio-proxy:sha",
    "ISTIO_META_INTERCEPTION_MODE": "REDIRECT",
    "ISTIO_META_ISTIO_VERSION": "release-3.1",
    "ISTIO_META_POD_NAME": "svc-0-0-0-6944fb884d-4pgx8",
    "POD_NAME": "svc-0-0-0-6944fb884d-4pgx8",
    "POD_NAMESPACE": "test",
    "INSTANCE_IP": "10.10.10.1",
    "ISTIO_METAJSON_LABELS": (
        '{"version": "v1alpha1", "app": "test", "istio-locality":"regionA.zoneB.sub_zoneC"}'
    ),
}
_INSECURE_PATH = {"istio.io/insecurepath": '{"paths":["/metrics","/live"]}'}
_MAX_CONN = "ISTIO_META_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS"
_UPSTREAM = (
    "upstream_rq_1xx,upstream_rq_2xx,upstream_rq_3xx,upstream_rq_4xx,upstream_rq_5xx,"
    "upstream_rq_time,upstream_cx_tx_bytes_total,upstream_cx_rx_bytes_total,upstream_cx_total"
)
_DOWNSTREAM = _UPSTREAM.replace("upstream", "downstream")


@attrs.frozen
class GoldenCase:
    name: str
    proxy_config: Mapping[str, Any] = attrs.field(factory=lambda: dict(_BASE))
    env: Mapping[str, str] = attrs.field(factory=dict)
    annotations: Mapping[str, str] | None = None
    compliance_policy: str = ""
    secure_metrics_port: int = 0
    secure_merged_metrics_port: int = 0
    golden_name: str = ""
    proxy_config_base: str = ""
    """The case whose ``.proxycfg`` Istio's test loaded, when not this one (its folder name)."""

    @property
    def golden(self) -> pathlib.Path:
        return GOLDEN / f"{self.golden_name or self.name}.json"

    def inputs(self) -> tuple[ProxyConfig, dict[str, str], dict[str, str], AgentOptions]:
        """ProxyConfig, environment, annotations and agent options, as Istio's test made them."""
        config = dict(self.proxy_config)
        config["configPath"] = f"/tmp/bootstrap/{self.proxy_config_base or self.name}"
        config["customConfigFile"] = "envoy_bootstrap.json"
        config.setdefault("statusPort", 15020)
        if _MAX_CONN in self.env:
            config["proxyMetadata"] = {_MAX_CONN: self.env[_MAX_CONN]}
        proxy_config = protojson.message_from_json(ProxyConfig, config)
        env = {"ISTIO_METAJSON_LABELS": "{}"}
        if self.annotations is not None:
            env["ISTIO_METAJSON_ANNOTATIONS"] = json.dumps(self.annotations)
        env.update(self.env)
        options = AgentOptions(
            node_id="sidecar~1.2.3.4~foo~bar",
            instance_ips=("10.3.3.3", "10.4.4.4", "10.5.5.5", "10.6.6.6", "10.4.4.4"),
            pilot_san=("spiffe://cluster.local/ns/istio-system/sa/istio-pilot-service-account",),
            outlier_log_path="/dev/stdout",
            envoy_prometheus_port=15090,
            envoy_status_port=15021,
            envoy_secure_metrics_port=self.secure_metrics_port,
            envoy_secure_merged_metrics_port=self.secure_merged_metrics_port,
            workload_identity_socket_file="test.sock",
            istio_version="binary-1.0",
            compliance_policy=self.compliance_policy,
        )
        return proxy_config, env, dict(self.annotations or {}), options

    def build(self) -> Bootstrap:
        proxy_config, env, annotations, options = self.inputs()
        node = node_metadata(env, proxy_config, options, annotations=annotations, labels=None)
        return build_bootstrap(
            node,
            proxy_config,
            options,
            annotations=node.metadata.get("ANNOTATIONS") or {},
            env={},
        )


CASES: tuple[GoldenCase, ...] = (
    GoldenCase("xdsproxy"),
    GoldenCase(
        "auth",
        {**_BASE, "discoveryAddress": "istio-pilot:15011", "controlPlaneAuthPolicy": "MUTUAL_TLS"},
    ),
    GoldenCase(
        "authsds",
        {**_BASE, "discoveryAddress": "istio-pilot:15011", "controlPlaneAuthPolicy": "MUTUAL_TLS"},
    ),
    GoldenCase("default"),
    GoldenCase("ambient", env={"ISTIO_META_ENABLE_HBONE": "true"}),
    GoldenCase(
        "explicit_internal_address",
        {
            **_BASE,
            "runtimeValues": {"envoy.reloadable_features.explicit_internal_address_config": "true"},
        },
    ),
    GoldenCase("running", _RUNNING, env=_RUNNING_ENV, annotations=_INSECURE_PATH),
    GoldenCase("runningsds", _RUNNING, env=_RUNNING_ENV, annotations=_INSECURE_PATH),
    GoldenCase(
        "tracing_lightstep",
        {
            **_BASE,
            "tracing": {
                "lightstep": {
                    "address": "lightstep-satellite:8080",
                    "accessToken": "abcdefg1234567",
                }
            },
        },
    ),
    GoldenCase("tracing_zipkin", {**_BASE, "tracing": {"zipkin": {"address": "localhost:6000"}}}),
    GoldenCase("tracing_datadog", {**_BASE, "tracing": {"datadog": {"address": "localhost:8126"}}}),
    GoldenCase(
        "metrics_no_statsd",
        {
            **{
                k: v
                for k, v in _BUSY.items()
                if k not in ("statsdUdpAddress", "envoyAccessLogService", "tracing")
            },
            "proxyAdminPort": 15000,
        },
    ),
    GoldenCase("tracing_none", {**_BASE, "tracing": {}}),
    GoldenCase("all", _BUSY),
    GoldenCase(
        "stats_inclusion",
        {**_BASE, "extraStatTags": ["dlp_success"]},
        annotations={
            "sidecar.istio.io/statsInclusionPrefixes": "prefix1,prefix2,http.{pod_ip}_",
            "sidecar.istio.io/statsInclusionSuffixes": f"suffix1,suffix2,{_UPSTREAM},{_DOWNSTREAM}",
            "sidecar.istio.io/statsInclusionRegexps": (
                "http.[0-9]*\\.[0-9]*\\.[0-9]*\\.[0-9]*_8080.downstream_rq_time"
            ),
            "sidecar.istio.io/extraStatTags": "dlp_status,dlp_error",
            "sidecar.istio.io/statsHistogramBuckets": (
                '{"istio":[1,5,10,50,100,500,1000,5000,10000],'
                '"envoy":[1,5,10,25,50,100,250,500,1000,2500,5000,10000]}'
            ),
        },
    ),
    GoldenCase(
        "tracing_tls",
        {
            **_BASE,
            "tracing": {
                "zipkin": {"address": "localhost:6000"},
                "tlsSettings": {"mode": "SIMPLE", "caCertificates": "/etc/zipkin/ca.pem"},
            },
        },
    ),
    GoldenCase(
        "tracing_tls_custom_sni",
        {
            **_BASE,
            "tracing": {
                "zipkin": {"address": "localhost:6000"},
                "tlsSettings": {
                    "mode": "SIMPLE",
                    "caCertificates": "/etc/zipkin/ca.pem",
                    "sni": "zipkin-custom-sni",
                },
            },
        },
    ),
    GoldenCase(
        "lrs",
        compliance_policy="fips-140-2",
        env={
            "ISTIO_META_LOAD_STATS_CONFIG_JSON": (
                '{"api_type": "GRPC", "transport_api_version": "V3"}'
            )
        },
    ),
    GoldenCase(
        "stats_flush_interval", _BUSY, annotations={"sidecar.istio.io/statsFlushInterval": "10s"}
    ),
    GoldenCase(
        "stats_eviction_interval",
        _BUSY,
        annotations={"sidecar.istio.io/statsEvictionInterval": "10s"},
    ),
    GoldenCase(
        "invalid_stats_eviction_interval",
        _BUSY,
        annotations={"sidecar.istio.io/statsEvictionInterval": "11s"},
    ),
    GoldenCase(
        "stats_interval",
        _BUSY,
        annotations={
            "sidecar.istio.io/statsFlushInterval": "10s",
            "sidecar.istio.io/statsEvictionInterval": "20s",
        },
    ),
    GoldenCase("global_downstream_max_connections_meta", env={_MAX_CONN: "10000"}),
    GoldenCase(
        "global_downstream_max_connections_runtime",
        {**_BASE, "runtimeValues": {"overload.global_downstream_max_connections": "5000"}},
    ),
    GoldenCase(
        "global_downstream_max_connections_both",
        {**_BASE, "runtimeValues": {"overload.global_downstream_max_connections": "5000"}},
        env={_MAX_CONN: "20000"},
    ),
    GoldenCase(
        "global_downstream_connection_settings",
        {**_BASE, "connectionSettings": {"globalDownstreamConnectionLimit": 15000}},
    ),
    GoldenCase(
        "global_downstream_connection_settings_with_meta",
        {**_BASE, "connectionSettings": {"globalDownstreamConnectionLimit": 25000}},
        env={_MAX_CONN: "10000"},
    ),
    GoldenCase("stats_compression", {**_BASE, "statsCompression": False}),
    GoldenCase(
        "secure_metrics",
        secure_metrics_port=15091,
        secure_merged_metrics_port=15092,
        proxy_config_base="default",
    ),
)

# The one environment-dependent rewrite Istio's test applies to what it generated before
# comparing (``correctForEnvDifference``): the XDS socket lives in the test's temporary
# folder, so every ``.../XDS`` pipe path is written as ``/tmp/XDS``. The access-token path of
# Lightstep is rewritten the same way. Nothing else is rewritten: locality comes out empty
# here as it does there (no platform metadata).
_XDS_PATH = re.compile(r'("path": ")[^"]*/XDS(")')
_LIGHTSTEP = re.compile(r'("accessTokenFile": ")[^"]*(lightstep_access_token\.txt")')


def normalise(json_text: str) -> str:
    """Apply Istio's own golden-test rewrites to generated JSON text."""
    text = _XDS_PATH.sub(r"\1/tmp/XDS\2", json_text)
    return _LIGHTSTEP.sub(r"\1/test-path/\2", text)
