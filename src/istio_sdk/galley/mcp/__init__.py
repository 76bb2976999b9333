"""MCP (``istio.mcp.v1alpha1``) as Galley and Pilot 1.3 spoke it.

:class:`McpSource` serves a :class:`~istio_sdk.config.ConfigStore` as Galley's
``ResourceSource`` (and dials out to ``ResourceSink``\\ s); :class:`GalleyClient` is a sink that
mirrors collections into a store. Both are thin loops around the protocol core in
:mod:`istio_sdk.xds` (``ServerSession(mode="mcp")`` and :class:`~istio_sdk.xds.sink.SinkSession`).
"""

from istio_sdk.galley.mcp.collections import (
    COLLECTIONS,
    DEFAULT_COLLECTIONS,
    PILOT_COLLECTIONS,
    Collection,
    collection,
)
from istio_sdk.galley.mcp.sink import GalleyClient, SinkStats
from istio_sdk.galley.mcp.source import DEFAULT_GALLEY_PORT, McpSource, SourceStats

__all__ = [
    "COLLECTIONS",
    "DEFAULT_COLLECTIONS",
    "DEFAULT_GALLEY_PORT",
    "PILOT_COLLECTIONS",
    "Collection",
    "GalleyClient",
    "McpSource",
    "SinkStats",
    "SourceStats",
    "collection",
]
