"""VirtualService analyzers: destination hosts and ports, subsets, gateways, mesh host conflicts.

- ``virtualservice.DestinationHostAnalyzer``: every route and mirror destination must resolve
  to a ServiceEntry host or a Kubernetes Service visible from the VirtualService's namespace
  (IST0101), name a port when the target has several (IST0112) and a port it has (IST0101);
- ``virtualservice.DestinationRuleAnalyzer``: a destination's subset must be defined by a
  DestinationRule for that host (IST0101);
- ``virtualservice.GatewayAnalyzer``: bound gateways must exist (IST0101) and serve one of the
  VirtualService's hosts (IST0132; also emitted for a missing gateway, as istioctl does);
- ``virtualservice.ConflictingMeshGatewayHostsAnalyzer``: two mesh-bound VirtualServices on one
  host, in one exportTo scope (IST0109).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from istio_sdk.galley.analysis._analyzer import Finding, register
from istio_sdk.galley.analysis._lookup import (
    ALL_NAMESPACES,
    Destination,
    hosts_match,
    name_from_host,
    resolve_host,
    service_targets,
    to_fqdn,
)
from istio_sdk.galley.analysis._messages import go_list, go_quote
from istio_sdk.galley.analysis._snapshot import Entry, Snapshot

MESH = "mesh"


def route_destinations(spec: Any) -> Iterator[Destination]:
    """The route destinations of a VirtualService (http, tcp, tls), with their field paths."""
    for section in ("http", "tcp", "tls"):
        for i, rule in enumerate(getattr(spec, section) or ()):
            for j, weighted in enumerate(rule.route or ()):
                d = weighted.destination
                if d is None:
                    continue
                port = d.port.number if d.port is not None else None
                yield Destination(
                    d.host, d.subset, port, f"spec.{section}[{i}].route[{j}].destination.host"
                )


def mirror_destinations(spec: Any) -> Iterator[Destination]:
    """``http[].mirror`` and ``http[].mirrors[].destination``, with their field paths."""
    for i, rule in enumerate(spec.http or ()):
        if rule.mirror is not None:
            d = rule.mirror
            port = d.port.number if d.port is not None else None
            yield Destination(d.host, d.subset, port, f"spec.http[{i}].mirror.host", mirror=True)
        for j, policy in enumerate(rule.mirrors or ()):
            d = policy.destination
            if d is None:
                continue
            port = d.port.number if d.port is not None else None
            path = f"spec.http[{i}].mirrors[{j}].destination.host"
            yield Destination(d.host, d.subset, port, path, mirror=True)


@register(
    "virtualservice.DestinationHostAnalyzer",
    "Checks the destination hosts associated with each virtual service",
    ("ServiceEntry", "VirtualService", "Service"),
)
def destination_hosts(snapshot: Snapshot) -> Iterator[Finding]:
    targets = service_targets(snapshot)
    for entry in snapshot.of("VirtualService"):
        spec = entry.spec
        export_to = list(spec.export_to)
        routes = [(d, "host") for d in route_destinations(spec)]
        mirrors = [(d, "mirror host") for d in mirror_destinations(spec)]
        for d, what in routes + mirrors:
            target = resolve_host(targets, entry.namespace, export_to, d.host)
            if target is None:
                yield Finding(entry, "IST0101", (what, go_quote(d.host)), d.path)
                continue
            if d.port is None:
                if len(target.ports) > 1:
                    yield Finding(
                        entry, "IST0112", (go_quote(d.host), go_list(target.ports)), d.path
                    )
            elif d.port not in target.ports:
                yield Finding(
                    entry, "IST0101", ("host:port", go_quote(f"{d.host}:{d.port}")), d.path
                )


@register(
    "virtualservice.DestinationRuleAnalyzer",
    "Checks the destination rules associated with each virtual service",
    ("VirtualService", "DestinationRule"),
)
def destination_subsets(snapshot: Snapshot) -> Iterator[Finding]:
    defined: set[tuple[str, str, str]] = set()
    for rule in snapshot.of("DestinationRule"):
        ns, name = name_from_host(rule.namespace, rule.spec.host)
        for subset in rule.spec.subsets:
            defined.add((ns, name, subset.name))
    for entry in snapshot.of("VirtualService"):
        pairs = [(d, "host+subset in destinationrule") for d in route_destinations(entry.spec)]
        pairs += [(d, "mirror+subset in destinationrule") for d in mirror_destinations(entry.spec)]
        for d, what in pairs:
            if not d.subset:
                continue
            ns, name = name_from_host(entry.namespace, d.host)
            if (ns, name, d.subset) not in defined:
                yield Finding(entry, "IST0101", (what, go_quote(f"{d.host}+{d.subset}")), d.path)


def _gateway_hosts(gateway: Entry, vs_namespace: str) -> list[str]:
    """A Gateway's server hosts as a VirtualService in ``vs_namespace`` may bind to them."""
    out: list[str] = []
    for server in gateway.spec.servers:
        for host in server.hosts:
            ns, slash, dns = host.partition("/")
            if not slash:
                out.append(host)
                continue
            if ns == "*":
                if dns == "*":
                    return ["*"]
                out.append(dns)
            elif (gateway.namespace if ns == "." else ns) == vs_namespace:
                out.append(dns)
    return out


