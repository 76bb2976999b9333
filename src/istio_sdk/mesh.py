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

``components`` picks the servers by name (:data:`COMPONENTS`) with Istio's ports
(:data:`DEFAULT_PORTS`), or free ones with ``free_ports``. A started mesh hands out clients
wired to its own servers (closed with the mesh), issues workload identities from its CA, and
:meth:`Mesh.converged` waits until every connected proxy ACKed the current config.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import os
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from istio_sdk.config import ConfigStore, DirectorySource, LoadLimits
from istio_sdk.pilot.push_context import PushContext, PushContextError
from istio_sdk.pilot.registry import Endpoint, RegistrySnapshot, Service, ServiceRegistry
from istio_sdk.pilot.server import DiscoveryServer, ProxyEvent, ProxyStatus
from istio_sdk.pilot.translate import PushContextGenerator
from istio_sdk.xds.types import resource_type

if TYPE_CHECKING:
    from istio_sdk._webhook_tls import WebhookCertificate
    from istio_sdk.api.envoy.config.core.v3 import Node
    from istio_sdk.citadel import (
        CertificateBundle,
        CitadelClient,
        CitadelServer,
        CitadelServerOptions,
        Identity,
        KeyAlgorithm,
    )
    from istio_sdk.citadel.agent import CitadelAgent
    from istio_sdk.config import KubernetesSource, LeaderElector, Resource, StatusWriter
    from istio_sdk.galley.mcp import GalleyClient, McpSource
    from istio_sdk.galley.webhook import ValidationWebhookServer
    from istio_sdk.mixer import MixerClient, MixerServer
    from istio_sdk.pilot.client import PilotClient
    from istio_sdk.pilot.push_request import PushRequest
    from istio_sdk.proxy.inject import InjectSettings
    from istio_sdk.proxy.inject.server import InjectorServer

__all__ = [
    "COMPONENTS",
    "DEFAULT_CA_PORT",
    "DEFAULT_PORTS",
    "DEFAULT_XDS_PORT",
    "Mesh",
    "MeshComponentError",
    "MeshListenError",
    "MeshNotConvergedError",
]

log = logging.getLogger("istio_sdk.mesh")

_C = TypeVar("_C", "PilotClient", "CitadelClient", "MixerClient", "GalleyClient")

DEFAULT_XDS_PORT = 15010
"""istiod's plaintext xDS port."""
DEFAULT_CA_PORT = 15012
"""istiod's TLS port for xDS and the CA."""


COMPONENTS = ("pilot", "citadel", "galley", "mixer", "injector")
"""The servers a :class:`Mesh` can run, by the names ``components`` takes."""
DEFAULT_PORTS: Mapping[str, int] = MappingProxyType(
    {"pilot": DEFAULT_XDS_PORT, "citadel": DEFAULT_CA_PORT, "galley": 9901, "mixer": 9091,
     "injector": 15017}
)  # fmt: skip
"""Istio's port for each component (istiod's xDS and CA ports, Galley's MCP, Mixer's
gRPC, the injector's webhook)."""

_PORT_ARGUMENT = {
    "pilot": "xds_port",
    "citadel": "ca_port",
    "galley": "galley_port",
    "mixer": "mixer_port",
    "injector": "injector_port",
}


class MeshListenError(OSError):
    """A server of the mesh cannot listen; the message names which one and where."""

    def __str__(self) -> str:
        return str(self.strerror)


class MeshComponentError(RuntimeError):
    """What was asked of the mesh needs a component that is not running (or not yet)."""


