"""Pilot's service registry: the services a mesh knows and the endpoints behind them.

Two ways in:

* programmatically, with :class:`ServiceRegistry` (``register_service``, ``set_endpoints``,
  ``remove_service``), handy in tests and when embedding Pilot; and
* from Istio config, with :func:`services_from_service_entry`, which reads a ``ServiceEntry``
  spec (STATIC, DNS, DNS_ROUND_ROBIN and NONE resolution, inline endpoints with their own port
  maps, ``targetPort``) and the ``WorkloadEntry`` resources its ``workloadSelector`` picks; and
* from Kubernetes objects (Services, EndpointSlices, Endpoints, Pods, Nodes), with
  :func:`istio_sdk.pilot.kube_registry.build_kube_registry`, which gives the same values.

Everything handed out is an immutable value (``attrs`` frozen classes), so a
:class:`RegistrySnapshot` can be shared by concurrent pushes. Hostnames are always fully
qualified; short names in config are expanded relative to the config's namespace the way Istio
does (``reviews`` in ``default`` becomes ``reviews.default.svc.cluster.local``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from istio_sdk.api.istio.networking import v1alpha3 as networking
from istio_sdk.pilot.hosts import exported_to
from istio_sdk.pilot.labels import labels_match

__all__ = [
    "DEFAULT_DOMAIN_SUFFIX",
    "EXTERNAL_REGISTRY",
    "KUBERNETES_REGISTRY",
    "Endpoint",
    "HealthStatus",
    "RegistryError",
    "RegistrySnapshot",
    "Resolution",
    "Service",
    "ServiceInstance",
    "ServicePort",
    "ServiceRegistry",
    "endpoints_from_service_entry",
    "fqdn",
    "register_service_entry",
    "services_from_service_entry",
]

DEFAULT_DOMAIN_SUFFIX = "cluster.local"
KUBERNETES_REGISTRY = "Kubernetes"
"""``Service.registry`` of a Kubernetes Service (istiod's provider id)."""
EXTERNAL_REGISTRY = "External"
"""``Service.registry`` of a ServiceEntry host, and the default for registered services."""


class RegistryError(ValueError):
    """A service or endpoint cannot be registered; the message names the offending object."""


class Resolution(enum.Enum):
    """How a proxy finds the addresses behind a service (ServiceEntry ``resolution``)."""

    STATIC = "STATIC"
    """Endpoints are known IP addresses, delivered over EDS."""
    DNS = "DNS"
    """Endpoints are hostnames the proxy resolves itself (Envoy STRICT_DNS)."""
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    """Like DNS, but only the first address is used per connection (Envoy LOGICAL_DNS)."""
    NONE = "NONE"
    """No resolution: connections go to the address the caller dialled (ORIGINAL_DST)."""


class HealthStatus(enum.Enum):
    """An endpoint's health as the registry reports it (maps to Envoy's HealthStatus)."""

    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DRAINING = "DRAINING"
    UNKNOWN = "UNKNOWN"


def fqdn(host: str, namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
    """Expand a short host name relative to ``namespace`` as Istio does.

    A name without dots is a Kubernetes service in ``namespace``; anything with a dot, and
    the wildcards ``*`` / ``*.example.com``, are kept as written.
    """
    if not host or "." in host or host == "*":
        return host
    return service_hostname(host, namespace, domain_suffix)


def service_hostname(name: str, namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
    """``NAME.NAMESPACE.svc.DOMAIN``, a Kubernetes Service's hostname."""
    return f"{name}.{namespace}.svc.{domain_suffix}"


def _frozen_str_map(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted((value or {}).items())))


def _frozen_int_map(value: Mapping[str, int] | None) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted((value or {}).items())))


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _port_tuple(value: Iterable[ServicePort]) -> tuple[ServicePort, ...]:
    return tuple(value)


def _check_port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 < value < 65536:
        raise RegistryError(f"{attribute.name} must be in 1..65535, got {value}")


def _check_optional_port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value < 65536:
        raise RegistryError(f"{attribute.name} must be in 0..65535, got {value}")


