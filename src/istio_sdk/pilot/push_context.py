"""The push context: one immutable snapshot of Istio config and the service registry.

Pilot translates from a :class:`PushContext`, never from live state, so every proxy pushed in
one round sees the same world. It is built from config resources (anything with ``.kind``,
``.metadata.name``, ``.metadata.namespace`` and ``.spec``, such as ``istio_sdk.config.Resource``
or :class:`ConfigEntry`) plus an optional :class:`~istio_sdk.pilot.registry.ServiceRegistry`
for programmatically registered services. ServiceEntry and WorkloadEntry resources in the config
feed the registry view too.

The seam with the discovery server (``istio_sdk.pilot.server``):

* ``PushContext.build(configs, registry)`` whenever config or the registry changes;
* :func:`istio_sdk.pilot.translate.generate` ``(push_context, proxy, type_url, names)`` to get
  the resources one proxy should receive (``dict`` of resource name to Envoy message);
* :func:`compute_changes` ``(old, new)`` to learn what changed, and
  :meth:`ChangeSet.affects` / :attr:`ChangeSet.type_urls` to push only to the proxies, and only
  the types, a change touches (endpoint-only changes push EDS alone).

:class:`ProxyInfo` describes the proxy asking, usually parsed from the xDS ``Node`` with
:meth:`ProxyInfo.from_node`.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import attrs
import betterproto2

from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.istio.networking import v1alpha3 as networking
from istio_sdk.pilot.registry import (
    DEFAULT_DOMAIN_SUFFIX,
    Endpoint,
    RegistryError,
    RegistrySnapshot,
    Resolution,
    Service,
    ServiceRegistry,
    endpoints_from_service_entry,
    fqdn,
    services_from_service_entry,
)

__all__ = [
    "ChangeSet",
    "ConfigEntry",
    "ConfigKey",
    "ConfigLike",
    "PushContext",
    "PushContextError",
    "ProxyInfo",
    "ProxyType",
    "compute_changes",
    "host_matches",
    "split_namespaced_host",
]

ROOT_NAMESPACE = "istio-system"
DEFAULT_TRUST_DOMAIN = "cluster.local"

# Type URLs the generator answers (the xDS registry in istio_sdk.xds holds the full list).
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
ALL_TYPES = frozenset({CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE})

_KIND_ALIASES = {
    "virtualservice": "VirtualService",
    "destinationrule": "DestinationRule",
    "gateway": "Gateway",
    "sidecar": "Sidecar",
    "serviceentry": "ServiceEntry",
    "workloadentry": "WorkloadEntry",
    "peerauthentication": "PeerAuthentication",
    "authorizationpolicy": "AuthorizationPolicy",
}
_VERSION_COUNTER = itertools.count(1)
TRANSLATED_KINDS = frozenset(_KIND_ALIASES.values())
"""The config kinds translation reads; changes to other kinds push nothing."""


class PushContextError(ValueError):
    """Config cannot be used for translation; the message names the resource and field."""


class _MetaLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> str | None: ...


class _StoreLike(Protocol):
    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Any]: ...

    @property
    def revision(self) -> int: ...


class ConfigLike(Protocol):
    """What the push context needs from a config resource (``istio_sdk.config.Resource`` fits)."""

    @property
    def kind(self) -> str: ...

    @property
    def metadata(self) -> _MetaLike: ...

    @property
    def spec(self) -> Any: ...


@attrs.frozen(order=True)
class ConfigKey:
    """Identifies one config resource: ``(kind, namespace, name)``."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@attrs.frozen
class ConfigEntry:
    """A config resource reduced to what translation reads."""

    kind: str
    name: str
    namespace: str
    spec: betterproto2.Message = attrs.field(eq=False)
    digest: bytes = attrs.field(default=b"", eq=True)

    @property
    def key(self) -> ConfigKey:
        """The entry's :class:`ConfigKey`."""
        return ConfigKey(self.kind, self.namespace, self.name)

    @classmethod
    def of(cls, resource: ConfigLike | ConfigEntry) -> ConfigEntry:
        """Normalise a resource (or pass an entry through), computing its content digest."""
        if isinstance(resource, ConfigEntry):
            if resource.digest:
                return resource
            kind, name, namespace, spec = (
                resource.kind,
                resource.name,
                resource.namespace,
                resource.spec,
            )
        else:
            kind = resource.kind
            name = resource.metadata.name
            namespace = resource.metadata.namespace or "default"
            spec = resource.spec
        kind = _KIND_ALIASES.get(kind.lower(), kind)
        digest = hashlib.sha256(bytes(spec)).digest()[:16]
        return cls(kind=kind, name=name, namespace=namespace, spec=spec, digest=digest)


