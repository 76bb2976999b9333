"""TCP and TLS (SNI) routing from VirtualService ``tcp`` and ``tls`` rules.

A rule applies when its match (if any) names the listener's port, the proxy's labels and
namespace, and the gateway (``mesh`` for sidecars). Its destinations become a ``tcp_proxy``
network filter: one cluster, or weighted clusters (zero weights dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.extensions.filters.network.tcp_proxy import v3 as tcp_proxy
from istio_sdk.api.istio.networking import v1alpha3 as networking
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.translate._common import TCP_PROXY_FILTER, pack
from istio_sdk.pilot.translate._routes import destination_cluster, match_applies

__all__ = ["l4_applies", "tcp_proxy_for", "tcp_route_for", "tls_routes_for"]


def l4_applies(
    match: networking.L4MatchAttributes | networking.TlsMatchAttributes,
    proxy: ProxyInfo,
    port: int,
    gateway: str,
    namespace: str,
) -> bool:
    """Whether an L4/TLS match applies to this proxy, listener port and gateway."""
    return match_applies(match, proxy, port, gateway, namespace)


def tcp_proxy_for(
    context: PushContext,
    proxy: ProxyInfo,
    destinations: Sequence[networking.RouteDestination],
    namespace: str,
    port: int,
    *,
    stat_prefix: str = "",
) -> listener.Filter | None:
    """A ``tcp_proxy`` filter sending to ``destinations``; None when none has weight."""
    targets: list[tuple[str, int]] = []
    for rd in destinations:
        if rd.destination is None:
            continue
        name, _ = destination_cluster(context, proxy, rd.destination, namespace, port)
        targets.append((name, rd.weight))
    if len(targets) > 1:
        targets = [(name, weight) for name, weight in targets if weight > 0]
    if not targets:
        return None
    config = tcp_proxy.TcpProxy(stat_prefix=stat_prefix or targets[0][0])
    if len(targets) == 1:
        config.cluster = targets[0][0]
    else:
        config.weighted_clusters = tcp_proxy.TcpProxyWeightedCluster(
            clusters=[
                tcp_proxy.TcpProxyWeightedClusterClusterWeight(name=name, weight=weight)
                for name, weight in targets
            ]
        )
    return listener.Filter(name=TCP_PROXY_FILTER, typed_config=pack(config))


def tcp_route_for(
    context: PushContext,
    proxy: ProxyInfo,
    virtual_services: Iterable[ConfigEntry],
    port: int,
    gateway: str = "mesh",
) -> listener.Filter | None:
    """The first applicable ``tcp`` rule among ``virtual_services`` as a tcp_proxy filter."""
    for vs in virtual_services:
        spec = vs.spec
        assert isinstance(spec, networking.VirtualService)
        for rule in spec.tcp:
            matches = list(rule.match)
            if matches and not any(
                l4_applies(m, proxy, port, gateway, vs.namespace) for m in matches
            ):
                continue
            built = tcp_proxy_for(context, proxy, rule.route, vs.namespace, port)
            if built is not None:
                return built
    return None


def tls_routes_for(
    context: PushContext,
    proxy: ProxyInfo,
    virtual_services: Iterable[ConfigEntry],
    port: int,
    gateway: str,
) -> list[tuple[list[str], listener.Filter]]:
    """``(sni_hosts, tcp_proxy filter)`` for every applicable ``tls`` rule, in order.

    SNI hosts are taken from the matches; a host already claimed by an earlier rule is
    skipped, so filter chain matches stay unique.
    """
    out: list[tuple[list[str], listener.Filter]] = []
    claimed: set[str] = set()
    for vs in virtual_services:
        spec = vs.spec
        assert isinstance(spec, networking.VirtualService)
        for rule in spec.tls:
            sni: list[str] = []
            for m in rule.match:
                if l4_applies(m, proxy, port, gateway, vs.namespace):
                    sni.extend(h for h in m.sni_hosts if h not in claimed and h not in sni)
            if not sni:
                continue
            built = tcp_proxy_for(context, proxy, rule.route, vs.namespace, port)
            if built is None:
                continue
            claimed.update(sni)
            out.append((sorted(sni), built))
    return out
