"""Resources for Envoy sidecars (node type ``sidecar``), shaped like Istio's.

* Listeners: one outbound listener per HTTP service port, ``0.0.0.0_PORT``, not bound (traffic
  arrives through ``virtualOutbound``), with an HttpConnectionManager fetching route config
  ``PORT`` over ADS; TCP service ports get ``VIP_PORT`` (or ``0.0.0.0_PORT``) TCP proxies
  (routed by the VirtualService's ``tcp`` rules when there are any);
  ``virtualOutbound`` on 15001 (original destination, passthrough or blackhole by the Sidecar's
  outbound traffic policy) and ``virtualInbound`` on 15006 with a filter chain per port the
  workload serves, routing to ``inbound|PORT||``. PeerAuthentication decides each port's
  chains: STRICT terminates Istio mTLS (SDS ``default``/``ROOTCA``, client certificate
  required); PERMISSIVE has two chains, mTLS for connections offering Istio's ALPN values
  (read by the TLS inspector) and plaintext for everything else; DISABLE is plaintext. The
  passthrough catch-all follows the workload-wide mode. AuthorizationPolicies add RBAC
  filters to every inbound chain (see :mod:`istio_sdk.pilot.translate.authz`).
* Routes: route config ``PORT`` with a virtual host ``HOST:PORT`` per service on that port;
  domains are the FQDN, VIPs and, for services in the proxy's own namespace only, the short
  names; plus an ``allow_any`` (or ``block_all``) catch-all.
* Clusters and endpoints: see :mod:`istio_sdk.pilot.translate._clusters`.

What a proxy sees is scoped by the Sidecar resource that selects it and by ``exportTo``.
"""

from __future__ import annotations

from collections.abc import Iterable

import betterproto2

from istio_sdk.api.envoy.config.cluster import v3 as cluster
from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.config.route import v3 as route
from istio_sdk.api.envoy.extensions.filters.listener.original_dst import v3 as original_dst
from istio_sdk.api.envoy.extensions.filters.listener.tls_inspector import v3 as tls_inspector
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from istio_sdk.pilot.cluster_names import inbound_cluster_name, outbound_cluster_name
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Resolution, Service
from istio_sdk.pilot.translate._clusters import (
    build_cluster,
    build_load_assignment,
    inbound_clusters,
    outbound_cluster_names,
    passthrough_clusters,
)
from istio_sdk.pilot.translate._common import (
    BLACKHOLE_CLUSTER,
    INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
    VIRTUAL_INBOUND,
    VIRTUAL_INBOUND_PORT,
    VIRTUAL_OUTBOUND,
    VIRTUAL_OUTBOUND_PORT,
    ZERO,
    ads_source,
    hcm_filter,
    http_filters,
    pack,
    select_named,
    socket_address,
    tcp_proxy_filter,
)
from istio_sdk.pilot.translate._l4 import tcp_route_for
from istio_sdk.pilot.translate._routes import (
    _hash_policy,
    build_routes,
    default_route,
    has_http_rules,
)
from istio_sdk.pilot.translate.authn import (
    ISTIO_MTLS_ALPNS,
    MtlsMode,
    proxy_mtls_policy,
    sidecar_inbound_tls_context,
    tls_transport_socket,
)
from istio_sdk.pilot.translate.authz import authz_filters
from istio_sdk.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

__all__ = [
    "generate_sidecar",
    "sidecar_clusters",
    "sidecar_listeners",
    "sidecar_routes",
    "virtual_host_domains",
]

_ORIGINAL_DST_FILTER = "envoy.filters.listener.original_dst"
_TLS_INSPECTOR_FILTER = "envoy.filters.listener.tls_inspector"


def _scope_key(proxy: ProxyInfo) -> tuple[object, ...]:
    return (proxy.type.value, proxy.namespace, tuple(proxy.labels.items()))


def sidecar_clusters(context: PushContext, proxy: ProxyInfo) -> dict[str, cluster.Cluster]:
    """Every cluster a sidecar gets: outbound for visible services, inbound, passthrough."""
    key = ("sidecar-clusters", *_scope_key(proxy))
    outbound = context.cache.get(key)
    if outbound is None:
        outbound = {}
        for service in context.services_for(proxy):
            for name in outbound_cluster_names(context, proxy, service):
                built = build_cluster(context, proxy, name)
                if built is not None:
                    outbound[name] = built
        context.cache[key] = outbound
    out = dict(outbound)
    out.update(inbound_clusters(context, proxy))
    out.update(passthrough_clusters())
    return out


