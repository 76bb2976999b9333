"""Change computation: what differs between two push contexts, and who must hear about it.

:func:`compute_changes` compares two snapshots; the :class:`ChangeSet` it returns says which
xDS types to recompute (:attr:`ChangeSet.type_urls`: EDS alone for endpoint-only changes), which
proxies a change reaches (:meth:`ChangeSet.affects`) and which clusters it names
(:meth:`ChangeSet.changed_clusters`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from istio_sdk.api.istio.networking import v1alpha3 as networking
from istio_sdk.pilot.cluster_names import outbound_cluster_name
from istio_sdk.pilot.config_entry import TRANSLATED_KINDS, ConfigEntry, ConfigKey
from istio_sdk.pilot.hosts import host_matches
from istio_sdk.pilot.proxy import ProxyInfo, ProxyType
from istio_sdk.pilot.registry import Resolution, fqdn
from istio_sdk.xds import types as xds_types

if TYPE_CHECKING:
    from istio_sdk.pilot.push_context import PushContext

__all__ = ["ALL_TYPES", "ChangeSet", "compute_changes"]

ALL_TYPES = frozenset({xds_types.CLUSTER, xds_types.ENDPOINT, xds_types.LISTENER, xds_types.ROUTE})
"""The Envoy types Pilot translates (CDS, EDS, LDS, RDS): what a full push recomputes."""

NAME_TABLE_KINDS = frozenset({"ServiceEntry", "Sidecar"})
"""The translated config kinds that change a proxy's name table (NDS); istiod skips NDS for
the others (VirtualService, DestinationRule, Gateway, security policies, ...)."""


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
    headless_endpoints: bool = False
    """Endpoints of a headless (``NONE`` resolution) service changed: name tables list them."""

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
        """The xDS types to recompute and push (NDS too when :attr:`names_changed`)."""
        if self.empty:
            return frozenset()
        if self.endpoints_only:
            envoy = frozenset({xds_types.ENDPOINT})
        elif self._authz_only:
            envoy = frozenset({xds_types.LISTENER})
        else:
            envoy = ALL_TYPES
        return envoy | {xds_types.NAME_TABLE} if self.names_changed else envoy

    @property
    def names_changed(self) -> bool:
        """Whether name tables may differ: a service, a ServiceEntry or Sidecar, or the
        endpoints of a headless service changed."""
        return (
            bool(self.services)
            or self.headless_endpoints
            or any(k.kind in NAME_TABLE_KINDS for k in self.configs)
        )

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
                    names.add(outbound_cluster_name(port.number, subset, svc.hostname))
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
    headless = False
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
                headless = headless or (s_new.resolution is Resolution.NONE and not s_new.addresses)
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
        headless_endpoints=headless,
    )
