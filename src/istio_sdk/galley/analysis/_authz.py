"""``auth.AuthorizationPoliciesAnalyzer``: policies that select no workload, unknown namespaces.

A policy in the root namespace with a selector must match an in-mesh pod somewhere; a policy
elsewhere must match one in its namespace (without a selector: any in-mesh pod there), else
IST0127. ``from.source.namespaces`` and ``notNamespaces`` entries (``*``, ``prefix*``,
``*suffix``) must match a Namespace, else IST0101.
"""

from __future__ import annotations

from collections.abc import Iterator

from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._lookup import in_ambient, in_mesh, selector_string, selects
from istio_sdk.galley.analysis._messages import go_quote
from istio_sdk.galley.analysis._snapshot import Snapshot

ROOT_NAMESPACE = "istio-system"
"""MeshConfig ``rootNamespace`` as Istio defaults it."""


def namespace_matches(namespace: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return namespace.endswith(pattern[1:])
    if pattern.endswith("*"):
        return namespace.startswith(pattern[:-1])
    return namespace.lower() == pattern.lower()


@register(
    "auth.AuthorizationPoliciesAnalyzer",
    "Checks the validity of authorization policies",
    ("MeshConfig", "AuthorizationPolicy", "Namespace", "Pod"),
)
def authorization_policies(snapshot: Snapshot) -> Iterator[Finding]:
    mesh_pods: dict[str, list[dict[str, str]]] = {}
    for pod in snapshot.of("Pod"):
        if in_mesh(pod, snapshot) or in_ambient(pod):
            mesh_pods.setdefault(pod.namespace, []).append(dict(pod.labels))
    namespaces = [n.name for n in snapshot.of("Namespace")]
    for entry in snapshot.of("AuthorizationPolicy"):
        spec = entry.spec
        selector = dict(spec.selector.match_labels) if spec.selector is not None else None
        if entry.namespace == ROOT_NAMESPACE:
            if selector is not None:
                everywhere = [labels for pods in mesh_pods.values() for labels in pods]
                if not any(selects(selector, labels) for labels in everywhere):
                    yield Finding(entry, "IST0127", (selector_string(selector),))
        elif selector is None:
            if not mesh_pods.get(entry.namespace):
                yield Finding(entry, "IST0127", ("",))
        elif not any(selects(selector, labels) for labels in mesh_pods.get(entry.namespace, [])):
            yield Finding(entry, "IST0127", (selector_string(selector),))
        for i, rule in enumerate(spec.rules):
            for j, source_from in enumerate(rule.from_):
                source = source_from.source
                if source is None:
                    continue
                for field, values in (
                    ("namespaces", source.namespaces),
                    ("notNamespaces", source.not_namespaces),
                ):
                    for k, pattern in enumerate(values):
                        if not any(namespace_matches(ns, pattern) for ns in namespaces):
                            path = f"spec.rules[{i}].from[{j}].source.{field}[{k}]"
                            yield Finding(entry, "IST0101", ("namespace", go_quote(pattern)), path)
