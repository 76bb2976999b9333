"""pilot-agent in one object: the status and readiness ports, the xDS proxy, Envoy, and more.

:class:`PilotAgent` wires the parts of this package the way ``pilot-agent proxy`` runs them:

- the status server on ``status_port`` (15020) with the rewritten app probes
  (``ISTIO_KUBE_APP_PROBERS``) and metrics merging (``ISTIO_PROMETHEUS_ANNOTATIONS``);
- the readiness port (15021) served by the agent itself when no Envoy runs (with Envoy, its
  bootstrap's readiness listener answers there);
- the xDS proxy, when ``pilot_address`` is set, on ``xds_socket`` or ``xds_port``;
- Envoy, when ``envoy`` options are given, started from ``bootstrap`` (a file, re-read every
  ``bootstrap_poll`` seconds: a changed file restarts Envoy as the next epoch);
- the DNS proxy (15053), when ``dns`` options are given (DNS capture on): an
  :class:`~istio_sdk.proxy.agent.agent_dns.AgentDns` component whose name table comes over the
  xDS proxy's upstream stream (the agent asks Pilot for NDS and consumes it), or, with
  ``xds_proxy=False``, from a :class:`~istio_sdk.proxy.dns.NameTableFollower` to
  ``pilot_address``;
- any extra :class:`AgentComponent` (``components``), started after the servers and stopped
  before them, and the xDS response types they consume (``xds_handlers``), which is how the
  DNS proxy plugs in.

Ready means: Envoy live (when it runs) and the first config ACKed through the xDS proxy (when
it runs). :meth:`PilotAgent.run` returns the exit code the process should end with: 0 after a
stop, or Envoy's own code when Envoy exits by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import ssl
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

import attrs

from istio_sdk.proxy.agent._errors import AgentConfigError
from istio_sdk.proxy.agent.agent_dns import AgentDns, DnsOptions
from istio_sdk.proxy.agent.agent_metrics import AgentMetrics
from istio_sdk.proxy.agent.app_probe import AppProbeRunner
from istio_sdk.proxy.agent.app_probers import parse_app_probers
from istio_sdk.proxy.agent.envoy import EnvoyLifecycle, EnvoyOptions
from istio_sdk.proxy.agent.prometheus_merge import parse_scrape_config
from istio_sdk.proxy.agent.readiness import EnvoyReadiness, Readiness, ReadinessCheck
from istio_sdk.proxy.agent.status import ReadinessServer, StatusServer
from istio_sdk.proxy.agent.xds_proxy import XdsProxy
from istio_sdk.proxy.agent.xds_relay import ResponseHandler
from istio_sdk.xds.types import NAME_TABLE

__all__ = ["AgentComponent", "PilotAgent", "PilotAgentOptions"]

log = logging.getLogger("istio_sdk.proxy.agent")


class AgentComponent(Protocol):
    """Anything the agent starts and stops with itself (the DNS proxy, ...)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@attrs.frozen
class PilotAgentOptions:
    """What the agent serves and where (defaults are pilot-agent's ports)."""

    host: str = "0.0.0.0"
    status_port: int = 15020
    readiness_port: int | None = 15021
    app_probers: str | None = None
    prometheus_annotations: str | None = None
    probe_host: str = "127.0.0.1"
    probe_source_address: str | None = "127.0.0.6"
    pilot_address: tuple[str, int] | None = None
    xds_proxy: bool = True
    """Run the xDS proxy when ``pilot_address`` is set (``False``: only the DNS proxy talks to
    Pilot, with a subscription of its own)."""
    xds_socket: str | None = None
    xds_port: int = 0
    xds_metadata: Mapping[str, str] = attrs.field(factory=lambda: {"ClusterID": "Kubernetes"})
    envoy: EnvoyOptions | None = None
    envoy_prometheus_port: int = 15090
    bootstrap: str | None = None
    bootstrap_poll: float = 1.0
    dns: DnsOptions | None = None
    """The DNS proxy's options (DNS capture on); ``None``: no DNS proxy."""


