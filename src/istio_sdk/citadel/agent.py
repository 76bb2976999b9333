"""The Citadel agent: keeps a workload certificate fresh and hands it to proxies.

Like Istio's node agent it requests a certificate with the workload's token (or, when no token
is configured, over mutual TLS with the current certificate), renews at half the lifetime
(``SECRET_GRACE_PERIOD_RATIO`` 0.5), retries with exponential backoff and jitter while the CA
is down, and never hands out an expired certificate. It serves SDS on a Unix socket or TCP port
and can write ``cert-chain.pem``, ``key.pem`` and ``root-cert.pem`` for gRPC's ``file_watcher``
certificate provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import pathlib
import random
from collections.abc import Awaitable, Callable

import attrs
from grpclib.server import Server

from istio_sdk._backoff import backoff_delay, check_backoff
from istio_sdk._grpc import GrpcSettings, create_server
from istio_sdk._net import bind_tcp, bound_port, remove_stale_socket
from istio_sdk.citadel._client import DEFAULT_RENEW_RATIO, CertificateBundle, CitadelClient
from istio_sdk.citadel.errors import CitadelError
from istio_sdk.citadel.files import write_workload_files
from istio_sdk.citadel.keys import KeyAlgorithm
from istio_sdk.citadel.sds import SdsService, SdsStats, SecretCache
from istio_sdk.timeutil import utcnow

__all__ = ["AgentOptions", "AgentStats", "CitadelAgent", "NoCredentialError"]

log = logging.getLogger("istio_sdk.citadel.agent")


class NoCredentialError(CitadelError):
    """The agent has neither a token nor a valid certificate to authenticate with."""


@attrs.frozen
class AgentOptions:
    """Where the CA is, how to authenticate, and where to hand certificates out."""

    ca_host: str
    ca_port: int
    ca_root_pem: str = attrs.field(repr=False)
    ca_server_name: str | None = None
    token: str | None = attrs.field(default=None, repr=False)
    token_file: str | None = None
    """Read the token from this file before every request (projected tokens rotate)."""
    key_algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256
    ttl_seconds: int = 0
    """Requested lifetime; 0 lets the CA pick its default (24 h in Istio)."""
    renew_ratio: float = attrs.field(default=DEFAULT_RENEW_RATIO)
    output_dir: str | None = None
    sds_socket_path: str | None = None
    sds_host: str = "127.0.0.1"
    sds_port: int | None = None
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    request_timeout: float = 10.0

    @renew_ratio.validator
    def _check_ratio(self, _attr: object, value: float) -> None:
        if not 0 < value < 1:
            raise ValueError(f"renew_ratio {value} must be between 0 and 1")


@attrs.frozen
class AgentStats:
    """Agent counters and the current certificate's expiry."""

    renewals: int
    failures: int
    not_after: datetime.datetime | None
    sds: SdsStats


