"""``Mesh``: the control-plane components in one asyncio process over one ConfigStore.

The mesh is where components meet: it runs Pilot, optionally Citadel's CA beside it, and the
sources that keep its store in step with config folders. ``istio-sdk serve`` only turns its
flags into a Mesh and runs it.

Pilot is a :class:`~istio_sdk.DiscoveryServer` whose resources come from the
translators (:class:`~istio_sdk.pilot.translate.PushContextGenerator`) over the store's Istio
config plus a :class:`~istio_sdk.pilot.registry.ServiceRegistry` for programmatic services.
Every store change rebuilds the push context (a burst of changes rebuilds once) and hands the
resulting push request to the server, which debounces it and pushes only what changed to the
proxies it affects. A change that makes the config unusable is logged and the last good
config keeps being served.

Galley (``galley_port``) serves the store over MCP as Istio 1.3's Galley did
(:class:`~istio_sdk.galley.mcp.McpSource`, ``ResourceSource``), and ``config_sources`` makes the
store follow other Galleys (:class:`~istio_sdk.GalleyClient` per ``(host, port)``, Pilot 1.3's
``configSources``).

Citadel (``ca_port``) is a :class:`~istio_sdk.citadel.CitadelServer` answering
CreateCertificate over TLS, built from :class:`~istio_sdk.citadel.CitadelServerOptions` (CA
files, JWT rule, ...).

Galley's validating webhook (``webhook_port``) is a
:class:`~istio_sdk.galley.webhook.ValidationWebhookServer` over HTTPS; without a certificate
given, Citadel signs one when the mesh runs it, else it is self-signed.

Mixer (``mixer_port``) is a :class:`~istio_sdk.mixer.MixerServer` over the same store (Check and
Report; its prometheus adapter's ``/metrics`` on ``mixer_prometheus_port``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Literal

import attrs

from istio_sdk.config import ConfigStore, DirectorySource, LoadLimits
from istio_sdk.pilot.push_context import PushContext, PushContextError
from istio_sdk.pilot.registry import RegistrySnapshot, ServiceRegistry
from istio_sdk.pilot.server import DiscoveryServer
from istio_sdk.pilot.translate import PushContextGenerator

if TYPE_CHECKING:
    from istio_sdk._webhook_tls import WebhookCertificate
    from istio_sdk.citadel import CitadelServer, CitadelServerOptions
    from istio_sdk.config import KubernetesSource, LeaderElector, Resource, StatusWriter
    from istio_sdk.galley.mcp import GalleyClient, McpSource
    from istio_sdk.galley.webhook import ValidationWebhookServer
    from istio_sdk.mixer import MixerServer
    from istio_sdk.pilot.push_request import PushRequest
    from istio_sdk.proxy.inject import InjectSettings
    from istio_sdk.proxy.inject.server import InjectorServer

__all__ = ["DEFAULT_CA_PORT", "DEFAULT_XDS_PORT", "Mesh", "MeshListenError"]

log = logging.getLogger("istio_sdk.mesh")

DEFAULT_XDS_PORT = 15010
"""istiod's plaintext xDS port."""
DEFAULT_CA_PORT = 15012
"""istiod's TLS port for xDS and the CA."""


class MeshListenError(OSError):
    """A server of the mesh cannot listen; the message names which one and where."""

    def __str__(self) -> str:
        return str(self.strerror)


def _injector(
    host: str, settings: InjectSettings | None, certificate: WebhookCertificate | None
) -> InjectorServer:
    from istio_sdk._webhook_tls import self_signed_certificate
    from istio_sdk.proxy.inject import InjectSettings
    from istio_sdk.proxy.inject.server import InjectorServer

    if certificate is None:
        certificate = self_signed_certificate(sorted({"localhost", "127.0.0.1", host}))
    return InjectorServer(settings or InjectSettings(), certificate)


_WEBHOOK_HOSTS = (
    "localhost",
    "127.0.0.1",
    "istiod.istio-system.svc",
    "istio-galley.istio-system.svc",
)


