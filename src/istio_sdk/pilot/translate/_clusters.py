"""Clusters and ClusterLoadAssignments from services, endpoints and DestinationRules.

Naming follows Istio: ``outbound|PORT|SUBSET|HOST`` for every service port and every subset of
its DestinationRule, ``inbound|PORT||`` for what a sidecar serves. STATIC services become EDS
clusters fed over ADS (``service_name`` is the cluster name), DNS services STRICT_DNS /
LOGICAL_DNS clusters with inline endpoints, and NONE services ORIGINAL_DST clusters.

A DestinationRule's traffic policy is merged as Istio does: the subset's policy overrides the
rule's top-level policy, and a ``portLevelSettings`` entry for the port overrides both for the
fields it sets. The policy maps to load balancing (round robin, least request, random, consistent
hash as ring hash or Maglev), circuit breakers (connection pool), outlier detection and upstream
TLS (SIMPLE, MUTUAL, ISTIO_MUTUAL over SDS, or certificate providers for proxyless gRPC).
ISTIO_MUTUAL verifies the server's SPIFFE identity: the rule's ``subjectAltNames`` if it names
any, else the identities of the service's workloads (their service accounts), as Istio does.

Auto mTLS (sidecars, on unless the push context turns it off): a cluster whose policy sets no
TLS, for an in-mesh service whose namespace's PeerAuthentication is not DISABLE, gets two
``transport_socket_matches``: ISTIO_MUTUAL for endpoints carrying the metadata
``envoy.transport_socket_match: {tlsMode: istio}`` (workloads labelled
``security.istio.io/tlsMode: istio``, i.e. with a sidecar) and plaintext for the rest.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable
from typing import TypeVar

import attrs

from istio_sdk.api.envoy.config.cluster import v3 as cluster
from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.config.endpoint import v3 as endpoint
from istio_sdk.api.envoy.extensions.transport_sockets.raw_buffer import v3 as raw_buffer
from istio_sdk.api.envoy.extensions.transport_sockets.tls import v3 as tls
from istio_sdk.api.envoy.extensions.upstreams.http import v3 as upstream_http
from istio_sdk.api.envoy.type import v3 as envoy_type
from istio_sdk.api.envoy.type.matcher import v3 as matcher
from istio_sdk.api.google.protobuf import Struct
from istio_sdk.api.istio.networking import v1alpha3 as networking
from istio_sdk.pilot.cluster_names import (
    inbound_cluster_name,
    outbound_cluster_name,
    parse_cluster_name,
)
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.labels import labels_match
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Endpoint, HealthStatus, Resolution, Service, ServicePort
from istio_sdk.pilot.translate._common import (
    BLACKHOLE_CLUSTER,
    DEFAULT_CONNECT_TIMEOUT,
    HTTP_PROTOCOL_OPTIONS,
    INBOUND_PASSTHROUGH_CLUSTER,
    MAX_UINT32,
    PASSTHROUGH_CLUSTER,
    TLS_TRANSPORT_SOCKET,
    ads_source,
    pack,
    socket_address,
)
from istio_sdk.pilot.translate.authn import (
    TLS_MODE_LABEL,
    MtlsMode,
    certificate_provider_tls_context,
    mtls_policy,
    sds_source,
    service_identities,
)
from istio_sdk.spiffe import is_spiffe_uri

__all__ = [
    "TrafficPolicy",
    "build_cluster",
    "build_load_assignment",
    "effective_policy",
    "inbound_clusters",
    "outbound_cluster_names",
    "passthrough_clusters",
    "subset_labels",
]

_T = TypeVar("_T")

_LB = {
    networking.LoadBalancerSettingsSimpleLb.UNSPECIFIED: None,
    networking.LoadBalancerSettingsSimpleLb.LEAST_CONN: cluster.ClusterLbPolicy.LEAST_REQUEST,
    networking.LoadBalancerSettingsSimpleLb.LEAST_REQUEST: cluster.ClusterLbPolicy.LEAST_REQUEST,
    networking.LoadBalancerSettingsSimpleLb.RANDOM: cluster.ClusterLbPolicy.RANDOM,
    networking.LoadBalancerSettingsSimpleLb.PASSTHROUGH: cluster.ClusterLbPolicy.CLUSTER_PROVIDED,
    networking.LoadBalancerSettingsSimpleLb.ROUND_ROBIN: cluster.ClusterLbPolicy.ROUND_ROBIN,
}

_HEALTH = {
    HealthStatus.HEALTHY: core.HealthStatus.HEALTHY,
    HealthStatus.UNHEALTHY: core.HealthStatus.UNHEALTHY,
    HealthStatus.DRAINING: core.HealthStatus.DRAINING,
    HealthStatus.UNKNOWN: core.HealthStatus.UNKNOWN,
}


@attrs.frozen
class TrafficPolicy:
    """The traffic policy that applies to one cluster after Istio's merge rules."""

    load_balancer: networking.LoadBalancerSettings | None = None
    connection_pool: networking.ConnectionPoolSettings | None = None
    outlier_detection: networking.OutlierDetection | None = None
    tls: networking.ClientTlsSettings | None = None


