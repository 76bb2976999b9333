"""A name-table source that follows Pilot over NDS, as pilot-agent's xDS proxy does for its DNS.

:class:`NameTableFollower` subscribes to ``type.googleapis.com/istio.networking.nds.v1.NameTable``
(no names: the table is one unnamed resource) with an :class:`~istio_sdk.pilot.PilotClient`, and
loads every table it receives into a :class:`~istio_sdk.proxy.dns.DnsProxy`. A response that is
not exactly one ``NameTable`` is NACKed and the proxy keeps its last table; reconnects and backoff
are the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.istio.networking.nds.v1 import NameTable
from istio_sdk.pilot.client import PilotClient, sidecar_node
from istio_sdk.proxy.dns._server import DnsProxy
from istio_sdk.xds.types import NAME_TABLE

__all__ = ["NameTableFollower", "dns_node"]

log = logging.getLogger("istio_sdk.proxy.dns")


def dns_node(ip: str, pod: str, namespace: str, *, auto_allocate: bool = False, **kw: Any) -> Node:
    """A sidecar ``Node`` whose metadata says the agent captures DNS (``DNS_CAPTURE``), and
    asks for VIPs for addressless ServiceEntries with ``auto_allocate``."""
    extra = dict(kw.pop("extra_metadata", None) or {})
    extra["DNS_CAPTURE"] = "true"
    if auto_allocate:
        extra["DNS_AUTO_ALLOCATE"] = "true"
    return sidecar_node(ip, pod, namespace, extra_metadata=extra, **kw)


def _check(type_url: str, resources: Mapping[str, object]) -> str | None:
    if type_url != NAME_TABLE:
        return None
    tables = [r for r in resources.values() if isinstance(r, NameTable)]
    if len(resources) != 1 or len(tables) != 1:
        return f"expected one NameTable, got {len(resources)} resources"
    return None


class NameTableFollower:
    """Keeps ``proxy``'s table equal to the one Pilot at ``pilot`` (``HOST:PORT``) sends ``node``.

    ``client`` injects a ready :class:`PilotClient` instead (it is started and closed here; it
    gets the NameTable check as its validator unless it has one).
    """

    def __init__(
        self,
        proxy: DnsProxy,
        pilot: str | tuple[str, int] | None = None,
        *,
        node: Node | None = None,
        client: PilotClient | None = None,
        **client_options: Any,
    ) -> None:
        if client is None:
            if pilot is None:
                raise ValueError("NameTableFollower needs a Pilot address or a client")
            node = node or dns_node("127.0.0.1", "istio-sdk-dns", proxy.namespace)
            client = PilotClient(pilot, node=node, validator=_check, **client_options)
        elif client.validator is None:
            client.validator = _check
        self.proxy = proxy
        self.client = client
        self.tables = 0
        """Name tables loaded so far."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe and follow in the background (returns at once)."""
        if self._task is not None:
            return
        updates = self.client.updates()
        first = asyncio.ensure_future(anext(updates))  # registered before anything arrives
        await asyncio.sleep(0)
        self._task = asyncio.get_running_loop().create_task(self._follow(updates, first))
        self.client.subscribe(NAME_TABLE)
        await self.client.start()

    async def _follow(self, updates: Any, first: asyncio.Future[Any]) -> None:
        pending: asyncio.Future[Any] | None = first
        while True:
            try:
                update = await pending if pending is not None else await anext(updates)
            except StopAsyncIteration:
                return
            pending = None
            if update.type_url != NAME_TABLE or not update.accepted:
                continue
            table = update.resources.get("")
            if not isinstance(table, NameTable):
                continue
            try:
                loaded = await self.proxy.load_name_table(table)
            except Exception:  # a table we cannot build must not stop the follower
                log.exception("loading the name table failed; keeping the last one")
                continue
            self.tables += 1
            log.info("DNS name table %s: %d names", update.version, len(loaded))

    async def close(self) -> None:
        """Stop following (the proxy keeps its last table)."""
        await self.client.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> NameTableFollower:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
