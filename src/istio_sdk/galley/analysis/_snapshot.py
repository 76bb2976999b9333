"""What the analyzers read: the resources of one analysis, by kind, with where each came from.

An :class:`Entry` is one resource with its namespace settled (a namespaced resource written
without one gets the analysis namespace, ``default`` unless told otherwise, as istioctl does)
and, when it was read from a file, the file, the line where its document starts and the lines
of its fields, so a message can point at the field it is about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar, cast

import attrs

from istio_sdk.config import Resource
from istio_sdk.config._kinds import find_kind

__all__ = ["RUNTIME_KINDS", "Entry", "Location", "Snapshot"]

_T = TypeVar("_T")

# Kubernetes kinds that describe what runs rather than configuration: istioctl (since 1.18)
# drops them from files. An analyzer that needs one runs only when the user gave some.
RUNTIME_KINDS = frozenset({"Service", "Pod", "Namespace", "Node", "Secret"})

# Resources in these namespaces are left out of an analysis, as istioctl does.
IGNORED_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}
)


@attrs.frozen
class Location:
    """Where a resource was written: file, first line of its document, lines of its fields."""

    file: str
    line: int | None = None
    field_lines: Mapping[str, int] = attrs.field(factory=dict, eq=False)
    prefix: str = ""
    """The resource's path inside its document (``items[2]`` inside a List)."""

    def line_of(self, path: str) -> int | None:
        """The line of field ``path`` (``spec.hosts[0]``), or None when it is not known."""
        full = f"{self.prefix}.{path}" if self.prefix else path
        return self.field_lines.get(full)


@attrs.frozen
class Entry:
    """One resource of the analysis."""

    resource: Resource
    kind: str
    """The store kind: the kind, or ``Gateway.gateway.networking.k8s.io`` for the Gateway API."""
    namespace: str
    location: Location | None = None

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def spec(self) -> Any:
        return self.resource.spec

    @property
    def labels(self) -> Mapping[str, str]:
        return self.resource.metadata.labels

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.resource.metadata.annotations

    @property
    def full_name(self) -> str:
        """``namespace/name``, or ``name`` for a cluster-scoped resource."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def line_of(self, path: str | None) -> int | None:
        """Line of ``path`` when known, else the line where the resource's document starts."""
        if self.location is None:
            return None
        if path:
            line = self.location.line_of(path)
            if line is not None:
                return line
        return self.location.line


def _namespaced(resource: Resource) -> bool:
    info = find_kind(resource.api_version, resource.kind)
    return True if info is None else info.namespaced


class Snapshot:
    """The resources of one analysis, indexed by kind and by ``(kind, namespace, name)``."""

    def __init__(
        self,
        resources: Iterable[Resource | tuple[Resource, Location | None]],
        *,
        namespace: str = "default",
    ) -> None:
        by_kind: dict[str, list[Entry]] = {}
        index: dict[tuple[str, str, str], Entry] = {}
        for item in resources:
            resource, location = item if isinstance(item, tuple) else (item, None)
            if not isinstance(resource, Resource):
                raise TypeError(f"analyze() takes Resources, not {type(resource).__name__}")
            ns = (resource.namespace or namespace) if _namespaced(resource) else ""
            if ns in IGNORED_NAMESPACES or (
                resource.kind == "Namespace" and resource.name in IGNORED_NAMESPACES
            ):
                continue
            entry = Entry(resource, resource.key[0], ns, location)
            key = (entry.kind, ns, resource.name)
            if key in index:  # the later document wins, as a later kubectl apply would
                by_kind[entry.kind].remove(index[key])
            index[key] = entry
            by_kind.setdefault(entry.kind, []).append(entry)
        for entries in by_kind.values():
            entries.sort(key=lambda e: (e.namespace, e.name))
        self._by_kind = by_kind
        self._index = index
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, build: Callable[[], _T]) -> _T:
        """``build()``, computed once per snapshot (indices several analyzers share)."""
        if key not in self._memo:
            self._memo[key] = build()
        return cast("_T", self._memo[key])

    def of(self, kind: str) -> list[Entry]:
        """Every resource of ``kind``, in (namespace, name) order."""
        return self._by_kind.get(kind, [])

    def has(self, kind: str) -> bool:
        return bool(self._by_kind.get(kind))

    def find(self, kind: str, namespace: str, name: str) -> Entry | None:
        return self._index.get((kind, namespace, name))

    def __iter__(self) -> Iterator[Entry]:
        for entries in self._by_kind.values():
            yield from entries

    def __len__(self) -> int:
        return len(self._index)
