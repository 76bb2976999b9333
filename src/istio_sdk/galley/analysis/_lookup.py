"""Shared lookups of the analyzers: host names, service visibility, selectors, mesh membership.

These follow the analyzers' own helpers in istioctl, which differ in places from what Pilot
does when it builds a push (a short name is any host without a dot that does not start with
``*``; wildcard hosts match in both directions), so they live here and not in ``pilot``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from istio_sdk.galley.analysis._snapshot import Entry, Snapshot
from istio_sdk.pilot.labels import labels_match

__all__ = [
    "ALL_NAMESPACES",
    "Destination",
    "Target",
    "hosts_match",
    "in_mesh",
    "pod_index",
    "resolve_host",
    "selector_string",
    "service_targets",
    "to_fqdn",
]

ALL_NAMESPACES = "*"
CLUSTER_DOMAIN = "cluster.local"
_FQDN = re.compile(r"^(.+)\.(.+)\.svc\.cluster\.local$")


def to_fqdn(namespace: str, host: str) -> str:
    """A host with no dot (not starting with ``*``) becomes ``host.namespace.svc.cluster.local``."""
    if host.startswith("*") or "." in host:
        return host
    return f"{host}.{namespace}.svc.{CLUSTER_DOMAIN}"


def name_from_host(default_namespace: str, host: str) -> tuple[str, str]:
    """``(namespace, name)`` of a Kubernetes service host; other hosts keep the given namespace."""
    found = _FQDN.match(host)
    if found is None:
        return default_namespace, host
    return found.group(2), found.group(1)


def hosts_match(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: equal, or a wildcard (either side) covers the other."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild and b_wild:
        return a[1:].endswith(b[1:]) if len(a) >= len(b) else b[1:].endswith(a[1:])
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def selector_string(selector: Mapping[str, str]) -> str:
    """A label selector as Kubernetes prints it: ``app=reviews,version=v1`` (keys sorted)."""
    return ",".join(f"{key}={selector[key]}" for key in sorted(selector))


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return labels_match(selector, labels)


class PodIndex:
    """Pods by namespace and by label, so a selector finds its pods without a full scan."""

    def __init__(self, pods: Sequence[Entry], labels: Sequence[Mapping[str, str]]) -> None:
        self.pods = list(pods)
        self.labels = list(labels)
        self._by_label: dict[tuple[str, str], list[int]] = {}
        self._by_namespace: dict[str, list[int]] = {}
        for i, (pod, pod_labels) in enumerate(zip(self.pods, self.labels, strict=True)):
            self._by_namespace.setdefault(pod.namespace, []).append(i)
            for item in pod_labels.items():
                self._by_label.setdefault(item, []).append(i)

    def select(self, selector: Mapping[str, str], namespace: str | None = None) -> list[Entry]:
        """The pods whose labels carry all of ``selector`` (in ``namespace`` when given)."""
        candidates: list[list[int]] = [self._by_label.get(item, []) for item in selector.items()]
        if namespace is not None:
            candidates.append(self._by_namespace.get(namespace, []))
        if not candidates:
            return list(self.pods)
        smallest = min(candidates, key=len)
        return [
            self.pods[i]
            for i in smallest
            if selects(selector, self.labels[i])
            and (namespace is None or self.pods[i].namespace == namespace)
        ]


def pod_index(snapshot: Snapshot) -> PodIndex:
    """The snapshot's Pods, indexed by their own labels."""
    pods = snapshot.of("Pod")
    return snapshot.memo("pods", lambda: PodIndex(pods, [p.labels for p in pods]))


@attrs.frozen
class Target:
    """A destination a host can resolve to: a ServiceEntry, or a Kubernetes Service as one."""

    ports: tuple[int, ...]
    workload_selector: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Destination:
    """One destination of a route, with the field path it was written at."""

    host: str
    subset: str
    port: int | None
    path: str
    mirror: bool = False


def _scopes(export_to: Sequence[str], namespace: str) -> list[str]:
    if not export_to:
        return [ALL_NAMESPACES]
    out: list[str] = []
    for item in export_to:
        scope = namespace if item == "." else item
        if scope == ALL_NAMESPACES:
            return [ALL_NAMESPACES]
        out.append(scope)
    return out


def service_targets(snapshot: Snapshot) -> dict[tuple[str, str], Target]:
    """``(scope, fqdn) -> Target`` for every ServiceEntry host and Kubernetes Service.

    The scope is ``*`` for what every namespace sees, or the namespace that may see it
    (ServiceEntry ``exportTo``; a Service's ``networking.istio.io/exportTo`` annotation).
    """
    out: dict[tuple[str, str], Target] = {}
    for entry in snapshot.of("ServiceEntry"):
        spec = entry.spec
        selector = dict(spec.workload_selector.labels) if spec.workload_selector else {}
        target = Target(tuple(p.number for p in spec.ports), selector)
        for host in spec.hosts:
            for scope in _scopes(list(spec.export_to), entry.namespace):
                out[(scope, to_fqdn(entry.namespace, host))] = target
    for entry in snapshot.of("Service"):
        body = entry.spec.spec
        ports = tuple(p.port for p in ((body.ports if body else None) or ()))
        annotation = entry.annotations.get("networking.istio.io/exportTo", "")
        scopes = [ns.strip() for ns in annotation.split(",")] if annotation else [ALL_NAMESPACES]
        host = to_fqdn(entry.namespace, entry.name)
        for scope in scopes:
            out[(entry.namespace if scope == "." else scope, host)] = Target(ports)
    return out


def resolve_host(
    targets: Mapping[tuple[str, str], Target],
    namespace: str,
    export_to: Sequence[str],
    host: str,
) -> Target | None:
    """The target ``host`` (written in ``namespace``) reaches, as istioctl resolves it."""
    fqdn = to_fqdn(namespace, host)
    found = targets.get((ALL_NAMESPACES, fqdn))
    if found is not None:
        return found
    for scope in export_to or ["."]:
        found = targets.get((namespace if scope == "." else scope, fqdn))
        if found is not None:
            return found
    bare = fqdn.removeprefix("*")
    for (scope, target_host), target in targets.items():
        if not target_host.startswith("*"):
            continue
        if scope not in (ALL_NAMESPACES, namespace):
            continue
        if bare.endswith(target_host[1:]):
            return target
    return None


def _containers(pod_spec: Any) -> Iterable[object]:
    yield from getattr(pod_spec, "containers", None) or ()
    yield from getattr(pod_spec, "initContainers", None) or ()


def has_proxy(pod_spec: Any) -> bool:
    """Whether a pod spec runs an ``istio-proxy`` container with an image."""
    return any(
        getattr(c, "name", "") == "istio-proxy" and getattr(c, "image", "")
        for c in _containers(pod_spec)
    )


def in_mesh(pod: Entry, snapshot: Snapshot) -> bool:
    """istioctl's "in the mesh" for a Pod: a proxy, an inject label/annotation, or its namespace."""
    if has_proxy(pod.spec.spec):
        return True
    for source in (pod.labels, pod.annotations):
        if "sidecar.istio.io/inject" in source:
            return source["sidecar.istio.io/inject"] == "true"
    namespace = snapshot.find("Namespace", "", pod.namespace)
    if namespace is not None:
        return namespace.labels.get("istio-injection") == "enabled"
    return False


def in_ambient(pod: Entry) -> bool:
    return pod.annotations.get("ambient.istio.io/redirection") == "enabled"