def _eds_cluster_names(context: PushContext, proxy: ProxyInfo) -> list[str]:
    return [
        name
        for service in context.services_for(proxy)
        if service.resolution is Resolution.STATIC
        for name in outbound_cluster_names(context, proxy, service)
    ]


def virtual_host_domains(service: Service, port: int, proxy: ProxyInfo) -> list[str]:
    """The domains of a service's virtual host, as Istio lists them for this proxy.

    The FQDN and its ``:PORT`` form always; short forms (``name``, ``name.ns``,
    ``name.ns.svc``) only for services in the proxy's own namespace; VIPs with and without
    the port.
    """
    host = service.hostname
    names = [host]
    suffix = f".{service.namespace}.svc."
    if service.namespace == proxy.namespace and suffix in host:
        short = host.split(".", 1)[0]
        names.extend([short, f"{short}.{service.namespace}", f"{short}.{service.namespace}.svc"])
    names.extend(a for a in service.addresses if "/" not in a)
    out: list[str] = []
    for name in names:
        out.extend([name, f"{name}:{port}"])
    return out


def _http_ports(services: Iterable[Service]) -> list[int]:
    return sorted({p.number for s in services for p in s.ports if p.is_http})


def sidecar_routes(context: PushContext, proxy: ProxyInfo) -> dict[str, route.RouteConfiguration]:
    """Route configuration ``PORT`` for every HTTP port of the services this proxy sees."""
    key = ("sidecar-routes", *_scope_key(proxy))
    cached = context.cache.get(key)
    if cached is not None:
        return dict(cached)
    services = context.services_for(proxy)
    scope = context.sidecar_scope(proxy)
    out: dict[str, route.RouteConfiguration] = {}
    for port in _http_ports(services):
        vhosts: list[route.VirtualHost] = []
        used: set[str] = set()
        for service in services:
            sp = service.port(port)
            if sp is None or not sp.is_http:
                continue
            if not scope.allows(service.namespace, service.hostname, proxy.namespace, port):
                continue
            domains = [d for d in virtual_host_domains(service, port, proxy) if d not in used]
            if not domains:
                continue
            used.update(domains)
            vs = context.virtual_service_for_host(service.hostname, proxy)
            if vs is not None and has_http_rules(vs):
                routes = build_routes(context, proxy, vs, port)
            else:
                cluster_name = outbound_cluster_name(port, "", service.hostname)
                routes = [
                    default_route(
                        cluster_name,
                        grpc=False,
                        hash_policy=_hash_policy(context, proxy, service.hostname, "", port),
                    )
                ]
            vhosts.append(
                route.VirtualHost(
                    name=f"{service.hostname}:{port}",
                    domains=domains,
                    routes=routes,
                    include_request_attempt_count=True,
                )
            )
        if scope.registry_only:
            catch_all = route.VirtualHost(
                name="block_all",
                domains=["*"],
                routes=[
                    route.Route(
                        name="block_all",
                        match=route.RouteMatch(prefix="/"),
                        direct_response=route.DirectResponseAction(status=502),
                    )
                ],
                include_request_attempt_count=True,
            )
        else:
            catch_all = route.VirtualHost(
                name="allow_any",
                domains=["*"],
                routes=[
                    route.Route(
                        name="allow_any",
                        match=route.RouteMatch(prefix="/"),
                        route=route.RouteAction(cluster=PASSTHROUGH_CLUSTER, timeout=ZERO),
                    )
                ],
                include_request_attempt_count=True,
            )
        vhosts.append(catch_all)
        out[str(port)] = route.RouteConfiguration(
            name=str(port), virtual_hosts=vhosts, validate_clusters=False
        )
    context.cache[key] = out
    return dict(out)


