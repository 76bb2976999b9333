"""Pilot: xDS discovery server, ADS client, service registry and Istio-to-Envoy translation.

Public pieces:

* :class:`~istio_sdk.pilot.client.PilotClient` (``istio_sdk.PilotClient``): an async ADS client
  (SotW or delta) for any xDS server, with :func:`~istio_sdk.pilot.client.sidecar_node` and
  :func:`~istio_sdk.pilot.client.grpc_node` to identify as an Istio sidecar or proxyless gRPC.
* :class:`~istio_sdk.pilot.server.DiscoveryServer` (``istio_sdk.DiscoveryServer``): ADS over
  grpclib, debounced pushes to affected proxies, per-proxy ACK/NACK state, counters.
* :class:`~istio_sdk.pilot.push_context.PushContext` and
  :class:`~istio_sdk.pilot.registry.ServiceRegistry`: what translation reads.
* Errors: :class:`PilotClientError`, :class:`PushContextError`, :class:`RegistryError` (also
  importable from ``istio_sdk``).

The seam between the server and translation is the ``ResourceGenerator`` protocol
(:class:`istio_sdk.pilot.server.ResourceGenerator`)::

    generate(proxy: ProxyInfo, type_url: str, names: frozenset[str] | None)
        -> Mapping[str, betterproto2.Message]

``names`` is ``None`` for a wildcard subscription. Translation implements it as
:class:`istio_sdk.pilot.translate.PushContextGenerator` over an immutable
:class:`~istio_sdk.pilot.push_context.PushContext`; its ``apply(new_context)`` returns the
:class:`~istio_sdk.pilot.server.PushRequest` (types, changed names, affected proxies) that
``DiscoveryServer.push`` debounces and sends. :class:`~istio_sdk.pilot.server.StaticGenerator`
is a fixed set of resources for tests and small servers. The server writes the generator's
answers, once per proxy scope, into its :class:`~istio_sdk.pilot.cache.SnapshotCache` (see
:mod:`istio_sdk.pilot.publisher`) and the streams only read from it, so a resource shared by
many proxies is serialized once per config version.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from istio_sdk.pilot.client import PilotClient as PilotClient
    from istio_sdk.pilot.client import PilotClientError as PilotClientError
    from istio_sdk.pilot.client import ResourceUpdate as ResourceUpdate
    from istio_sdk.pilot.client import grpc_node as grpc_node
    from istio_sdk.pilot.client import sidecar_node as sidecar_node
    from istio_sdk.pilot.push_context import ProxyInfo as ProxyInfo
    from istio_sdk.pilot.push_context import PushContext as PushContext
    from istio_sdk.pilot.push_context import PushContextError as PushContextError
    from istio_sdk.pilot.registry import RegistryError as RegistryError
    from istio_sdk.pilot.registry import ServiceRegistry as ServiceRegistry
    from istio_sdk.pilot.server import DiscoveryServer as DiscoveryServer
    from istio_sdk.pilot.server import PushRequest as PushRequest
    from istio_sdk.pilot.server import ResourceGenerator as ResourceGenerator
    from istio_sdk.pilot.server import StaticGenerator as StaticGenerator

# public name -> the module that defines it; imported on first use
_EXPORTS = {
    "PilotClient": "istio_sdk.pilot.client",
    "PilotClientError": "istio_sdk.pilot.client",
    "ResourceUpdate": "istio_sdk.pilot.client",
    "grpc_node": "istio_sdk.pilot.client",
    "sidecar_node": "istio_sdk.pilot.client",
    "DiscoveryServer": "istio_sdk.pilot.server",
    "PushRequest": "istio_sdk.pilot.server",
    "ResourceGenerator": "istio_sdk.pilot.server",
    "StaticGenerator": "istio_sdk.pilot.server",
    "ProxyInfo": "istio_sdk.pilot.push_context",
    "PushContext": "istio_sdk.pilot.push_context",
    "PushContextError": "istio_sdk.pilot.push_context",
    "RegistryError": "istio_sdk.pilot.registry",
    "ServiceRegistry": "istio_sdk.pilot.registry",
}

__all__ = [
    "DiscoveryServer",
    "PilotClient",
    "PilotClientError",
    "ProxyInfo",
    "PushContext",
    "PushContextError",
    "PushRequest",
    "RegistryError",
    "ResourceGenerator",
    "ResourceUpdate",
    "ServiceRegistry",
    "StaticGenerator",
    "grpc_node",
    "sidecar_node",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'istio_sdk.pilot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