class CitadelAgent:
    """Runs the renewal loop and the SDS server; see the module docstring.

    ``clock``, ``sleep`` and ``rng`` are injectable so tests can drive time.
    """

    def __init__(
        self,
        options: AgentOptions,
        *,
        client: CitadelClient | None = None,
        clock: Callable[[], datetime.datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        grpc_settings: GrpcSettings | None = None,
    ) -> None:
        check_backoff(options.backoff_initial, options.backoff_max, 0.5)
        self.options = options
        self._client = client or CitadelClient(
            options.ca_host,
            options.ca_port,
            root_cert_pem=options.ca_root_pem,
            server_name=options.ca_server_name,
            key_algorithm=options.key_algorithm,
            timeout=options.request_timeout,
        )
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._grpc_settings = grpc_settings or GrpcSettings()
        self.cache = SecretCache(clock)
        self.sds = SdsService(self.cache)
        self._bundle: CertificateBundle | None = None
        self._renewals = 0
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        self._server: Server | None = None
        self._sds_port: int | None = None
        self._ready = asyncio.Event()

    # -- one renewal ----------------------------------------------------------------------------

    def _token(self) -> str | None:
        if self.options.token_file is not None:
            try:
                return pathlib.Path(self.options.token_file).read_text().strip() or None
            except OSError as exc:
                raise NoCredentialError(
                    f"cannot read token file {self.options.token_file}: {exc.strerror}"
                ) from exc
        return self.options.token

    async def refresh_once(self) -> CertificateBundle:
        """Request a new certificate now, install it, write files; raise on failure."""
        current = self.cache.current()
        try:
            token = self._token()
        except NoCredentialError:
            if current is None:
                raise
            token = None  # the token file went away: renew over mTLS while the cert is valid
        if token is None and current is None:
            raise NoCredentialError("no token configured and no valid certificate for mTLS")
        bundle = await self._client.request_certificate(
            token=token,
            mtls=None if token is not None else current,
            ttl_seconds=self.options.ttl_seconds,
            key_algorithm=self.options.key_algorithm,
        )
        self._install(bundle)
        return bundle

    def _install(self, bundle: CertificateBundle) -> None:
        self._bundle = bundle
        self._renewals += 1
        self.cache.set(bundle)
        self._ready.set()
        if self.options.output_dir is not None:
            write_workload_files(self.options.output_dir, bundle)
        log.info("workload certificate for %s valid until %s", bundle.identity, bundle.not_after)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Renew forever: at ``renew_ratio`` of each lifetime, with backoff after failures."""
        attempt = 0
        while True:
            try:
                bundle = await self.refresh_once()
            except (CitadelError, OSError, ValueError) as exc:
                # CA refusals and outages, unreadable answers, unwritable output files: retry.
                self._failures += 1
                # Equal jitter: at least half the exponential delay, so a fleet of agents spreads
                # out without any of them hammering a CA that is down.
                delay = backoff_delay(
                    attempt,
                    self.options.backoff_initial,
                    self.options.backoff_max,
                    jitter=0.5,
                    rng=self._rng,
                )
                attempt += 1
                current = self.cache.current()
                if current is None:
                    self.cache.clear()  # expired or never had one: serve nothing
                else:
                    until_expiry = (current.not_after - self._clock()).total_seconds()
                    delay = min(delay, max(until_expiry, 0.0))
                log.warning("certificate request failed (%s); retrying in %.1fs", exc, delay)
            else:
                attempt = 0
                delay = (bundle.renew_at(self.options.renew_ratio) - self._clock()).total_seconds()
            await self._sleep(max(delay, 0.0))

    async def start(self) -> None:
        """Start the SDS server (if configured) and the renewal loop."""
        if self._task is not None:
            raise RuntimeError("agent already started")
        if self.options.sds_socket_path is not None or self.options.sds_port is not None:
            server = create_server([self.sds], self._grpc_settings)
            if self.options.sds_socket_path is not None:
                path = self.options.sds_socket_path
                remove_stale_socket(path)
                await server.start(path=path)
                os.chmod(path, 0o600)
            else:
                assert self.options.sds_port is not None
                sock = bind_tcp(self.options.sds_host, self.options.sds_port)
                await server.start(sock=sock)
                self._sds_port = bound_port(sock)
            self._server = server
        self._task = asyncio.create_task(self.run(), name="citadel-agent-renewal")

    async def wait_ready(self) -> CertificateBundle:
        """Wait until a certificate has been installed and return it (wrap in a timeout)."""
        await self._ready.wait()
        bundle = self._bundle
        assert bundle is not None
        return bundle

    @property
    def sds_port(self) -> int:
        """The SDS TCP port (after :meth:`start` with ``sds_port``)."""
        if self._sds_port is None:
            raise RuntimeError("SDS is not served over TCP")
        return self._sds_port

    @property
    def bundle(self) -> CertificateBundle | None:
        """The current certificate if it is still valid."""
        return self.cache.current()

    def stats(self) -> AgentStats:
        """Renewals, failures, expiry of the current certificate and SDS counters."""
        return AgentStats(
            renewals=self._renewals,
            failures=self._failures,
            not_after=self._bundle.not_after if self._bundle is not None else None,
            sds=self.sds.stats(),
        )

    async def stop(self) -> None:
        """Stop renewing and serving."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._client.close()

    async def __aenter__(self) -> CitadelAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
