"""Workload selectors of Sidecars and Telemetries: unmatched, overlapping, or missing ones.

- ``sidecar.SelectorAnalyzer``: a selector matching no pod of its namespace (IST0101), a pod
  selected by several Sidecars (IST0110), several selector-less Sidecars in one namespace
  (IST0111); ambient pods and namespaces get IST0167 instead;
- ``telemetry.SelectorAnalyzer``: the same for Telemetry selectors (IST0101, IST0159);
- ``telemetry.DefaultSelectorAnalyzer``: several selector-less Telemetries in one namespace
  (IST0160).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from istio_sdk.config._yaml import join_key
from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._lookup import in_ambient, pod_index, selector_string
from istio_sdk.galley.analysis._messages import go_list, go_quote
from istio_sdk.galley.analysis._snapshot import Entry, Snapshot


def _names(entries: list[Entry]) -> str:
    return go_list(sorted(e.name for e in entries))


def _namespace_ambient(namespace: Entry | None) -> bool:
    if namespace is None:
        return False
    labels = namespace.labels
    if labels.get("istio-injection") == "enabled" or labels.get("istio.io/rev"):
        return False
    return labels.get("istio.io/dataplane-mode") == "ambient"


def _selected_pods(
    snapshot: Snapshot,
    entries: list[Entry],
    selector_of: Callable[[Entry], Mapping[str, str] | None],
    label_path: str,
) -> tuple[list[Finding], dict[tuple[str, str], list[Entry]], list[Entry]]:
    """Unmatched-selector findings, pod -> selecting resources, and the selector-less ones."""
    findings: list[Finding] = []
    by_pod: dict[tuple[str, str], list[Entry]] = {}
    unselected: list[Entry] = []
    for entry in entries:
        selector = selector_of(entry)
        if not selector:
            unselected.append(entry)
            continue
        matched = pod_index(snapshot).select(selector, entry.namespace)
        for pod in matched:
            by_pod.setdefault((pod.namespace, pod.name), []).append(entry)
        if not matched:
            text = selector_string(selector)
            path = join_key(label_path, min(selector))
            findings.append(Finding(entry, "IST0101", ("selector", go_quote(text)), path))
    return findings, by_pod, unselected


def _sidecar_selector(entry: Entry) -> Mapping[str, str] | None:
    selector = entry.spec.workload_selector
    return dict(selector.labels) if selector is not None else None


@register(
    "sidecar.SelectorAnalyzer",
    "Validates that sidecars that define a workload selector match at least one pod, and that "
    "there aren't multiple sidecar resources that select overlapping pods",
    ("Sidecar", "Pod", "Namespace"),
)
def sidecar_selectors(snapshot: Snapshot) -> Iterator[Finding]:
    findings, by_pod, unselected = _selected_pods(
        snapshot, snapshot.of("Sidecar"), _sidecar_selector, "spec.workloadSelector.labels"
    )
    yield from findings
    for (ns, name), sidecars in sorted(by_pod.items()):
        pod = snapshot.find("Pod", ns, name)
        ambient = pod is not None and in_ambient(pod)
        if len(sidecars) == 1 and not ambient:
            continue
        for sidecar in sidecars:
            if ambient:
                reason = "selected workload is in ambient mode, the policy has no impact"
                yield Finding(sidecar, "IST0167", (reason,))
                continue
            args = (_names(sidecars), go_quote(ns), go_quote(name))
            yield Finding(sidecar, "IST0110", args, "spec.workloadSelector")
    by_namespace: dict[str, list[Entry]] = {}
    for sidecar in unselected:
        by_namespace.setdefault(sidecar.namespace, []).append(sidecar)
    for ns, sidecars in sorted(by_namespace.items()):
        if _namespace_ambient(snapshot.find("Namespace", "", ns)):
            for sidecar in sidecars:
                reason = "namespace is in ambient mode, the policy has no impact"
                yield Finding(sidecar, "IST0167", (reason,))
            continue
        if len(sidecars) > 1:
            for sidecar in sidecars:
                yield Finding(sidecar, "IST0111", (_names(sidecars), go_quote(ns)))


def _telemetry_selector(entry: Entry) -> Mapping[str, str] | None:
    selector = entry.spec.selector
    return dict(selector.match_labels) if selector is not None else None


@register(
    "telemetry.SelectorAnalyzer",
    "Validates that telemetries that define a selector match at least one pod, and that there "
    "aren't multiple telemetry resources that select overlapping pods",
    ("Telemetry", "Pod"),
)
def telemetry_selectors(snapshot: Snapshot) -> Iterator[Finding]:
    findings, by_pod, _ = _selected_pods(
        snapshot, snapshot.of("Telemetry"), _telemetry_selector, "spec.selector.matchLabels"
    )
    yield from findings
    for (ns, name), telemetries in sorted(by_pod.items()):
        if len(telemetries) < 2:
            continue
        for telemetry in telemetries:
            args = (_names(telemetries), go_quote(ns), go_quote(name))
            yield Finding(telemetry, "IST0159", args, "spec.selector")


@register(
    "telemetry.DefaultSelectorAnalyzer",
    "Validates that there aren't multiple telemetry resources that have no selector",
    ("Telemetry",),
)
def telemetry_defaults(snapshot: Snapshot) -> Iterator[Finding]:
    by_namespace: dict[str, list[Entry]] = {}
    for entry in snapshot.of("Telemetry"):
        if entry.spec.selector is None:
            by_namespace.setdefault(entry.namespace, []).append(entry)
    for ns, telemetries in sorted(by_namespace.items()):
        if len(telemetries) > 1:
            for telemetry in telemetries:
                yield Finding(telemetry, "IST0160", (_names(telemetries), go_quote(ns)))
