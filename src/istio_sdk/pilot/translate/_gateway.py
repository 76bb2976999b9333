"""Resources for gateway proxies (node type ``router``) from Gateway and VirtualService config.

Every Gateway whose ``selector`` matches the proxy's labels contributes its servers. Servers are
grouped by port into one bound listener ``0.0.0.0_PORT``:

* plain HTTP servers share route config ``http.PORT``;
* TLS-terminating servers (SIMPLE, MUTUAL, ISTIO_MUTUAL) get their own filter chain, matched on
  SNI (the server's hosts), with a DownstreamTlsContext (files, or SDS for ``credentialName``)
  and route config ``https.PORT.PORTNAME.GATEWAY.NAMESPACE``.

Route configs hold a virtual host ``HOST:PORT`` for each host of each VirtualService bound to
the gateway (``gateways: [ns/name]``) that the server's ``hosts`` admit; ``httpsRedirect``
servers require TLS. TLS PASSTHROUGH servers get a filter chain per VirtualService ``tls``
rule, matched on its SNI hosts, proxying TCP to the destination; TCP servers proxy by the
bound VirtualServices' ``tcp`` rules. Gateways get every outbound cluster the proxy may see.
"""

from __future__ import annotations

from collections.abc import Iterable

import betterproto2

from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.config.route import v3 as route
from istio_sdk.api.envoy.extensions.filters.listener.tls_inspector import v3 as tls_inspector
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from istio_sdk.api.envoy.extensions.transport_sockets.tls import v3 as tls
from istio_sdk.api.istio.networking import v1alpha3 as networking
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.hosts import host_matches, split_namespaced_host
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.translate._clusters import _sds_source, passthrough_clusters
from istio_sdk.pilot.translate._common import (
    TLS_TRANSPORT_SOCKET,
    ads_source,
    hcm_filter,
    http_filters,
    pack,
    select_named,
    socket_address,
)
from istio_sdk.pilot.translate._l4 import tcp_route_for, tls_routes_for
from istio_sdk.pilot.translate._routes import build_routes, has_http_rules
from istio_sdk.pilot.translate._sidecar import generate_sidecar, sidecar_clusters
from istio_sdk.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

__all__ = ["gateway_listeners", "gateway_routes", "generate_gateway"]

_TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
_TERMINATING = {
    networking.ServerTlsSettingsTlSmode.SIMPLE,
    networking.ServerTlsSettingsTlSmode.MUTUAL,
    networking.ServerTlsSettingsTlSmode.ISTIO_MUTUAL,
    networking.ServerTlsSettingsTlSmode.OPTIONAL_MUTUAL,
}
_ALL_KINDS = frozenset({"http", "passthrough", "tcp"})


def _server_kind(server: networking.Server) -> str:
    """``http`` (incl. terminated HTTPS), ``passthrough`` (SNI routing), ``tcp``, or ``""``
    for servers not translated."""
    assert server.port is not None
    protocol = server.port.protocol.upper()
    tls_mode = server.tls.mode if server.tls is not None else None
    if protocol in ("HTTP", "HTTP2", "GRPC"):
        return "http"
    if protocol in ("HTTPS", "TLS"):
        passthrough = (
            networking.ServerTlsSettingsTlSmode.PASSTHROUGH,
            networking.ServerTlsSettingsTlSmode.AUTO_PASSTHROUGH,
        )
        if tls_mode in passthrough:
            return "passthrough"
        if protocol == "HTTPS" and tls_mode in _TERMINATING:
            return "http"
        return ""  # TLS termination for raw TCP is not translated
    return "tcp"


def _servers(
    context: PushContext, proxy: ProxyInfo, kinds: frozenset[str] = frozenset({"http"})
) -> list[tuple[ConfigEntry, networking.Server]]:
    out = []
    for entry in context.gateways_for(proxy):
        spec = entry.spec
        assert isinstance(spec, networking.Gateway)
        for server in spec.servers:
            if server.port is None:
                continue
            if _server_kind(server) in kinds:
                out.append((entry, server))
    return out


def _terminates_tls(server: networking.Server) -> bool:
    return (
        server.tls is not None and server.tls.mode in _TERMINATING and not server.tls.https_redirect
    )


