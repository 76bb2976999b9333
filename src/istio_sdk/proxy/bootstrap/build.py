"""The Envoy bootstrap pilot-agent writes, built as a typed ``envoy.config.bootstrap.v3.Bootstrap``.

:func:`build_bootstrap` takes the node (:mod:`.node`), the effective ProxyConfig and the agent's
options and returns the message: the node, Istio's runtime flags, admin on the ProxyConfig's
admin port, ADS through the ``xds-grpc`` cluster (the agent's XDS socket), the ``sds-grpc``
cluster (the workload identity socket), the Prometheus listener (15090, routing
``/stats/prometheus`` to admin, compressed), the readiness listener (15021, routing
``/healthz/ready`` to the agent), Istio's stats tags and matcher, the tracer cluster and
provider, stats sinks, LRS and the overload manager's connection limit.
"""

from __future__ import annotations

import datetime
import ipaddress
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import betterproto2

from istio_sdk import protojson
from istio_sdk.api.envoy.config.accesslog import v3 as accesslog
from istio_sdk.api.envoy.config.bootstrap import v3 as bootstrap
from istio_sdk.api.envoy.config.cluster import v3 as cluster
from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.config.endpoint import v3 as endpoint
from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.config.metrics import v3 as metrics
from istio_sdk.api.envoy.config.overload import v3 as overload
from istio_sdk.api.envoy.config.route import v3 as route
from istio_sdk.api.envoy.config.trace import v3 as trace
from istio_sdk.api.envoy.extensions.access_loggers.file import v3 as file_log
from istio_sdk.api.envoy.extensions.compression.brotli.compressor import v3 as brotli
from istio_sdk.api.envoy.extensions.compression.gzip.compressor import v3 as gzip
from istio_sdk.api.envoy.extensions.compression.zstd.compressor import v3 as zstd
from istio_sdk.api.envoy.extensions.filters.http.compressor import v3 as compressor
from istio_sdk.api.envoy.extensions.filters.http.router import v3 as router
from istio_sdk.api.envoy.extensions.filters.listener.proxy_protocol import v3 as proxy_protocol
from istio_sdk.api.envoy.extensions.filters.listener.tls_inspector import v3 as tls_inspector
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from istio_sdk.api.envoy.extensions.resource_monitors.downstream_connections import v3 as dc
from istio_sdk.api.envoy.extensions.transport_sockets.tls import v3 as tls
from istio_sdk.api.envoy.extensions.upstreams.http import v3 as upstream_http
from istio_sdk.api.envoy.type.matcher import v3 as matcher
from istio_sdk.api.google.protobuf import Any as AnyMessage
from istio_sdk.api.google.protobuf import Struct
from istio_sdk.api.istio.mesh.v1alpha1 import ProxyConfig, RemoteService
from istio_sdk.api.istio.networking.v1alpha3 import (
    ClientTlsSettings,
    ClientTlsSettingsTlSmode,
    ConnectionPoolSettingsTcpSettingsTcpKeepalive,
)
from istio_sdk.api.udpa.type import v1 as udpa
from istio_sdk.proxy.bootstrap import _stats
from istio_sdk.proxy.bootstrap._errors import BootstrapError
from istio_sdk.proxy.bootstrap.node import AgentOptions, BootstrapNode, service_cluster

__all__ = ["XDS_CLUSTER", "SDS_CLUSTER", "build_bootstrap", "runtime_flags"]

XDS_CLUSTER = "xds-grpc"
SDS_CLUSTER = "sds-grpc"
SDS_FILES_CLUSTER = "sds-files-grpc"
WORKLOAD_IDENTITY_DIR = "./var/run/secrets/workload-spiffe-uds"
FILE_CREDENTIAL_SOCKET = "./var/run/secrets/credential-uds/files-socket"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
FIPS_140_2 = "fips-140-2"
TEXT_LOG_FORMAT = "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t"
JSON_LOG_FORMAT = {
    "time": "%Y-%m-%dT%T.%fZ",
    "level": "%l",
    "scope": "envoy %n",
    "msg": "%j",
    "caller": "%g:%#",
    "thread": "%t",
}
_STATS_CONTENT_TYPES = [
    "text/plain",
    "application/vnd.google.protobuf",
    "application/openmetrics-text",
    "application/openmetrics-protobuf",
]
_MAX_INT32 = 2**31 - 1
_ZERO = datetime.timedelta(0)
_ONE_SECOND = datetime.timedelta(seconds=1)


def _pack(message: betterproto2.Message) -> AnyMessage:
    return AnyMessage.pack(message)


def _typed_struct(type_url: str, value: Mapping[str, Any]) -> AnyMessage:
    return _pack(udpa.TypedStruct(type_url=type_url, value=Struct.from_dict(dict(value))))