def _port_level(
    policy: networking.TrafficPolicy | None, port: int
) -> networking.TrafficPolicyPortTrafficPolicy | None:
    if policy is None:
        return None
    for settings in policy.port_level_settings:
        if settings.port is not None and settings.port.number == port:
            return settings
    return None


def _pick(override: _T | None, base: _T | None) -> _T | None:
    # Explicit None checks: an all-default message (e.g. TLS mode DISABLE) is falsy but set.
    return override if override is not None else base


def _merge(
    base: TrafficPolicy, policy: networking.TrafficPolicy | None, port: int
) -> TrafficPolicy:
    if policy is None:
        return base
    merged = _overlay(base, policy)
    level = _port_level(policy, port)
    return merged if level is None else _overlay(merged, level)


def _overlay(
    base: TrafficPolicy,
    layer: networking.TrafficPolicy | networking.TrafficPolicyPortTrafficPolicy,
) -> TrafficPolicy:
    """``base`` with each of the four settings ``layer`` sets replaced by its value."""
    return TrafficPolicy(
        load_balancer=_pick(layer.load_balancer, base.load_balancer),
        connection_pool=_pick(layer.connection_pool, base.connection_pool),
        outlier_detection=_pick(layer.outlier_detection, base.outlier_detection),
        tls=_pick(layer.tls, base.tls),
    )


def effective_policy(rule: ConfigEntry | None, port: int, subset: str = "") -> TrafficPolicy:
    """The traffic policy for ``port`` (and ``subset``) under DestinationRule ``rule``."""
    if rule is None or not isinstance(rule.spec, networking.DestinationRule):
        return TrafficPolicy()
    spec = rule.spec
    policy = _merge(TrafficPolicy(), spec.traffic_policy, port)
    if subset:
        for s in spec.subsets:
            if s.name == subset:
                policy = _merge(policy, s.traffic_policy, port)
    return policy


def subset_labels(rule: ConfigEntry | None, subset: str) -> dict[str, str] | None:
    """The labels subset ``subset`` selects; None when the rule does not define it."""
    if not subset:
        return {}
    if rule is None or not isinstance(rule.spec, networking.DestinationRule):
        return None
    for s in rule.spec.subsets:
        if s.name == subset:
            return dict(s.labels)
    return None


def outbound_cluster_names(context: PushContext, proxy: ProxyInfo, service: Service) -> list[str]:
    """Every outbound cluster name of ``service``: each port, default and each subset."""
    rule = context.destination_rule(service.hostname, proxy)
    subsets = [""]
    if rule is not None and isinstance(rule.spec, networking.DestinationRule):
        subsets.extend(s.name for s in rule.spec.subsets if s.name)
    return [
        outbound_cluster_name(port.number, subset, service.hostname)
        for port in service.ports
        for subset in subsets
    ]