class ProxyType(enum.Enum):
    """The role a proxy plays (first field of an Istio node id)."""

    SIDECAR = "sidecar"
    ROUTER = "router"


def _frozen_labels(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(value.items())))


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _labels(value: object) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {}


@attrs.frozen
class ProxyInfo:
    """Who is asking for config: parsed from the xDS node, or built directly in tests.

    ``generator`` is the node metadata ``GENERATOR`` (``grpc`` for proxyless gRPC clients).
    """

    id: str
    type: ProxyType = ProxyType.SIDECAR
    ip_addresses: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    namespace: str = "default"
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_labels)
    generator: str = ""
    dns_domain: str = ""
    locality: str = ""
    """``region/zone/subzone`` of the proxy (from the node's locality), for locality LB."""

    @property
    def is_grpc(self) -> bool:
        """True for proxyless gRPC clients (``GENERATOR: grpc``)."""
        return self.generator == "grpc"

    @classmethod
    def from_node(cls, node: Node) -> ProxyInfo:
        """Parse an Istio node: id ``TYPE~IP~POD.NS~NS.svc.DOMAIN`` plus metadata.

        Metadata keys read: ``NAMESPACE``, ``LABELS``, ``GENERATOR``, ``INSTANCE_IPS``. A node
        id that is not in Istio's form still yields a proxy (sidecar in ``default``) so any
        ADS client can be served.
        """
        meta: dict[str, Any] = node.metadata.to_dict() if node.metadata is not None else {}
        parts = node.id.split("~")
        ptype = ProxyType.SIDECAR
        ips: tuple[str, ...] = ()
        namespace = ""
        dns_domain = ""
        if len(parts) == 4:
            try:
                ptype = ProxyType(parts[0])
            except ValueError:
                ptype = ProxyType.SIDECAR
            ips = tuple(ip for ip in parts[1].split(",") if ip)
            pod = parts[2]
            if "." in pod:
                namespace = pod.split(".", 1)[1]
            dns_domain = parts[3]
            if not namespace and "." in dns_domain:
                namespace = dns_domain.split(".", 1)[0]
        namespace = str(meta.get("NAMESPACE") or namespace or "default")
        instance_ips = meta.get("INSTANCE_IPS")
        if isinstance(instance_ips, str) and instance_ips:
            ips = tuple(ip.strip() for ip in instance_ips.split(",") if ip.strip())
        return cls(
            id=node.id,
            type=ptype,
            ip_addresses=ips,
            namespace=namespace,
            labels=_labels(meta.get("LABELS")),
            generator=str(meta.get("GENERATOR") or ""),
            dns_domain=dns_domain,
            locality=_node_locality(node),
        )