def runtime_flags(proxy_config: ProxyConfig, compliance_policy: str = "") -> dict[str, Any]:
    """The ``global config`` runtime layer: Istio's defaults, then ProxyConfig's
    ``runtimeValues`` (``""`` removes a default; ``"true"``/``"false"`` become booleans)."""
    flags: dict[str, Any] = {
        "re2.max_program_size.error_level": "32768",
        "envoy.deprecated_features:envoy.config.listener.v3.Listener."
        "hidden_envoy_deprecated_use_original_dst": True,
        "envoy.reloadable_features.http_reject_path_with_fragment": False,
        "envoy.reloadable_features.fixed_heap_use_allocated": True,
        "envoy.reloadable_features.coalesce_lb_rebuilds_on_batch_update": False,
    }
    if compliance_policy == FIPS_140_2:
        flags["envoy.reloadable_features.google_grpc_disable_tls_13"] = True
    for key, value in proxy_config.runtime_values.items():
        if value == "":
            flags.pop(key, None)
        elif value in ("true", "false"):
            flags[key] = value == "true"
        else:
            flags[key] = value
    return flags


def _global_downstream_max_connections(proxy_config: ProxyConfig) -> int:
    settings = proxy_config.connection_settings
    if settings is not None and (settings.global_downstream_connection_limit or 0) > 0:
        return int(settings.global_downstream_connection_limit or 0)
    meta = proxy_config.proxy_metadata.get("ISTIO_META_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS")
    for candidate in (
        meta,
        proxy_config.runtime_values.get("overload.global_downstream_max_connections"),
    ):
        if candidate is not None:
            try:
                return int(candidate.strip())
            except ValueError:
                continue
    return _MAX_INT32


def _socket(address: str, port: int) -> core.Address:
    return core.Address(
        socket_address=core.SocketAddress(
            protocol=core.SocketAddressProtocol.TCP,
            address=address,
            port_value=port,
        )
    )


def _split_host_port(value: str, source: str, env: Mapping[str, str]) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise BootstrapError(source, f"expected HOST:PORT, got {value!r:.80}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise BootstrapError(source, f"an IPv6 host needs brackets: {value!r:.80}")
    if host == "$(HOST_IP)" and env.get("HOST_IP"):
        host = env["HOST_IP"]
    return host, int(port)


def _load_assignment(name: str, address: core.Address) -> endpoint.ClusterLoadAssignment:
    return endpoint.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint.LocalityLbEndpoints(
                lb_endpoints=[endpoint.LbEndpoint(endpoint=endpoint.Endpoint(address=address))]
            )
        ],
    )


def _pipe(path: str) -> core.Address:
    return core.Address(pipe=core.Pipe(path=path))


def _h2_options() -> dict[str, AnyMessage]:
    options = upstream_http.HttpProtocolOptions(
        explicit_http_config=upstream_http.HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=core.Http2ProtocolOptions()
        )
    )
    return {HTTP_PROTOCOL_OPTIONS: _pack(options)}


def _static_cluster(
    name: str, address: core.Address, timeout: datetime.timedelta
) -> cluster.Cluster:
    return cluster.Cluster(
        name=name,
        alt_stat_name=f"{name};",
        type=cluster.ClusterDiscoveryType.STATIC,
        connect_timeout=timeout,
        lb_policy=cluster.ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=_load_assignment(name, address),
    )


def _dns_cluster(
    name: str,
    host: str,
    port: int,
    dns_family: cluster.ClusterDnsLookupFamily,
    *,
    h2: bool = False,
    transport_socket: core.TransportSocket | None = None,
    refresh: datetime.timedelta | None = None,
    connection_options: cluster.UpstreamConnectionOptions | None = None,
) -> cluster.Cluster:
    built = cluster.Cluster(
        name=name,
        alt_stat_name=f"{name};",
        type=cluster.ClusterDiscoveryType.STRICT_DNS,
        respect_dns_ttl=True,
        dns_lookup_family=dns_family,
        connect_timeout=_ONE_SECOND,
        lb_policy=cluster.ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=_load_assignment(name, _socket(host, port)),
        transport_socket=transport_socket,
        upstream_connection_options=connection_options,
    )
    if h2:
        built.typed_extension_protocol_options = _h2_options()
    if refresh is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            built.dns_refresh_rate = refresh
    return built