def _lb_settings(
    built: cluster.Cluster, lb: networking.LoadBalancerSettings | None, grpc: bool
) -> None:
    default = cluster.ClusterLbPolicy.ROUND_ROBIN if grpc else cluster.ClusterLbPolicy.LEAST_REQUEST
    built.lb_policy = default
    if lb is None:
        return
    if lb.consistent_hash is not None:
        ch = lb.consistent_hash
        if ch.maglev is not None and not grpc:
            built.lb_policy = cluster.ClusterLbPolicy.MAGLEV
            if ch.maglev.table_size:
                built.maglev_lb_config = cluster.ClusterMaglevLbConfig(
                    table_size=ch.maglev.table_size
                )
            return
        built.lb_policy = cluster.ClusterLbPolicy.RING_HASH
        ring = ch.ring_hash.minimum_ring_size if ch.ring_hash is not None else 0
        ring = ring or ch.minimum_ring_size or 1024
        built.ring_hash_lb_config = cluster.ClusterRingHashLbConfig(minimum_ring_size=ring)
        return
    if lb.simple is not None:
        chosen = _LB.get(lb.simple)
        if grpc and chosen not in (None, cluster.ClusterLbPolicy.ROUND_ROBIN):
            # Proxyless gRPC NACKs least-request/random; Istio sends round robin instead.
            chosen = cluster.ClusterLbPolicy.ROUND_ROBIN
        if chosen is not None:
            built.lb_policy = chosen


def _circuit_breakers(
    pool: networking.ConnectionPoolSettings | None, grpc: bool
) -> cluster.CircuitBreakers | None:
    tcp = pool.tcp if pool is not None else None
    http = pool.http if pool is not None else None
    if grpc:
        if http is None or not http.http2_max_requests:
            return None
        return cluster.CircuitBreakers(
            thresholds=[cluster.CircuitBreakersThresholds(max_requests=http.http2_max_requests)]
        )
    # Istio lifts Envoy's low defaults (1024) to "unlimited" unless the rule sets a limit.
    return cluster.CircuitBreakers(
        thresholds=[
            cluster.CircuitBreakersThresholds(
                max_connections=(
                    tcp.max_connections if tcp and tcp.max_connections else MAX_UINT32
                ),
                max_pending_requests=(
                    http.http1_max_pending_requests
                    if http and http.http1_max_pending_requests
                    else MAX_UINT32
                ),
                max_requests=(
                    http.http2_max_requests if http and http.http2_max_requests else MAX_UINT32
                ),
                max_retries=(http.max_retries if http and http.max_retries else MAX_UINT32),
                track_remaining=True,
            )
        ]
    )


def _outlier_detection(od: networking.OutlierDetection | None) -> cluster.OutlierDetection | None:
    if od is None:
        return None
    out = cluster.OutlierDetection()
    consecutive_5xx = od.consecutive_5xx_errors
    if consecutive_5xx is None and od.consecutive_errors:
        consecutive_5xx = od.consecutive_errors
    if consecutive_5xx is not None and consecutive_5xx > 0:
        out.consecutive_5xx = consecutive_5xx
        out.enforcing_consecutive_5xx = 100
    else:
        out.enforcing_consecutive_5xx = 0
    if od.consecutive_gateway_errors:
        out.consecutive_gateway_failure = od.consecutive_gateway_errors
        out.enforcing_consecutive_gateway_failure = 100
    if od.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if od.consecutive_local_origin_failures:
            out.consecutive_local_origin_failure = od.consecutive_local_origin_failures
            out.enforcing_consecutive_local_origin_failure = 100
    if od.interval is not None and od.interval > datetime.timedelta(0):
        out.interval = od.interval
    if od.base_ejection_time is not None and od.base_ejection_time > datetime.timedelta(0):
        out.base_ejection_time = od.base_ejection_time
    if od.max_ejection_percent:
        out.max_ejection_percent = min(od.max_ejection_percent, 100)
    return out


# One shared (read-only) message: every TLS context of every cluster points at it.
_sds_source = functools.cache(sds_source)


def _san_matchers(names: Iterable[str]) -> list[tls.SubjectAltNameMatcher]:
    out = []
    for name in names:
        san_type = (
            tls.SubjectAltNameMatcherSanType.URI
            if is_spiffe_uri(name)
            else tls.SubjectAltNameMatcherSanType.DNS
        )
        out.append(
            tls.SubjectAltNameMatcher(san_type=san_type, matcher=matcher.StringMatcher(exact=name))
        )
    return out


