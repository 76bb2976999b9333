"""Istio config and registry to Envoy xDS resources: Pilot's translators.

The seam with the discovery server is one pure function::

    generate(push_context, proxy, type_url, names) -> dict[str, Message]

``push_context`` is a :class:`~istio_sdk.pilot.push_context.PushContext` (immutable snapshot),
``proxy`` a :class:`~istio_sdk.pilot.proxy.ProxyInfo` (usually
``ProxyInfo.from_node(request.node)``), ``type_url`` one of the four Envoy v3 type URLs (LDS,
RDS, CDS, EDS) and ``names`` the resource names the proxy subscribed to (``None`` for a
wildcard subscription; an empty collection asks for nothing). The answer maps resource name
to the generated Envoy message (``istio_sdk.api.envoy...``); a name that does not exist for
this proxy is simply absent.
NDS (``istio_sdk.xds.NAME_TABLE``) is answered by
:func:`istio_sdk.pilot.name_table.generate_name_table` (one unnamed ``NameTable``).
Unknown type URLs yield an empty dict. :class:`PushContextGenerator` is the stateful
``ResourceGenerator`` that :class:`istio_sdk.pilot.server.DiscoveryServer` takes
(``generate(proxy, type_url, names)`` over the current snapshot, and ``apply(new_snapshot)``
returning the push request).

Which translator runs depends on the proxy: proxyless gRPC clients (``GENERATOR: grpc``) get
:mod:`._grpc` resources, ``router`` nodes :mod:`._gateway` resources and everything else
:mod:`._sidecar` resources. Results are memoised in the push context, so proxies that share a
scope (namespace, labels) share the same message objects, translated once per snapshot.

For incremental pushes, :func:`~istio_sdk.pilot.changes.compute_changes` compares two
snapshots; the resulting :class:`~istio_sdk.pilot.changes.ChangeSet` says which types to
recompute (``type_urls``: EDS only for endpoint-only changes), which proxies are affected
(``affects``) and which ClusterLoadAssignments changed (``changed_clusters``).
"""

from __future__ import annotations

from collections.abc import Iterable

import betterproto2

from istio_sdk.pilot.changes import ALL_TYPES
from istio_sdk.pilot.name_table import generate_name_table
from istio_sdk.pilot.proxy import ProxyInfo, ProxyType
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.translate._gateway import generate_gateway
from istio_sdk.pilot.translate._generator import PushContextGenerator
from istio_sdk.pilot.translate._grpc import generate_grpc
from istio_sdk.pilot.translate._sidecar import generate_sidecar
from istio_sdk.xds.types import NAME_TABLE

__all__ = [
    "ALL_TYPES",
    "PushContextGenerator",
    "generate",
]


def generate(
    context: PushContext,
    proxy: ProxyInfo,
    type_url: str,
    names: Iterable[str] | None = None,
) -> dict[str, betterproto2.Message]:
    """The resources of ``type_url`` that ``proxy`` should have (only ``names`` if given)."""
    if type_url == NAME_TABLE:
        return dict(generate_name_table(context, proxy, None if names is None else set(names)))
    if type_url not in ALL_TYPES:
        return {}
    if proxy.is_grpc:
        return generate_grpc(context, proxy, type_url, names)
    if proxy.type is ProxyType.ROUTER:
        return generate_gateway(context, proxy, type_url, names)
    return generate_sidecar(context, proxy, type_url, names)
