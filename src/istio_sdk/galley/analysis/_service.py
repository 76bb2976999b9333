"""``service.PortNameAnalyzer``: Service ports whose name (or appProtocol) names no Istio
protocol (IST0118, Info), or bad port names on an ExternalName Service (IST0150).

Control-plane Services (label ``istio``, or ``release=istio``) and Services managed for a
Gateway are skipped. The protocol is decided as istiod decides it
(:func:`istio_sdk.pilot.kube_registry.convert_protocol`).
"""

from __future__ import annotations

from collections.abc import Iterator

from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._snapshot import Snapshot
from istio_sdk.pilot.kube_registry import convert_protocol

_MANAGED = frozenset(
    {"istio.io-gateway-controller", "istio.io-mesh-controller", "istio.io-eastwest-controller"}
)


@register(
    "service.PortNameAnalyzer",
    "Checks the port names associated with each service",
    ("Service",),
)
def port_names(snapshot: Snapshot) -> Iterator[Finding]:
    for entry in snapshot.of("Service"):
        labels = entry.labels
        if "istio" in labels or labels.get("release") == "istio":
            continue
        if labels.get("gateway.istio.io/managed") in _MANAGED:
            continue
        body = entry.spec.spec
        if body is None:
            continue
        external = body.type == "ExternalName"
        for i, port in enumerate(body.ports or ()):
            name = port.name or ""
            protocol = convert_protocol(port.port, name, port.protocol, port.appProtocol)
            if protocol != "UNSUPPORTED" and not (name == "tcp" and external):
                continue
            path = f"spec.ports[{i}].port"
            if external:
                yield Finding(entry, "IST0150", (), path)
                continue
            target = port.targetPort if port.targetPort is not None else 0
            yield Finding(entry, "IST0118", (name, port.port, target), path)