def _xds_cluster(config_path: str) -> cluster.Cluster:
    thresholds = [
        cluster.CircuitBreakersThresholds(
            priority=priority,
            max_connections=100000,
            max_pending_requests=100000,
            max_requests=100000,
        )
        for priority in (core.RoutingPriority.DEFAULT, core.RoutingPriority.HIGH)
    ]
    built = _static_cluster(XDS_CLUSTER, _pipe(f"{config_path}/XDS"), _ONE_SECOND)
    built.circuit_breakers = cluster.CircuitBreakers(thresholds=thresholds)
    built.upstream_connection_options = cluster.UpstreamConnectionOptions(
        tcp_keepalive=core.TcpKeepalive(keepalive_time=300)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        built.max_requests_per_connection = 1
    built.typed_extension_protocol_options = _h2_options()
    return built


def _sds_cluster(name: str, path: str) -> cluster.Cluster:
    built = _static_cluster(name, _pipe(path), _ONE_SECOND)
    built.typed_extension_protocol_options = _h2_options()
    return built


def _sds_secret(name: str, *, initial_fetch_timeout: bool) -> tls.SdsSecretConfig:
    source = core.ConfigSource(
        api_config_source=core.ApiConfigSource(
            api_type=core.ApiConfigSourceApiType.GRPC,
            set_node_on_first_message_only=True,
            transport_api_version=core.ApiVersion.V3,
            grpc_services=[
                core.GrpcService(envoy_grpc=core.GrpcServiceEnvoyGrpc(cluster_name=SDS_CLUSTER))
            ],
        ),
        resource_api_version=core.ApiVersion.V3,
    )
    if initial_fetch_timeout:
        source.initial_fetch_timeout = _ZERO
    return tls.SdsSecretConfig(name=name, sds_config=source)


def _upstream_tls(
    settings: ClientTlsSettings | None,
    default_sni: str,
    metadata: Mapping[str, Any],
    *,
    h2: bool,
) -> core.TransportSocket | None:
    """The TLS transport socket for a tracer or a telemetry service (Istio's modes)."""
    if settings is None:
        return None
    mode = settings.mode
    if mode not in (
        ClientTlsSettingsTlSmode.SIMPLE,
        ClientTlsSettingsTlSmode.MUTUAL,
        ClientTlsSettingsTlSmode.ISTIO_MUTUAL,
    ):
        return None
    sans = [matcher.StringMatcher(exact=san) for san in settings.subject_alt_names]
    common = tls.CommonTlsContext()
    sni = settings.sni
    if mode == ClientTlsSettingsTlSmode.ISTIO_MUTUAL:
        common.tls_certificate_sds_secret_configs = [
            _sds_secret("default", initial_fetch_timeout=True)
        ]
        root: tls.SdsSecretConfig | None = _sds_secret("ROOTCA", initial_fetch_timeout=True)
        alpn = ["istio", "h2"]
        sni = sni or default_sni
    else:
        ca = str(metadata.get("TLS_CLIENT_ROOT_CERT") or settings.ca_certificates)
        root = _sds_secret(f"file-root:{ca}", initial_fetch_timeout=False) if ca else None
        if mode == ClientTlsSettingsTlSmode.MUTUAL:
            cert = str(metadata.get("TLS_CLIENT_CERT_CHAIN") or settings.client_certificate)
            key = str(metadata.get("TLS_CLIENT_KEY") or settings.private_key)
            if cert and key:
                common.tls_certificate_sds_secret_configs = [
                    _sds_secret(f"file-cert:{cert}~{key}", initial_fetch_timeout=False)
                ]
        alpn = ["h2"]
    common.combined_validation_context = tls.CommonTlsContextCombinedCertificateValidationContext(
        default_validation_context=tls.CertificateValidationContext(match_subject_alt_names=sans),
        validation_context_sds_secret_config=root,
    )
    if h2:
        common.alpn_protocols = alpn
    context = tls.UpstreamTlsContext(common_tls_context=common, sni=sni)
    return core.TransportSocket(name="envoy.transport_sockets.tls", typed_config=_pack(context))


def _keepalive(
    value: ConnectionPoolSettingsTcpSettingsTcpKeepalive | None,
) -> cluster.UpstreamConnectionOptions | None:
    if value is None:
        return None
    keepalive = core.TcpKeepalive()
    if value.probes > 0:
        keepalive.keepalive_probes = value.probes
    if value.time is not None and value.time.total_seconds() >= 1:
        keepalive.keepalive_time = int(value.time.total_seconds())
    if value.interval is not None and value.interval.total_seconds() >= 1:
        keepalive.keepalive_interval = int(value.interval.total_seconds())
    return cluster.UpstreamConnectionOptions(tcp_keepalive=keepalive)


def _router_filter() -> hcm.HttpFilter:
    return hcm.HttpFilter(name="envoy.filters.http.router", typed_config=_pack(router.Router()))


def _compressor_filters() -> list[hcm.HttpFilter]:
    libraries: list[tuple[str, betterproto2.Message]] = [
        ("brotli", brotli.Brotli()),
        ("zstd", zstd.Zstd()),
        ("gzip", gzip.Gzip()),
    ]
    filters = []
    for name, library in libraries:
        config = compressor.Compressor(
            compressor_library=core.TypedExtensionConfig(
                name=f"stats_{name}", typed_config=_pack(library)
            ),
            response_direction_config=compressor.CompressorResponseDirectionConfig(
                common_config=compressor.CompressorCommonDirectionConfig(
                    content_type=list(_STATS_CONTENT_TYPES)
                )
            ),
        )
        filters.append(
            hcm.HttpFilter(name=f"envoy.filters.http.compressor.{name}", typed_config=_pack(config))
        )
    return filters


def _http_listener(
    name: str,
    address: core.Address,
    stat_prefix: str,
    routes: Sequence[tuple[str, str]],
    *,
    http_filters: list[hcm.HttpFilter] | None = None,
    additional: core.Address | None = None,
    mtls: bool = False,
) -> listener.Listener:
    manager = hcm.HttpConnectionManager(
        codec_type=hcm.HttpConnectionManagerCodecType.AUTO,
        stat_prefix=stat_prefix,
        route_config=route.RouteConfiguration(
            virtual_hosts=[
                route.VirtualHost(
                    name="backend",
                    domains=["*"],
                    routes=[
                        route.Route(
                            match=route.RouteMatch(prefix=prefix),
                            route=route.RouteAction(cluster=target),
                        )
                        for prefix, target in routes
                    ],
                )
            ]
        ),
        http_filters=[*(http_filters or []), _router_filter()],
    )
    chain = listener.FilterChain(
        filters=[
            listener.Filter(
                name="envoy.filters.network.http_connection_manager", typed_config=_pack(manager)
            )
        ]
    )
    built = listener.Listener(
        name=name,
        address=address,
        ignore_global_conn_limit=True,
        bypass_overload_manager=True,
        filter_chains=[chain],
    )
    if additional is not None:
        built.additional_addresses = [listener.AdditionalAddress(address=additional)]
    if mtls:
        chain.filter_chain_match = listener.FilterChainMatch(transport_protocol="tls")
        context = tls.DownstreamTlsContext(
            require_client_certificate=True,
            common_tls_context=tls.CommonTlsContext(
                tls_certificate_sds_secret_configs=[
                    _sds_secret("default", initial_fetch_timeout=False)
                ],
                combined_validation_context=tls.CommonTlsContextCombinedCertificateValidationContext(
                    default_validation_context=tls.CertificateValidationContext(),
                    validation_context_sds_secret_config=_sds_secret(
                        "ROOTCA", initial_fetch_timeout=False
                    ),
                ),
            ),
        )
        chain.transport_socket = core.TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=_pack(context)
        )
        built.listener_filters = [
            listener.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=_pack(tls_inspector.TlsInspector()),
            )
        ]
    return built