def _upstream_tls(
    settings: networking.ClientTlsSettings | None,
    cluster_name: str,
    service: Service,
    grpc: bool,
    identities: list[str] | None = None,
) -> core.TransportSocket | None:
    if settings is None:
        return None
    mode = settings.mode
    modes = networking.ClientTlsSettingsTlSmode
    if mode == modes.DISABLE:
        return None
    common = tls.CommonTlsContext()
    sni = settings.sni
    if mode == modes.ISTIO_MUTUAL:
        sans = list(settings.subject_alt_names) or list(identities or ())
        if grpc:
            common = certificate_provider_tls_context(sans)
        else:
            common.alpn_protocols = ["istio-peer-exchange", "istio"]
            common.tls_certificate_sds_secret_configs = [
                tls.SdsSecretConfig(name="default", sds_config=_sds_source())
            ]
            common.combined_validation_context = (
                tls.CommonTlsContextCombinedCertificateValidationContext(
                    default_validation_context=tls.CertificateValidationContext(
                        match_typed_subject_alt_names=_san_matchers(sans)
                    ),
                    validation_context_sds_secret_config=tls.SdsSecretConfig(
                        name="ROOTCA", sds_config=_sds_source()
                    ),
                )
            )
        if not sni:
            parsed = parse_cluster_name(cluster_name)
            if parsed is not None:
                _, port, subset, host = parsed
                sni = f"outbound_.{port}_.{subset}_.{host}"
    else:
        validation = tls.CertificateValidationContext(
            match_typed_subject_alt_names=_san_matchers(settings.subject_alt_names)
        )
        if settings.ca_certificates:
            validation.trusted_ca = core.DataSource(filename=settings.ca_certificates)
        if settings.ca_crl:
            validation.crl = core.DataSource(filename=settings.ca_crl)
        if settings.credential_name:
            common.validation_context_sds_secret_config = tls.SdsSecretConfig(
                name=f"{settings.credential_name}-cacert", sds_config=_sds_source()
            )
        elif settings.ca_certificates or settings.subject_alt_names:
            common.validation_context = validation
        if mode == modes.MUTUAL:
            if settings.credential_name:
                common.tls_certificate_sds_secret_configs = [
                    tls.SdsSecretConfig(name=settings.credential_name, sds_config=_sds_source())
                ]
            elif settings.client_certificate and settings.private_key:
                common.tls_certificates = [
                    tls.TlsCertificate(
                        certificate_chain=core.DataSource(filename=settings.client_certificate),
                        private_key=core.DataSource(filename=settings.private_key),
                    )
                ]
        if not sni and service.mesh_external and "*" not in service.hostname:
            sni = service.hostname
    return core.TransportSocket(
        name=TLS_TRANSPORT_SOCKET,
        typed_config=pack(tls.UpstreamTlsContext(common_tls_context=common, sni=sni)),
    )


def _http_protocol_options(
    port: ServicePort, pool: networking.ConnectionPoolSettings | None
) -> upstream_http.HttpProtocolOptions | None:
    http = pool.http if pool is not None else None
    common: core.HttpProtocolOptions | None = None
    if http is not None and (http.idle_timeout is not None or http.max_requests_per_connection):
        common = core.HttpProtocolOptions()
        if http.idle_timeout is not None:
            common.idle_timeout = http.idle_timeout
        if http.max_requests_per_connection:
            common.max_requests_per_connection = http.max_requests_per_connection
    h2 = port.effective_protocol in ("HTTP2", "GRPC") or (
        http is not None
        and http.h2_upgrade_policy
        == networking.ConnectionPoolSettingsHttpSettingsH2UpgradePolicy.UPGRADE
    )
    if common is None and not h2:
        return None
    explicit = (
        upstream_http.HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=core.Http2ProtocolOptions()
        )
        if h2
        else upstream_http.HttpProtocolOptionsExplicitHttpConfig(
            http_protocol_options=core.Http1ProtocolOptions()
        )
    )
    return upstream_http.HttpProtocolOptions(
        common_http_protocol_options=common, explicit_http_config=explicit
    )


def _outbound_target(
    context: PushContext, proxy: ProxyInfo, name: str
) -> tuple[int, str, str, Service, ServicePort] | None:
    """Port number, subset, hostname, service and port that outbound cluster ``name`` names.

    None when ``name`` is not an outbound cluster name or names a service or port that
    ``proxy`` cannot see.
    """
    parsed = parse_cluster_name(name)
    if parsed is None or parsed[0] != "outbound":
        return None
    _, port_number, subset, hostname = parsed
    service = context.service_for_host(hostname, proxy)
    if service is None:
        return None
    port = service.port(port_number)
    if port is None:
        return None
    return port_number, subset, hostname, service, port