def _route_name(gateway: ConfigEntry, server: networking.Server) -> str:
    assert server.port is not None
    if _terminates_tls(server):
        return f"https.{server.port.number}.{server.port.name}.{gateway.name}.{gateway.namespace}"
    return f"http.{server.port.number}"


def _server_host_patterns(gateway: ConfigEntry, server: networking.Server) -> list[tuple[str, str]]:
    return [split_namespaced_host(h, gateway.namespace) for h in server.hosts]


def _downstream_tls(server: networking.Server) -> core.TransportSocket:
    settings = server.tls
    assert settings is not None
    modes = networking.ServerTlsSettingsTlSmode
    common = tls.CommonTlsContext(alpn_protocols=["h2", "http/1.1"])
    if settings.mode == modes.ISTIO_MUTUAL:
        common.tls_certificate_sds_secret_configs = [
            tls.SdsSecretConfig(name="default", sds_config=_sds_source())
        ]
        common.validation_context_sds_secret_config = tls.SdsSecretConfig(
            name="ROOTCA", sds_config=_sds_source()
        )
    elif settings.credential_name:
        common.tls_certificate_sds_secret_configs = [
            tls.SdsSecretConfig(name=settings.credential_name, sds_config=_sds_source())
        ]
        if settings.mode != modes.SIMPLE:
            common.validation_context_sds_secret_config = tls.SdsSecretConfig(
                name=f"{settings.credential_name}-cacert", sds_config=_sds_source()
            )
    elif settings.server_certificate and settings.private_key:
        common.tls_certificates = [
            tls.TlsCertificate(
                certificate_chain=core.DataSource(filename=settings.server_certificate),
                private_key=core.DataSource(filename=settings.private_key),
            )
        ]
        if settings.mode != modes.SIMPLE and settings.ca_certificates:
            common.validation_context = tls.CertificateValidationContext(
                trusted_ca=core.DataSource(filename=settings.ca_certificates)
            )
    require = settings.mode in (modes.MUTUAL, modes.ISTIO_MUTUAL)
    context = tls.DownstreamTlsContext(common_tls_context=common)
    if require:
        context.require_client_certificate = True
    return core.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def gateway_listeners(context: PushContext, proxy: ProxyInfo) -> dict[str, listener.Listener]:
    """One bound listener per Gateway port, with a filter chain per TLS server."""
    by_port: dict[int, list[tuple[ConfigEntry, networking.Server]]] = {}
    for gateway, server in _servers(context, proxy, _ALL_KINDS):
        assert server.port is not None
        by_port.setdefault(server.port.number, []).append((gateway, server))
    out: dict[str, listener.Listener] = {}
    for port in sorted(by_port):
        chains: list[listener.FilterChain] = []
        default_chain = False
        needs_sni = False
        claimed_sni: set[str] = set()
        for gateway, server in by_port[port]:
            kind = _server_kind(server)
            gw_ref = f"{gateway.namespace}/{gateway.name}"
            if kind == "passthrough":
                patterns = _server_host_patterns(gateway, server)
                vss = context.virtual_services_for(proxy, gateway=gw_ref)
                for sni, network_filter in tls_routes_for(context, proxy, vss, port, gw_ref):
                    names = [
                        h
                        for h in sni
                        if h not in claimed_sni
                        and any(host_matches(p, h) or host_matches(h, p) for _, p in patterns)
                    ]
                    if not names:
                        continue
                    claimed_sni.update(names)
                    needs_sni = True
                    chains.append(
                        listener.FilterChain(
                            name=f"passthrough.{port}.{'.'.join(names)}",
                            filter_chain_match=listener.FilterChainMatch(server_names=names),
                            filters=[network_filter],
                        )
                    )
                continue
            if kind == "tcp":
                if default_chain:
                    continue
                vss = context.virtual_services_for(proxy, gateway=gw_ref)
                network_filter = tcp_route_for(context, proxy, vss, port, gw_ref)
                if network_filter is not None:
                    default_chain = True
                    chains.append(
                        listener.FilterChain(name=f"tcp.{port}", filters=[network_filter])
                    )
                continue
            rds_name = _route_name(gateway, server)
            manager = hcm.HttpConnectionManager(
                stat_prefix=f"outbound_0.0.0.0_{port}",
                rds=hcm.Rds(config_source=ads_source(), route_config_name=rds_name),
                http_filters=http_filters(with_fault=True),
                use_remote_address=True,
            )
            if _terminates_tls(server):
                needs_sni = True
                sni = sorted({h for _, h in _server_host_patterns(gateway, server) if h != "*"})
                chains.append(
                    listener.FilterChain(
                        name=rds_name,
                        filter_chain_match=listener.FilterChainMatch(server_names=sni),
                        filters=[hcm_filter(manager)],
                        transport_socket=_downstream_tls(server),
                    )
                )
            elif not default_chain:
                default_chain = True
                chains.append(listener.FilterChain(name=rds_name, filters=[hcm_filter(manager)]))
        if not chains:
            continue
        name = f"0.0.0.0_{port}"
        built = listener.Listener(
            name=name,
            address=socket_address("0.0.0.0", port),
            traffic_direction=core.TrafficDirection.OUTBOUND,
            filter_chains=chains,
        )
        if needs_sni:
            built.listener_filters = [
                listener.ListenerFilter(
                    name=_TLS_INSPECTOR, typed_config=pack(tls_inspector.TlsInspector())
                )
            ]
        out[name] = built
    return out