class _Addressing:
    """Loopback, wildcard and DNS family from the proxy's IPs (IPv4, IPv6 or dual stack)."""

    def __init__(self, ips: Sequence[str], dual_stack: bool) -> None:
        versions = [ipaddress.ip_address(ip).version for ip in ips]
        self.additional_localhost: str | None = None
        self.additional_wildcard: str | None = None
        if all(v == 4 for v in versions):
            self.localhost, self.wildcard = "127.0.0.1", "0.0.0.0"
            self.dns_family = cluster.ClusterDnsLookupFamily.V4_ONLY
        elif all(v == 6 for v in versions):
            self.localhost, self.wildcard = "::1", "::"
            self.dns_family = cluster.ClusterDnsLookupFamily.V6_ONLY
        elif dual_stack:
            self.dns_family = cluster.ClusterDnsLookupFamily.ALL
            if versions[0] == 6:
                self.localhost, self.wildcard = "::1", "::"
                self.additional_localhost, self.additional_wildcard = "127.0.0.1", "0.0.0.0"
            else:
                self.localhost, self.wildcard = "127.0.0.1", "0.0.0.0"
                self.additional_localhost, self.additional_wildcard = "::1", "::"
        else:
            self.localhost, self.wildcard = "127.0.0.1", "0.0.0.0"
            self.dns_family = cluster.ClusterDnsLookupFamily.V4_ONLY


def _duration(value: str) -> datetime.timedelta | None:
    """A Go duration (``10s``, ``1m30s``), or None when it is not one."""
    try:
        seconds, nanos = protojson.duration_from_json(value, lenient=True)
    except protojson.ProtoJsonError:
        return None
    if seconds < 0 or nanos < 0:
        return None
    return datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)


