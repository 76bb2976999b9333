"""Per-collection MCP snapshots built from config resources: pure, synchronous, no I/O.

:func:`build_snapshot` turns a list of :class:`~istio_sdk.config.Resource` into, per served
collection, name -> :class:`McpResource`: the serialized ``istio.mcp.v1alpha1.Resource``
(metadata name ``ns/name``, or ``name`` for a cluster-scoped kind; version = the store's
resourceVersion; labels, annotations, create time; the spec as an ``Any``) and its version.
A resource whose version did not change keeps the bytes of the previous snapshot, so a change
encodes only what changed. Every served collection is present, empty ones included, and
``MeshConfig`` is seeded as ``istio-system/meshconfig``, as Galley did.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Iterable, Mapping
from types import MappingProxyType

import attrs
import betterproto2

from istio_sdk.api.google.protobuf import Any as AnyMessage
from istio_sdk.api.google.protobuf import Struct
from istio_sdk.api.istio.mcp.v1alpha1 import Metadata
from istio_sdk.api.istio.mcp.v1alpha1 import Resource as McpResourceMessage
from istio_sdk.api.istio.mesh.v1alpha1 import MeshConfig
from istio_sdk.config import Resource
from istio_sdk.galley.mcp.collections import MESH_CONFIG, collection_of_kind
from istio_sdk.protojson import message_from_json, message_to_json
from istio_sdk.xds import type_url_of

__all__ = ["McpResource", "McpSnapshot", "build_snapshot", "encode_resource", "mcp_name"]

MESH_CONFIG_NAME = "istio-system/meshconfig"


@attrs.frozen
class McpResource:
    """One resource as it goes on the wire: ``data`` is an encoded MCP ``Resource``."""

    name: str
    version: str
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")


@attrs.frozen
class McpSnapshot:
    """Every served collection's resources at one generation (name -> :class:`McpResource`)."""

    generation: int
    collections: Mapping[str, Mapping[str, McpResource]]

    def resource_count(self) -> int:
        return sum(len(c) for c in self.collections.values())


def mcp_name(resource: Resource) -> str:
    """``namespace/name``, or the bare name of a cluster-scoped resource."""
    return f"{resource.namespace}/{resource.name}" if resource.namespace else resource.name


def _create_time(text: str) -> datetime.datetime | None:
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _body(spec: betterproto2.Message, untyped: bool) -> AnyMessage:
    if untyped:
        spec = message_from_json(Struct, message_to_json(spec))
    return AnyMessage(type_url=type_url_of(spec), value=bytes(spec))


def encode_resource(
    name: str,
    spec: betterproto2.Message,
    *,
    version: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    create_time: datetime.datetime | None = None,
    untyped: bool = False,
) -> McpResource:
    """``spec`` as an MCP resource called ``name`` (``untyped``: as a ``Struct``)."""
    message = McpResourceMessage(
        metadata=Metadata(
            name=name,
            version=version,
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            create_time=create_time,
        ),
        body=_body(spec, untyped),
    )
    return McpResource(name, version, bytes(message))


def _encode(resource: Resource, untyped: bool) -> McpResource:
    meta = resource.metadata
    return encode_resource(
        mcp_name(resource),
        resource.spec,
        version=meta.resource_version,
        labels=meta.labels,
        annotations=meta.annotations,
        create_time=_create_time(meta.creation_timestamp),
        untyped=untyped,
    )


def build_snapshot(
    resources: Iterable[Resource],
    served: Collection[str],
    generation: int,
    previous: McpSnapshot | None = None,
) -> tuple[McpSnapshot, frozenset[str]]:
    """The snapshot of ``resources`` for the ``served`` collections, and which collections
    differ from ``previous`` (all of them when there is none).

    A collection that did not change is the very mapping of ``previous``.
    """
    old = previous.collections if previous is not None else {}
    tables: dict[str, dict[str, McpResource]] = {name: {} for name in served}
    for resource in resources:
        coll = collection_of_kind(resource.key[0])
        if coll is None or coll.name not in tables:
            continue
        name = mcp_name(resource)
        before = old.get(coll.name, {}).get(name)
        if before is not None and before.version == resource.metadata.resource_version:
            tables[coll.name][name] = before
        else:
            tables[coll.name][name] = _encode(resource, coll.untyped)
    if MESH_CONFIG in tables:
        seeded = old.get(MESH_CONFIG, {}).get(MESH_CONFIG_NAME)
        tables[MESH_CONFIG][MESH_CONFIG_NAME] = seeded or encode_resource(
            MESH_CONFIG_NAME, MeshConfig(), version="1"
        )
    out: dict[str, Mapping[str, McpResource]] = {}
    changed = set()
    for name, table in tables.items():
        before_table = old.get(name)
        if before_table is not None and _same_table(before_table, table):
            out[name] = before_table
        else:
            out[name] = MappingProxyType(table)
            changed.add(name)
    return McpSnapshot(generation, MappingProxyType(out)), frozenset(changed)


def _same_table(a: Mapping[str, McpResource], b: Mapping[str, McpResource]) -> bool:
    return len(a) == len(b) and all(b.get(n) is r for n, r in a.items())
