"""Pilot's Kubernetes service registry: Services, EndpointSlices, Endpoints, Pods and Nodes as
istiod's Kubernetes controller sees them (``pilot/pkg/serviceregistry/kube``).

:func:`build_kube_registry` turns Kubernetes objects (``istio_sdk.config.Resource`` values of
kind Service, EndpointSlice, Endpoints, Pod and Node, or anything shaped like them) into
registry :class:`~istio_sdk.pilot.registry.Service` and
:class:`~istio_sdk.pilot.registry.Endpoint` values:

- a Service is ``NAME.NAMESPACE.svc.DOMAIN``; its cluster IPs are its addresses; a headless
  Service (``clusterIP: None``) resolves as ``NONE`` (passthrough); an ExternalName Service is
  mesh-external and resolves its ``externalName`` by DNS; the ``networking.istio.io/exportTo``
  annotation is its ``exportTo``;
- a port's protocol follows istiod's ``ConvertProtocol``: UDP stays UDP; ``appProtocol`` wins
  over the port name (with Kubernetes' ``kubernetes.io/h2c``, ``ws`` and ``wss``); otherwise
  the name's prefix before ``-`` (``http``, ``http2``, ``grpc``, ``grpc-web``, ``tcp``,
  ``tls``, ``https``, ``mongo``, ``redis``, ``mysql``, ...); an unknown protocol is TCP (istiod
  would sniff it);
- endpoints come from the EndpointSlices labelled ``kubernetes.io/service-name`` (FQDN slices
  are ignored), from the Service's Endpoints object when it has no slices, and, for a Service
  with a selector and neither, from the running Pods it selects (what Kubernetes' endpoint
  controllers would write);
- each address is joined with its Pod (the slice's ``targetRef``, else the Pod with that IP in
  the namespace) for labels (subsets), the SPIFFE identity of its service account, and its
  locality: the Pod's ``istio-locality`` label, else its Node's ``topology.kubernetes.io/region``,
  ``topology.kubernetes.io/zone`` and ``topology.istio.io/subzone`` labels;
- readiness: a ready (or unknown) endpoint is HEALTHY; a not-ready one is left out, unless the
  Service sets ``publishNotReadyAddresses`` (then it is sent as UNHEALTHY, as istiod does).

Bad input never stops the rest: an EndpointSlice or Endpoints for a Service that does not
exist, a ``targetRef`` to a Pod that does not exist, a selected Pod with no IP, an invalid port
are each described in :attr:`KubeRegistry.problems` and left out.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from istio_sdk.pilot.labels import labels_match
from istio_sdk.pilot.registry import (
    DEFAULT_DOMAIN_SUFFIX,
    KUBERNETES_REGISTRY,
    Endpoint,
    HealthStatus,
    RegistryError,
    RegistrySnapshot,
    Resolution,
    Service,
    ServicePort,
    service_hostname,
)
from istio_sdk.spiffe import DEFAULT_TRUST_DOMAIN, spiffe_uri

__all__ = [
    "KUBERNETES_REGISTRY_KINDS",
    "KubeRegistry",
    "build_kube_registry",
    "convert_protocol",
    "service_hostname",
]

log = logging.getLogger("istio_sdk.pilot")

KUBERNETES_REGISTRY_KINDS = frozenset({"Service", "EndpointSlice", "Endpoints", "Pod", "Node"})
"""The Kubernetes kinds the registry reads."""

EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
LOCALITY_LABEL = "istio-locality"
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
SUBZONE_LABEL = "topology.istio.io/subzone"
NETWORK_LABEL = "topology.istio.io/network"

_PROTOCOLS = {
    "tcp": "TCP",
    "udp": "UDP",
    "grpc": "GRPC",
    "grpc-web": "GRPC-WEB",
    "http": "HTTP",
    "http_proxy": "HTTP_PROXY",
    "http2": "HTTP2",
    "https": "HTTPS",
    "tls": "TLS",
    "mongo": "MONGO",
    "redis": "REDIS",
    "mysql": "MYSQL",
}
_APP_PROTOCOLS = {
    "kubernetes.io/h2c": "HTTP2",
    "kubernetes.io/ws": "HTTP",
    "kubernetes.io/wss": "HTTPS",
}
# istiod makes these TCP when nothing names a protocol: SMTP, DNS, MySQL, MongoDB
_WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})


def convert_protocol(
    port: int, name: str, protocol: str | None = None, app_protocol: str | None = None
) -> str:
    """The Istio protocol of a Service port, as istiod's ``ConvertProtocol`` decides it.

    Returns the registry's upper-case names (``HTTP``, ``GRPC-WEB``, ``MYSQL``, ...);
    ``UNSUPPORTED`` when nothing names a known protocol (istiod sniffs such ports).
    """
    if (protocol or "TCP").upper() == "UDP":
        return "UDP"
    text = name or ""
    if app_protocol is not None:
        text = app_protocol
        if app_protocol in _APP_PROTOCOLS:
            return _APP_PROTOCOLS[app_protocol]
    if text[:8].lower() == "grpc-web":
        return "GRPC-WEB"
    prefix = text.split("-", 1)[0].lower()
    found = _PROTOCOLS.get(prefix)
    if found is None:
        return "TCP" if port in _WELL_KNOWN_TCP_PORTS else "UNSUPPORTED"
    return found


@attrs.frozen
class KubeRegistry:
    """The services and endpoints Kubernetes objects describe, and what was wrong with them."""

    services: Mapping[tuple[str, str], Service]
    endpoints: Mapping[tuple[str, str], tuple[Endpoint, ...]]
    problems: tuple[str, ...] = ()
    """One line per object (or part of one) that was left out, naming it and why."""

    def snapshot(self, revision: int = 0) -> RegistrySnapshot:
        """The registry as a :class:`RegistrySnapshot` (for ``PushContext.build``)."""
        return RegistrySnapshot(
            revision=revision,
            services=MappingProxyType(dict(self.services)),
            endpoints=MappingProxyType(dict(self.endpoints)),
        )


def _meta(resource: Any) -> tuple[str, str, Mapping[str, str], Mapping[str, str]]:
    meta = resource.metadata
    return meta.namespace, meta.name, dict(meta.labels or {}), dict(meta.annotations or {})


@attrs.frozen
class _Pod:
    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str]
    service_account: str
    node: str
    ports: Mapping[str, int]
    """Named container ports."""
    ready: bool
    hostname: str = ""
    """``spec.hostname`` (else the Pod's name) when the Pod has a ``spec.subdomain``."""
    subdomain: str = ""


def _pod_of(resource: Any) -> _Pod:
    namespace, name, labels, _ = _meta(resource)
    spec = resource.spec.spec
    status = resource.status if isinstance(resource.status, dict) else {}
    ports: dict[str, int] = {}
    for container in (spec.containers if spec is not None else None) or ():
        for port in container.ports or ():
            if port.name:
                ports[port.name] = port.containerPort
    conditions = status.get("conditions") or []
    ready_values = [
        c.get("status") for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"
    ]
    phase = status.get("phase")
    ready = (ready_values[-1] == "True") if ready_values else phase in (None, "Running")
    ip = status.get("podIP") or ""
    subdomain = (spec.subdomain if spec is not None else None) or ""
    hostname = ((spec.hostname if spec is not None else None) or name) if subdomain else ""
    return _Pod(
        namespace=namespace,
        name=name,
        ip=ip if isinstance(ip, str) else "",
        labels=labels,
        service_account=(spec.serviceAccountName if spec is not None else None) or "default",
        node=(spec.nodeName if spec is not None else None) or "",
        ports=ports,
        ready=ready and phase not in ("Succeeded", "Failed"),
        hostname=hostname,
        subdomain=subdomain,
    )


def _address_error(address: Any, address_type: str = "") -> str:
    """Why ``address`` is not an endpoint IP (of ``address_type`` IPv4/IPv6 when given), or ""."""
    if not isinstance(address, str) or not address:
        return "not an IP address"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if address_type in ("IPv4", "IPv6") and f"IPv{ip.version}" != address_type:
        return f"not an {address_type} address"
    return ""


# What the kube-apiserver accepts as spec.externalName: a DNS-1123 subdomain (a trailing dot
# allowed), at most 253 characters.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _external_name_error(name: str) -> str:
    bare = name.removesuffix(".")
    if len(bare) > 253 or not _DNS_SUBDOMAIN.fullmatch(bare):
        return "not a DNS name (RFC 1123 subdomain)"
    return ""


def _node_locality(labels: Mapping[str, str]) -> str:
    def first(names: Iterable[str]) -> str:
        return next((labels[n] for n in names if labels.get(n)), "")

    region, zone, subzone = first(REGION_LABELS), first(ZONE_LABELS), labels.get(SUBZONE_LABEL, "")
    return f"{region}/{zone}/{subzone}" if region or zone or subzone else ""


class _Builder:
    def __init__(self, domain_suffix: str, trust_domain: str) -> None:
        self.domain_suffix = domain_suffix
        self.trust_domain = trust_domain
        self.problems: list[str] = []
        self.nodes: dict[str, str] = {}
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.pods_by_ip: dict[tuple[str, str], _Pod] = {}
        self.kube_services: dict[tuple[str, str], Any] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.endpoints: dict[tuple[str, str], tuple[Endpoint, ...]] = {}

    def problem(self, text: str) -> None:
        log.debug("kube registry: %s", text)
        self.problems.append(text)

    # -- objects ------------------------------------------------------------------------

    def add_node(self, resource: Any) -> None:
        _, name, labels, _ = _meta(resource)
        self.nodes[name] = _node_locality(labels)

    def add_pod(self, resource: Any) -> None:
        try:
            pod = _pod_of(resource)
        except (AttributeError, TypeError) as exc:
            ns, name, _, _ = _meta(resource)
            self.problem(f"Pod {ns}/{name}: cannot be read: {exc}")
            return
        if pod.ip and _address_error(pod.ip):
            self.problem(f"Pod {pod.namespace}/{pod.name}: status.podIP {pod.ip!r}: not an IP")
            pod = attrs.evolve(pod, ip="")
        self.pods[(pod.namespace, pod.name)] = pod
        if pod.ip:
            self.pods_by_ip[(pod.namespace, pod.ip)] = pod

    def add_service(self, resource: Any) -> None:
        namespace, name, labels, annotations = _meta(resource)
        where = f"Service {namespace}/{name}"
        spec = resource.spec.spec
        if spec is None:
            self.problem(f"{where}: no spec")
            return
        ports: list[ServicePort] = []
        for i, port in enumerate(spec.ports or ()):
            protocol = convert_protocol(port.port, port.name or "", port.protocol, port.appProtocol)
            target = port.targetPort if isinstance(port.targetPort, int) else 0
            try:
                ports.append(
                    ServicePort(
                        number=port.port,
                        name=port.name or "",
                        protocol="TCP" if protocol == "UNSUPPORTED" else protocol,
                        target_port=target,
                    )
                )
            except RegistryError as exc:
                self.problem(f"{where}: spec.ports[{i}]: {exc}")
        export_to = tuple(
            part.strip()
            for part in annotations.get(EXPORT_TO_ANNOTATION, "").split(",")
            if part.strip()
        )
        resolution = Resolution.STATIC
        external = False
        addresses: tuple[str, ...] = ()
        if spec.type == "ExternalName" and spec.externalName:
            reason = _external_name_error(spec.externalName)
            if reason:
                self.problem(f"{where}: spec.externalName {spec.externalName!r:.80}: {reason}")
                return
            resolution, external = Resolution.DNS, True
        elif spec.clusterIP == "None":
            resolution = Resolution.NONE
        elif spec.clusterIP:
            given = (
                tuple(spec.clusterIPs or ())
                if len(spec.clusterIPs or ()) > 1
                else (spec.clusterIP,)
            )
            for address in given:
                if _address_error(address):
                    self.problem(f"{where}: cluster IP {address!r:.80}: not an IP address")
            addresses = tuple(a for a in given if not _address_error(a))
        try:
            service = Service(
                hostname=service_hostname(name, namespace, self.domain_suffix),
                namespace=namespace,
                ports=ports,
                resolution=resolution,
                addresses=addresses,
                mesh_external=external,
                export_to=export_to,
                labels=labels,
                registry=KUBERNETES_REGISTRY,
            )
        except RegistryError as exc:
            self.problem(f"{where}: {exc}")
            return
        self.kube_services[(namespace, name)] = resource
        self.services[service.key] = service
        if external:
            self.endpoints[service.key] = (Endpoint(address=spec.externalName),)

    # -- endpoints ----------------------------------------------------------------------

    def port_map(self, where: str, ports: Iterable[tuple[str, Any]]) -> dict[str, int]:
        """Port name to number; a number that is no TCP port (0, negative, past 65535) is
        reported and left out, not truncated on the wire to another port."""
        found: dict[str, int] = {}
        for name, number in ports:
            if isinstance(number, int) and not isinstance(number, bool) and 0 < number < 65536:
                found[name] = number
            else:
                self.problem(f"{where}: port {name!r}: {number!r} is not a port number (1-65535)")
        return found

    def endpoint(
        self,
        address: str,
        ports: Mapping[str, int],
        pod: _Pod | None,
        health: HealthStatus,
    ) -> Endpoint:
        if pod is None:
            return Endpoint(address=address, ports=ports, health=health)
        locality = pod.labels.get(LOCALITY_LABEL, "").replace(".", "/") or self.nodes.get(
            pod.node, ""
        )
        return Endpoint(
            address=address,
            ports=ports,
            labels=pod.labels,
            locality=locality,
            health=health,
            network=pod.labels.get(NETWORK_LABEL, ""),
            service_account=spiffe_uri(self.trust_domain, pod.namespace, pod.service_account),
            hostname=pod.hostname,
            subdomain=pod.subdomain,
        )

    def _health(self, service: Any, ready: bool) -> HealthStatus | None:
        if ready:
            return HealthStatus.HEALTHY
        return HealthStatus.UNHEALTHY if service.spec.spec.publishNotReadyAddresses else None

    def _find_pod(
        self, namespace: str, address: str, ref: Any, where: str
    ) -> tuple[bool, _Pod | None]:
        """(keep, pod): a targetRef to a missing Pod drops the address, as istiod does."""
        if ref is not None and ref.kind == "Pod":
            pod = self.pods.get((ref.namespace or namespace, ref.name))
            if pod is None:
                self.problem(
                    f"{where}: address {address}: no Pod {ref.namespace or namespace}/{ref.name}"
                )
                return False, None
            return True, pod
        return True, self.pods_by_ip.get((namespace, address))

    def add_slices(self, slices: list[Any]) -> set[tuple[str, str]]:
        """Endpoints from EndpointSlices; returns the Services that have slices."""
        found: dict[tuple[str, str], list[Endpoint]] = {}
        for resource in slices:
            namespace, name, labels, _ = _meta(resource)
            where = f"EndpointSlice {namespace}/{name}"
            body = resource.spec
            owner = labels.get(SERVICE_NAME_LABEL, "")
            if not owner:
                self.problem(f"{where}: no {SERVICE_NAME_LABEL} label")
                continue
            service = self.kube_services.get((namespace, owner))
            if service is None:
                self.problem(f"{where}: no Service {namespace}/{owner}")
                continue
            key = (namespace, service_hostname(owner, namespace, self.domain_suffix))
            eps = found.setdefault(key, [])
            if body.addressType == "FQDN":
                continue
            ports = self.port_map(
                where, ((p.name or "", p.port) for p in body.ports or () if p.port is not None)
            )
            for endpoint in body.endpoints or ():
                conditions = endpoint.conditions
                ready = conditions is None or conditions.ready is None or bool(conditions.ready)
                health = self._health(service, ready)
                if health is None:
                    continue
                for address in endpoint.addresses or ():
                    reason = _address_error(address, body.addressType)
                    if reason:
                        self.problem(f"{where}: address {address!r}: {reason}")
                        continue
                    keep, pod = self._find_pod(namespace, address, endpoint.targetRef, where)
                    if keep:
                        eps.append(self.endpoint(address, ports, pod, health))
        for key, eps in found.items():
            self.endpoints[key] = _unique(eps)
        return set(found)

    def add_endpoints(self, resource: Any) -> None:
        namespace, name, _, _ = _meta(resource)
        where = f"Endpoints {namespace}/{name}"
        service = self.kube_services.get((namespace, name))
        if service is None:
            self.problem(f"{where}: no Service {namespace}/{name}")
            return
        eps: list[Endpoint] = []
        for subset in resource.spec.subsets or ():
            ports = self.port_map(where, ((p.name or "", p.port) for p in subset.ports or ()))
            for addresses, ready in ((subset.addresses, True), (subset.notReadyAddresses, False)):
                health = self._health(service, ready)
                if health is None:
                    continue
                for address in addresses or ():
                    reason = _address_error(address.ip)
                    if reason:
                        self.problem(f"{where}: address {address.ip!r}: {reason}")
                        continue
                    keep, pod = self._find_pod(namespace, address.ip, address.targetRef, where)
                    if keep:
                        eps.append(self.endpoint(address.ip, ports, pod, health))
        self.endpoints[(namespace, service_hostname(name, namespace, self.domain_suffix))] = (
            _unique(eps)
        )

    def add_selected_pods(self, namespace: str, name: str, resource: Any) -> None:
        """A Service with a selector and no endpoint objects: the Pods it selects."""
        spec = resource.spec.spec
        key = (namespace, service_hostname(name, namespace, self.domain_suffix))
        selector = dict(spec.selector or {})
        if not selector or spec.type == "ExternalName":
            self.endpoints.setdefault(key, ())
            return
        eps: list[Endpoint] = []
        for (pod_ns, pod_name), pod in sorted(self.pods.items()):
            if pod_ns != namespace or not labels_match(selector, pod.labels):
                continue
            if not pod.ip:
                self.problem(
                    f"Pod {pod_ns}/{pod_name}: selected by Service {namespace}/{name} but has no IP"
                )
                continue
            health = self._health(resource, pod.ready)
            if health is None:
                continue
            found: list[tuple[str, Any]] = []
            for port in spec.ports or ():
                target = port.targetPort
                if isinstance(target, str):
                    if target not in pod.ports:
                        continue
                    found.append((port.name or "", pod.ports[target]))
                else:
                    found.append((port.name or "", target or port.port))
            ports = self.port_map(f"Pod {pod_ns}/{pod_name}", found)
            eps.append(self.endpoint(pod.ip, ports, pod, health))
        self.endpoints[key] = _unique(eps)


def _unique(endpoints: list[Endpoint]) -> tuple[Endpoint, ...]:
    """One endpoint per address and port map (several slices may list the same address)."""
    seen: dict[tuple[str, tuple[tuple[str, int], ...]], Endpoint] = {}
    for ep in endpoints:
        seen.setdefault((ep.address, tuple(sorted(ep.ports.items()))), ep)
    return tuple(seen.values())


def _name_key(resource: Any) -> tuple[str, str]:
    return (resource.metadata.namespace, resource.metadata.name)


def build_kube_registry(
    resources: Iterable[Any],
    *,
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
) -> KubeRegistry:
    """The Kubernetes service registry of ``resources`` (other kinds are ignored)."""
    by_kind: dict[str, list[Any]] = {kind: [] for kind in KUBERNETES_REGISTRY_KINDS}
    for resource in resources:
        if getattr(resource, "kubernetes", True) and resource.kind in by_kind:
            by_kind[resource.kind].append(resource)
    builder = _Builder(domain_suffix, trust_domain)
    for kind, add in (
        ("Node", builder.add_node),
        ("Pod", builder.add_pod),
        ("Service", builder.add_service),
    ):
        for resource in sorted(
            by_kind[kind], key=lambda r: (r.metadata.namespace, r.metadata.name)
        ):
            add(resource)
    with_slices = builder.add_slices(
        sorted(by_kind["EndpointSlice"], key=lambda r: (r.metadata.namespace, r.metadata.name))
    )
    with_endpoints: set[tuple[str, str]] = set()
    for resource in sorted(
        by_kind["Endpoints"], key=lambda r: (r.metadata.namespace, r.metadata.name)
    ):
        namespace, name = resource.metadata.namespace, resource.metadata.name
        key = (namespace, service_hostname(name, namespace, domain_suffix))
        if key in with_slices:
            continue  # slices win, as in istiod
        builder.add_endpoints(resource)
        with_endpoints.add(key)
    for (namespace, name), resource in sorted(builder.kube_services.items()):
        key = (namespace, service_hostname(name, namespace, domain_suffix))
        if key not in with_slices and key not in with_endpoints and key not in builder.endpoints:
            builder.add_selected_pods(namespace, name, resource)
    return KubeRegistry(
        services=MappingProxyType(dict(builder.services)),
        endpoints=MappingProxyType(dict(builder.endpoints)),
        problems=tuple(builder.problems),
    )
