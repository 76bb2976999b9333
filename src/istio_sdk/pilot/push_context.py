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
* :func:`~istio_sdk.pilot.changes.compute_changes` ``(old, new)`` to learn what changed, and
  :meth:`ChangeSet.affects` / :attr:`ChangeSet.type_urls` to push only to the proxies, and only
  the types, a change touches (endpoint-only changes push EDS alone).

:class:`~istio_sdk.pilot.proxy.ProxyInfo` describes the proxy asking, usually parsed from the xDS
``Node`` with :meth:`ProxyInfo.from_node`.

This module holds the snapshot and its lookups. Its neighbours each hold one idea, and their
public names are re-exported here: :mod:`istio_sdk.pilot.proxy` (proxy identity),
:mod:`istio_sdk.pilot.hosts` (host matching, ``exportTo``), :mod:`istio_sdk.pilot.config_entry`
(config as translation reads it) and :mod:`istio_sdk.pilot.changes` (change computation).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import attrs

from istio_sdk.api.istio.networking import v1alpha3 as networking
from istio_sdk.pilot.changes import ALL_TYPES, ChangeSet, compute_changes
from istio_sdk.pilot.config_entry import TRANSLATED_KINDS, ConfigEntry, ConfigKey, ConfigLike
from istio_sdk.pilot.hosts import exported_to, gateway_ref, host_matches, split_namespaced_host
from istio_sdk.pilot.proxy import ProxyInfo, ProxyType
from istio_sdk.pilot.registry import (
    DEFAULT_DOMAIN_SUFFIX,
    Endpoint,
    RegistryError,
    RegistrySnapshot,
    Service,
    ServiceRegistry,
    endpoints_from_service_entry,
    fqdn,
    services_from_service_entry,
)
from istio_sdk.spiffe import DEFAULT_TRUST_DOMAIN
from istio_sdk.xds import types as xds_types

__all__ = [
    "ALL_TYPES",
    "TRANSLATED_KINDS",
    "ChangeSet",
    "ConfigEntry",
    "ConfigKey",
    "ConfigLike",
    "PushContext",
    "PushContextError",
    "ProxyInfo",
    "ProxyType",
    "SidecarScope",
    "compute_changes",
    "host_matches",
    "split_namespaced_host",
]

ROOT_NAMESPACE = "istio-system"

# Older spellings of the xDS type URLs; their home is istio_sdk.xds.
LISTENER_TYPE = xds_types.LISTENER
ROUTE_TYPE = xds_types.ROUTE
CLUSTER_TYPE = xds_types.CLUSTER
ENDPOINT_TYPE = xds_types.ENDPOINT

_VERSION_COUNTER = itertools.count(1)


class PushContextError(ValueError):
    """Config cannot be used for translation; the message names the resource and field."""


def _is_kubernetes(resource: Any) -> bool:
    """A Kubernetes object (``Resource.kubernetes``); plain config entries are not."""
    return bool(getattr(resource, "kubernetes", False))


class _StoreLike(Protocol):
    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Any]: ...

    @property
    def revision(self) -> int: ...


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
        their ``workloadSelector`` picks); registry services are added alongside; Kubernetes
        objects (``Resource.kubernetes``: Services, EndpointSlices, Endpoints, Pods, Nodes)
        make the Kubernetes service registry (:mod:`istio_sdk.pilot.kube_registry`), under
        the other two, and any other Kubernetes kind is ignored. A resource
        that cannot be used (a ServiceEntry without hosts, a port out of range, a spec of the
        wrong type) is skipped and described in :attr:`errors`, as istiod skips bad config
        without blocking the rest; with ``strict=True`` it raises :class:`PushContextError`
        naming the resource instead.
        """
        from istio_sdk.pilot.kube_registry import build_kube_registry

        entries: dict[ConfigKey, ConfigEntry] = {}
        kube_objects = []
        for resource in configs:
            if _is_kubernetes(resource):
                kube_objects.append(resource)
                continue
            entry = ConfigEntry.of(resource)
            entries[entry.key] = entry
        kube = build_kube_registry(
            kube_objects, domain_suffix=domain_suffix, trust_domain=trust_domain
        )
        if strict and kube.problems:
            raise PushContextError(kube.problems[0])
        snap = registry.snapshot() if isinstance(registry, ServiceRegistry) else registry
        # Kubernetes Services first: a registered service or a ServiceEntry of the same
        # namespace and hostname replaces one.
        services: dict[tuple[str, str], Service] = dict(kube.services)
        endpoints: dict[tuple[str, str], tuple[Endpoint, ...]] = dict(kube.endpoints)
        if snap is not None:
            services.update(snap.services)
            endpoints.update(snap.endpoints)
        workload_entries = [
            (e.name, e.namespace, e.spec)
            for e in entries.values()
            if e.kind == "WorkloadEntry" and isinstance(e.spec, networking.WorkloadEntry)
        ]
        errors: list[str] = list(kube.problems)
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
        ``ConfigStore``, and the Kubernetes service registry its Services, EndpointSlices,
        Endpoints, Pods and Nodes make (:mod:`istio_sdk.pilot.kube_registry`).

        What the Kubernetes objects get wrong (a slice for a missing Service, a Pod with no
        IP) is in :attr:`errors`, and the rest is served. The version is the store's revision
        (plus the registry's, when one is given).
        """
        from istio_sdk.pilot.kube_registry import KUBERNETES_REGISTRY_KINDS

        resources = [
            r
            for r in store.list()
            if (r.kind in KUBERNETES_REGISTRY_KINDS and _is_kubernetes(r))
            or (r.kind in TRANSLATED_KINDS and not _is_kubernetes(r))
        ]
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
                    if chosen is None and proxy.selected_by(selector):
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
            if not exported_to(spec.export_to, entry.namespace, proxy.namespace):
                continue
            bound = [gateway_ref(g, entry.namespace) for g in spec.gateways] or ["mesh"]
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
            if not exported_to(spec.export_to, entry.namespace, proxy.namespace):
                continue
            if spec.workload_selector is not None and spec.workload_selector.match_labels:
                sel = spec.workload_selector.match_labels
                if entry.namespace != proxy.namespace or not proxy.selected_by(sel):
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
            if spec.selector and proxy.selected_by(spec.selector):
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
