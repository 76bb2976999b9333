"""The CA server: ``istio.v1.auth.IstioCertificateService/CreateCertificate`` over grpclib + TLS.

The service is thin: it authenticates the caller (client certificate, JWT, TokenReview, in that
order), hands the CSR and the authenticated identity to the pure
:class:`~istio_sdk.citadel.ca.CertificateAuthority`, and maps errors to gRPC status codes a
client can act on: ``UNAUTHENTICATED`` for missing or invalid credentials (whatever an
authenticator raised), ``INVALID_ARGUMENT`` for a request that does not decode, a malformed CSR
or a TTL outside the policy. Every failure is counted; the counters are also served in the
Prometheus format under Istio's names (``monitoring_port``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import grpclib.const
from grpclib.exceptions import GRPCError
from prometheus_client.registry import CollectorRegistry

from istio_sdk._grpc import (
    GrpcSettings,
    TlsAcceptStats,
    create_server,
    recv_request_message,
    tls_accept_stats,
)
from istio_sdk._http import MonitoringHttpServer, metrics_route
from istio_sdk._metrics import render_metrics
from istio_sdk._net import bind_tcp, bound_port
from istio_sdk.api.istio.v1.auth import (
    IstioCertificateRequest,
    IstioCertificateResponse,
    IstioCertificateServiceBase,
)
from istio_sdk.citadel._authn import (
    Authenticator,
    CallerContext,
    ClientCertificateAuthenticator,
    JwtAuthenticator,
    TokenReviewAuthenticator,
    authenticate_caller,
)
from istio_sdk.citadel._identity import Identity
from istio_sdk.citadel._metrics import CitadelCollector, CitadelCounts
from istio_sdk.citadel._signing_pool import SigningPool
from istio_sdk.citadel._tls import server_ssl_context
from istio_sdk.citadel.ca import CaOptions, CertificateAuthority, IssuedCertificate
from istio_sdk.citadel.errors import AuthenticationError, CsrError, TtlError
from istio_sdk.citadel.jwt import JwtRule
from istio_sdk.codec import DecodeError, load_codec

if TYPE_CHECKING:
    import grpclib.server

__all__ = [
    "CitadelServer",
    "CitadelServerOptions",
    "CitadelService",
    "CitadelStats",
    "TokenReviewOptions",
]

log = logging.getLogger("istio_sdk.citadel.server")

CREATE_CERTIFICATE_PATH = "/istio.v1.auth.IstioCertificateService/CreateCertificate"

# Failure reasons counted in CitadelStats.failed.
REASON_UNAUTHENTICATED = "unauthenticated"
REASON_INVALID_CSR = "invalid_csr"
REASON_INVALID_TTL = "invalid_ttl"
REASON_INTERNAL = "internal"
REASON_INVALID_REQUEST = "invalid_request"


@attrs.frozen
class TokenReviewOptions:
    """Where and how to call the Kubernetes TokenReview API."""

    api_server_url: str
    reviewer_token: str | None = None
    ca_file: str | None = None  # PEM bundle for the API server's certificate; None: system CAs
    audiences: tuple[str, ...] = ()


@attrs.frozen
class CitadelServerOptions:
    """Everything needed to run a :class:`CitadelServer`."""

    ca_dir: str | None = None
    """Directory with Istio's CA files; a self-signed root is created there if absent.
    ``None`` keeps a self-signed CA in memory only."""
    ca_options: CaOptions = attrs.field(factory=CaOptions)
    jwt_rule: JwtRule | None = None
    token_review: TokenReviewOptions | None = None
    serving_dns_names: tuple[str, ...] = ("istiod.istio-system.svc", "localhost")
    serving_ip_addresses: tuple[str, ...] = ("127.0.0.1",)
    signing_threads: int = 0
    """Sign in a pool of this many threads (0: sign on the event loop). Keeps the loop
    responsive but adds no throughput: ``cryptography`` holds the GIL while signing."""
    signing_processes: int = 0
    """Sign in this many worker processes (0: none); takes precedence over threads."""
    grpc_settings: GrpcSettings = attrs.field(factory=GrpcSettings)
    monitoring_port: int | None = None
    """Serve Prometheus metrics at ``http://<host>:<port>/metrics`` (0: an ephemeral port;
    ``None``: no monitoring port). The host is the one :meth:`CitadelServer.start` binds."""


@attrs.frozen
class CitadelStats:
    """A snapshot of the server's counters."""

    signed: int
    failed: Mapping[str, int]
    authenticated_by: Mapping[str, int]

    @property
    def failed_total(self) -> int:
        """All failures, whatever the reason."""
        return sum(self.failed.values())