def build_cluster(
    context: PushContext, proxy: ProxyInfo, name: str, *, grpc: bool = False
) -> cluster.Cluster | None:
    """Build the outbound cluster ``name`` (``outbound|PORT|SUBSET|HOST``) for ``proxy``.

    Returns None when the service, port or subset does not exist for this proxy.
    """
    target = _outbound_target(context, proxy, name)
    if target is None:
        return None
    port_number, subset, hostname, service, port = target
    rule = context.destination_rule(hostname, proxy)
    if subset and subset_labels(rule, subset) is None:
        return None
    policy = effective_policy(rule, port_number, subset)
    built = cluster.Cluster(name=name)
    if service.resolution is Resolution.STATIC or grpc:
        built.type = cluster.ClusterDiscoveryType.EDS
        built.eds_cluster_config = cluster.ClusterEdsClusterConfig(
            eds_config=ads_source(), service_name=name
        )
    elif service.resolution is Resolution.NONE:
        built.type = cluster.ClusterDiscoveryType.ORIGINAL_DST
    else:
        built.type = (
            cluster.ClusterDiscoveryType.STRICT_DNS
            if service.resolution is Resolution.DNS
            else cluster.ClusterDiscoveryType.LOGICAL_DNS
        )
        built.dns_lookup_family = cluster.ClusterDnsLookupFamily.V4_ONLY
        built.respect_dns_ttl = True
        built.load_assignment = build_load_assignment(context, proxy, name)
    if not grpc:
        tcp = policy.connection_pool.tcp if policy.connection_pool else None
        connect = tcp.connect_timeout if tcp is not None else None
        built.connect_timeout = connect if connect else DEFAULT_CONNECT_TIMEOUT
        built.circuit_breakers = _circuit_breakers(policy.connection_pool, grpc)
        built.outlier_detection = _outlier_detection(policy.outlier_detection)
        od = policy.outlier_detection
        if od is not None and od.min_health_percent:
            built.common_lb_config = cluster.ClusterCommonLbConfig(
                healthy_panic_threshold=envoy_type.Percent(value=float(od.min_health_percent))
            )
        if port.is_http:
            options = _http_protocol_options(port, policy.connection_pool)
            if options is not None:
                built.typed_extension_protocol_options = {HTTP_PROTOCOL_OPTIONS: pack(options)}
    else:
        built.circuit_breakers = _circuit_breakers(policy.connection_pool, grpc)
    if service.resolution is Resolution.NONE and not grpc:
        built.lb_policy = cluster.ClusterLbPolicy.CLUSTER_PROVIDED
    else:
        _lb_settings(built, policy.load_balancer, grpc)
    identities = None
    istio_mutual = networking.ClientTlsSettingsTlSmode.ISTIO_MUTUAL
    if policy.tls is not None and policy.tls.mode == istio_mutual:
        identities = service_identities(context, service)
    built.transport_socket = _upstream_tls(policy.tls, name, service, grpc, identities)
    if policy.tls is None and not grpc and _auto_mtls_applies(context, service):
        auto = _upstream_tls(
            networking.ClientTlsSettings(mode=istio_mutual),
            name,
            service,
            grpc,
            service_identities(context, service),
        )
        if service.resolution is Resolution.NONE:
            # Original-destination clusters have no endpoint metadata to match on.
            built.transport_socket = auto
        else:
            built.transport_socket_matches = [
                cluster.ClusterTransportSocketMatch(
                    name="tlsMode-istio", match=_ISTIO_TLS_MATCH, transport_socket=auto
                ),
                cluster.ClusterTransportSocketMatch(
                    name="tlsMode-disabled", match=Struct(), transport_socket=_RAW_BUFFER
                ),
            ]
    return built


_TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
_ISTIO_TLS_MATCH = Struct.from_dict({"tlsMode": "istio"})
_RAW_BUFFER = core.TransportSocket(
    name="envoy.transport_sockets.raw_buffer", typed_config=pack(raw_buffer.RawBuffer())
)


def _auto_mtls_applies(context: PushContext, service: Service) -> bool:
    """Whether clients should try mTLS to ``service`` without being told (Istio's auto mTLS).

    Like istiod's best-effort inference, the service's mode is its namespace's (or the
    mesh's) PeerAuthentication; workload-level policies are not consulted.
    """
    if not context.auto_mtls or service.mesh_external:
        return False
    return mtls_policy(context, service.namespace).mode is not MtlsMode.DISABLE


