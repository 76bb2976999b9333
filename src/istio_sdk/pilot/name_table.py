"""Pilot's name table (NDS): the hostnames, and their addresses, an agent's DNS proxy answers.

:func:`build_name_table` is what istiod's ``BuildNameTable`` computes for one proxy from a
:class:`~istio_sdk.pilot.push_context.PushContext`; :func:`generate_name_table` is the NDS
generator (``type.googleapis.com/istio.networking.nds.v1.NameTable``, one unnamed resource) that
:func:`istio_sdk.pilot.translate.generate` dispatches to. The rules, as istiod's:

- every service the proxy sees (exported to its namespace, imported by its Sidecar) with an
  address gets an entry: its VIPs (ServiceEntry ``addresses``, a Kubernetes Service's cluster
  IPs, of the proxy's IP family for Kubernetes), CIDRs and other non-IPs left out;
- a headless service (no address, ``NONE`` resolution, at least one port) gets the addresses of
  its endpoints instead (ready ones only, unless a Kubernetes Service publishes not-ready
  addresses, which is when its registry keeps them), each address once; with neither it has
  no entry;
- Kubernetes services carry their ``shortname`` and ``namespace`` so the agent answers
  ``reviews``, ``reviews.default`` and ``reviews.default.svc`` too (not for
  ``*.svc.clusterset.local`` hosts); other registries are answered by exact host only;
- a hostname served by several services: a Kubernetes one wins, ServiceEntry addresses add up;
- with ``DNS_CAPTURE`` and ``DNS_AUTO_ALLOCATE`` in the proxy's metadata, a ServiceEntry host
  without addresses (not a wildcard, resolution not ``NONE``) gets a VIP in ``240.240.0.0/16``
  (and ``2001:2::/48``), allocated as istiod's legacy allocator does (FNV-1a of
  ``NAMESPACE/HOST`` with double hashing, so every istiod gives the same address).

- a headless service's Pods with a ``subdomain`` (StatefulSet Pods) also get their own name,
  ``HOSTNAME.SUBDOMAIN.NAMESPACE.svc.DOMAIN`` (short name ``HOSTNAME.SUBDOMAIN``), as
  Kubernetes' DNS gives them.

Not modelled: clusters and networks (every endpoint counts as local).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping

from istio_sdk.api.istio.networking.nds.v1 import NameTable, NameTableNameInfo
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import (
    KUBERNETES_REGISTRY,
    HealthStatus,
    Resolution,
    Service,
)

__all__ = [
    "NAME_TABLE_RESOURCE",
    "auto_allocated_addresses",
    "build_name_table",
    "generate_name_table",
]

NAME_TABLE_RESOURCE = ""
"""The name of the one NDS resource (istiod sends it unnamed)."""

_CLUSTERSET_SUFFIX = ".svc.clusterset.local"
_UNSPECIFIED = "0.0.0.0"
# istiod's legacy allocator: 256 * 254 slots, double hashing with the largest prime below.
_SLOTS = 256 * 254
_PRIME = 65011


def _ip_version(text: str) -> int:
    """4 or 6 for an IP address, 0 for anything else (a CIDR, a hostname, garbage)."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


def _families(proxy: ProxyInfo) -> frozenset[int]:
    found = frozenset(v for v in map(_ip_version, proxy.ip_addresses) if v)
    return found or frozenset({4})  # istiod takes a proxy without addresses for IPv4


def auto_allocated_addresses(context: PushContext) -> Mapping[tuple[str, str], tuple[str, str]]:
    """Service key -> ``(IPv4, IPv6)`` VIP for every ServiceEntry host that can get one.

    Deterministic for a given set of services (taken in key order), as istiod's allocator.
    """
    memo_key = ("nds-auto-allocate",)
    cached: Mapping[tuple[str, str], tuple[str, str]] | None = context.cache.get(memo_key)
    if cached is not None:
        return cached
    slots: dict[int, tuple[str, str]] = {}
    for key in sorted(context.services):
        svc = context.services[key]
        if not _allocatable(svc):
            continue
        if len(slots) >= _SLOTS:
            break
        digest = _fnv1a_32(f"{svc.namespace}/{svc.hostname}".encode())
        slot = digest % _SLOTS
        step = 1
        while slot in slots:  # istiod's probe sequence, modulus included
            slot = (digest + step * (_PRIME - digest % _PRIME)) % (_SLOTS - 1)
            step += 1
        slots[slot] = key
    out: dict[tuple[str, str], tuple[str, str]] = {}
    bumps = 0
    for slot in sorted(slots):
        taken = slots[slot]
        x = slot + 1 + bumps  # istiod counts every slot, from 1
        if x % 255 == 0:  # skips 240.240.N.0, shifting every later address by one, as istiod
            bumps += 1
            x += 1
        third, fourth = divmod(x, 255)
        v6 = f"2001:2::f0f0:{fourth:x}" if third == 0 else f"2001:2::f0f0:{third:x}{fourth:x}"
        out[taken] = (f"240.240.{third}.{fourth}", v6)
    context.cache[memo_key] = out
    return out