def _stats_config(
    node: BootstrapNode,
    proxy_config: ProxyConfig,
    options: AgentOptions,
    annotations: Mapping[str, str],
    metadata_discovery: bool,
) -> metrics.StatsConfig:
    prefixes, suffixes, regexps = _stats.inclusion_patterns(
        proxy_config,
        annotations,
        list(dict.fromkeys(options.instance_ips)),
        exit_on_zero_active_connections=options.exit_on_zero_active_connections,
    )
    patterns = [matcher.StringMatcher(prefix="reporter=")]
    if metadata_discovery:
        patterns.append(matcher.StringMatcher(prefix="workload_discovery"))
    patterns += [matcher.StringMatcher(prefix=p) for p in prefixes]
    patterns += [matcher.StringMatcher(suffix=s) for s in suffixes]
    patterns += [matcher.StringMatcher(safe_regex=matcher.RegexMatcher(regex=r)) for r in regexps]
    patterns += [matcher.StringMatcher(prefix="component"), matcher.StringMatcher(prefix="istio")]
    tags = _stats.stat_tags(_stats.extra_stat_tags(proxy_config, annotations))
    config = metrics.StatsConfig(
        use_all_default_tags=False,
        stats_tags=[metrics.TagSpecifier(tag_name=name, regex=regex) for name, regex in tags],
        stats_matcher=metrics.StatsMatcher(
            inclusion_list=matcher.ListStringMatcher(patterns=patterns)
        ),
    )
    buckets = _stats.histogram_buckets(annotations)
    if buckets:
        config.histogram_bucket_settings = [
            metrics.HistogramBucketSettings(
                match=matcher.StringMatcher(prefix=prefix), buckets=values
            )
            for prefix, values in buckets
        ]
    return config


def build_bootstrap(
    node: BootstrapNode,
    proxy_config: ProxyConfig,
    options: AgentOptions,
    *,
    annotations: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    delta_xds: bool = True,
    dual_stack: bool = False,
    status_port_proxy_protocol: bool = False,
) -> bootstrap.Bootstrap:
    """The bootstrap pilot-agent writes for ``node`` with ``proxy_config`` applied.

    ``annotations`` are the Pod's (the ``sidecar.istio.io/stats*`` family shapes the stats
    config), ``env`` resolves ``$(HOST_IP)`` in tracer addresses. ``delta_xds`` picks
    ``DELTA_GRPC`` over ``GRPC`` for ADS (Istio's default since 1.22); waypoints always use
    delta. ``dual_stack`` (``ISTIO_DUAL_STACK``) adds the other address family to the
    listeners of a proxy with IPv4 and IPv6 addresses; ``status_port_proxy_protocol``
    (``ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL``) accepts PROXY protocol on the readiness
    port. Raises :class:`BootstrapError` for tracer and service addresses that are not
    ``HOST:PORT`` and for tracers that cannot be configured here (Stackdriver).
    """
    # Istio's bootstrap sets fields Envoy marks deprecated (respect_dns_ttl, tracing,
    # max_requests_per_connection, dns_refresh_rate); the generated classes warn on them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _build(
            node,
            proxy_config,
            options,
            annotations or {},
            env or {},
            delta_xds=delta_xds,
            dual_stack=dual_stack,
            status_port_proxy_protocol=status_port_proxy_protocol,
        )


