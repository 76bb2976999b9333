"""Proxy identity: who is asking for config, parsed from the xDS ``Node`` Istio proxies send.

An Istio node id has four ``~``-separated fields, ``TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN``
(:func:`parse_node_id`); node metadata (``NAMESPACE``, ``LABELS``, ``GENERATOR``,
``INSTANCE_IPS``) refines it. :class:`ProxyInfo` is the result translation works from.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.pilot.labels import labels_match

__all__ = ["NodeId", "ProxyInfo", "ProxyType", "parse_node_id"]


class ProxyType(enum.Enum):
    """The role a proxy plays (first field of an Istio node id)."""

    SIDECAR = "sidecar"
    ROUTER = "router"


@attrs.frozen
class NodeId:
    """The fields of an Istio node id; empty where the id is not in Istio's form."""

    type: ProxyType = ProxyType.SIDECAR
    ip_addresses: tuple[str, ...] = ()
    namespace: str = ""
    """From ``POD.NAMESPACE``, else from the first label of the DNS domain; may be empty."""
    dns_domain: str = ""


def format_node_id(proxy_type: str, ip: str, pod: str, namespace: str, dns_domain: str = "") -> str:
    """``TYPE~IP~POD.NAMESPACE~DOMAIN``; ``DOMAIN`` defaults to ``NAMESPACE.svc.cluster.local``.

    The id pilot-agent gives its proxy, and what :func:`parse_node_id` reads back.
    """
    domain = dns_domain or f"{namespace}.svc.cluster.local"
    return "~".join((proxy_type, ip, f"{pod}.{namespace}", domain))


def parse_node_id(node_id: str) -> NodeId:
    """Split ``TYPE~IP[,IP...]~POD.NAMESPACE~NAMESPACE.svc.DOMAIN``.

    Any other string yields the defaults (a sidecar with no addresses and no namespace) so any
    ADS client can be served; an unknown ``TYPE`` counts as a sidecar.
    """
    parts = node_id.split("~")
    if len(parts) != 4:
        return NodeId()
    try:
        ptype = ProxyType(parts[0])
    except ValueError:
        ptype = ProxyType.SIDECAR
    ips = tuple(ip for ip in parts[1].split(",") if ip)
    namespace = parts[2].split(".", 1)[1] if "." in parts[2] else ""
    dns_domain = parts[3]
    if not namespace and "." in dns_domain:
        namespace = dns_domain.split(".", 1)[0]
    return NodeId(type=ptype, ip_addresses=ips, namespace=namespace, dns_domain=dns_domain)


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

    def selected_by(self, selector: Mapping[str, str]) -> bool:
        """Whether the proxy's labels carry every ``key: value`` of ``selector`` (an empty
        selector selects every proxy)."""
        return labels_match(selector, self.labels)

    @classmethod
    def from_node(cls, node: Node) -> ProxyInfo:
        """Parse an Istio node: id ``TYPE~IP~POD.NS~NS.svc.DOMAIN`` plus metadata.

        Metadata keys read: ``NAMESPACE``, ``LABELS``, ``GENERATOR``, ``INSTANCE_IPS``. A node
        id that is not in Istio's form still yields a proxy (sidecar in ``default``) so any
        ADS client can be served.
        """
        meta: dict[str, Any] = node.metadata.to_dict() if node.metadata is not None else {}
        parsed = parse_node_id(node.id)
        ips = parsed.ip_addresses
        instance_ips = meta.get("INSTANCE_IPS")
        if isinstance(instance_ips, str) and instance_ips:
            ips = tuple(ip.strip() for ip in instance_ips.split(",") if ip.strip())
        return cls(
            id=node.id,
            type=parsed.type,
            ip_addresses=ips,
            namespace=str(meta.get("NAMESPACE") or parsed.namespace or "default"),
            labels=_labels(meta.get("LABELS")),
            generator=str(meta.get("GENERATOR") or ""),
            dns_domain=parsed.dns_domain,
            locality=_node_locality(node),
        )


def _node_locality(node: Node) -> str:
    loc = node.locality
    if loc is None or not (loc.region or loc.zone or loc.sub_zone):
        return ""
    return f"{loc.region}/{loc.zone}/{loc.sub_zone}"
