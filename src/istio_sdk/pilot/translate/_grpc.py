"""Resources for proxyless gRPC clients (node metadata ``GENERATOR: grpc``).

A gRPC client dialling ``xds:///HOST:PORT`` asks, by exact name and over ADS only, for:

* LDS ``HOST:PORT``: an API listener whose HttpConnectionManager fetches route config
  ``HOST:PORT`` over ADS; its HTTP filters are fault then router (router last, as gRPC requires);
* RDS ``HOST:PORT``: one virtual host whose domains include the dialled authority, with the
  VirtualService's routes (or a default route to ``outbound|PORT||HOST``);
* CDS ``outbound|PORT|SUBSET|HOST``: EDS clusters over ADS, round robin or ring hash;
* EDS: ClusterLoadAssignments whose localities all carry a weight.

``HOST`` may be a short name (``reviews``, ``reviews.ns``) resolved in the client's namespace.
Names that resolve to nothing are left out of the answer (the resource does not exist).

xDS-enabled gRPC *servers* ask for a listener named after their listening address
(``xds.istio.io/grpc/lds/inbound/IP:PORT`` with Istio's bootstrap template, or any name with
``listening_address=IP:PORT``); they get a server listener, see :func:`grpc_server_listener`.
Its filter chain terminates mTLS (certificate provider instance ``default``, client certificate
required) when PeerAuthentication makes the listening port STRICT, see :mod:`.authn`.
"""

from __future__ import annotations

from collections.abc import Iterable

import betterproto2

from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.config.route import v3 as route
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from istio_sdk.pilot.cluster_names import outbound_cluster_name
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Service, ServicePort
from istio_sdk.pilot.translate._clusters import (
    build_cluster,
    build_load_assignment,
    outbound_cluster_names,
)
from istio_sdk.pilot.translate._common import (
    ads_source,
    hcm_filter,
    http_filters,
    pack,
    socket_address,
)
from istio_sdk.pilot.translate._routes import (
    _hash_policy,
    build_routes,
    default_route,
    has_http_rules,
)
from istio_sdk.pilot.translate.authn import (
    TLS_MODE_LABEL,
    MtlsMode,
    grpc_server_tls_context,
    proxy_mtls_policy,
    tls_transport_socket,
)
from istio_sdk.pilot.translate.authz import authz_filters
from istio_sdk.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

__all__ = [
    "SERVER_LISTENER_PREFIX",
    "generate_grpc",
    "grpc_listener",
    "grpc_route_configuration",
    "grpc_server_listener",
    "grpc_server_mtls_mode",
]

SERVER_LISTENER_PREFIX = "xds.istio.io/grpc/lds/inbound/"


def _resolve(
    context: PushContext, proxy: ProxyInfo, name: str
) -> tuple[Service, ServicePort] | None:
    host, sep, port_text = name.rpartition(":")
    if not sep or not port_text.isdigit():
        host, port_text = name, ""
    service = context.resolve_target(host, proxy)
    if service is None:
        return None
    if port_text:
        port = service.port(int(port_text))
    else:
        port = service.ports[0] if len(service.ports) == 1 else None
    if port is None:
        return None
    return service, port


def _server_address(name: str) -> tuple[str, int] | None:
    """``(ip, port)`` of a gRPC server listener name, or None for a client target."""
    if name.startswith(SERVER_LISTENER_PREFIX):
        address = name[len(SERVER_LISTENER_PREFIX) :]
    elif "listening_address=" in name:
        address = name.split("listening_address=", 1)[1].split("&", 1)[0]
    else:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def grpc_server_mtls_mode(context: PushContext, proxy: ProxyInfo, port: int) -> MtlsMode:
    """The mTLS mode an xDS-enabled gRPC server of ``proxy`` enforces on ``port``.

    PeerAuthentication decides, as for any workload, with two adjustments Istio makes: gRPC
    cannot serve plaintext and TLS on one port (its filter chain match understands no
    ``tls`` transport protocol), so PERMISSIVE serves plaintext; but a workload labelled
    ``security.istio.io/tlsMode: istio`` is dialled with mTLS by auto-mTLS clients, so for it
    PERMISSIVE means STRICT.
    """
    mode = proxy_mtls_policy(context, proxy).mode_for_port(port)
    if mode is MtlsMode.PERMISSIVE:
        labelled = proxy.labels.get(TLS_MODE_LABEL) == "istio"
        mode = MtlsMode.STRICT if labelled else MtlsMode.DISABLE
    return mode


