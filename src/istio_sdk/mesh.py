"""``Mesh``: the control-plane components in one asyncio process over one ConfigStore.

Today the mesh runs Pilot: a :class:`~istio_sdk.DiscoveryServer` whose resources come from the
translators (:class:`~istio_sdk.pilot.translate.PushContextGenerator`) over the store's Istio
config plus a :class:`~istio_sdk.pilot.registry.ServiceRegistry` for programmatic services.
Every store change rebuilds the push context (a burst of changes rebuilds once) and hands the
resulting push request to the server, which debounces it and pushes only what changed to the
proxies it affects. A change that makes the config unusable is logged and the last good
config keeps being served.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from istio_sdk.config import ConfigStore, DirectorySource
from istio_sdk.pilot.push_context import PushContext, PushContextError
from istio_sdk.pilot.registry import ServiceRegistry
from istio_sdk.pilot.server import DiscoveryServer
from istio_sdk.pilot.translate import PushContextGenerator

__all__ = ["DEFAULT_XDS_PORT", "Mesh"]

log = logging.getLogger("istio_sdk.mesh")

DEFAULT_XDS_PORT = 15010
"""istiod's plaintext xDS port."""


class Mesh:
    """Run the control plane over ``store`` (and ``registry``) until :meth:`stop`.

    ``xds_port`` 0 picks a free port (read it back from :attr:`xds_port` after :meth:`start`);
    ``debug_port`` (``None``: off) serves ``/debug/syncz`` and ``/debug/metrics``.
    """

    def __init__(
        self,
        store: ConfigStore | None = None,
        *,
        registry: ServiceRegistry | None = None,
        host: str = "127.0.0.1",
        xds_port: int = DEFAULT_XDS_PORT,
        debug_port: int | None = None,
        debounce_after: float = 0.1,
        debounce_max: float = 10.0,
    ) -> None:
        self.store = store if store is not None else ConfigStore()
        self.registry = registry if registry is not None else ServiceRegistry()
        self.host = host
        self.xds_port = xds_port
        self.debug_port = debug_port
        self.generator = PushContextGenerator(PushContext.build((), self.registry))
        self.discovery = DiscoveryServer(
            self.generator, debounce_after=debounce_after, debounce_max=debounce_max
        )
        self.config_errors = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._rebuild_scheduled = False
        self._sources: list[DirectorySource] = []
        self._started = False

    @classmethod
    def from_directory(
        cls, path: str | os.PathLike[str], *, interval: float = 1.0, **kwargs: object
    ) -> Mesh:
        """A mesh whose store follows a folder of Istio YAML/JSON (polled every ``interval`` s).

        The folder is read once here, so a missing folder fails at once with
        ``FileNotFoundError``; invalid files are logged and skipped.
        """
        store = ConfigStore()
        source = DirectorySource(store, path, interval=interval)
        result = source.sync()
        for name in result.failed_files:
            for problem in source.errors.get(name, []):
                log.warning("invalid config: %s", problem)
        mesh = cls(store, **kwargs)  # type: ignore[arg-type]
        mesh._sources.append(source)
        return mesh

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Build the first push context, start the servers and follow the store."""
        if self._started:
            raise RuntimeError("Mesh is already started")
        self._started = True
        self.rebuild()
        self._unsubscribe = self.store.subscribe(lambda _event: self._schedule_rebuild())
        self.xds_port = await self.discovery.start(self.host, self.xds_port)
        if self.debug_port is not None:
            self.debug_port = await self.discovery.start_debug_http(self.host, self.debug_port)
        for source in self._sources:
            source.start()

    async def stop(self) -> None:
        """Stop following config and close every server."""
        for source in self._sources:
            await source.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.discovery.stop()
        self._started = False

    async def __aenter__(self) -> Mesh:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start (if needed) and run until cancelled."""
        if not self._started:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # -- config ----------------------------------------------------------------------------
    def _schedule_rebuild(self) -> None:
        if self._rebuild_scheduled:
            return
        self._rebuild_scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self._scheduled_rebuild)
        except RuntimeError:  # no loop (synchronous use): rebuild now
            self._scheduled_rebuild()

    def _scheduled_rebuild(self) -> None:
        self._rebuild_scheduled = False
        self.rebuild()

    def rebuild(self) -> bool:
        """Snapshot the store and registry now and queue a push of what changed.

        Call it after changing :attr:`registry` (store changes trigger it by themselves).
        Returns ``False`` when the new config is unusable (the last good one stays).
        """
        try:
            context = PushContext.build(self.store.list(), self.registry)
        except PushContextError as exc:
            self.config_errors += 1
            log.error("config rejected, keeping the last good push context: %s", exc)
            return False
        request = self.generator.apply(context)
        if request is not None and self.discovery.port:
            self.discovery.push(request)
        return True