class MeshNotConvergedError(Exception):
    """:meth:`Mesh.converged` gave up: a proxy NACKed the current config, or the timeout
    passed first. ``pending`` says, one line per proxy and type, what was still missing."""

    def __init__(self, message: str, pending: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.pending = tuple(pending)


def _component_ports(
    components: Collection[str] | None, free_ports: bool, given: Mapping[str, int | None]
) -> dict[str, int | None]:
    # Without ``components``: Pilot always runs and every other server runs when its port is
    # given (the original keyword API). With it: exactly those servers, each on its given port,
    # else Istio's, else (free_ports) an ephemeral one.
    if components is None:
        ports = dict(given)
        if ports["pilot"] is None:
            ports["pilot"] = 0 if free_ports else DEFAULT_XDS_PORT
        return ports
    wanted = set(components)
    unknown = sorted(wanted - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown mesh components {unknown}; known: {list(COMPONENTS)}")
    ports = {}
    for name in COMPONENTS:
        port = given[name]
        if name not in wanted:
            if port is not None:
                raise ValueError(f"{_PORT_ARGUMENT[name]} given but {name!r} is not in components")
            ports[name] = None
        elif port is None:
            ports[name] = 0 if free_ports else DEFAULT_PORTS[name]
        else:
            ports[name] = port
    return ports


def _type_name(url: str) -> str:
    try:
        return resource_type(url).short_name
    except KeyError:
        return url


def _unsynced_proxies(proxies: Iterable[ProxyStatus]) -> list[str]:
    """What keeps these proxies from having ACKed what they were last sent, one line each
    (empty: all in sync). Raises :class:`MeshNotConvergedError` when a proxy NACKed the
    newest version it was sent of a type (it will not ACK that config)."""
    pending: list[str] = []
    for proxy in proxies:
        who = proxy.proxy_id or proxy.connection_id
        for url, status in sorted(proxy.types.items()):
            state = status["state"]
            if state == "ACKED":
                continue
            if state == "NACKED":
                raise MeshNotConvergedError(
                    f"proxy {who} rejected {_type_name(url)} version "
                    f"{status['nacked_version']}: {str(status['nack_reason'])[:500]}",
                    [f"{who} {_type_name(url)} NACKED"],
                )
            pending.append(f"{who} {_type_name(url)} {state}")
    return pending


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

    ``components`` (names from :data:`COMPONENTS`) picks the servers: each runs on its port
    argument, else Istio's (:data:`DEFAULT_PORTS`), else with ``free_ports`` a free one; a port
    given for a component left out is a ``ValueError``. Without ``components``, Pilot runs on
    ``xds_port`` (``None``: 15010, or free with ``free_ports``) and each other server when
    its port is given.
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
        xds_port: int | None = None,
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
        components: Collection[str] | None = None,
        free_ports: bool = False,
    ) -> None:
        ports = _component_ports(
            components,
            free_ports,
            {
                "pilot": xds_port,
                "citadel": ca_port,
                "galley": galley_port,
                "mixer": mixer_port,
                "injector": injector_port,
            },
        )
        xds_port, ca_port, galley_port = ports["pilot"], ports["citadel"], ports["galley"]
        mixer_port, injector_port = ports["mixer"], ports["injector"]
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
        self._running = False
        self._client_closers: list[Callable[[], Awaitable[None]]] = []
        self._waiters: set[asyncio.Event] = set()
        self.discovery.add_listener(self._on_proxy_event)
        self.discovery.add_state_listener(self._wake_waiters)

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
        self._running = True

    async def _start(self) -> None:
        for source in self._sources:
            await source.start(strict=self._strict)
        for kube, status, elector in self._kubernetes:
            await kube.start()
            if status is not None:
                await status.start()
            if elector is not None:
                await elector.start()
        if self.xds_port is not None:
            self.rebuild()
            self._unsubscribe = self.store.subscribe(lambda _event: self._schedule_rebuild())
        for client in self.galley_clients:
            await client.start()
        if self.xds_port is not None:
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
        """Close the clients the mesh handed out, stop following config, close every server."""
        self._running = False
        closers, self._client_closers = self._client_closers, []
        for close in closers:
            await close()
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
        self._wake_waiters()

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

    # -- addresses and clients -------------------------------------------------------------
    @property
    def addresses(self) -> Mapping[str, tuple[str, int]]:
        """``(host, port)`` of every running server, by name: the :data:`COMPONENTS`
        (``pilot``, ``citadel``, ``galley``, ``mixer``, ``injector``) plus ``webhook`` (Galley's
        validating webhook, ``webhook_port``), ``debug``, ``citadel_monitoring`` and
        ``mixer_prometheus`` when they run. Empty before
        :meth:`start`."""
        if not self._running:
            return MappingProxyType({})
        found = {
            "pilot": self.xds_port,
            "citadel": self.ca_port,
            "galley": self.galley_port,
            "mixer": self.mixer_port,
            "injector": self.injector_port,
            "webhook": self.webhook_port,
            "debug": self.debug_port,
            "citadel_monitoring": self.ca_monitoring_port,
            "mixer_prometheus": self.mixer_prometheus_port,
        }
        return MappingProxyType(
            {name: (self.host, port) for name, port in found.items() if port is not None}
        )

    def _address(self, component: str) -> tuple[str, int]:
        address = self.addresses.get(component)
        if address is None:
            state = "is not running in this mesh" if self._running else "has not started yet"
            raise MeshComponentError(
                f"{component} {state} (start the mesh with {component!r} in components, "
                f"or {_PORT_ARGUMENT[component]}=...)"
            )
        return address

    def _keep(self, client: _C) -> _C:
        from istio_sdk.galley.mcp import GalleyClient

        self._client_closers.append(
            client.stop if isinstance(client, GalleyClient) else client.close
        )
        return client

    def pilot_client(self, node: Node | None = None, **options: Any) -> PilotClient:
        """An ADS client for this mesh's Pilot (start it with ``async with``); the mesh closes
        it when it stops. ``node`` defaults to a sidecar in ``default``
        (:func:`~istio_sdk.pilot.client.sidecar_node`); ``options`` are
        :class:`~istio_sdk.PilotClient` keywords (``mode``, ``validator``, ...)."""
        from istio_sdk.pilot.client import PilotClient

        return self._keep(PilotClient(self._address("pilot"), node=node, **options))

    def citadel_client(
        self, identity: Identity | str | tuple[str, str] | None = None
    ) -> CitadelClient:
        """A client of this mesh's CA over TLS (trusting its root); closed with the mesh.

        With ``identity`` (an :class:`~istio_sdk.citadel.Identity`, a SPIFFE URI or
        ``(namespace, service_account)``), calls without their own ``token`` or ``mtls``
        authenticate as that workload, by a certificate the mesh issues it first (as a
        workload renewing over mutual TLS would).
        """
        host, port = self._address("citadel")
        assert self.citadel is not None
        if identity is None:
            from istio_sdk.citadel import CitadelClient

            return self._keep(CitadelClient(host, port, root_cert_pem=self.citadel.root_pem))
        from istio_sdk._mesh_citadel import IdentityCitadelClient

        wanted = self._identity(identity)
        return self._keep(
            IdentityCitadelClient(
                host,
                port,
                root_cert_pem=self.citadel.root_pem,
                credential=lambda: self.issue_identity(wanted),
            )
        )

    async def citadel_agent(
        self,
        identity: Identity | str | tuple[str, str],
        *,
        output_dir: str | os.PathLike[str] | None = None,
        sds_socket_path: str | None = None,
        sds_port: int | None = None,
        **options: Any,
    ) -> CitadelAgent:
        """The Citadel node agent of workload ``identity`` against this mesh's CA.

        The mesh hands it a first certificate (what a workload's provisioning would), and the
        agent renews it over mutual TLS from then on, writes the PEM files to ``output_dir`` and
        serves them over SDS on ``sds_socket_path`` or ``sds_port`` (0: a free one), as
        ``istio-sdk agent`` does. ``options`` are further
        :class:`~istio_sdk.citadel.agent.AgentOptions` fields. Start it with ``async with``
        (or ``start()``); the mesh stops it when it stops.
        """
        from istio_sdk.citadel import CitadelClient
        from istio_sdk.citadel.agent import AgentOptions, CitadelAgent

        host, port = self._address("citadel")
        assert self.citadel is not None
        first = await self.issue_identity(identity)
        agent_options = AgentOptions(
            ca_host=host,
            ca_port=port,
            ca_root_pem=self.citadel.root_pem,
            output_dir=None if output_dir is None else os.fspath(output_dir),
            sds_socket_path=sds_socket_path,
            sds_port=sds_port,
            **options,
        )
        client = CitadelClient(host, port, root_cert_pem=self.citadel.root_pem)
        agent = CitadelAgent(agent_options, client=client)
        agent.cache.set(first)
        self._client_closers.append(agent.stop)
        return agent

    def mixer_client(self, **options: object) -> MixerClient:
        """A Mixer client for this mesh's Mixer (``options``: see
        :class:`~istio_sdk.mixer.MixerClientOptions`); closed with the mesh."""
        from istio_sdk.mixer import MixerClient

        host, port = self._address("mixer")
        return self._keep(MixerClient(host, port, **options))  # type: ignore[arg-type]

    def galley_client(self, store: ConfigStore | None = None) -> GalleyClient:
        """An MCP sink of this mesh's Galley mirroring into ``store`` (default: a new, empty
        one, :attr:`GalleyClient.store`); start it with ``async with``; stopped with the
        mesh."""
        from istio_sdk.galley.mcp import GalleyClient

        address = self._address("galley")
        return self._keep(GalleyClient(store if store is not None else ConfigStore(), address))

    # -- identities --------------------------------------------------------------------------
    def _identity(self, identity: Identity | str | tuple[str, str]) -> Identity:
        from istio_sdk.citadel import Identity

        if self.citadel is None:
            raise MeshComponentError(
                "citadel is not running in this mesh (start the mesh with 'citadel' in "
                "components, or ca_port=...)"
            )
        if isinstance(identity, Identity):
            return identity
        if isinstance(identity, str):
            return Identity.from_spiffe_uri(identity)
        namespace, service_account = identity
        return Identity(namespace, service_account, self.citadel.ca.trust_domain)

    async def issue_identity(
        self,
        identity: Identity | str | tuple[str, str],
        *,
        ttl: datetime.timedelta | None = None,
        key_algorithm: KeyAlgorithm | None = None,
    ) -> CertificateBundle:
        """A fresh key and a certificate for ``identity`` signed by this mesh's CA, with the
        chain and the trust bundle (the root): what a workload's agent would hold.

        ``identity`` is an :class:`~istio_sdk.citadel.Identity`, a SPIFFE URI or
        ``(namespace, service_account)`` in the CA's trust domain. ``ttl`` defaults to the
        CA's default workload TTL. Raises :class:`~istio_sdk.citadel.IdentityError` for a bad
        identity, :class:`~istio_sdk.citadel.CsrError` outside the trust domain.
        """
        from istio_sdk.citadel import CertificateBundle, KeyAlgorithm
        from istio_sdk.citadel.keys import generate_private_key, private_key_pem

        wanted = self._identity(identity)
        assert self.citadel is not None
        ca = self.citadel.ca
        lifetime = ttl if ttl is not None else ca.options.ttl_policy.default_ttl
        key = generate_private_key(key_algorithm or KeyAlgorithm.ECDSA_P256)
        issued = ca.issue(key.public_key(), wanted, lifetime)
        return CertificateBundle.from_response(private_key_pem(key), issued.chain_pem)

    # -- workloads and config ----------------------------------------------------------------
    def apply(self, *resources: Resource) -> None:
        """Apply ``resources`` to the store (Pilot, Galley and Mixer follow; see
        :meth:`converged`)."""
        for resource in resources:
            self.store.apply(resource)

    def delete(self, kind: str, name: str, namespace: str = "") -> None:
        """Delete one resource from the store (``NotFoundError`` when it is not there)."""
        self.store.delete(kind, name, namespace)

    def register_service(
        self, service: Service, endpoints: Iterable[Endpoint] | None = None
    ) -> None:
        """Add or replace a service of the registry (with its endpoints, when given) and push
        the change (a :class:`~istio_sdk.pilot.registry.Service` needs no config)."""
        self.registry.register_service(service, endpoints)
        self._schedule_rebuild()

    def set_endpoints(self, hostname: str, namespace: str, endpoints: Iterable[Endpoint]) -> None:
        """Replace a registered service's endpoints (its workloads) and push the change."""
        self.registry.set_endpoints(hostname, namespace, endpoints)
        self._schedule_rebuild()

    def remove_service(self, hostname: str, namespace: str) -> None:
        """Forget a registered service and push the change."""
        self.registry.remove_service(hostname, namespace)
        self._schedule_rebuild()

    # -- convergence ---------------------------------------------------------------------------
    def _on_proxy_event(self, _event: ProxyEvent) -> None:
        self._wake_waiters()

    def _wake_waiters(self, _task: object = None) -> None:
        for waiter in self._waiters:
            waiter.set()

    def unsynced(self) -> list[str]:
        """What the mesh still waits for before it is converged, one line each (empty: it is);
        raises :class:`MeshNotConvergedError` when a proxy NACKed its newest config."""
        pending: list[str] = []
        if self._rebuild_wanted or (
            self._rebuild_task is not None and not self._rebuild_task.done()
        ):
            pending.append("a config change is being translated")
        if self.discovery.pushes_pending:
            pending.append("a push is queued")
        pending.extend(_unsynced_proxies(self.discovery.proxies()))
        return pending

    async def converged(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once every store and registry change so far is pushed and every connected
        proxy ACKed what it was last sent (proxies that connect later are not waited for).

        Raises :class:`MeshNotConvergedError` when a proxy NACKed its newest config, or when
        ``timeout`` seconds pass first (naming what was still pending).
        """
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        if not self._running:
            raise MeshComponentError("the mesh is not running")
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        pending: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while self._running:
                    waiter.clear()
                    pending = self.unsynced()
                    if not pending:
                        return
                    await waiter.wait()
                raise MeshNotConvergedError("the mesh stopped before it converged", pending)
        except TimeoutError:
            raise MeshNotConvergedError(
                f"not converged after {timeout}s: " + "; ".join(pending[:10]), pending
            ) from None
        finally:
            self._waiters.discard(waiter)

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
            self._rebuild_task.add_done_callback(self._wake_waiters)

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