def _allocatable(svc: Service) -> bool:
    return (
        svc.registry != KUBERNETES_REGISTRY
        and not svc.addresses
        and "*" not in svc.hostname
        and svc.resolution is not Resolution.NONE
    )


def _fnv1a_32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def _vips(context: PushContext, svc: Service, proxy: ProxyInfo) -> list[str]:
    """The addresses the proxy may dial ``svc`` at (``0.0.0.0`` for none), as istiod's
    ``GetAllAddressesForProxy``."""
    families = _families(proxy)
    if svc.registry == KUBERNETES_REGISTRY and svc.addresses:
        return [a for a in svc.addresses if _ip_version(a) in families]
    if not svc.addresses and proxy.dns_capture and proxy.dns_auto_allocate:
        allocated = auto_allocated_addresses(context).get(svc.key)
        if allocated is not None:
            return [a for a in allocated if _ip_version(a) in families]
    return list(svc.addresses) or [_UNSPECIFIED]


def _endpoint_addresses(
    context: PushContext, svc: Service
) -> tuple[list[str], dict[str, tuple[str, list[str]]]]:
    """A headless service's endpoint addresses, and its Pods' own names: host ->
    (``HOSTNAME.SUBDOMAIN`` short name, addresses)."""
    if svc.resolution is not Resolution.NONE or not svc.ports:
        return [], {}
    seen: set[str] = set()
    out: list[str] = []
    pods: dict[str, tuple[str, list[str]]] = {}
    domain = svc.hostname.split(".", 1)[1] if "." in svc.hostname else ""
    for ep in context.endpoints_of(svc):
        if not _ip_version(ep.address) or ep.address in seen:
            continue
        # A Kubernetes registry keeps a not-ready address only for publishNotReadyAddresses.
        if ep.health is not HealthStatus.HEALTHY and svc.registry != KUBERNETES_REGISTRY:
            continue
        seen.add(ep.address)
        out.append(ep.address)
        if ep.subdomain and ep.hostname and domain:
            # Kubernetes' Pod DNS: HOSTNAME.SUBDOMAIN.NAMESPACE.svc.DOMAIN (a StatefulSet's)
            short = f"{ep.hostname}.{ep.subdomain}"
            pods.setdefault(f"{short}.{domain}", (short, []))[1].append(ep.address)
    return out, pods


def _visible_services(context: PushContext, proxy: ProxyInfo) -> Iterable[Service]:
    services = context.services_for(proxy)
    # The proxy's own namespace first: where one hostname has several services, the first
    # seen decides, as the Sidecar scope's order does in istiod.
    return sorted(services, key=lambda s: (s.namespace != proxy.namespace, s.namespace, s.hostname))


def _short_names(svc: Service) -> tuple[str, str]:
    if svc.registry != KUBERNETES_REGISTRY or svc.hostname.endswith(_CLUSTERSET_SUFFIX):
        return "", ""
    return svc.hostname.split(".", 1)[0], svc.namespace


def build_name_table(context: PushContext, proxy: ProxyInfo) -> NameTable:
    """The name table ``proxy`` gets: hostname -> addresses, registry and short-name parts."""
    table: dict[str, NameTableNameInfo] = {}
    for svc in _visible_services(context, proxy):
        vips = _vips(context, svc, proxy)
        if _UNSPECIFIED in vips:
            addresses, pods = _endpoint_addresses(context, svc)
            for host, (short, ips) in pods.items():
                table[host] = NameTableNameInfo(
                    ips=ips, registry=svc.registry, shortname=short, namespace=svc.namespace
                )
        else:
            addresses = [a for a in vips if _ip_version(a)]
        if not addresses:
            continue
        shortname, namespace = _short_names(svc)
        info = table.get(svc.hostname)
        if info is None:
            table[svc.hostname] = NameTableNameInfo(
                ips=addresses, registry=svc.registry, shortname=shortname, namespace=namespace
            )
        elif info.registry != KUBERNETES_REGISTRY:
            if svc.registry == KUBERNETES_REGISTRY:  # a Kubernetes Service beats a ServiceEntry
                table[svc.hostname] = NameTableNameInfo(
                    ips=addresses, registry=svc.registry, shortname=shortname, namespace=namespace
                )
            else:
                info.ips = [*info.ips, *(a for a in addresses if a not in info.ips)]
    return NameTable(table=dict(sorted(table.items())))


def generate_name_table(
    context: PushContext, proxy: ProxyInfo, names: Collection[str] | None = None
) -> dict[str, NameTable]:
    """The NDS answer for ``proxy``: ``{"": NameTable}`` (``names`` without ``""``: nothing).

    Proxies that see the same services share one message object per push context.
    """
    if names is not None and NAME_TABLE_RESOURCE not in names:
        return {}
    memo_key = (
        "nds",
        proxy.namespace,
        tuple(sorted(proxy.labels.items())),
        _families(proxy),
        proxy.dns_capture and proxy.dns_auto_allocate,
    )
    table: NameTable | None = context.cache.get(memo_key)
    if table is None:
        table = build_name_table(context, proxy)
        context.cache[memo_key] = table
    return {NAME_TABLE_RESOURCE: table}
