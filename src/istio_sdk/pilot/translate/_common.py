"""Shared pieces of Envoy config that every translator uses: names, config sources, filters."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable

import betterproto2

from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.extensions.filters.http.fault import v3 as fault
from istio_sdk.api.envoy.extensions.filters.http.router import v3 as router
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from istio_sdk.api.envoy.extensions.filters.network.tcp_proxy import v3 as tcp_proxy
from istio_sdk.api.google.protobuf import Any

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
ROUTER_FILTER = "envoy.filters.http.router"
FAULT_FILTER = "envoy.filters.http.fault"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

BLACKHOLE_CLUSTER = "BlackHoleCluster"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughClusterIpv4"
VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_INBOUND = "virtualInbound"
VIRTUAL_OUTBOUND_PORT = 15001
VIRTUAL_INBOUND_PORT = 15006

DEFAULT_CONNECT_TIMEOUT = datetime.timedelta(seconds=10)
ZERO = datetime.timedelta(0)
MAX_UINT32 = 2**32 - 1


def select_named(
    resources: dict[str, betterproto2.Message], names: Iterable[str] | None
) -> dict[str, betterproto2.Message]:
    """The entries of ``resources`` named in ``names`` (all of them when ``names`` is None).

    Names that ``resources`` lacks are skipped: an xDS server answers a subscription with
    what it has.
    """
    if names is None:
        return resources
    return {n: resources[n] for n in names if n in resources}


def pack(message: betterproto2.Message) -> Any:
    """Wrap ``message`` in a ``google.protobuf.Any`` with its type URL."""
    return Any.pack(message)


def ads_source() -> core.ConfigSource:
    """The config source every dynamic resource points at: ADS, v3, no fetch timeout."""
    return core.ConfigSource(
        ads=core.AggregatedConfigSource(),
        initial_fetch_timeout=ZERO,
        resource_api_version=core.ApiVersion.V3,
    )


def socket_address(address: str, port: int) -> core.Address:
    """A TCP socket address."""
    return core.Address(socket_address=core.SocketAddress(address=address, port_value=port))


@functools.cache
def _http_filter_chain(with_fault: bool) -> tuple[hcm.HttpFilter, ...]:
    filters = []
    if with_fault:
        filters.append(hcm.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault.HttpFault())))
    filters.append(hcm.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router.Router())))
    return tuple(filters)


def http_filters(*, with_fault: bool = True) -> list[hcm.HttpFilter]:
    """The HTTP filter chain: fault (so routes can inject faults), router always last.

    The filter messages are shared between listeners (treat them as read-only).
    """
    return list(_http_filter_chain(with_fault))


def hcm_filter(connection_manager: hcm.HttpConnectionManager) -> listener.Filter:
    """A network filter entry holding an HTTP connection manager."""
    return listener.Filter(name=HCM_FILTER, typed_config=pack(connection_manager))


def tcp_proxy_filter(stat_prefix: str, cluster: str) -> listener.Filter:
    """A network filter that proxies raw TCP to ``cluster``."""
    return listener.Filter(
        name=TCP_PROXY_FILTER,
        typed_config=pack(tcp_proxy.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)),
    )