def _outbound_listeners(context: PushContext, proxy: ProxyInfo) -> dict[str, listener.Listener]:
    services = context.services_for(proxy)
    out: dict[str, listener.Listener] = {}
    for port in _http_ports(services):
        name = f"0.0.0.0_{port}"
        manager = hcm.HttpConnectionManager(
            stat_prefix=f"outbound_0.0.0.0_{port}",
            rds=hcm.Rds(config_source=ads_source(), route_config_name=str(port)),
            http_filters=http_filters(with_fault=True),
            use_remote_address=False,
        )
        out[name] = listener.Listener(
            name=name,
            address=socket_address("0.0.0.0", port),
            bind_to_port=False,
            traffic_direction=core.TrafficDirection.OUTBOUND,
            filter_chains=[listener.FilterChain(filters=[hcm_filter(manager)])],
        )
    for service in services:
        for sp in service.ports:
            if sp.is_http:
                continue
            vips = [a for a in service.addresses if "/" not in a]
            address = vips[0] if vips else "0.0.0.0"
            name = f"{address}_{sp.number}"
            if name in out or (service.resolution is Resolution.NONE and not vips):
                continue
            cluster_name = outbound_cluster_name(sp.number, "", service.hostname)
            vs = context.virtual_service_for_host(service.hostname, proxy)
            network_filter = tcp_route_for(context, proxy, [vs] if vs else [], sp.number)
            if network_filter is None:
                network_filter = tcp_proxy_filter(cluster_name, cluster_name)
            out[name] = listener.Listener(
                name=name,
                address=socket_address(address, sp.number),
                bind_to_port=False,
                traffic_direction=core.TrafficDirection.OUTBOUND,
                filter_chains=[listener.FilterChain(filters=[network_filter])],
            )
    return out


def _virtual_outbound(context: PushContext, proxy: ProxyInfo) -> listener.Listener:
    target = (
        BLACKHOLE_CLUSTER if context.sidecar_scope(proxy).registry_only else PASSTHROUGH_CLUSTER
    )
    return listener.Listener(
        name=VIRTUAL_OUTBOUND,
        address=socket_address("0.0.0.0", VIRTUAL_OUTBOUND_PORT),
        use_original_dst=True,
        traffic_direction=core.TrafficDirection.OUTBOUND,
        filter_chains=[
            listener.FilterChain(
                name=f"{VIRTUAL_OUTBOUND}-catchall-tcp",
                filters=[tcp_proxy_filter(target, target)],
            )
        ],
    )


def _chain_match(
    target: int | None, alpns: tuple[str, ...] = ()
) -> listener.FilterChainMatch | None:
    if target is None and not alpns:
        return None
    return listener.FilterChainMatch(destination_port=target, application_protocols=list(alpns))


def _inbound_chains(
    name: str,
    target: int | None,
    filters: list[listener.Filter],
    mode: MtlsMode,
    *,
    http: bool,
) -> list[listener.FilterChain]:
    """The filter chains of one inbound port (``target``; None: the catch-all) under ``mode``."""
    if mode is MtlsMode.DISABLE:
        match = _chain_match(target)
        return [listener.FilterChain(name=name, filter_chain_match=match, filters=filters)]
    mtls = tls_transport_socket(sidecar_inbound_tls_context(http=http))
    if mode is MtlsMode.STRICT:
        # Only chain for the port: a plaintext client fails the handshake, it never falls
        # through to the passthrough chain (Envoy does not widen a matched port).
        return [
            listener.FilterChain(
                name=name,
                filter_chain_match=_chain_match(target),
                filters=filters,
                transport_socket=mtls,
            )
        ]
    return [
        listener.FilterChain(
            name=f"{name}-mtls",
            filter_chain_match=_chain_match(target, ISTIO_MTLS_ALPNS),
            filters=filters,
            transport_socket=mtls,
        ),
        listener.FilterChain(name=name, filter_chain_match=_chain_match(target), filters=filters),
    ]