def gateway_routes(context: PushContext, proxy: ProxyInfo) -> dict[str, route.RouteConfiguration]:
    """Route configs ``http.PORT`` / ``https.PORT.NAME.GW.NS`` from bound VirtualServices."""
    groups: dict[str, list[tuple[ConfigEntry, networking.Server]]] = {}
    for gateway, server in _servers(context, proxy):
        groups.setdefault(_route_name(gateway, server), []).append((gateway, server))
    out: dict[str, route.RouteConfiguration] = {}
    for rds_name, members in sorted(groups.items()):
        vhosts: dict[str, route.VirtualHost] = {}
        used_domains: set[str] = set()
        for gateway, server in members:
            assert server.port is not None
            port = server.port.number
            gw_ref = f"{gateway.namespace}/{gateway.name}"
            patterns = _server_host_patterns(gateway, server)
            redirect = server.tls is not None and server.tls.https_redirect
            for vs in context.virtual_services_for(proxy, gateway=gw_ref):
                spec = vs.spec
                assert isinstance(spec, networking.VirtualService)
                if not has_http_rules(vs):
                    continue
                for raw_host in spec.hosts:
                    host = context.fqdn(raw_host, vs.namespace) if raw_host != "*" else "*"
                    chosen = None
                    for ns, pattern in patterns:
                        if ns not in ("*", vs.namespace):
                            continue
                        if host_matches(pattern, host):
                            chosen = host
                        elif host_matches(host, pattern):
                            chosen = pattern
                        if chosen:
                            break
                    if chosen is None:
                        continue
                    vh_name = f"{chosen}:{port}"
                    if vh_name in vhosts:
                        continue
                    domains = [d for d in (chosen, f"{chosen}:{port}") if d not in used_domains]
                    if not domains:
                        continue
                    used_domains.update(domains)
                    vhost = route.VirtualHost(
                        name=vh_name,
                        domains=domains,
                        routes=build_routes(context, proxy, vs, port, gateway=gw_ref),
                        include_request_attempt_count=True,
                    )
                    if redirect:
                        vhost.require_tls = route.VirtualHostTlsRequirementType.ALL
                    vhosts[vh_name] = vhost
        out[rds_name] = route.RouteConfiguration(
            name=rds_name, virtual_hosts=list(vhosts.values()), validate_clusters=False
        )
    return out


def generate_gateway(
    context: PushContext, proxy: ProxyInfo, type_url: str, names: Iterable[str] | None
) -> dict[str, betterproto2.Message]:
    """Resources of ``type_url`` for a gateway proxy (all, or those in ``names``)."""
    if type_url == LISTENER:
        return select_named(dict(gateway_listeners(context, proxy)), names)
    if type_url == ROUTE:
        return select_named(dict(gateway_routes(context, proxy)), names)
    if type_url == CLUSTER:
        clusters: dict[str, betterproto2.Message] = dict(sidecar_clusters(context, proxy))
        # A gateway serves no workload of its own: drop inbound clusters, keep passthrough ones.
        clusters = {n: c for n, c in clusters.items() if not n.startswith("inbound|")} | dict(
            passthrough_clusters()
        )
        return select_named(clusters, names)
    if type_url == ENDPOINT:
        return generate_sidecar(context, proxy, type_url, names)
    return {}