def _endpoint_metadata(ep: Endpoint) -> core.Metadata | None:
    if ep.labels.get(TLS_MODE_LABEL) != "istio":
        return None
    return core.Metadata(filter_metadata={_TRANSPORT_SOCKET_MATCH: _ISTIO_TLS_MATCH})


def _endpoint_matches(ep: Endpoint, labels: dict[str, str]) -> bool:
    return labels_match(labels, ep.labels)


def build_load_assignment(
    context: PushContext, proxy: ProxyInfo, name: str
) -> endpoint.ClusterLoadAssignment | None:
    """The ClusterLoadAssignment for cluster ``name``: endpoints grouped by locality.

    Subset clusters keep only endpoints carrying the subset's labels. Each locality's weight
    is the sum of its endpoints' weights (proxyless gRPC drops localities without one).
    """
    target = _outbound_target(context, proxy, name)
    if target is None:
        return None
    port_number, subset, hostname, service, port = target
    labels = subset_labels(context.destination_rule(hostname, proxy), subset)
    if labels is None:
        return None
    by_locality: dict[str, list[endpoint.LbEndpoint]] = {}
    weights: dict[str, int] = {}
    for ep in context.endpoints_of(service):
        if not _endpoint_matches(ep, labels):
            continue
        by_locality.setdefault(ep.locality, []).append(
            endpoint.LbEndpoint(
                endpoint=endpoint.Endpoint(address=socket_address(ep.address, ep.port_for(port))),
                health_status=_HEALTH[ep.health],
                load_balancing_weight=ep.weight,
                metadata=_endpoint_metadata(ep),
            )
        )
        weights[ep.locality] = weights.get(ep.locality, 0) + ep.weight
    groups = []
    for locality in sorted(by_locality):
        region, zone, sub_zone = ([*locality.split("/"), "", ""])[:3]
        groups.append(
            endpoint.LocalityLbEndpoints(
                locality=core.Locality(region=region, zone=zone, sub_zone=sub_zone),
                lb_endpoints=by_locality[locality],
                load_balancing_weight=min(weights[locality], MAX_UINT32),
                priority=0,
            )
        )
    policy = effective_policy(context.destination_rule(hostname, proxy), port_number, subset)
    groups = apply_locality_lb(groups, proxy.locality, policy)
    return endpoint.ClusterLoadAssignment(cluster_name=name, endpoints=groups)


def _locality_matches(pattern: str, locality: str) -> bool:
    """``region/zone/subzone`` patterns: ``*`` matches the rest, missing parts match all."""
    wanted = pattern.split("/")
    have = [*locality.split("/"), "", ""][:3]
    for i, part in enumerate(wanted[:3]):
        if part == "*":
            return True
        if part != have[i]:
            return False
    return True


def _group_locality(group: endpoint.LocalityLbEndpoints) -> tuple[str, str, str]:
    loc = group.locality
    if loc is None:
        return ("", "", "")
    return (loc.region, loc.zone, loc.sub_zone)


def apply_locality_lb(
    groups: list[endpoint.LocalityLbEndpoints], proxy_locality: str, policy: TrafficPolicy
) -> list[endpoint.LocalityLbEndpoints]:
    """Locality-aware load balancing as Istio applies it for a proxy in ``proxy_locality``.

    * ``localityLbSetting.distribute``: the first rule whose ``from`` matches the proxy sets
      each locality's weight (a ``to`` share split across the matching localities by
      endpoint count); localities no ``to`` names get no traffic and are dropped.
    * Otherwise, with outlier detection on (Istio's precondition for failover), priorities by
      proximity: same subzone 0, same zone, same region, ``failover`` target regions, the
      rest; compacted so they start at 0 without gaps (Envoy and gRPC require it).

    Without a proxy locality, or with ``enabled: false``, the groups are returned unchanged.
    """
    lb = policy.load_balancer
    setting = lb.locality_lb_setting if lb is not None else None
    if not proxy_locality or (setting is not None and setting.enabled is False):
        return groups
    if setting is not None and setting.distribute:
        for rule in setting.distribute:
            if _locality_matches(rule.from_, proxy_locality):
                return _distribute(groups, rule.to)
        return groups
    if policy.outlier_detection is None:
        return groups
    region, zone, sub_zone = ([*proxy_locality.split("/"), "", ""])[:3]
    failover_regions = [
        f.to for f in (setting.failover if setting is not None else []) if f.from_ == region
    ]
    raw: list[int] = []
    for group in groups:
        r, z, s = _group_locality(group)
        if r == region and z == zone and s == sub_zone:
            raw.append(0)
        elif r == region and z == zone:
            raw.append(1)
        elif r == region:
            raw.append(2)
        elif r in failover_regions:
            raw.append(3 + failover_regions.index(r))
        else:
            raw.append(3 + len(failover_regions))
    compact = {p: i for i, p in enumerate(sorted(set(raw)))}
    for group, priority in zip(groups, raw, strict=True):
        group.priority = compact[priority]
    return groups


