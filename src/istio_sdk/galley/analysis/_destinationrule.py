"""DestinationRule analyzers: hosts and subsets without workloads, TLS without a CA.

- ``destinationrule.SubsetSelectPodAnalyzer``: the host must resolve to a service (IST0174),
  and each subset's labels (with the ServiceEntry's workloadSelector) must match a pod in any
  namespace, its labels completed with its Node's topology labels (IST0173);
- ``destinationrule.CaCertificateAnalyzer``: TLS mode SIMPLE or MUTUAL without
  ``caCertificates``, at the top (IST0128) or for a port (IST0129), unless a credentialName
  is set on a DestinationRule with a workloadSelector.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from istio_sdk.api.istio.networking.v1alpha3 import ClientTlsSettingsTlSmode as TlsMode
from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._lookup import PodIndex, resolve_host, service_targets
from istio_sdk.galley.analysis._snapshot import Entry, Snapshot

_TOPOLOGY_LABELS = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)


def _pod_labels(pod: Entry, nodes: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    labels = dict(pod.labels)
    node_name = getattr(pod.spec.spec, "nodeName", None) or ""
    node = nodes.get(node_name)
    if node is not None:
        for key in _TOPOLOGY_LABELS:
            if node.get(key):
                labels.setdefault(key, node[key])
    if node_name:
        labels.setdefault("kubernetes.io/hostname", node_name)
    return labels


@register(
    "destinationrule.SubsetSelectPodAnalyzer",
    "Checks if pods are selected by subsets in destination rules.",
    ("DestinationRule", "Pod", "Service", "ServiceEntry"),
)
def subsets_select_pods(snapshot: Snapshot) -> Iterator[Finding]:
    targets = service_targets(snapshot)
    nodes = {n.name: n.labels for n in snapshot.of("Node")}
    all_pods = snapshot.of("Pod")
    pods = PodIndex(all_pods, [_pod_labels(p, nodes) for p in all_pods])
    for entry in snapshot.of("DestinationRule"):
        spec = entry.spec
        target = resolve_host(targets, entry.namespace, list(spec.export_to), spec.host)
        if target is None:
            yield Finding(entry, "IST0174", (spec.host,), "spec.host")
            continue
        for i, subset in enumerate(spec.subsets):
            selector = {**target.workload_selector, **subset.labels}
            if not pods.select(selector):
                yield Finding(entry, "IST0173", (subset.name,), f"spec.subsets[{i}].name")


def _unverified(tls: Any, has_selector: bool) -> TlsMode | None:
    """The mode, when TLS is SIMPLE or MUTUAL with nothing to verify the server with."""
    mode = getattr(tls, "mode", None)
    if mode not in (TlsMode.SIMPLE, TlsMode.MUTUAL):
        return None
    if getattr(tls, "ca_certificates", ""):
        return None
    if getattr(tls, "credential_name", "") and has_selector:
        return None
    return TlsMode(mode)


@register(
    "destinationrule.CaCertificateAnalyzer",
    "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL",
    ("DestinationRule",),
)
def ca_certificates(snapshot: Snapshot) -> Iterator[Finding]:
    for entry in snapshot.of("DestinationRule"):
        spec = entry.spec
        policy = spec.traffic_policy
        if policy is None:
            continue
        has_selector = spec.workload_selector is not None
        mode = _unverified(policy.tls, has_selector) if policy.tls is not None else None
        if mode is not None:
            top = (entry.full_name, entry.namespace, mode.name, spec.host)
            yield Finding(entry, "IST0128", top, "spec.trafficPolicy.tls")
        for i, port in enumerate(policy.port_level_settings):
            if port.tls is None:
                continue
            mode = _unverified(port.tls, has_selector)
            if mode is None:
                continue
            number = port.port.number if port.port is not None else 0
            args = (entry.full_name, entry.namespace, mode.name, spec.host, f"number:{number}")
            yield Finding(entry, "IST0129", args, f"spec.trafficPolicy.portLevelSettings[{i}].tls")