def _build(
    node: BootstrapNode,
    proxy_config: ProxyConfig,
    options: AgentOptions,
    annotations: Mapping[str, str],
    env: Mapping[str, str],
    *,
    delta_xds: bool,
    dual_stack: bool,
    status_port_proxy_protocol: bool,
) -> bootstrap.Bootstrap:
    meta = node.metadata
    addressing = _Addressing(list(options.instance_ips), dual_stack)
    xds_type = (
        core.ApiConfigSourceApiType.DELTA_GRPC if delta_xds else core.ApiConfigSourceApiType.GRPC
    )
    metadata_discovery = meta.get("METADATA_DISCOVERY") == "true"
    if node.type == "waypoint":
        xds_type = core.ApiConfigSourceApiType.DELTA_GRPC
        metadata_discovery = True
    if xds_type == core.ApiConfigSourceApiType.GRPC:
        metadata_discovery = False  # not supported over state-of-the-world ADS
    admin_port = proxy_config.proxy_admin_port
    config_path = proxy_config.config_path

    log_format = bootstrap.BootstrapApplicationLogConfigLogFormat()
    if options.log_as_json:
        log_format.json_format = Struct.from_dict(dict(JSON_LOG_FORMAT))
    else:
        log_format.text_format = TEXT_LOG_FORMAT

    extensions = []
    if metadata_discovery:
        extensions.append(
            core.TypedExtensionConfig(
                name="metadata_discovery",
                typed_config=_typed_struct(
                    "type.googleapis.com/istio.workload.BootstrapExtension",
                    {"config_source": {"ads": {}}},
                ),
            )
        )
    extensions.append(
        core.TypedExtensionConfig(
            name="envoy.bootstrap.internal_listener",
            typed_config=_typed_struct(
                "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
                {"buffer_size_kb": 64},
            ),
        )
    )

    ads = core.ConfigSource(
        ads=core.AggregatedConfigSource(),
        initial_fetch_timeout=_ZERO,
        resource_api_version=core.ApiVersion.V3,
    )
    clusters = [
        _static_cluster(
            "prometheus_stats",
            _socket(addressing.localhost, admin_port),
            datetime.timedelta(milliseconds=250),
        ),
        _static_cluster(
            "agent",
            _socket(addressing.localhost, proxy_config.status_port),
            datetime.timedelta(milliseconds=250),
        ),
        _sds_cluster(
            SDS_CLUSTER, f"{WORKLOAD_IDENTITY_DIR}/{options.workload_identity_socket_file}"
        ),
    ]
    if "file-credential" in meta:
        clusters.append(_sds_cluster(SDS_FILES_CLUSTER, FILE_CREDENTIAL_SOCKET))
    clusters.append(_xds_cluster(config_path))

    tracing = _tracing(node, proxy_config, addressing, env, clusters)
    stats_sinks = _metrics_service(proxy_config, addressing, env, meta, clusters)
    if proxy_config.envoy_access_log_service and proxy_config.envoy_access_log_service.address:
        clusters.append(
            _service_cluster(
                "envoy_accesslog_service",
                proxy_config.envoy_access_log_service,
                addressing,
                env,
                meta,
            )
        )
    if proxy_config.statsd_udp_address:
        host, port = _split_host_port(
            proxy_config.statsd_udp_address, "ProxyConfig statsdUdpAddress", env
        )
        statsd = metrics.StatsdSink(address=_socket(host, port))
        stats_sinks.append(
            metrics.StatsSink(name="envoy.stat_sinks.statsd", typed_config=_pack(statsd))
        )
    self_discovery = meta.get("ENABLE_SELF_DISCOVERY") == "true"
    if self_discovery:
        clusters.append(_local_cluster())

    listeners = _listeners(proxy_config, options, addressing, status_port_proxy_protocol)

    result = bootstrap.Bootstrap(
        application_log_config=bootstrap.BootstrapApplicationLogConfig(log_format=log_format),
        node=core.Node(
            id=node.id,
            cluster=service_cluster(proxy_config, meta),
            locality=core.Locality(region=node.region, zone=node.zone, sub_zone=node.sub_zone),
            metadata=Struct.from_dict(dict(meta)),
        ),
        layered_runtime=bootstrap.LayeredRuntime(
            layers=[
                bootstrap.RuntimeLayer(
                    name="global config",
                    static_layer=Struct.from_dict(
                        runtime_flags(proxy_config, options.compliance_policy)
                    ),
                ),
                bootstrap.RuntimeLayer(
                    name="admin", admin_layer=bootstrap.RuntimeLayerAdminLayer()
                ),
            ]
        ),
        bootstrap_extensions=extensions,
        stats_config=_stats_config(node, proxy_config, options, annotations, metadata_discovery),
        admin=bootstrap.Admin(
            access_log=[
                accesslog.AccessLog(
                    name="envoy.access_loggers.file",
                    typed_config=_pack(file_log.FileAccessLog(path="/dev/null")),
                )
            ],
            profile_path="/var/lib/istio/data/envoy.prof",
            address=core.Address(
                socket_address=core.SocketAddress(
                    address=addressing.localhost, port_value=admin_port
                )
            ),
        ),
        dynamic_resources=bootstrap.BootstrapDynamicResources(
            lds_config=ads,
            cds_config=ads,
            ads_config=core.ApiConfigSource(
                api_type=xds_type,
                set_node_on_first_message_only=True,
                transport_api_version=core.ApiVersion.V3,
                grpc_services=[
                    core.GrpcService(envoy_grpc=core.GrpcServiceEnvoyGrpc(cluster_name=XDS_CLUSTER))
                ],
            ),
        ),
        static_resources=bootstrap.BootstrapStaticResources(clusters=clusters, listeners=listeners),
        overload_manager=overload.OverloadManager(
            resource_monitors=[
                overload.ResourceMonitor(
                    name="envoy.resource_monitors.global_downstream_max_connections",
                    typed_config=_pack(
                        dc.DownstreamConnectionsConfig(
                            max_active_downstream_connections=_global_downstream_max_connections(
                                proxy_config
                            )
                        )
                    ),
                )
            ]
        ),
        tracing=tracing,
        stats_sinks=stats_sinks,
        deferred_stat_options=bootstrap.BootstrapDeferredStatOptions(
            enable_deferred_creation_stats=True
        ),
    )
    flush = annotations.get(_stats.FLUSH_INTERVAL_ANNOTATION)
    flush_interval = datetime.timedelta(seconds=5)
    if flush is not None:
        parsed = _duration(flush)
        if parsed is None:
            _stats.log.warning(
                "ignoring annotation %s=%r: not a duration", _stats.FLUSH_INTERVAL_ANNOTATION, flush
            )
        else:
            flush_interval = parsed
            result.stats_flush_interval = parsed
    eviction = annotations.get(_stats.EVICTION_INTERVAL_ANNOTATION)
    if eviction is not None:
        parsed = _duration(eviction)
        if parsed is None:
            _stats.log.warning(
                "ignoring annotation %s=%r: not a duration",
                _stats.EVICTION_INTERVAL_ANNOTATION,
                eviction,
            )
        elif not flush_interval or parsed % flush_interval:
            _stats.log.warning(
                "ignoring annotation %s=%r: not a multiple of the stats flush interval",
                _stats.EVICTION_INTERVAL_ANNOTATION,
                eviction,
            )
        else:
            result.stats_eviction_interval = datetime.timedelta(seconds=int(parsed.total_seconds()))
    load_stats = meta.get("LOAD_STATS_CONFIG_JSON")
    if options.outlier_log_path or isinstance(load_stats, str) or self_discovery:
        manager = bootstrap.ClusterManager(enable_deferred_cluster_creation=True)
        if self_discovery:
            manager.local_cluster_name = "local_cluster"
        if options.outlier_log_path:
            manager.outlier_detection = bootstrap.ClusterManagerOutlierDetection(
                event_log_path=options.outlier_log_path
            )
        if isinstance(load_stats, str):
            try:
                manager.load_stats_config = protojson.message_from_json_text(
                    core.ApiConfigSource, load_stats
                )
            except protojson.ProtoJsonError as exc:
                raise BootstrapError("node metadata LOAD_STATS_CONFIG_JSON", str(exc)) from None
        result.cluster_manager = manager
    return result