def _node_locality(node: Node) -> str:
    loc = node.locality
    if loc is None or not (loc.region or loc.zone or loc.sub_zone):
        return ""
    return f"{loc.region}/{loc.zone}/{loc.sub_zone}"


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: ``*`` matches all, ``*.x.com`` matches subdomains of x.com."""
    if pattern in ("*", host):
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) or (host.startswith("*.") and host.endswith(pattern[1:]))
    return False


def split_namespaced_host(host: str, own_namespace: str) -> tuple[str, str]:
    """Split a ``namespace/dnsName`` host (Sidecar egress, Gateway server) into its two parts.

    A host without ``/`` applies to every namespace (``*``); the namespace ``.`` stands for
    ``own_namespace``, the namespace of the config that lists the host.
    """
    ns, _, pattern = host.partition("/")
    if not pattern:
        return "*", ns
    if ns == ".":
        return own_namespace, pattern
    return ns, pattern


def _visible(export_to: Iterable[str], owner_ns: str, proxy_ns: str) -> bool:
    targets = list(export_to)
    if not targets or "*" in targets:
        return True
    if "." in targets and owner_ns == proxy_ns:
        return True
    return proxy_ns in targets


@attrs.frozen
class SidecarScope:
    """What one proxy may see: from the Sidecar resource that selects it, if any."""

    sidecar: ConfigEntry | None
    egress_hosts: tuple[tuple[str, str], ...]
    """``(namespace, host pattern)`` pairs; ``*`` namespace for any."""
    registry_only: bool
    egress_ports: tuple[tuple[int, str, str], ...] = ()
    """``(port, namespace, host pattern)``: egress listeners with a port import their hosts
    on that port only; port 0 is an egress listener without a port (every port)."""

    def allows(self, namespace: str, hostname: str, proxy_ns: str, port: int = 0) -> bool:
        """Whether a service/VS host in ``namespace`` is imported by this scope (on ``port``,
        when given: egress listeners bound to another port do not count)."""
        if self.sidecar is None:
            return True
        entries = self.egress_ports or tuple((0, ns, h) for ns, h in self.egress_hosts)
        for listener_port, ns, pattern in entries:
            if ns == "~" or (port and listener_port and listener_port != port):
                continue
            ns_ok = ns in ("*", namespace) or (ns == "." and namespace == proxy_ns)
            if ns_ok and host_matches(pattern, hostname):
                return True
        return False


class PushContext:
    """Immutable snapshot of config and registry; the input to every translator.

    Build with :meth:`build`. Indices are computed once; per-proxy scopes are memoised, and
    translators may memoise results in :attr:`cache` (keyed by whatever identifies the
    proxies that share a result), so each resource is translated once per snapshot.
    """

    def __init__(
        self,
        *,
        configs: Mapping[ConfigKey, ConfigEntry],
        services: Mapping[tuple[str, str], Service],
        endpoints: Mapping[tuple[str, str], tuple[Endpoint, ...]],
        version: str,
        domain_suffix: str,
        root_namespace: str,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        auto_mtls: bool = True,
    ) -> None:
        self.configs = MappingProxyType(dict(configs))
        self.services = MappingProxyType(dict(services))
        self.endpoints = MappingProxyType(dict(endpoints))
        self.version = version
        self.domain_suffix = domain_suffix
        self.root_namespace = root_namespace
        self.trust_domain = trust_domain
        """The SPIFFE trust domain workload identities are in (``cluster.local`` by default)."""
        self.auto_mtls = auto_mtls
        """Istio's ``enableAutoMtls``: sidecar clusters without TLS settings try Istio mTLS
        with workloads that have a sidecar (default on, as in Istio)."""
        self.cache: dict[tuple[object, ...], Any] = {}
        self.errors: tuple[str, ...] = ()
        """Problems with config that was skipped while building (see :meth:`build`)."""
        by_kind: dict[str, list[ConfigEntry]] = {}
        for key in sorted(self.configs):
            entry = self.configs[key]
            by_kind.setdefault(entry.kind, []).append(entry)
        self._by_kind = by_kind
        self._by_host: dict[str, list[Service]] = {}
        for skey in sorted(self.services):
            svc = self.services[skey]
            self._by_host.setdefault(svc.hostname, []).append(svc)
        self._scopes: dict[tuple[str, tuple[tuple[str, str], ...]], SidecarScope] = {}
        self._memo: dict[tuple[object, ...], Any] = {}
        # DestinationRules by the host they name (resolved), wildcards apart: lookups stay
        # proportional to the rules for one host, not to every rule in the mesh.
        self._rules_exact: dict[str, list[ConfigEntry]] = {}
        self._rules_wild: list[tuple[str, ConfigEntry]] = []
        for entry in by_kind.get("DestinationRule", ()):
            if not isinstance(entry.spec, networking.DestinationRule):
                continue
            host = self.fqdn(entry.spec.host, entry.namespace)
            if "*" in host:
                self._rules_wild.append((host, entry))
            else:
                self._rules_exact.setdefault(host, []).append(entry)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        configs: Iterable[ConfigLike | ConfigEntry] = (),
        registry: ServiceRegistry | RegistrySnapshot | None = None,
        *,
        version: str | None = None,
        domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
        root_namespace: str = ROOT_NAMESPACE,
        strict: bool = False,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        auto_mtls: bool = True,
    ) -> PushContext:
        """Snapshot ``configs`` and ``registry`` into a push context.

        ServiceEntries become services (with their inline endpoints and the WorkloadEntries
        their ``workloadSelector`` picks); registry services are added alongside. A resource
        that cannot be used (a ServiceEntry without hosts, a port out of range, a spec of the
        wrong type) is skipped and described in :attr:`errors`, as istiod skips bad config
        without blocking the rest; with ``strict=True`` it raises :class:`PushContextError`
        naming the resource instead.
        """
        entries: dict[ConfigKey, ConfigEntry] = {}
        for resource in configs:
            entry = ConfigEntry.of(resource)
            entries[entry.key] = entry
        snap = registry.snapshot() if isinstance(registry, ServiceRegistry) else registry
        services: dict[tuple[str, str], Service] = {}
        endpoints: dict[tuple[str, str], tuple[Endpoint, ...]] = {}
        if snap is not None:
            services.update(snap.services)
            endpoints.update(snap.endpoints)
        workload_entries = [
            (e.name, e.namespace, e.spec)
            for e in entries.values()
            if e.kind == "WorkloadEntry" and isinstance(e.spec, networking.WorkloadEntry)
        ]
        errors: list[str] = []
        for key in sorted(entries):
            entry = entries[key]
            if entry.kind != "ServiceEntry":
                continue
            spec = entry.spec
            try:
                if not isinstance(spec, networking.ServiceEntry):
                    raise RegistryError(f"{key}: spec is {type(spec).__name__}, not ServiceEntry")
                found = [
                    (
                        svc,
                        endpoints_from_service_entry(
                            spec, entry.namespace, workload_entries, svc.hostname
                        ),
                    )
                    for svc in services_from_service_entry(
                        spec, entry.name, entry.namespace, domain_suffix
                    )
                ]
            except RegistryError as exc:
                if strict:
                    raise PushContextError(str(exc)) from None
                errors.append(str(exc))
                continue
            for svc, eps in found:
                services[svc.key] = svc
                endpoints[svc.key] = eps
        context = cls(
            configs=entries,
            services=services,
            endpoints=endpoints,
            version=version if version is not None else str(next(_VERSION_COUNTER)),
            domain_suffix=domain_suffix,
            root_namespace=root_namespace,
            trust_domain=trust_domain,
            auto_mtls=auto_mtls,
        )
        context.errors = tuple(errors)
        return context

    @classmethod
    def from_store(
        cls,
        store: _StoreLike,
        registry: ServiceRegistry | RegistrySnapshot | None = None,
        *,
        domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
        root_namespace: str = ROOT_NAMESPACE,
        strict: bool = False,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        auto_mtls: bool = True,
    ) -> PushContext:
        """Snapshot the translated kinds (networking, PeerAuthentication, AuthorizationPolicy) of a
        ``ConfigStore``.

        The version is the store's revision (plus the registry's, when one is given).
        """
        resources = [r for r in store.list() if r.kind in TRANSLATED_KINDS]
        version = str(store.revision)
        if isinstance(registry, ServiceRegistry):
            registry = registry.snapshot()
        if registry is not None:
            version = f"{version}.{registry.revision}"
        return cls.build(
            resources,
            registry,
            version=version,
            domain_suffix=domain_suffix,
            root_namespace=root_namespace,
            strict=strict,
            trust_domain=trust_domain,
            auto_mtls=auto_mtls,
        )

    # -- lookups ------------------------------------------------------------------------

    def entries(self, kind: str) -> list[ConfigEntry]:
        """Config entries of ``kind``, sorted by namespace then name."""
        return list(self._by_kind.get(kind, ()))

    def fqdn(self, host: str, namespace: str) -> str:
        """Expand a short host name relative to ``namespace``."""
        return fqdn(host, namespace, self.domain_suffix)

    def endpoints_of(self, service: Service) -> tuple[Endpoint, ...]:
        """The endpoints behind ``service``."""
        return self.endpoints.get(service.key, ())

    def service_for_host(self, hostname: str, proxy: ProxyInfo | None = None) -> Service | None:
        """The service named ``hostname`` (a proxy's own namespace wins over others)."""
        candidates = self._by_host.get(hostname, [])
        if proxy is not None:
            candidates = [s for s in candidates if s.visible_from(proxy.namespace)]
            for svc in candidates:
                if svc.namespace == proxy.namespace:
                    return svc
        return candidates[0] if candidates else None

    def resolve_target(self, target: str, proxy: ProxyInfo) -> Service | None:
        """The service a client means by ``target`` (FQDN, or a short name in its namespace)."""
        svc = self.service_for_host(target, proxy)
        if svc is None and "." not in target:
            svc = self.service_for_host(self.fqdn(target, proxy.namespace), proxy)
        if svc is None and target.count(".") == 1:
            svc = self.service_for_host(f"{target}.svc.{self.domain_suffix}", proxy)
        if svc is None and target.endswith(".svc"):
            svc = self.service_for_host(f"{target}.{self.domain_suffix}", proxy)
        return svc

    def sidecar_scope(self, proxy: ProxyInfo) -> SidecarScope:
        """The Sidecar resource selecting ``proxy`` (workload selector first, then namespace
        default, then the root namespace default) and the hosts it imports."""
        memo_key = (proxy.namespace, tuple(sorted(proxy.labels.items())))
        scope = self._scopes.get(memo_key)
        if scope is not None:
            return scope
        chosen: ConfigEntry | None = None
        namespace_default: ConfigEntry | None = None
        root_default: ConfigEntry | None = None
        for entry in self.entries("Sidecar"):
            spec = entry.spec
            if not isinstance(spec, networking.Sidecar):
                continue
            selector = spec.workload_selector.labels if spec.workload_selector else {}
            if entry.namespace == proxy.namespace:
                if selector:
                    if chosen is None and all(
                        proxy.labels.get(k) == v for k, v in selector.items()
                    ):
                        chosen = entry
                elif namespace_default is None:
                    namespace_default = entry
            elif entry.namespace == self.root_namespace and not selector and root_default is None:
                root_default = entry
        chosen = chosen or namespace_default or root_default
        if chosen is None:
            scope = SidecarScope(None, (("*", "*"),), registry_only=False)
        else:
            spec = chosen.spec
            assert isinstance(spec, networking.Sidecar)
            hosts: list[tuple[str, str]] = []
            ports: list[tuple[int, str, str]] = []
            for listener in spec.egress:
                listener_port = listener.port.number if listener.port is not None else 0
                for h in listener.hosts:
                    ns, pattern = split_namespaced_host(h, proxy.namespace)
                    hosts.append((ns, pattern))
                    ports.append((listener_port, ns, pattern))
            policy = spec.outbound_traffic_policy
            registry_only = (
                policy is not None
                and policy.mode == networking.OutboundTrafficPolicyMode.REGISTRY_ONLY
            )
            scope = SidecarScope(
                chosen, tuple(hosts), registry_only=registry_only, egress_ports=tuple(ports)
            )
        self._scopes[memo_key] = scope
        return scope

    @staticmethod
    def _proxy_key(proxy: ProxyInfo) -> tuple[object, ...]:
        # Everything per-proxy lookups depend on (the locality is not one of them).
        return (proxy.namespace, tuple(proxy.labels.items()))

    def services_for(self, proxy: ProxyInfo) -> list[Service]:
        """Services ``proxy`` sees: exported to its namespace and imported by its Sidecar."""
        key = ("services", *self._proxy_key(proxy))
        cached: list[Service] | None = self._memo.get(key)
        if cached is not None:
            return list(cached)
        scope = self.sidecar_scope(proxy)
        out = []
        for skey in sorted(self.services):
            svc = self.services[skey]
            if not svc.visible_from(proxy.namespace):
                continue
            if scope.allows(svc.namespace, svc.hostname, proxy.namespace):
                out.append(svc)
        self._memo[key] = out
        return list(out)

    def virtual_services_for(self, proxy: ProxyInfo, gateway: str = "mesh") -> list[ConfigEntry]:
        """VirtualServices that apply to ``gateway`` (``mesh`` for sidecars) and ``proxy``.

        ``gateway`` is ``NAMESPACE/NAME`` for a Gateway. Order: the proxy's namespace first,
        then the rest by namespace and name (Istio's precedence for conflicting hosts).
        """
        key = ("virtual-services", gateway, *self._proxy_key(proxy))
        cached: list[ConfigEntry] | None = self._memo.get(key)
        if cached is not None:
            return list(cached)
        out: list[ConfigEntry] = []
        scope = self.sidecar_scope(proxy)
        for entry in self.entries("VirtualService"):
            spec = entry.spec
            if not isinstance(spec, networking.VirtualService):
                continue
            if not _visible(spec.export_to, entry.namespace, proxy.namespace):
                continue
            bound = [_gateway_ref(g, entry.namespace) for g in spec.gateways] or ["mesh"]
            if gateway not in bound:
                continue
            if gateway == "mesh" and not any(
                scope.allows(entry.namespace, self.fqdn(h, entry.namespace), proxy.namespace)
                for h in spec.hosts
            ):
                continue
            out.append(entry)
        out.sort(key=lambda e: (e.namespace != proxy.namespace, e.namespace, e.name))
        self._memo[key] = out
        return list(out)

    def _virtual_service_index(
        self, proxy: ProxyInfo, gateway: str
    ) -> tuple[dict[str, ConfigEntry], list[tuple[str, ConfigEntry]]]:
        key = ("vs-index", gateway, *self._proxy_key(proxy))
        cached = self._memo.get(key)
        if cached is not None:
            index: tuple[dict[str, ConfigEntry], list[tuple[str, ConfigEntry]]] = cached
            return index
        exact: dict[str, ConfigEntry] = {}
        wild: list[tuple[str, ConfigEntry]] = []
        for entry in self.virtual_services_for(proxy, gateway):
            spec = entry.spec
            assert isinstance(spec, networking.VirtualService)
            for host in spec.hosts:
                full = self.fqdn(host, entry.namespace)
                if "*" in full:
                    wild.append((full, entry))
                else:
                    exact.setdefault(full, entry)  # first in precedence order wins
        self._memo[key] = (exact, wild)
        return exact, wild

    def virtual_service_for_host(
        self, hostname: str, proxy: ProxyInfo, gateway: str = "mesh"
    ) -> ConfigEntry | None:
        """The VirtualService routing ``hostname`` for ``proxy``: exact host over wildcard
        (the most specific wildcard wins)."""
        exact, wild = self._virtual_service_index(proxy, gateway)
        found = exact.get(hostname)
        if found is not None:
            return found
        best: tuple[int, ConfigEntry] | None = None
        for pattern, entry in wild:
            if host_matches(pattern, hostname) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), entry)
        return best[1] if best else None

    def destination_rule(self, hostname: str, proxy: ProxyInfo) -> ConfigEntry | None:
        """The DestinationRule for ``hostname`` as seen by ``proxy``.

        Precedence as Istio: the proxy's namespace, then the service's, then the root
        namespace, then any exporting namespace; an exact host beats a wildcard.
        """
        key = ("destination-rule", hostname, *self._proxy_key(proxy))
        if key in self._memo:
            memoised: ConfigEntry | None = self._memo[key]
            return memoised
        svc = self.service_for_host(hostname, proxy)
        svc_ns = svc.namespace if svc else ""
        candidates = [(hostname, e) for e in self._rules_exact.get(hostname, ())]
        candidates += [(h, e) for h, e in self._rules_wild if host_matches(h, hostname)]
        ranked: list[tuple[int, int, str, str, ConfigEntry]] = []
        for host, entry in candidates:
            spec = entry.spec
            assert isinstance(spec, networking.DestinationRule)
            if not _visible(spec.export_to, entry.namespace, proxy.namespace):
                continue
            if spec.workload_selector is not None and spec.workload_selector.match_labels:
                sel = spec.workload_selector.match_labels
                if entry.namespace != proxy.namespace or not all(
                    proxy.labels.get(k) == v for k, v in sel.items()
                ):
                    continue
            if entry.namespace == proxy.namespace:
                ns_rank = 0
            elif entry.namespace == svc_ns:
                ns_rank = 1
            elif entry.namespace == self.root_namespace:
                ns_rank = 2
            else:
                ns_rank = 3
            exact = 0 if host == hostname else 1
            ranked.append((ns_rank, exact, entry.namespace, entry.name, entry))
        ranked.sort(key=lambda t: t[:4])
        result = ranked[0][4] if ranked else None
        self._memo[key] = result
        return result

    def gateways_for(self, proxy: ProxyInfo) -> list[ConfigEntry]:
        """Gateways whose ``selector`` matches the proxy's labels (router proxies only)."""
        if proxy.type is not ProxyType.ROUTER:
            return []
        out = []
        for entry in self.entries("Gateway"):
            spec = entry.spec
            if not isinstance(spec, networking.Gateway):
                continue
            if spec.selector and all(proxy.labels.get(k) == v for k, v in spec.selector.items()):
                out.append(entry)
        return out

    def proxy_instances(self, proxy: ProxyInfo) -> list[tuple[Service, Endpoint]]:
        """Services with an endpoint at one of the proxy's IPs (what it serves inbound)."""
        ips = set(proxy.ip_addresses)
        out: list[tuple[Service, Endpoint]] = []
        if not ips:
            return out
        for key in sorted(self.services):
            svc = self.services[key]
            for ep in self.endpoints.get(key, ()):
                if ep.address in ips:
                    out.append((svc, ep))
                    break
        return out