def _validation_webhook(
    host: str, certificate: WebhookCertificate | None, citadel: CitadelServer | None
) -> tuple[ValidationWebhookServer, str | None]:
    """The webhook and the PEM its clients trust (None: the certificate came from outside)."""
    from istio_sdk import _webhook_tls
    from istio_sdk.galley.webhook import ValidationWebhookServer

    trust: str | None = None
    if certificate is None:
        hosts = sorted({*_WEBHOOK_HOSTS, host})
        if citadel is not None:
            certificate = _webhook_tls.ca_signed_certificate(citadel.ca, hosts)
            trust = citadel.ca.root_pem
        else:
            certificate = _webhook_tls.self_signed_certificate(hosts)
            trust = certificate.chain_pem
    return ValidationWebhookServer(certificate), trust


class Mesh:
    """Run the control plane over ``store`` (and ``registry``) until :meth:`stop`.

    ``xds_port`` 0 picks a free port (read it back from :attr:`xds_port` after :meth:`start`);
    ``debug_port`` (``None``: off) serves Pilot's Prometheus metrics at ``/metrics`` and its
    state at ``/debug/syncz`` and ``/debug/metrics`` (JSON).
    ``ca_port`` (``None``: no CA) also runs Citadel's CA there over TLS, configured by
    ``ca_options``; the server is :attr:`citadel` (built here, so bad CA files fail at once).
    ``ca_options.monitoring_port`` serves the CA's ``/metrics`` (the bound port is read back
    from :attr:`ca_monitoring_port` after :meth:`start`).
    ``galley_port`` (``None``: off) serves the store over MCP (:attr:`mcp_source`);
    ``config_sources`` are MCP sources (``(host, port)``) whose collections the store mirrors
    (:attr:`galley_clients`; they connect in the background and reconnect on their own).
    ``injector_port`` (``None``: no injector) runs the sidecar injector's mutating webhook
    (:attr:`injector`) over HTTPS with ``injector_settings`` and ``injector_certificate``
    (default: a self-signed certificate for localhost and ``host``).
    ``webhook_port`` (``None``: off) runs Galley's validating webhook (:attr:`webhook`) over
    HTTPS with ``webhook_certificate``, or one Citadel signs when ``ca_port`` is set, or a
    self-signed one (:attr:`webhook_ca_bundle` is then the PEM clients trust).
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
        ca_port: int | None = None,
        ca_options: CitadelServerOptions | None = None,
        galley_port: int | None = None,
        config_sources: Sequence[tuple[str, int]] = (),
        injector_port: int | None = None,
        injector_settings: InjectSettings | None = None,
        injector_certificate: WebhookCertificate | None = None,
        mixer_port: int | None = None,
        mixer_prometheus_port: int | None = None,
        webhook_port: int | None = None,
        webhook_certificate: WebhookCertificate | None = None,
    ) -> None:
        if ca_options is not None and ca_port is None:
            raise ValueError("ca_options need a ca_port to serve the CA on")
        self.store = store if store is not None else ConfigStore()
        self.registry = registry if registry is not None else ServiceRegistry()
        self.host = host
        self.xds_port = xds_port
        self.debug_port = debug_port
        self.ca_port = ca_port
        self.generator = PushContextGenerator(PushContext.build((), self.registry))
        self.discovery = DiscoveryServer(
            self.generator, debounce_after=debounce_after, debounce_max=debounce_max
        )
        self.citadel: CitadelServer | None = None
        self.ca_monitoring_port: int | None = None
        if ca_port is not None:
            from istio_sdk.citadel import CitadelServer, CitadelServerOptions

            options = ca_options or CitadelServerOptions()
            # The mesh opens the CA's monitoring port itself, so a port taken is named.
            self.ca_monitoring_port = options.monitoring_port
            self.citadel = CitadelServer(attrs.evolve(options, monitoring_port=None))
        self.galley_port = galley_port
        self.mcp_source: McpSource | None = None
        self.galley_clients: list[GalleyClient] = []
        if config_sources:
            from istio_sdk.galley.mcp import GalleyClient

            self.galley_clients = [GalleyClient(self.store, a) for a in config_sources]
        # the sidecar injector's webhook (HTTPS), when injector_port is given
        self.injector_port = injector_port
        self.injector: InjectorServer | None = None
        if injector_port is not None:
            self.injector = _injector(host, injector_settings, injector_certificate)
        # Galley's validating webhook (HTTPS), when webhook_port is given
        self.webhook_port = webhook_port
        self.webhook: ValidationWebhookServer | None = None
        self.webhook_ca_bundle: str | None = None
        if webhook_port is not None:
            self.webhook, self.webhook_ca_bundle = _validation_webhook(
                host, webhook_certificate, self.citadel
            )
        self.mixer: MixerServer | None = None
        self.mixer_port = mixer_port
        self.mixer_prometheus_port = mixer_prometheus_port
        if mixer_port is not None:
            from istio_sdk.mixer import MixerServer

            self.mixer = MixerServer(self.store)
        self.config_errors = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._rebuild_wanted = False
        self._rebuild_task: asyncio.Task[None] | None = None
        self._sources: list[DirectorySource] = []
        self._kubernetes: list[
            tuple[KubernetesSource, StatusWriter | None, LeaderElector | None]
        ] = []
        self._strict = False
        self._started = False

    @classmethod
    def from_directory(
        cls,
        path: str | os.PathLike[str],
        *,
        interval: float = 1.0,
        watch: bool = True,
        strict: bool = False,
        limits: LoadLimits | None = None,
        **kwargs: object,
    ) -> Mesh:
        """A mesh whose store follows a folder of Istio YAML/JSON (see
        :class:`~istio_sdk.config.DirectorySource`: inotify, or polling every ``interval`` s).

        A missing folder fails here with ``FileNotFoundError``. The folder is read by
        :meth:`start`: invalid files are logged and skipped, or with ``strict`` make
        :meth:`start` raise :class:`~istio_sdk.config.ConfigError` for the first problem
        before any server listens.
        """
        if not os.path.isdir(path):
            raise FileNotFoundError(f"config folder {os.fspath(path)} does not exist")
        mesh = cls(**kwargs)  # type: ignore[arg-type]
        source = DirectorySource(mesh.store, path, interval=interval, watch=watch, limits=limits)
        mesh._sources.append(source)
        mesh._strict = strict
        return mesh

    @property
    def sources(self) -> tuple[DirectorySource | KubernetesSource, ...]:
        """The sources feeding the store (their ``errors`` say what was rejected)."""
        return (*self._sources, *(source for source, _, _ in self._kubernetes))

    def add_kubernetes(
        self,
        source: KubernetesSource,
        *,
        status: StatusWriter | None = None,
        elector: LeaderElector | None = None,
    ) -> None:
        """Also feed the store from a Kubernetes API server (``source`` must use this mesh's
        store). ``status`` writes status back, only while ``elector`` leads when one is given.
        All three start after the folders and stop with the mesh; the source's invalid objects
        are reported and skipped, never fatal, as in istiod."""
        if source.store is not self.store:
            raise ValueError("the KubernetesSource must feed this mesh's store")
        self._kubernetes.append((source, status, elector))

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the config folders, build the first push context and start every server.

        Raises :class:`MeshListenError` when a port is taken and, for a strict
        :meth:`from_directory` mesh, :class:`~istio_sdk.config.ConfigError`; nothing keeps
        running after a failed start.
        """
        if self._started:
            raise RuntimeError("Mesh is already started")
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        for source in self._sources:
            await source.start(strict=self._strict)
        for kube, status, elector in self._kubernetes:
            await kube.start()
            if status is not None:
                await status.start()
            if elector is not None:
                await elector.start()
        self.rebuild()
        self._unsubscribe = self.store.subscribe(lambda _event: self._schedule_rebuild())
        for client in self.galley_clients:
            await client.start()
        self.xds_port = await self._listen("xDS", self.xds_port, self.discovery.start)
        if self.galley_port is not None:
            from istio_sdk.galley.mcp import McpSource

            self.mcp_source = McpSource(self.store)
            self.galley_port = await self._listen(
                "Galley's MCP", self.galley_port, self.mcp_source.start
            )
        if self.debug_port is not None:
            self.debug_port = await self._listen(
                "debug HTTP", self.debug_port, self.discovery.start_debug_http
            )
        if self.citadel is not None and self.ca_port is not None:
            citadel = self.citadel

            async def start_ca(host: str, port: int) -> int:
                await citadel.start(host, port)
                return citadel.port

            self.ca_port = await self._listen("the CA", self.ca_port, start_ca)
            if self.ca_monitoring_port is not None:
                self.ca_monitoring_port = await self._listen(
                    "the CA's metrics", self.ca_monitoring_port, citadel.start_monitoring
                )
        if self.mixer is not None and self.mixer_port is not None:
            mixer = self.mixer
            self.mixer_port = await self._listen("Mixer", self.mixer_port, mixer.start)
            if self.mixer_prometheus_port is not None:
                self.mixer_prometheus_port = await self._listen(
                    "Mixer's Prometheus metrics", self.mixer_prometheus_port, mixer.start_prometheus
                )

        if self.injector is not None and self.injector_port is not None:
            self.injector_port = await self._listen(
                "the sidecar injector", self.injector_port, self.injector.start
            )
        if self.webhook is not None and self.webhook_port is not None:
            self.webhook_port = await self._listen(
                "the validating webhook", self.webhook_port, self.webhook.start
            )

    async def _listen(
        self, what: str, port: int, start: Callable[[str, int], Awaitable[int]]
    ) -> int:
        try:
            bound = await start(self.host, port)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise MeshListenError(
                exc.errno, f"cannot listen on {self.host}:{port} for {what}: {reason}"
            ) from exc
        return bound

    async def stop(self) -> None:
        """Stop following config and close every server."""
        for source in self._sources:
            await source.stop()
        for kube, status, elector in self._kubernetes:
            if elector is not None:
                await elector.stop()  # releases the Lease for the next replica
            if status is not None:
                await status.stop()
            await kube.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        task, self._rebuild_task = self._rebuild_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self.galley_clients:
            await client.stop()
        if self.mcp_source is not None:
            await self.mcp_source.stop()
        if self.injector is not None:
            await self.injector.close()
        if self.webhook is not None:
            await self.webhook.close()
        if self.mixer is not None:
            await self.mixer.stop()
        if self.citadel is not None:
            await self.citadel.stop()  # also releases its signing workers
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
        self._rebuild_wanted = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (synchronous use): rebuild now
            self.rebuild()
            return
        if self._rebuild_task is None or self._rebuild_task.done():
            self._rebuild_task = loop.create_task(self._rebuild_off_loop())

    async def _rebuild_off_loop(self) -> None:
        # Store changes land here: the push context is built in a worker thread, so a big mesh
        # never stalls the streams; changes arriving meanwhile are folded into one more build.
        while self._rebuild_wanted:
            self._rebuild_wanted = False
            configs, registry = self.store.list(), self.registry.snapshot()
            request = await asyncio.to_thread(self._build_and_apply, configs, registry)
            if request is not None and request is not False and self.discovery.port:
                self.discovery.push(request)

    def rebuild(self) -> bool:
        """Snapshot the store and registry now and queue a push of what changed.

        Call it after changing :attr:`registry` (store changes trigger it by themselves, and
        build in a worker thread). Returns ``False`` when the new config is unusable (the last
        good one stays).
        """
        request = self._build_and_apply(self.store.list(), self.registry.snapshot())
        if request is False:
            return False
        if request is not None and self.discovery.port:
            self.discovery.push(request)
        return True

    def _build_and_apply(
        self, configs: Sequence[Resource], registry: RegistrySnapshot
    ) -> PushRequest | Literal[False] | None:
        try:
            context = PushContext.build(configs, registry)
        except PushContextError as exc:
            self.config_errors += 1
            log.error("config rejected, keeping the last good push context: %s", exc)
            return False
        return self.generator.apply(context)