def grpc_server_listener(
    name: str,
    mode: MtlsMode = MtlsMode.DISABLE,
    authz: Iterable[hcm.HttpFilter] = (),
) -> listener.Listener | None:
    """The listener an xDS-enabled gRPC *server* gets for ``name``.

    gRPC servers ask for the name their bootstrap's ``server_listener_resource_name_template``
    makes of their listening address (Istio's template is
    ``xds.istio.io/grpc/lds/inbound/%s``). The answer binds that address with one filter chain:
    an HttpConnectionManager whose inline route sends every request to the server itself
    (``non_forwarding_action``), router filter last. With ``mode`` STRICT the chain
    (``inbound-mtls``) carries a DownstreamTlsContext requiring a client certificate, both
    certificate and trust bundle from certificate provider instance ``default``; otherwise
    it is plaintext (``inbound-plaintext``). ``authz`` (the workload's AuthorizationPolicies
    as RBAC HTTP filters, see :mod:`.authz`) go before the router, as Istio sends them.
    """
    address = _server_address(name)
    if address is None:
        return None
    ip, port = address
    manager = hcm.HttpConnectionManager(
        stat_prefix=f"inbound_{port}",
        route_config=route.RouteConfiguration(
            name=f"inbound|{port}||",
            virtual_hosts=[
                route.VirtualHost(
                    name=f"inbound|http|{port}",
                    domains=["*"],
                    routes=[
                        route.Route(
                            name="default",
                            match=route.RouteMatch(prefix="/"),
                            non_forwarding_action=route.NonForwardingAction(),
                        )
                    ],
                )
            ],
        ),
        http_filters=[*authz, *http_filters(with_fault=False)],
    )
    chain = listener.FilterChain(name="inbound-plaintext", filters=[hcm_filter(manager)])
    if mode is MtlsMode.STRICT:
        chain.name = "inbound-mtls"
        chain.transport_socket = tls_transport_socket(grpc_server_tls_context())
    return listener.Listener(
        name=name,
        address=socket_address(ip, port),
        traffic_direction=core.TrafficDirection.INBOUND,
        filter_chains=[chain],
    )


def grpc_listener(context: PushContext, proxy: ProxyInfo, name: str) -> listener.Listener | None:
    """The listener for ``name``: an API listener for a client target (``HOST:PORT``), or a
    server listener for an xDS-enabled gRPC server's listening address."""
    address = _server_address(name)
    if address is not None:
        mode = grpc_server_mtls_mode(context, proxy, address[1])
        return grpc_server_listener(name, mode, authz_filters(context, proxy).http)
    if _resolve(context, proxy, name) is None:
        return None
    manager = hcm.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm.Rds(config_source=ads_source(), route_config_name=name),
        http_filters=http_filters(with_fault=True),
    )
    return listener.Listener(
        name=name, api_listener=listener.ApiListener(api_listener=pack(manager))
    )


def grpc_route_configuration(
    context: PushContext, proxy: ProxyInfo, name: str
) -> route.RouteConfiguration | None:
    """The route configuration for target ``name``: the VirtualService's routes, if any."""
    resolved = _resolve(context, proxy, name)
    if resolved is None:
        return None
    service, port = resolved
    vs = context.virtual_service_for_host(service.hostname, proxy)
    routes: list[route.Route] = []
    if vs is not None and has_http_rules(vs):
        routes = build_routes(context, proxy, vs, port.number, grpc=True)
    else:
        policy_hash = _hash_policy(context, proxy, service.hostname, "", port.number)
        routes = [
            default_route(
                outbound_cluster_name(port.number, "", service.hostname),
                grpc=True,
                hash_policy=policy_hash,
            )
        ]
    domains = [name]
    for extra in (f"{service.hostname}:{port.number}", service.hostname):
        if extra not in domains:
            domains.append(extra)
    return route.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route.VirtualHost(
                name=f"{service.hostname}:{port.number}", domains=domains, routes=routes
            )
        ],
    )


def _all_names(context: PushContext, proxy: ProxyInfo, type_url: str) -> list[str]:
    names: list[str] = []
    for service in context.services_for(proxy):
        if type_url in (LISTENER, ROUTE):
            names.extend(f"{service.hostname}:{p.number}" for p in service.ports)
        else:
            names.extend(outbound_cluster_names(context, proxy, service))
    return names


def generate_grpc(
    context: PushContext, proxy: ProxyInfo, type_url: str, names: Iterable[str] | None
) -> dict[str, betterproto2.Message]:
    """Resources of ``type_url`` named ``names`` (all of them when None) for ``proxy``."""
    wanted = list(names) if names is not None else _all_names(context, proxy, type_url)
    out: dict[str, betterproto2.Message] = {}
    for name in wanted:
        key: tuple[object, ...] = (
            "grpc",
            type_url,
            name,
            proxy.namespace,
            tuple(proxy.labels.items()),
        )
        if type_url == ENDPOINT:
            key = (*key, proxy.locality)
        if key not in context.cache:
            built: betterproto2.Message | None
            if type_url == LISTENER:
                built = grpc_listener(context, proxy, name)
            elif type_url == ROUTE:
                built = grpc_route_configuration(context, proxy, name)
            elif type_url == CLUSTER:
                built = build_cluster(context, proxy, name, grpc=True)
            elif type_url == ENDPOINT:
                built = build_load_assignment(context, proxy, name)
            else:
                built = None
            context.cache[key] = built
        cached: betterproto2.Message | None = context.cache[key]
        if cached is not None:
            out[name] = cached
    return out