def _gateway_ref(ref: str, namespace: str) -> str:
    if ref == "mesh" or "/" in ref:
        return ref
    return f"{namespace}/{ref}"


# -- change computation ----------------------------------------------------------------


@attrs.frozen
class ChangeSet:
    """What changed between two push contexts, and who must hear about it.

    ``configs`` are changed config keys (added, removed or modified); ``services`` the
    ``(namespace, hostname)`` of services whose definition changed; ``endpoint_services``
    those whose endpoints alone changed. ``hosts`` are every hostname any change touches.
    """

    configs: frozenset[ConfigKey]
    services: frozenset[tuple[str, str]]
    endpoint_services: frozenset[tuple[str, str]]
    hosts: frozenset[str]
    sidecar_namespaces: frozenset[str]
    gateways_changed: bool
    authz_namespaces: frozenset[str] = frozenset()
    """Namespaces with changed AuthorizationPolicies (sidecar inbound RBAC, LDS only)."""

    @property
    def empty(self) -> bool:
        """True when nothing changed."""
        return not (self.configs or self.services or self.endpoint_services)

    @property
    def endpoints_only(self) -> bool:
        """True when only endpoints changed: push EDS alone."""
        return not self.configs and not self.services and bool(self.endpoint_services)

    @property
    def type_urls(self) -> frozenset[str]:
        """The xDS types to recompute and push."""
        if self.empty:
            return frozenset()
        if self.endpoints_only:
            return frozenset({ENDPOINT_TYPE})
        if self._authz_only:
            return frozenset({LISTENER_TYPE})
        return ALL_TYPES

    @property
    def _authz_only(self) -> bool:
        return (
            not self.services
            and not self.endpoint_services
            and all(k.kind == "AuthorizationPolicy" for k in self.configs)
        )

    def affects(self, context: PushContext, proxy: ProxyInfo) -> bool:
        """Whether ``proxy`` (in the new ``context``) needs a push for this change."""
        if self.empty:
            return False
        if proxy.type is ProxyType.SIDECAR and (
            proxy.namespace in self.authz_namespaces
            or context.root_namespace in self.authz_namespaces
        ):
            return True
        if proxy.namespace in self.sidecar_namespaces:
            return True
        if self.sidecar_namespaces & {context.root_namespace}:
            return True
        if self.gateways_changed and proxy.type is ProxyType.ROUTER:
            return True
        if "*" in self.hosts:
            return True
        if proxy.type is ProxyType.ROUTER and self.hosts:
            return True
        scope = context.sidecar_scope(proxy)
        for host in self.hosts:
            for _ns, pattern in scope.egress_hosts:
                if host_matches(pattern, host) or host_matches(host, pattern):
                    return True
        return False

    def changed_clusters(self, context: PushContext) -> frozenset[str]:
        """Names of the ``outbound|...`` clusters (every port and subset) of changed services.

        For endpoint-only changes these are the ClusterLoadAssignments to push.
        """
        names: set[str] = set()
        keys = self.services | self.endpoint_services
        for key in keys:
            svc = context.services.get(key)
            if svc is None:
                continue
            subsets = [""]
            for entry in context.entries("DestinationRule"):
                spec = entry.spec
                if isinstance(spec, networking.DestinationRule) and host_matches(
                    context.fqdn(spec.host, entry.namespace), svc.hostname
                ):
                    subsets.extend(s.name for s in spec.subsets)
            for port in svc.ports:
                for subset in subsets:
                    names.add(f"outbound|{port.number}|{subset}|{svc.hostname}")
        return frozenset(names)