def _peer_uri_sans(stream: grpclib.server.Stream[Any, Any]) -> tuple[str, ...]:
    # The TLS layer verified the certificate against our root (CERT_OPTIONAL): when present,
    # getpeercert() returns its parsed fields, including subjectAltName.
    cert = stream.peer.cert() if stream.peer is not None else None
    if not cert:
        return ()
    return tuple(value for kind, value in cert.get("subjectAltName", ()) if kind == "URI")


def _metadata(stream: grpclib.server.Stream[Any, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in (stream.metadata or {}).items():
        if isinstance(value, str):
            found.setdefault(key.lower(), value)
    return found


class CitadelService(IstioCertificateServiceBase):  # type: ignore[misc]
    """``IstioCertificateService`` backed by a :class:`CertificateAuthority`.

    The generated base hands the handler only the request message; this service replaces the
    route with one that also sees the stream, because authentication needs the peer certificate
    and the call metadata.
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        authenticators: Sequence[Authenticator],
        *,
        executor: concurrent.futures.Executor | None = None,
        signing_pool: SigningPool | None = None,
    ) -> None:
        """``executor`` (threads) signs off the event loop; ``signing_pool`` signs in worker
        processes and takes precedence."""
        self.ca = ca
        self.authenticators = tuple(authenticators)
        self.executor = executor
        self.signing_pool = signing_pool
        self._signed = 0
        self._failed: collections.Counter[str] = collections.Counter()
        self._authenticated_by: collections.Counter[str] = collections.Counter()

    def stats(self) -> CitadelStats:
        """Counters so far: certificates signed, failures by reason, successes per method."""
        return CitadelStats(
            signed=self._signed,
            failed=dict(self._failed),
            authenticated_by=dict(self._authenticated_by),
        )

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            CREATE_CERTIFICATE_PATH: grpclib.const.Handler(
                self._handle_create_certificate,
                grpclib.const.Cardinality.UNARY_UNARY,
                IstioCertificateRequest,
                IstioCertificateResponse,
            )
        }

    async def _handle_create_certificate(
        self, stream: grpclib.server.Stream[IstioCertificateRequest, IstioCertificateResponse]
    ) -> None:
        try:
            request = await recv_request_message(stream)
        except GRPCError:
            self._failed[REASON_INVALID_REQUEST] += 1  # too large: RESOURCE_EXHAUSTED as is
            raise
        except Exception as exc:
            # Whatever the decoder raises (bad UTF-8, truncation, nesting past the recursion
            # limit), the request is malformed: a status for the caller, a line in the log.
            self._failed[REASON_INVALID_REQUEST] += 1
            reason = str(exc) if isinstance(exc, DecodeError) else type(exc).__name__
            log.info("CreateCertificate refused: malformed request: %s", reason)
            raise GRPCError(
                grpclib.const.Status.INVALID_ARGUMENT,
                f"malformed CreateCertificate request: {reason}",
            ) from None
        if request is None:
            self._failed[REASON_INVALID_REQUEST] += 1
            raise GRPCError(grpclib.const.Status.INVALID_ARGUMENT, "empty request")
        caller = CallerContext(metadata=_metadata(stream), peer_uri_sans=_peer_uri_sans(stream))
        response = await self.create_certificate_for(request, caller)
        await stream.send_message(response)

    async def create_certificate(
        self, message: IstioCertificateRequest
    ) -> IstioCertificateResponse:
        """Without a caller context nobody is authenticated: always ``UNAUTHENTICATED``."""
        return await self.create_certificate_for(message, CallerContext())

    async def create_certificate_for(
        self, request: IstioCertificateRequest, caller: CallerContext
    ) -> IstioCertificateResponse:
        """Authenticate ``caller``, sign ``request.csr`` for it, or raise ``GRPCError``."""
        try:
            identity = await self._authenticate(caller)
        except AuthenticationError as exc:
            self._failed[REASON_UNAUTHENTICATED] += 1
            log.info("CreateCertificate refused: %s", exc)
            raise GRPCError(grpclib.const.Status.UNAUTHENTICATED, str(exc)) from None
        try:
            issued = await self._sign(request, identity)
        except TtlError as exc:
            self._failed[REASON_INVALID_TTL] += 1
            raise GRPCError(grpclib.const.Status.INVALID_ARGUMENT, str(exc)) from None
        except CsrError as exc:
            self._failed[REASON_INVALID_CSR] += 1
            raise GRPCError(grpclib.const.Status.INVALID_ARGUMENT, str(exc)) from None
        except Exception as exc:
            self._failed[REASON_INTERNAL] += 1
            log.error("signing for %s failed: %s", identity, type(exc).__name__)
            raise GRPCError(grpclib.const.Status.INTERNAL, "signing failed") from None
        self._signed += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "signed serial %x for %s until %s",
                issued.serial_number,
                identity,
                issued.not_after.isoformat(),
            )
        return IstioCertificateResponse(cert_chain=list(issued.chain_pem))

    async def _authenticate(self, caller: CallerContext) -> Identity:
        authenticated = await authenticate_caller(self.authenticators, caller)
        self._authenticated_by[authenticated.method] += 1
        return authenticated.identity

    async def _sign(
        self, request: IstioCertificateRequest, identity: Identity
    ) -> IssuedCertificate:
        if self.signing_pool is not None:
            return await self.signing_pool.sign_csr(
                request.csr, identity, request.validity_duration
            )
        if self.executor is None:
            return self.ca.sign_csr(request.csr, identity, request.validity_duration)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, self.ca.sign_csr, request.csr, identity, request.validity_duration
        )


class CitadelServer:
    """An in-process Citadel: the CA plus its gRPC server, started and stopped with asyncio.

    ``async with CitadelServer(options) as server:`` starts on 127.0.0.1 with an ephemeral port;
    or call :meth:`start` / :meth:`stop` yourself.
    """

    def __init__(
        self,
        options: CitadelServerOptions | None = None,
        *,
        ca: CertificateAuthority | None = None,
        authenticators: Sequence[Authenticator] | None = None,
    ) -> None:
        self.options = options or CitadelServerOptions()
        if ca is None:
            if self.options.ca_dir is not None:
                ca = CertificateAuthority.load_or_create(
                    self.options.ca_dir, self.options.ca_options
                )
            else:
                ca = CertificateAuthority.create_self_signed(self.options.ca_options)
        self.ca = ca
        self._token_review: TokenReviewAuthenticator | None = None
        self._jwt: JwtAuthenticator | None = None
        if authenticators is None:
            authenticators = self._default_authenticators()
        self._executor: concurrent.futures.Executor | None = None
        self._pool: SigningPool | None = None
        if self.options.signing_processes > 0:
            self._pool = SigningPool(ca, self.options.signing_processes)
        elif self.options.signing_threads > 0:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.options.signing_threads, thread_name_prefix="citadel-sign"
            )
        self.service = CitadelService(
            ca, authenticators, executor=self._executor, signing_pool=self._pool
        )
        self._server: grpclib.server.Server | None = None
        self._port: int | None = None
        self._root_watch: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        """This server's Prometheus registry (Istio's ``citadel_server_*`` families)."""
        self.registry.register(CitadelCollector(self._metric_counts))
        self._monitoring: MonitoringHttpServer | None = None

    def _default_authenticators(self) -> list[Authenticator]:
        trust_domain = self.ca.trust_domain
        found: list[Authenticator] = [ClientCertificateAuthenticator(trust_domain)]
        if self.options.jwt_rule is not None:
            self._jwt = JwtAuthenticator(self.options.jwt_rule, trust_domain=trust_domain)
            found.append(self._jwt)
        review = self.options.token_review
        if review is not None:
            self._token_review = TokenReviewAuthenticator(
                review.api_server_url,
                reviewer_token=review.reviewer_token,
                ca=review.ca_file or True,
                audiences=review.audiences,
                trust_domain=trust_domain,
            )
            found.append(self._token_review)
        return found

    @property
    def root_pem(self) -> str:
        """The root certificate clients must trust to reach this server and verify its certs."""
        return self.ca.root_pem

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("CitadelServer is not started")
        return self._port

    def stats(self) -> CitadelStats:
        """The service's counters."""
        return self.service.stats()

    def _metric_counts(self) -> CitadelCounts:
        stats = self.service.stats()
        return CitadelCounts(
            signed=stats.signed,
            failed=stats.failed,
            root_certificate=self.ca.root_certificate,
            signing_certificate=self.ca.signing_certificate,
            tls=self.tls_stats(),
        )

    def metrics_text(self) -> str:
        """The metrics as the ``/metrics`` endpoint serves them (Prometheus text format)."""
        return render_metrics(self.registry).decode("utf-8")

    @property
    def monitoring_port(self) -> int:
        """The bound monitoring HTTP port (after :meth:`start`, with ``monitoring_port`` set)."""
        if self._monitoring is None or self._monitoring.port is None:
            raise RuntimeError("CitadelServer has no monitoring port (started with one?)")
        return self._monitoring.port

    def tls_stats(self) -> TlsAcceptStats:
        """What the TLS handshake gate did with accepted connections (pending, completed,
        failed or timed out, evicted over the limit); see ``GrpcSettings``."""
        stats = tls_accept_stats(self._server) if self._server is not None else None
        return attrs.evolve(stats) if stats is not None else TlsAcceptStats()

    def rotate_root_if_needed(self, now: datetime.datetime | None = None) -> bool:
        """Re-issue a self-signed root inside its grace period (Istio's root cert rotator).

        The new root keeps the key, so certificates issued before keep verifying; it is
        written to ``ca_dir`` when there is one. A plugged-in CA is never rotated here.
        Returns whether the root changed.
        """
        if not self.ca.is_self_signed() or not self.ca.root_needs_rotation(now):
            return False
        rotated = self.ca.rotate_self_signed_root(now)
        if self.options.ca_dir is not None:
            rotated.write_directory(self.options.ca_dir)
        if self._pool is not None:
            # The old workers finish the requests they hold, then exit.
            self._pool.close()
            self._pool = SigningPool(rotated, self.options.signing_processes)
            self.service.signing_pool = self._pool
        self.ca = rotated
        self.service.ca = rotated
        log.info(
            "self-signed root rotated; new root valid until %s",
            rotated.root_certificate.not_valid_after_utc,
        )
        return True

    async def _watch_root(self) -> None:
        interval = self.options.ca_options.root_check_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            self.rotate_root_if_needed()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` over TLS with a serving certificate from this CA."""
        if self._server is not None:
            raise RuntimeError("CitadelServer is already started")
        # Codecs load on first use: pay that once here, not inside the first peer's call.
        load_codec(IstioCertificateRequest)
        load_codec(IstioCertificateResponse)
        key_pem, chain = self.ca.issue_serving_certificate(
            self.options.serving_dns_names, self.options.serving_ip_addresses
        )
        # The serving chain stops below the root: clients already hold it.
        context = server_ssl_context(key_pem, chain[:-1] or chain, self.ca.root_pem)
        if self._pool is not None:
            # Workers import and load the CA in parallel with the above; serve once they can sign.
            await self._pool.wait_ready()
        sock = bind_tcp(host, port)
        server = create_server([self.service], self.options.grpc_settings)
        await server.start(sock=sock, ssl=context)
        self._server = server
        self._port = bound_port(sock)
        self._root_watch = asyncio.create_task(self._watch_root(), name="citadel-root-rotation")
        if self.options.monitoring_port is not None:
            await self.start_monitoring(host, self.options.monitoring_port)
        log.info(
            "Citadel CA listening on %s:%d (trust domain %s)",
            host,
            self._port,
            self.ca.trust_domain,
        )

    async def start_monitoring(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve ``GET /metrics`` over HTTP on ``host:port`` (0: ephemeral); the bound port.

        :meth:`start` calls it when ``options.monitoring_port`` is set; :meth:`stop` closes it.
        """
        if self._monitoring is not None:
            raise RuntimeError("CitadelServer's monitoring port is already started")
        monitoring = MonitoringHttpServer({"/metrics": metrics_route(self.registry)})
        port = await monitoring.start(host, port)
        self._monitoring = monitoring
        return port

    async def stop(self) -> None:
        """Stop serving and release the signing pool and HTTP clients."""
        if self._root_watch is not None:
            self._root_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._root_watch
            self._root_watch = None
        if self._monitoring is not None:
            await self._monitoring.close()
            self._monitoring = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._token_review is not None:
            await self._token_review.aclose()
        if self._jwt is not None:
            await self._jwt.aclose()  # a JWKS fetch in flight must not outlive the server
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        if self._pool is not None:
            await self._pool.aclose()

    async def __aenter__(self) -> CitadelServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