def _listeners(
    proxy_config: ProxyConfig,
    options: AgentOptions,
    addressing: _Addressing,
    status_port_proxy_protocol: bool,
) -> list[listener.Listener]:
    """Prometheus (15090), the optional mTLS metrics ports, readiness (15021), in that order."""
    listeners = [_prometheus_listener(proxy_config, addressing, options)]
    for port, stat_prefix, routes in (
        (
            options.envoy_secure_metrics_port,
            "secure_stats",
            [("/stats/prometheus", "prometheus_stats")],
        ),
        (
            options.envoy_secure_merged_metrics_port,
            "secure_merged_stats",
            [("/stats/prometheus", "agent"), ("/metrics", "agent")],
        ),
    ):
        if port:
            listeners.append(
                _http_listener(
                    f"{addressing.wildcard}_{port}",
                    _socket(addressing.wildcard, port),
                    stat_prefix,
                    routes,
                    mtls=True,
                )
            )
    status_port = options.envoy_status_port
    readiness = _http_listener(
        f"{addressing.wildcard}_{status_port}",
        _socket(addressing.wildcard, status_port),
        "agent",
        [("/healthz/ready", "agent")],
        additional=_socket(addressing.additional_wildcard, status_port)
        if addressing.additional_wildcard
        else None,
    )
    if status_port_proxy_protocol:
        readiness.listener_filters = [
            listener.ListenerFilter(
                name="envoy.listener.proxy_protocol",
                typed_config=_pack(
                    proxy_protocol.ProxyProtocol(allow_requests_without_proxy_protocol=True)
                ),
            )
        ]
    listeners.append(readiness)
    return listeners


def _prometheus_listener(
    proxy_config: ProxyConfig, addressing: _Addressing, options: AgentOptions
) -> listener.Listener:
    local_only = proxy_config.proxy_metadata.get("METRICS_LOCALHOST_ACCESS_ONLY") == "true"
    host = addressing.localhost if local_only else addressing.wildcard
    extra = addressing.additional_localhost if local_only else addressing.additional_wildcard
    port = options.envoy_prometheus_port
    compress = proxy_config.stats_compression is None or proxy_config.stats_compression
    return _http_listener(
        f"{host}_{port}",
        _socket(host, port),
        "stats",
        [("/stats/prometheus", "prometheus_stats")],
        http_filters=_compressor_filters() if compress else [],
        additional=_socket(extra, port) if extra else None,
    )


