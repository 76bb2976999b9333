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
"""

from __future__ import annotations

from collections.abc import Iterable

import betterproto2

from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.config.route import v3 as route
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from istio_sdk.pilot.push_context import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ProxyInfo,
    PushContext,
)
from istio_sdk.pilot.registry import Service, ServicePort
from istio_sdk.pilot.translate._common import ads_source, http_filters, outbound_cluster_name, pack
from istio_sdk.pilot.translate.clusters import (
    build_cluster,
    build_load_assignment,
    outbound_cluster_names,
)
from istio_sdk.pilot.translate.routes import _hash_policy, build_routes, default_route

__all__ = ["generate_grpc", "grpc_listener", "grpc_route_configuration"]


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


def grpc_listener(context: PushContext, proxy: ProxyInfo, name: str) -> listener.Listener | None:
    """The API listener a gRPC client gets for target ``name`` (``HOST:PORT``)."""
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
    if vs is not None:
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
        if type_url in (LISTENER_TYPE, ROUTE_TYPE):
            names.extend(f"{service.hostname}:{p.number}" for p in service.ports)
        else:
            names.extend(outbound_cluster_names(context, proxy, service))
    return names


def generate_grpc(
    context: PushContext, proxy: ProxyInfo, type_url: str, names: Iterable[str] | None
) -> dict[str, betterproto2.Message]:
    """Resources of ``type_url`` named ``names`` (all of them when None/empty) for ``proxy``."""
    wanted = list(names or ()) or _all_names(context, proxy, type_url)
    out: dict[str, betterproto2.Message] = {}
    for name in wanted:
        key = ("grpc", type_url, name, proxy.namespace, tuple(proxy.labels.items()))
        if key not in context.cache:
            built: betterproto2.Message | None
            if type_url == LISTENER_TYPE:
                built = grpc_listener(context, proxy, name)
            elif type_url == ROUTE_TYPE:
                built = grpc_route_configuration(context, proxy, name)
            elif type_url == CLUSTER_TYPE:
                built = build_cluster(context, proxy, name, grpc=True)
            elif type_url == ENDPOINT_TYPE:
                built = build_load_assignment(context, proxy, name)
            else:
                built = None
            context.cache[key] = built
        cached: betterproto2.Message | None = context.cache[key]
        if cached is not None:
            out[name] = cached
    return out
