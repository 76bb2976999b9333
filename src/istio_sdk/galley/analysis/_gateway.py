"""Gateway analyzers: workloads and Service ports, conflicts between gateways, shared certificates.

- ``gateway.IngressGatewayPortAnalyzer``: a selector must match a pod (IST0101), and every
  server port must be a TCP port (or targetPort) of a Service selecting those pods (IST0162);
- ``gateway.ConflictingGatewayAnalyzer``: gateways on the same workloads and port with a host
  (and bind) in common (IST0145);
- ``gateway.CertificateAnalyzer``: two gateways on overlapping workloads sharing one
  credentialName or certificate and key (IST0138).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from istio_sdk.config._yaml import join_key
from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._lookup import PodIndex, pod_index, selector_string, selects
from istio_sdk.galley.analysis._messages import go_list, go_quote
from istio_sdk.galley.analysis._snapshot import Entry, Snapshot


def _first_label_path(selector: Mapping[str, str]) -> str | None:
    return join_key("spec.selector", min(selector)) if selector else None


def _target_port(port: Any) -> int:
    value = getattr(port, "targetPort", None)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


@register(
    "gateway.IngressGatewayPortAnalyzer",
    "Checks a gateway's ports against the gateway's Kubernetes service ports",
    ("Gateway", "Pod", "Service"),
)
def gateway_ports(snapshot: Snapshot) -> Iterator[Finding]:
    services: dict[str, list[Entry]] = {}
    for service in snapshot.of("Service"):
        services.setdefault(service.namespace, []).append(service)
    for entry in snapshot.of("Gateway"):
        selector = dict(entry.spec.selector)
        target_ports: set[int] = set()
        service_ports: set[int] = set()
        matched = 0
        for pod in pod_index(snapshot).select(selector):
            matched += 1
            for service in services.get(pod.namespace, ()):
                body = service.spec.spec
                if body is None:
                    continue
                if not selects(body.selector or {}, pod.labels):
                    continue
                for port in body.ports or ():
                    # an unset protocol means TCP, as the API server defaults it
                    if (port.protocol or "TCP") != "TCP":
                        continue
                    target = _target_port(port)
                    target_ports.add(target or port.port)
                    if target:
                        service_ports.add(port.port)
        text = selector_string(selector)
        path = _first_label_path(selector)
        if matched == 0:
            yield Finding(entry, "IST0101", ("selector", go_quote(text)), path)
            continue
        for server in entry.spec.servers:
            if server.port is None:
                continue
            number = server.port.number
            if number not in target_ports and number not in service_ports:
                yield Finding(entry, "IST0162", (number, text), path)


def _overlap(a: Mapping[str, str], b: Mapping[str, str], pods: PodIndex) -> bool:
    """istioctl's test that two gateway selectors reach the same workloads."""
    sa, sb = selector_string(a), selector_string(b)
    if sa == sb:
        return True
    if sa not in sb and sb not in sa:
        return False
    return any(selects(b, p.labels) for p in pods.select(a))


@register(
    "gateway.ConflictingGatewayAnalyzer",
    "Checks a gateway's selector, port number and hosts",
    ("Gateway", "Pod"),
)
def conflicting_gateways(snapshot: Snapshot) -> Iterator[Finding]:
    pods = pod_index(snapshot)
    gateways = snapshot.of("Gateway")
    for entry in gateways:
        selector = dict(entry.spec.selector)
        peers = [g for g in gateways if _overlap(selector, dict(g.spec.selector), pods)]
        for server in entry.spec.servers:
            number = server.port.number if server.port is not None else 0
            conflicts: list[str] = []
            for other in peers:
                if other is entry:
                    continue
                for theirs in other.spec.servers:
                    their_number = theirs.port.number if theirs.port is not None else 0
                    if their_number != number or theirs.bind != server.bind:
                        continue
                    if set(server.hosts) & set(theirs.hosts):
                        conflicts.append(other.full_name)
                        break
            if conflicts:
                yield Finding(
                    entry,
                    "IST0145",
                    (
                        ",".join(sorted(conflicts)),
                        selector_string(selector),
                        number,
                        ",".join(server.hosts),
                    ),
                )


def _subset(smaller: Mapping[str, str], larger: Mapping[str, str]) -> bool:
    return all(larger.get(k) == v for k, v in smaller.items())


def _same_certificate(a: Any, b: Any) -> bool:
    a_cred, b_cred = a.credential_name, b.credential_name
    if a_cred and b_cred:
        return bool(a_cred == b_cred)
    if a_cred or b_cred:
        return False
    a_cert, b_cert = a.server_certificate, b.server_certificate
    a_key, b_key = a.private_key, b.private_key
    return bool(a_cert and a_cert == b_cert and a_key and a_key == b_key)


@register(
    "gateway.CertificateAnalyzer",
    "Checks a gateway certificate",
    ("Gateway",),
)
def duplicate_certificates(snapshot: Snapshot) -> Iterator[Finding]:
    gateways = snapshot.of("Gateway")
    for entry in gateways:
        selector = dict(entry.spec.selector)
        for other in gateways:
            if other is entry or not _subset(selector, dict(other.spec.selector)):
                continue
            for mine in entry.spec.servers:
                for theirs in other.spec.servers:
                    if mine.tls is None or theirs.tls is None:
                        continue
                    if _same_certificate(mine.tls, theirs.tls):
                        names = go_list([entry.full_name, other.full_name])
                        yield Finding(entry, "IST0138", (names,), "metadata.name")
