"""The DNS proxy as a part of pilot-agent: its options, and how it gets Pilot's name table.

With DNS capture on (``ISTIO_META_DNS_CAPTURE=true``), pilot-agent runs its DNS proxy on
15053 and feeds it from the xDS stream it already holds for the proxy: once the proxy asks for
listeners, the agent asks Pilot for the name table (NDS) on that same upstream stream, consumes
the answers itself (never forwarding them to Envoy) and ACKs or NACKs them. :class:`AgentDns`
is that part, an :class:`~istio_sdk.proxy.agent.agent.AgentComponent` whose
:meth:`AgentDns.on_name_table` is the xDS proxy's handler for
:data:`~istio_sdk.xds.NAME_TABLE`. Without an xDS proxy it follows Pilot itself with a
:class:`~istio_sdk.proxy.dns.NameTableFollower` (its own NDS subscription).

The name table is decoded and turned into a lookup table in a worker thread, never on the
event loop; one that does not decode is NACKed and the proxy keeps answering from the last one.
DNS never affects readiness.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.istio.networking.nds.v1 import NameTable
from istio_sdk.proxy.agent._errors import AgentConfigError
from istio_sdk.proxy.dns import DEFAULT_PORT, DnsProxy, DnsProxyError, NameTableFollower
from istio_sdk.xds._logsafe import peer_text

__all__ = ["AgentDns", "DnsOptions"]

log = logging.getLogger("istio_sdk.proxy.agent.dns")

_TRUE = frozenset({"1", "t", "true"})  # Go's strconv.ParseBool, the spellings that mean true


@attrs.frozen
class DnsOptions:
    """Where the agent's DNS proxy listens, for which Pod, and where it forwards.

    ``domain`` defaults to ``NAMESPACE.svc.cluster.local`` (pilot-agent's ``--domain``);
    ``upstream`` and ``search`` default to resolv.conf's. ``node`` is the node a
    :class:`~istio_sdk.proxy.dns.NameTableFollower` presents when there is no xDS proxy (with
    one, Pilot sees the proxy's own node).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    namespace: str = "default"
    domain: str = ""
    upstream: Sequence[str] | None = None
    search: Sequence[str] | None = None
    resolv_conf: str = "/etc/resolv.conf"
    upstream_timeout: float = 5.0
    node: Node | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> DnsOptions | None:
        """The options pilot-agent derives from its environment, or ``None`` when
        ``ISTIO_META_DNS_CAPTURE`` is not true (``POD_NAMESPACE`` names the Pod's
        namespace). ``overrides`` replace fields (a flag given on the command line)."""
        if environ.get("ISTIO_META_DNS_CAPTURE", "").strip().lower() not in _TRUE:
            return None
        namespace = environ.get("POD_NAMESPACE") or "default"
        options = cls(namespace=namespace)
        return attrs.evolve(options, **overrides) if overrides else options

    @property
    def dns_domain(self) -> str:
        """The Pod's DNS domain (``bookinfo.svc.cluster.local``)."""
        return self.domain or f"{self.namespace}.svc.cluster.local"


def _decode(value: bytes) -> NameTable:
    return NameTable.FromString(value)


class AgentDns:
    """The agent's DNS proxy, fed by the xDS proxy (:meth:`on_name_table`) or, given
    ``pilot``, by a :class:`~istio_sdk.proxy.dns.NameTableFollower` of its own.

    Bad options (an upstream that is no IP address, an unreadable resolv.conf) raise
    :class:`~istio_sdk.proxy.agent.AgentConfigError` naming ``DNS``.
    """

    def __init__(self, options: DnsOptions, *, pilot: tuple[str, int] | None = None) -> None:
        self.options = options
        try:
            self.proxy = DnsProxy(
                namespace=options.namespace,
                domain=options.dns_domain,
                host=options.host,
                port=options.port,
                upstream=options.upstream,
                search=options.search,
                resolv_conf=options.resolv_conf,
                upstream_timeout=options.upstream_timeout,
            )
        except DnsProxyError as exc:
            raise AgentConfigError("DNS", str(exc)) from None
        self.follower: NameTableFollower | None = None
        if pilot is not None:
            host, port = pilot
            self.follower = NameTableFollower(self.proxy, (host, port), node=options.node)
        self.tables = 0
        """Name tables loaded from the xDS proxy so far."""
        self.rejected = 0
        """Name tables NACKed (they did not decode or could not be built)."""

    async def start(self) -> None:
        """Listen (a port taken is an :class:`~istio_sdk.proxy.agent.AgentConfigError`), then
        follow Pilot when there is no xDS proxy."""
        try:
            await self.proxy.start()
        except DnsProxyError as exc:
            raise AgentConfigError("DNS", str(exc)) from None
        if self.follower is not None:
            await self.follower.start()

    async def stop(self) -> None:
        """Stop following and listening."""
        if self.follower is not None:
            await self.follower.close()
        await self.proxy.close()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the DNS proxy listens on, UDP and TCP."""
        return self.proxy.address

    async def on_name_table(self, value: bytes) -> str | None:
        """The xDS proxy's handler for NDS: load the table (decoded and built off the event
        loop); ``None`` ACKs it, a reason NACKs it and the last table stays."""
        try:
            table = await asyncio.to_thread(_decode, value)
            loaded = await self.proxy.load_name_table(table)
        except Exception as exc:  # any decode or build failure is this table's NACK
            self.rejected += 1
            reason = f"name table refused: {peer_text(exc, 200)}"
            log.warning("%s", reason)
            return reason
        self.tables += 1
        log.info("DNS name table loaded: %d names", len(loaded.hosts))
        return None