class PilotAgent:
    """Runs pilot-agent's parts; see the module docstring."""

    def __init__(
        self,
        options: PilotAgentOptions,
        *,
        components: Sequence[AgentComponent] = (),
        xds_handlers: Mapping[str, ResponseHandler] | None = None,
        xds_ssl_context: Callable[[], ssl.SSLContext | None] | None = None,
        envoy_lifecycle: EnvoyLifecycle | None = None,
    ) -> None:
        self.options = options
        self.components = list(components)
        self.metrics = AgentMetrics()
        probers = parse_app_probers(options.app_probers)
        targets = parse_scrape_config(
            options.prometheus_annotations, status_port=options.status_port
        )
        checks: list[ReadinessCheck] = []
        self.envoy: EnvoyLifecycle | None = None
        if options.envoy is not None:
            self.envoy = envoy_lifecycle or EnvoyLifecycle(options.envoy)
            checks.append(EnvoyReadiness(options.envoy.admin_port))
        self.dns: AgentDns | None = None
        handlers = dict(xds_handlers or {})
        if options.dns is not None:
            if options.pilot_address is None:
                raise AgentConfigError("DNS", "DNS capture needs a Pilot address for its names")
            follow = None if options.xds_proxy else options.pilot_address
            self.dns = AgentDns(options.dns, pilot=follow)
            self.components.insert(0, self.dns)
            if options.xds_proxy:
                handlers[NAME_TABLE] = self.dns.on_name_table
        self.xds_proxy: XdsProxy | None = None
        if options.pilot_address is not None and options.xds_proxy:
            host, port = options.pilot_address
            self.xds_proxy = XdsProxy(
                host,
                port,
                ssl_context=xds_ssl_context,
                metadata=options.xds_metadata,
                handlers=handlers,
                metrics=self.metrics,
            )
            checks.append(self.xds_proxy.config_status)
        self.readiness = Readiness(checks)
        self._stop = asyncio.Event()
        self.status = StatusServer(
            self.readiness,
            probers=probers,
            probe_runner=AppProbeRunner(
                host=options.probe_host, source_address=options.probe_source_address
            ),
            scrape_targets=targets,
            envoy_prometheus_port=options.envoy_prometheus_port if self.envoy else None,
            metrics=self.metrics,
            on_quit=self._stop.set,
            on_drain=self._drain_now,
        )
        self.readiness_server: ReadinessServer | None = None
        if options.readiness_port is not None and self.envoy is None:
            self.readiness_server = ReadinessServer(self.readiness)
        self._started: list[AgentComponent] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    async def start(self) -> None:
        """Start every part; a part that cannot start stops the ones already running."""
        try:
            if self.xds_proxy is not None:
                if self.options.xds_socket is not None:
                    await self.xds_proxy.start(path=self.options.xds_socket)
                else:
                    await self.xds_proxy.start(host="127.0.0.1", port=self.options.xds_port)
            await self.status.start(self.options.host, self.options.status_port)
            if self.readiness_server is not None:
                assert self.options.readiness_port is not None
                await self.readiness_server.start(self.options.host, self.options.readiness_port)
            for component in self.components:
                await component.start()
                self._started.append(component)
            if self.envoy is not None and self.options.bootstrap is not None:
                await self._load_bootstrap()
                self._spawn(self._watch_bootstrap())
        except BaseException:
            await self.stop()
            raise

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load_bootstrap(self) -> None:
        assert self.envoy is not None and self.options.bootstrap is not None
        path = pathlib.Path(self.options.bootstrap)
        data = await asyncio.to_thread(path.read_bytes)
        if await self.envoy.update_bootstrap(data):
            log.info("Envoy started from %s", path)

    async def _watch_bootstrap(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(self.options.bootstrap_poll)
            try:
                await self._load_bootstrap()
            except OSError as exc:
                log.warning("cannot reload the bootstrap: %s", exc)

    def _drain_now(self) -> None:
        if self.envoy is not None:
            self._spawn(self.envoy.drain())

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (what SIGTERM and ``/quitquitquit`` do)."""
        self._stop.set()

    async def run(self) -> int:
        """Serve until :meth:`request_stop` or, with Envoy, until Envoy exits; stops every
        part (draining Envoy) and returns the exit code."""
        stopper = asyncio.get_running_loop().create_task(self._stop.wait())
        waiters: set[asyncio.Task[Any]] = {stopper}
        envoy_run: asyncio.Task[int] | None = None
        if self.envoy is not None:
            envoy_run = asyncio.get_running_loop().create_task(self.envoy.run())
            waiters.add(envoy_run)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            await self.stop()
        if envoy_run is None:
            return 0
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(envoy_run, 5.0)
        envoy_run.cancel()
        return 0

    async def stop(self) -> None:
        """Stop being ready, drain and end Envoy, then stop components and servers (once)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self.readiness.terminate()
        for task in list(self._tasks):
            task.cancel()
        if self.envoy is not None:
            await self.envoy.terminate()
        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %r failed", component)
        if self.readiness_server is not None:
            await self.readiness_server.close()
        await self.status.close()
        if self.xds_proxy is not None:
            await self.xds_proxy.close()

    async def __aenter__(self) -> PilotAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