def _distribute(
    groups: list[endpoint.LocalityLbEndpoints], to: dict[str, int]
) -> list[endpoint.LocalityLbEndpoints]:
    weights: dict[int, float] = {}
    for pattern, share in sorted(to.items()):
        members = [
            i
            for i, g in enumerate(groups)
            if _locality_matches(pattern, "/".join(_group_locality(g)))
        ]
        total = sum(len(groups[i].lb_endpoints) for i in members)
        for i in members:
            if i in weights or not total:
                continue
            weights[i] = share * len(groups[i].lb_endpoints) / total
    out = []
    for i, group in enumerate(groups):
        weight = round(weights.get(i, 0.0) * 1000)
        if weight <= 0:
            continue
        group.load_balancing_weight = min(weight, MAX_UINT32)
        out.append(group)
    return out


def inbound_clusters(context: PushContext, proxy: ProxyInfo) -> dict[str, cluster.Cluster]:
    """``inbound|PORT||`` clusters for the services this proxy's workload serves."""
    out: dict[str, cluster.Cluster] = {}
    for service, ep in context.proxy_instances(proxy):
        for port in service.ports:
            name = inbound_cluster_name(port.number)
            if name in out:
                continue
            out[name] = cluster.Cluster(
                name=name,
                type=cluster.ClusterDiscoveryType.STATIC,
                connect_timeout=DEFAULT_CONNECT_TIMEOUT,
                lb_policy=cluster.ClusterLbPolicy.ROUND_ROBIN,
                load_assignment=endpoint.ClusterLoadAssignment(
                    cluster_name=name,
                    endpoints=[
                        endpoint.LocalityLbEndpoints(
                            lb_endpoints=[
                                endpoint.LbEndpoint(
                                    endpoint=endpoint.Endpoint(
                                        address=socket_address("127.0.0.1", ep.port_for(port))
                                    )
                                )
                            ]
                        )
                    ],
                ),
            )
    return out


def passthrough_clusters() -> dict[str, cluster.Cluster]:
    """BlackHoleCluster, PassthroughCluster and InboundPassthroughClusterIpv4, as Istio sends.

    The same (read-only) objects every time, so a server serializes them once.
    """
    return dict(_passthrough_clusters())


@functools.cache
def _passthrough_clusters() -> dict[str, cluster.Cluster]:
    return {
        BLACKHOLE_CLUSTER: cluster.Cluster(
            name=BLACKHOLE_CLUSTER,
            type=cluster.ClusterDiscoveryType.STATIC,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        ),
        PASSTHROUGH_CLUSTER: cluster.Cluster(
            name=PASSTHROUGH_CLUSTER,
            type=cluster.ClusterDiscoveryType.ORIGINAL_DST,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT,
            lb_policy=cluster.ClusterLbPolicy.CLUSTER_PROVIDED,
            circuit_breakers=_circuit_breakers(None, grpc=False),
        ),
        INBOUND_PASSTHROUGH_CLUSTER: cluster.Cluster(
            name=INBOUND_PASSTHROUGH_CLUSTER,
            type=cluster.ClusterDiscoveryType.ORIGINAL_DST,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT,
            lb_policy=cluster.ClusterLbPolicy.CLUSTER_PROVIDED,
            upstream_bind_config=core.BindConfig(
                source_address=core.SocketAddress(address="127.0.0.6", port_value=0)
            ),
        ),
    }