def _config_hosts(entry: ConfigEntry) -> set[str]:
    spec = entry.spec
    ns = entry.namespace
    hosts: set[str] = set()
    if isinstance(spec, networking.VirtualService):
        hosts.update(fqdn(h, ns) for h in spec.hosts)
        for route in spec.http:
            for dest in route.route:
                if dest.destination is not None:
                    hosts.add(fqdn(dest.destination.host, ns))
        for tcp in spec.tcp:
            for rd in tcp.route:
                if rd.destination is not None:
                    hosts.add(fqdn(rd.destination.host, ns))
    elif isinstance(spec, networking.DestinationRule):
        hosts.add(fqdn(spec.host, ns))
    elif isinstance(spec, networking.ServiceEntry):
        hosts.update(fqdn(h, ns) for h in spec.hosts)
    elif isinstance(spec, networking.WorkloadEntry) or entry.kind == "PeerAuthentication":
        # Peer authentication changes what servers accept: every proxy may need a push.
        hosts.add("*")
    return hosts


def compute_changes(old: PushContext | None, new: PushContext) -> ChangeSet:
    """Compare two snapshots: changed configs, services, endpoint-only services and hosts."""
    if old is None:
        all_keys = frozenset(new.configs)
        return ChangeSet(
            configs=all_keys,
            services=frozenset(new.services),
            endpoint_services=frozenset(),
            hosts=frozenset({"*"}),
            sidecar_namespaces=frozenset(k.namespace for k in all_keys if k.kind == "Sidecar"),
            gateways_changed=True,
        )
    changed: set[ConfigKey] = set()
    hosts: set[str] = set()
    for key in set(old.configs) | set(new.configs):
        before, after = old.configs.get(key), new.configs.get(key)
        if before is not None and after is not None and before.digest == after.digest:
            continue
        # WorkloadEntries only feed endpoints; their effect shows up as endpoint changes.
        if key.kind == "WorkloadEntry" or key.kind not in TRANSLATED_KINDS:
            continue
        changed.add(key)
        for entry in (before, after):
            if entry is not None:
                hosts |= _config_hosts(entry)
    services: set[tuple[str, str]] = set()
    endpoint_only: set[tuple[str, str]] = set()
    for skey in set(old.services) | set(new.services):
        s_old, s_new = old.services.get(skey), new.services.get(skey)
        if s_old != s_new:
            services.add(skey)
            hosts.add(skey[1])
        elif old.endpoints.get(skey, ()) != new.endpoints.get(skey, ()):
            hosts.add(skey[1])
            # DNS clusters carry their endpoints inline (CDS); other services' endpoint
            # changes can travel over EDS alone.
            assert s_new is not None
            if s_new.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN):
                services.add(skey)
            else:
                endpoint_only.add(skey)
    # A ServiceEntry whose only change is its endpoints is an endpoint-only change.
    if not services:
        se_keys = {k for k in changed if k.kind == "ServiceEntry"}
        if se_keys and se_keys == changed:
            changed.clear()
    return ChangeSet(
        configs=frozenset(changed),
        services=frozenset(services),
        endpoint_services=frozenset(endpoint_only),
        hosts=frozenset(hosts),
        sidecar_namespaces=frozenset(k.namespace for k in changed if k.kind == "Sidecar"),
        gateways_changed=any(k.kind in ("Gateway", "VirtualService") for k in changed),
        authz_namespaces=frozenset(k.namespace for k in changed if k.kind == "AuthorizationPolicy"),
    )
