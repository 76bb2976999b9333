"""Sidecar injection analyzers: namespaces without injection, pods without a proxy, UID 1337.

- ``injection.Analyzer``: a namespace (other than istio-system) with more than one of
  ``istio-injection``, ``istio.io/rev`` and ``istio.io/dataplane-mode`` (IST0123); one with no
  injection label (IST0102, Info); in a namespace labelled ``istio-injection=enabled``, a pod
  that is not opted out, not on the host network and has no ``istio-proxy`` (IST0103);
- ``applicationUID.Analyzer``: a pod or container running as UID 1337, the proxy's (IST0144).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._lookup import has_proxy
from istio_sdk.galley.analysis._messages import go_list
from istio_sdk.galley.analysis._snapshot import Snapshot

SYSTEM_NAMESPACE = "istio-system"
PROXY_UID = 1337


@register(
    "injection.Analyzer",
    "Checks conditions related to Istio sidecar injection",
    ("Namespace", "Pod"),
)
def injection(snapshot: Snapshot) -> Iterator[Finding]:
    injected: set[str] = set()
    for entry in snapshot.of("Namespace"):
        if entry.name == SYSTEM_NAMESPACE:
            continue
        labels = entry.labels
        injection_label = labels.get("istio-injection")
        found = []
        if injection_label is not None:
            found.append(f"istio-injection={injection_label}")
        for key in ("istio.io/rev", "istio.io/dataplane-mode"):
            if key in labels and (injection_label is None or injection_label == "enabled"):
                found.append(f"{key}={labels[key]}")
        if len(found) > 1:
            yield Finding(entry, "IST0123", (go_list(found),), "metadata.labels")
        if labels.get("istio.io/dataplane-mode") == "ambient":
            continue
        if not injection_label and "istio.io/rev" not in labels:
            yield Finding(entry, "IST0102", (entry.name, entry.name), "metadata.name")
            continue
        if injection_label == "enabled":
            injected.add(entry.name)
    for pod in snapshot.of("Pod"):
        if pod.namespace not in injected:
            continue
        opt = pod.labels.get(
            "sidecar.istio.io/inject", pod.annotations.get("sidecar.istio.io/inject", "")
        )
        body = pod.spec.spec
        if opt.lower() == "false" or body is None or body.hostNetwork:
            continue
        if not has_proxy(body):
            yield Finding(pod, "IST0103", (pod.full_name,), "metadata.name")


def _runs_as_proxy(context: Any) -> bool:
    return getattr(context, "runAsUser", None) == PROXY_UID


@register(
    "applicationUID.Analyzer",
    "Checks invalid application UID",
    ("Pod",),
)
def application_uid(snapshot: Snapshot) -> Iterator[Finding]:
    for pod in snapshot.of("Pod"):
        if pod.namespace == SYSTEM_NAMESPACE:
            continue
        body = pod.spec.spec
        if body is None:
            continue
        if body.securityContext is not None and _runs_as_proxy(body.securityContext):
            yield Finding(pod, "IST0144", (), "spec.securityContext.runAsUser")
        for i, container in enumerate(body.containers or ()):
            if container.name in ("istio-proxy", "istio-operator"):
                continue
            if container.securityContext is not None and _runs_as_proxy(container.securityContext):
                yield Finding(pod, "IST0144", (), f"spec.containers[{i}].securityContext.runAsUser")