@attrs.frozen
class ServicePort:
    """One port a service exposes.

    ``protocol`` uses Istio's names (HTTP, HTTP2, GRPC, HTTPS, TLS, TCP, ...); when empty it is
    inferred from the port ``name`` prefix (``http-web`` is HTTP) as Istio does.
    ``target_port`` (0: same as ``number``) is where endpoints listen unless an endpoint's own
    port map says otherwise.
    """

    number: int = attrs.field(validator=_check_port)
    name: str = ""
    protocol: str = ""
    target_port: int = attrs.field(default=0, validator=_check_optional_port)

    @property
    def effective_protocol(self) -> str:
        """The protocol, upper-cased, inferred from the port name when not given."""
        if self.protocol:
            return self.protocol.upper()
        if self.name[:8].upper() == "GRPC-WEB":  # the one known name with a '-' in it
            return "GRPC-WEB"
        prefix = self.name.split("-", 1)[0].upper()
        known = {
            "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTPS", "TLS", "TCP", "MONGO", "REDIS", "MYSQL",
        }  # fmt: skip
        return prefix if prefix in known else "TCP"

    @property
    def is_http(self) -> bool:
        """True for ports whose traffic a proxy routes as HTTP (HTTP, HTTP2, gRPC)."""
        return self.effective_protocol in {"HTTP", "HTTP2", "GRPC", "GRPC-WEB"}