def _k8s_gateway_hosts(gateway: Entry) -> list[str] | None:
    """Listener hostnames of a Gateway API Gateway; None when a listener takes every host."""
    spec = gateway.spec.spec
    listeners = spec.get("listeners") if isinstance(spec, dict) else None
    hosts: list[str] = []
    for listener in listeners if isinstance(listeners, list) else ():
        hostname = listener.get("hostname") if isinstance(listener, dict) else None
        if not hostname or not isinstance(hostname, str):
            return None
        hosts.append(hostname)
    return hosts


@register(
    "virtualservice.GatewayAnalyzer",
    "Checks the gateways associated with each virtual service",
    ("Gateway", "VirtualService"),
)
def gateways(snapshot: Snapshot) -> Iterator[Finding]:
    for entry in snapshot.of("VirtualService"):
        spec = entry.spec
        for i, ref in enumerate(spec.gateways):
            if ref == MESH:
                continue
            ns, slash, name = ref.partition("/")
            if not slash:
                ns, name = entry.namespace, ref
            path = f"spec.gateways[{i}]"
            gateway = snapshot.find("Gateway", ns, name)
            k8s = snapshot.find("Gateway.gateway.networking.k8s.io", ns, name)
            if gateway is None and k8s is None:
                yield Finding(entry, "IST0101", ("gateway", go_quote(ref)), path)
            matched = False
            if gateway is not None:
                served = _gateway_hosts(gateway, entry.namespace)
                matched = any(hosts_match(g, h) for g in served for h in spec.hosts)
            elif k8s is not None:
                listeners = _k8s_gateway_hosts(k8s)
                matched = listeners is None or any(
                    hosts_match(g, h) for g in listeners for h in spec.hosts
                )
            if not matched:
                yield Finding(
                    entry,
                    "IST0132",
                    (go_list(spec.hosts), entry.full_name, f"{ns}/{name}"),
                    path,
                )


def _mesh_bound(spec: Any) -> bool:
    refs = list(spec.gateways)
    return not refs or MESH in refs


@register(
    "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
    "Checks if multiple virtual services associated with the mesh gateway have conflicting hosts",
    ("VirtualService",),
)
def conflicting_mesh_hosts(snapshot: Snapshot) -> Iterator[Finding]:
    claims: dict[tuple[str, str], list[Entry]] = {}
    for entry in snapshot.of("VirtualService"):
        spec = entry.spec
        if not _mesh_bound(spec):
            continue
        export_to = list(spec.export_to)
        if not export_to or ALL_NAMESPACES in export_to:
            scopes = [ALL_NAMESPACES]
        else:
            scopes = sorted({entry.namespace if e == "." else e for e in export_to})
        for scope in scopes:
            for host in spec.hosts:
                claims.setdefault((scope, to_fqdn(entry.namespace, host)), []).append(entry)
    reported: set[tuple[str, str]] = set()
    for (scope, host), entries in sorted(claims.items()):
        claimants = list(entries)
        if scope != ALL_NAMESPACES:
            for (other_scope, other_host), others in sorted(claims.items()):
                if other_scope == ALL_NAMESPACES and hosts_match(host, other_host):
                    claimants.extend(others)
        if len(claimants) < 2:
            continue
        names = ",".join(sorted(e.full_name for e in claimants))
        for claimant in claimants:
            key = (claimant.namespace, claimant.name)
            if key in reported:
                continue
            reported.add(key)
            yield Finding(claimant, "IST0109", (names, f"{scope}/{host}"), "metadata.name")