def _virtual_inbound(context: PushContext, proxy: ProxyInfo) -> listener.Listener:
    chains: list[listener.FilterChain] = []
    seen: set[int] = set()
    policy = proxy_mtls_policy(context, proxy)
    authz = authz_filters(context, proxy)
    inspect_tls = False
    for service, ep in context.proxy_instances(proxy):
        for sp in service.ports:
            target = ep.port_for(sp)
            if target in seen:
                continue
            seen.add(target)
            cluster_name = inbound_cluster_name(sp.number)
            if sp.is_http:
                manager = hcm.HttpConnectionManager(
                    stat_prefix=f"inbound_0.0.0.0_{target}",
                    route_config=route.RouteConfiguration(
                        name=cluster_name,
                        validate_clusters=False,
                        virtual_hosts=[
                            route.VirtualHost(
                                name=f"inbound|http|{sp.number}",
                                domains=["*"],
                                routes=[
                                    route.Route(
                                        name="default",
                                        match=route.RouteMatch(prefix="/"),
                                        route=route.RouteAction(
                                            cluster=cluster_name,
                                            timeout=ZERO,
                                            max_stream_duration=route.RouteActionMaxStreamDuration(
                                                max_stream_duration=ZERO,
                                                grpc_timeout_header_max=ZERO,
                                            ),
                                        ),
                                    )
                                ],
                            )
                        ],
                    ),
                    # RBAC (deny before allow) ahead of the router.
                    http_filters=[*authz.http, *http_filters(with_fault=False)],
                    use_remote_address=False,
                )
                filters = [hcm_filter(manager)]
            else:
                filters = [*authz.tcp, tcp_proxy_filter(cluster_name, cluster_name)]
            mode = policy.mode_for_port(target)
            inspect_tls = inspect_tls or mode is MtlsMode.PERMISSIVE
            chains.extend(
                _inbound_chains(f"0.0.0.0_{target}", target, filters, mode, http=sp.is_http)
            )
    # Ports no service names: passed through to the workload under the workload-wide mode.
    inspect_tls = inspect_tls or policy.mode is MtlsMode.PERMISSIVE
    chains.extend(
        _inbound_chains(
            f"{VIRTUAL_INBOUND}-catchall-tcp",
            None,
            [
                *authz.tcp,
                tcp_proxy_filter(INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER),
            ],
            policy.mode,
            http=False,
        )
    )
    listener_filters = [
        listener.ListenerFilter(
            name=_ORIGINAL_DST_FILTER, typed_config=pack(original_dst.OriginalDst())
        )
    ]
    if inspect_tls:
        # PERMISSIVE chains match on ALPN, which only the TLS inspector reads.
        listener_filters.append(
            listener.ListenerFilter(
                name=_TLS_INSPECTOR_FILTER, typed_config=pack(tls_inspector.TlsInspector())
            )
        )
    return listener.Listener(
        name=VIRTUAL_INBOUND,
        address=socket_address("0.0.0.0", VIRTUAL_INBOUND_PORT),
        traffic_direction=core.TrafficDirection.INBOUND,
        listener_filters=listener_filters,
        filter_chains=chains,
    )


def sidecar_listeners(context: PushContext, proxy: ProxyInfo) -> dict[str, listener.Listener]:
    """Outbound listeners per port plus ``virtualOutbound`` and ``virtualInbound``."""
    key = ("sidecar-outbound-listeners", *_scope_key(proxy))
    outbound = context.cache.get(key)
    if outbound is None:
        outbound = _outbound_listeners(context, proxy)
        outbound[VIRTUAL_OUTBOUND] = _virtual_outbound(context, proxy)
        context.cache[key] = outbound
    out = dict(outbound)
    out[VIRTUAL_INBOUND] = _virtual_inbound(context, proxy)
    return out


def generate_sidecar(
    context: PushContext, proxy: ProxyInfo, type_url: str, names: Iterable[str] | None
) -> dict[str, betterproto2.Message]:
    """Resources of ``type_url`` for a sidecar (all, or those in ``names``)."""
    if type_url == CLUSTER:
        return select_named(dict(sidecar_clusters(context, proxy)), names)
    if type_url == LISTENER:
        return select_named(dict(sidecar_listeners(context, proxy)), names)
    if type_url == ROUTE:
        return select_named(dict(sidecar_routes(context, proxy)), names)
    if type_url == ENDPOINT:
        wanted = list(names) if names is not None else _eds_cluster_names(context, proxy)
        out: dict[str, betterproto2.Message] = {}
        for name in wanted:
            key = ("cla", name, proxy.locality, *_scope_key(proxy))
            if key not in context.cache:
                context.cache[key] = build_load_assignment(context, proxy, name)
            cla: betterproto2.Message | None = context.cache[key]
            if cla is not None:
                out[name] = cla
        return out
    return {}