@attrs.frozen
class Endpoint:
    """One workload instance behind a service.

    ``ports`` maps service port *names* to the port this workload listens on (a ServiceEntry
    endpoint's or WorkloadEntry's port map); ports not in it use the service port's
    ``target_port`` or number. ``locality`` is ``region/zone/subzone`` (any part may be empty).
    ``hostname`` and ``subdomain`` are a Kubernetes Pod's (``spec.subdomain``, and
    ``spec.hostname`` or its name), set when it has a subdomain: the Pod is then
    ``HOSTNAME.SUBDOMAIN.NAMESPACE.svc.DOMAIN`` in DNS.
    """

    address: str = attrs.field()
    ports: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_int_map)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_str_map)
    locality: str = ""
    weight: int = attrs.field(default=1)
    health: HealthStatus = HealthStatus.HEALTHY
    network: str = ""
    service_account: str = ""
    hostname: str = ""
    subdomain: str = ""

    @address.validator
    def _check_address(self, attribute: attrs.Attribute[str], value: str) -> None:
        if not value:
            raise RegistryError("endpoint address must not be empty")

    @weight.validator
    def _check_weight(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 0 < value <= 2**32 - 1:
            raise RegistryError(f"endpoint {self.address} weight must be >= 1, got {value}")

    def port_for(self, port: ServicePort) -> int:
        """The port this endpoint serves ``port`` on."""
        mapped = self.ports.get(port.name)  # "" too: a Kubernetes Service's unnamed port
        if mapped:
            return mapped
        return port.target_port or port.number

    @property
    def locality_parts(self) -> tuple[str, str, str]:
        """``(region, zone, subzone)`` from ``locality``."""
        parts = [*self.locality.split("/"), "", "", ""][:3]
        return parts[0], parts[1], parts[2]


@attrs.frozen
class Service:
    """A service in the mesh: a fully qualified hostname, its ports and how to resolve it.

    ``addresses`` are virtual IPs (or CIDRs) clients dial; ``mesh_external`` marks services
    outside the mesh (ServiceEntry ``location: MESH_EXTERNAL``). ``export_to`` lists the
    namespaces that may see it (``*`` for all, ``.`` for its own; empty means all).
    ``registry`` names where it comes from (:data:`KUBERNETES_REGISTRY` for a Kubernetes
    Service, :data:`EXTERNAL_REGISTRY` otherwise), as istiod's provider id: the agent's DNS
    proxy answers short names (``reviews``, ``reviews.default``) for Kubernetes services only.
    """

    hostname: str = attrs.field()
    namespace: str = attrs.field()
    ports: tuple[ServicePort, ...] = attrs.field(converter=_port_tuple)
    resolution: Resolution = Resolution.STATIC
    addresses: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    mesh_external: bool = False
    export_to: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_str_map)
    registry: str = EXTERNAL_REGISTRY

    @hostname.validator
    def _check_hostname(self, attribute: attrs.Attribute[str], value: str) -> None:
        if not value or value.startswith(".") or " " in value:
            raise RegistryError(f"invalid service hostname {value!r}")

    @namespace.validator
    def _check_namespace(self, attribute: attrs.Attribute[str], value: str) -> None:
        if not value:
            raise RegistryError(f"service {self.hostname} needs a namespace")

    @ports.validator
    def _check_ports(self, attribute: attrs.Attribute[object], value: tuple[ServicePort]) -> None:
        numbers = [p.number for p in value]
        if len(set(numbers)) != len(numbers):
            raise RegistryError(f"service {self.hostname} declares a port number twice")

    def port(self, number: int) -> ServicePort | None:
        """The port with this number, or None."""
        for port in self.ports:
            if port.number == number:
                return port
        return None

    def visible_from(self, namespace: str) -> bool:
        """Whether a proxy in ``namespace`` may see this service (``exportTo``)."""
        return exported_to(self.export_to, self.namespace, namespace)

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, hostname)``: the registry key."""
        return (self.namespace, self.hostname)


@attrs.frozen
class ServiceInstance:
    """One endpoint of one service on one port, as proxies are told about it."""

    service: Service
    port: ServicePort
    endpoint: Endpoint

    @property
    def endpoint_port(self) -> int:
        """The port the endpoint serves this service port on."""
        return self.endpoint.port_for(self.port)


@attrs.frozen
class RegistrySnapshot:
    """An immutable view of a registry at one revision, shared by a push."""

    revision: int
    services: Mapping[tuple[str, str], Service]
    endpoints: Mapping[tuple[str, str], tuple[Endpoint, ...]]

    def service(self, hostname: str, namespace: str | None = None) -> Service | None:
        """The service with this hostname (in ``namespace`` if given; else the first by name)."""
        if namespace is not None:
            return self.services.get((namespace, hostname))
        matches = [s for key, s in sorted(self.services.items()) if key[1] == hostname]
        return matches[0] if matches else None

    def endpoints_of(self, service: Service) -> tuple[Endpoint, ...]:
        """The endpoints registered for ``service`` (empty when none)."""
        return self.endpoints.get(service.key, ())

    def instances(self, service: Service, port: ServicePort) -> list[ServiceInstance]:
        """Every endpoint of ``service`` on ``port`` as service instances."""
        return [ServiceInstance(service, port, ep) for ep in self.endpoints_of(service)]


class ServiceRegistry:
    """A mutable registry of services and endpoints with a revision counter.

    Each change bumps ``revision`` and records which services changed and whether only their
    endpoints did, so a discovery server can push EDS alone for endpoint-only changes.
    ``snapshot()`` returns an immutable :class:`RegistrySnapshot` for translation.
    """

    def __init__(self) -> None:
        self._services: dict[tuple[str, str], Service] = {}
        self._endpoints: dict[tuple[str, str], tuple[Endpoint, ...]] = {}
        self._revision = 0

    @property
    def revision(self) -> int:
        """Bumped by every change."""
        return self._revision

    def register_service(
        self, service: Service, endpoints: Iterable[Endpoint] | None = None
    ) -> None:
        """Add or replace ``service``; ``endpoints`` (when given) replace its endpoints."""
        self._services[service.key] = service
        if endpoints is not None:
            self._endpoints[service.key] = tuple(endpoints)
        else:
            self._endpoints.setdefault(service.key, ())
        self._revision += 1

    def set_endpoints(self, hostname: str, namespace: str, endpoints: Iterable[Endpoint]) -> None:
        """Replace the endpoints of a registered service."""
        key = (namespace, hostname)
        if key not in self._services:
            raise RegistryError(f"no service {hostname} in namespace {namespace}")
        self._endpoints[key] = tuple(endpoints)
        self._revision += 1

    def remove_service(self, hostname: str, namespace: str) -> None:
        """Forget a service and its endpoints; unknown services raise RegistryError."""
        key = (namespace, hostname)
        if key not in self._services:
            raise RegistryError(f"no service {hostname} in namespace {namespace}")
        del self._services[key]
        self._endpoints.pop(key, None)
        self._revision += 1

    def services(self) -> list[Service]:
        """All registered services, sorted by namespace then hostname."""
        return [self._services[k] for k in sorted(self._services)]

    def snapshot(self) -> RegistrySnapshot:
        """An immutable copy of the current state."""
        return RegistrySnapshot(
            revision=self._revision,
            services=MappingProxyType(dict(self._services)),
            endpoints=MappingProxyType(dict(self._endpoints)),
        )


_RESOLUTIONS = {
    networking.ServiceEntryResolution.NONE: Resolution.NONE,
    networking.ServiceEntryResolution.STATIC: Resolution.STATIC,
    networking.ServiceEntryResolution.DNS: Resolution.DNS,
    networking.ServiceEntryResolution.DNS_ROUND_ROBIN: Resolution.DNS_ROUND_ROBIN,
    networking.ServiceEntryResolution.DYNAMIC_DNS: Resolution.DNS,
}


def _endpoint_from_workload(entry: networking.WorkloadEntry, labels: Mapping[str, str]) -> Endpoint:
    merged = {**labels, **entry.labels}
    return Endpoint(
        address=entry.address,
        ports=dict(entry.ports),
        labels=merged,
        locality=entry.locality,
        weight=entry.weight or 1,
        network=entry.network,
        service_account=entry.service_account,
    )


def services_from_service_entry(
    spec: networking.ServiceEntry,
    name: str,
    namespace: str,
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
) -> list[Service]:
    """One :class:`Service` per host of a ServiceEntry (hosts expanded relative to its namespace).

    Raises :class:`RegistryError` naming the ServiceEntry when it declares no hosts or ports.
    """
    where = f"ServiceEntry {namespace}/{name}"
    if not spec.hosts:
        raise RegistryError(f"{where}: spec.hosts must not be empty")
    ports: list[ServicePort] = []
    for i, p in enumerate(spec.ports):
        try:
            ports.append(
                ServicePort(
                    number=p.number, name=p.name, protocol=p.protocol, target_port=p.target_port
                )
            )
        except RegistryError as exc:
            raise RegistryError(f"{where}: spec.ports[{i}]: {exc}") from None
    resolution = _RESOLUTIONS.get(spec.resolution, Resolution.NONE)
    external = spec.location == networking.ServiceEntryLocation.MESH_EXTERNAL
    out = []
    for host in spec.hosts:
        try:
            out.append(
                Service(
                    hostname=fqdn(host, namespace, domain_suffix),
                    namespace=namespace,
                    ports=ports,
                    resolution=resolution,
                    addresses=tuple(spec.addresses),
                    mesh_external=external,
                    export_to=tuple(spec.export_to),
                )
            )
        except RegistryError as exc:
            raise RegistryError(f"{where}: {exc}") from None
    return out


def endpoints_from_service_entry(
    spec: networking.ServiceEntry,
    namespace: str,
    workload_entries: Iterable[tuple[str, str, networking.WorkloadEntry]] = (),
    host: str = "",
) -> tuple[Endpoint, ...]:
    """The endpoints of a ServiceEntry (for one of its hosts).

    Inline ``endpoints`` come first; with a ``workloadSelector``, every WorkloadEntry in the
    same namespace whose labels include the selector's is added (``workload_entries`` are
    ``(name, namespace, spec)`` triples). A DNS ServiceEntry without endpoints resolves its
    own host, so ``host`` itself becomes the single (hostname) endpoint, as Istio does.
    """
    eps: list[Endpoint] = [_endpoint_from_workload(e, {}) for e in spec.endpoints]
    if spec.workload_selector is not None:
        selector = spec.workload_selector.labels
        for _name, ns, entry in sorted(workload_entries, key=lambda t: (t[1], t[0])):
            if ns != namespace:
                continue
            if labels_match(selector, entry.labels):
                eps.append(_endpoint_from_workload(entry, {}))
    resolution = _RESOLUTIONS.get(spec.resolution, Resolution.NONE)
    dns = resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)
    if not eps and dns and host and "*" not in host:
        eps = [Endpoint(address=host)]
    return tuple(eps)


def register_service_entry(
    registry: ServiceRegistry,
    spec: networking.ServiceEntry,
    name: str,
    namespace: str,
    *,
    workload_entries: Iterable[tuple[str, str, networking.WorkloadEntry]] = (),
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
) -> list[Service]:
    """Register every host of a ServiceEntry, with its endpoints, in ``registry``."""
    entries = list(workload_entries)
    services = services_from_service_entry(spec, name, namespace, domain_suffix)
    for service in services:
        registry.register_service(
            service, endpoints_from_service_entry(spec, namespace, entries, service.hostname)
        )
    return services