def _local_cluster() -> cluster.Cluster:
    from istio_sdk.api.envoy.extensions.load_balancing_policies.common import v3 as lb_common
    from istio_sdk.api.envoy.extensions.load_balancing_policies.least_request import (
        v3 as least_request,
    )

    policy = least_request.LeastRequest(
        locality_lb_config=lb_common.LocalityLbConfig(
            zone_aware_lb_config=lb_common.LocalityLbConfigZoneAwareLbConfig(min_cluster_size=1)
        )
    )
    return cluster.Cluster(
        name="local_cluster",
        alt_stat_name="local_cluster;",
        type=cluster.ClusterDiscoveryType.EDS,
        connect_timeout=_ONE_SECOND,
        load_balancing_policy=cluster.LoadBalancingPolicy(
            policies=[
                cluster.LoadBalancingPolicyPolicy(
                    typed_extension_config=core.TypedExtensionConfig(
                        name="envoy.load_balancing_policies.least_request",
                        typed_config=_pack(policy),
                    )
                )
            ]
        ),
        eds_cluster_config=cluster.ClusterEdsClusterConfig(
            eds_config=core.ConfigSource(
                ads=core.AggregatedConfigSource(), resource_api_version=core.ApiVersion.V3
            ),
            service_name="local_cluster",
        ),
    )


def _service_cluster(
    name: str,
    service: RemoteService,
    addressing: _Addressing,
    env: Mapping[str, str],
    meta: Mapping[str, Any],
) -> cluster.Cluster:
    host, port = _split_host_port(service.address, f"ProxyConfig {name} address", env)
    return _dns_cluster(
        name,
        host,
        port,
        addressing.dns_family,
        h2=True,
        transport_socket=_upstream_tls(service.tls_settings, name, meta, h2=True),
        connection_options=_keepalive(service.tcp_keepalive),
    )


def _metrics_service(
    proxy_config: ProxyConfig,
    addressing: _Addressing,
    env: Mapping[str, str],
    meta: Mapping[str, Any],
    clusters: list[cluster.Cluster],
) -> list[metrics.StatsSink]:
    service = proxy_config.envoy_metrics_service
    if service is None or not service.address:
        return []
    clusters.append(_service_cluster("envoy_metrics_service", service, addressing, env, meta))
    sink = metrics.MetricsServiceConfig(
        transport_api_version=core.ApiVersion.V3,
        grpc_service=core.GrpcService(
            envoy_grpc=core.GrpcServiceEnvoyGrpc(cluster_name="envoy_metrics_service")
        ),
    )
    return [metrics.StatsSink(name="envoy.stat_sinks.metrics_service", typed_config=_pack(sink))]


def _tracing(
    node: BootstrapNode,
    proxy_config: ProxyConfig,
    addressing: _Addressing,
    env: Mapping[str, str],
    clusters: list[cluster.Cluster],
) -> trace.Tracing | None:
    tracing = proxy_config.tracing
    if tracing is None:
        return None
    meta = node.metadata
    if tracing.zipkin is not None:
        host, port = _split_host_port(
            tracing.zipkin.address, "ProxyConfig tracing.zipkin.address", env
        )
        clusters.append(
            _dns_cluster(
                "zipkin",
                host,
                port,
                addressing.dns_family,
                transport_socket=_upstream_tls(tracing.tls_settings, "tracer", meta, h2=False),
                refresh=datetime.timedelta(seconds=30),
            )
        )
        config: betterproto2.Message = trace.ZipkinConfig(
            collector_cluster="zipkin",
            collector_endpoint="/api/v2/spans",
            collector_endpoint_version=trace.ZipkinConfigCollectorEndpointVersion.HTTP_JSON,
            trace_id_128bit=True,
            shared_span_context=False,
        )
        return trace.Tracing(
            http=trace.TracingHttp(name="envoy.tracers.zipkin", typed_config=_pack(config))
        )
    if tracing.datadog is not None:
        host, port = _split_host_port(
            tracing.datadog.address, "ProxyConfig tracing.datadog.address", env
        )
        clusters.append(
            _dns_cluster(
                "datadog_agent",
                host,
                port,
                addressing.dns_family,
                transport_socket=_upstream_tls(tracing.tls_settings, "tracer", meta, h2=False),
            )
        )
        config = trace.DatadogConfig(
            collector_cluster="datadog_agent", service_name=service_cluster(proxy_config, meta)
        )
        return trace.Tracing(
            http=trace.TracingHttp(name="envoy.tracers.datadog", typed_config=_pack(config))
        )
    if tracing.lightstep is not None:
        host, port = _split_host_port(
            tracing.lightstep.address, "ProxyConfig tracing.lightstep.address", env
        )
        clusters.append(
            _dns_cluster(
                "lightstep",
                host,
                port,
                addressing.dns_family,
                h2=True,
                transport_socket=_upstream_tls(tracing.tls_settings, "tracer", meta, h2=True),
            )
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            config = trace.LightstepConfig(
                collector_cluster="lightstep",
                access_token_file=f"{proxy_config.config_path}/lightstep_access_token.txt",
            )
        return trace.Tracing(
            http=trace.TracingHttp(name="envoy.tracers.lightstep", typed_config=_pack(config))
        )
    if tracing.stackdriver is not None:
        raise BootstrapError(
            "ProxyConfig tracing.stackdriver", "needs GCP platform metadata, which is not supported"
        )
    return None
