"""SDS: the agent hands the workload certificate and the root to proxies.

Serves ``envoy.service.secret.v3.SecretDiscoveryService`` with two resources, as Istio's agent
does: ``default`` (a ``tls_certificate`` with the chain and key) and ``ROOTCA`` (a
``validation_context`` with the root). The protocol (what a request means, stale nonces, ACK and
NACK, what a stream still needs) is the shared xDS core, :class:`istio_sdk.xds.ServerSession`;
this loop only decodes, hands requests and certificate rotations to the session, and encodes the
responses it plans. A stream that subscribed before the first certificate exists is answered as
soon as one does.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import hashlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import attrs
import grpclib.const
from grpclib.exceptions import GRPCError

from istio_sdk.api.envoy.config.core.v3 import DataSource
from istio_sdk.api.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    Secret,
    TlsCertificate,
)
from istio_sdk.api.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from istio_sdk.api.envoy.service.secret.v3 import SecretDiscoveryServiceBase
from istio_sdk.api.google.protobuf import Any as AnyMessage
from istio_sdk.citadel._client import CertificateBundle
from istio_sdk.timeutil import utcnow
from istio_sdk.xds._logsafe import WarningBudget, peer_text
from istio_sdk.xds.errors import XdsProtocolError
from istio_sdk.xds.server import RequestKind, ServerSession
from istio_sdk.xds.types import SECRET

__all__ = [
    "ROOT_SECRET_NAME",
    "SECRET_TYPE_URL",
    "WORKLOAD_SECRET_NAME",
    "SdsService",
    "SdsStats",
    "SecretCache",
    "build_secrets",
]

log = logging.getLogger("istio_sdk.citadel.sds")

SECRET_TYPE_URL = SECRET  # the one home of type URLs is istio_sdk.xds.types
WORKLOAD_SECRET_NAME = "default"
ROOT_SECRET_NAME = "ROOTCA"


def build_secrets(bundle: CertificateBundle) -> dict[str, Secret]:
    """The ``default`` and ``ROOTCA`` Envoy secrets for ``bundle``."""
    workload = Secret(
        name=WORKLOAD_SECRET_NAME,
        tls_certificate=TlsCertificate(
            certificate_chain=DataSource(
                inline_bytes="".join(bundle.cert_chain_pem).encode("ascii")
            ),
            private_key=DataSource(inline_bytes=bundle.private_key_pem),
        ),
    )
    root = Secret(
        name=ROOT_SECRET_NAME,
        validation_context=CertificateValidationContext(
            trusted_ca=DataSource(inline_bytes=bundle.root_cert_pem.encode("ascii"))
        ),
    )
    return {WORKLOAD_SECRET_NAME: workload, ROOT_SECRET_NAME: root}


@attrs.frozen
class _SecretResource:
    """One encoded secret, versioned by content (a handle for the protocol session)."""

    name: str
    data: bytes
    version: str

    @classmethod
    def of(cls, secret: Secret) -> _SecretResource:
        data = bytes(secret)
        return cls(secret.name, data, hashlib.blake2b(data, digest_size=8).hexdigest())


@attrs.frozen
class SdsStats:
    """SDS counters: open streams, responses pushed, ACKs and NACKs received."""

    streams: int
    pushes: int
    acks: int
    nacks: int


class SecretCache:
    """The agent's current certificate; watchers hear about every change.

    :meth:`current` never returns an expired bundle (the clock is injectable for tests).
    """

    def __init__(self, clock: Callable[[], datetime.datetime] = utcnow) -> None:
        self._clock = clock
        self._bundle: CertificateBundle | None = None
        self._version = 0
        self._watchers: set[asyncio.Queue[tuple[str, object]]] = set()

    @property
    def version(self) -> int:
        """Bumped on every :meth:`set` and :meth:`clear`."""
        return self._version

    def current(self) -> CertificateBundle | None:
        """The bundle, or ``None`` when there is none or it has expired."""
        bundle = self._bundle
        if bundle is None or bundle.is_expired(self._clock()):
            return None
        return bundle

    def set(self, bundle: CertificateBundle) -> None:
        """Install a new bundle and notify watchers."""
        self._bundle = bundle
        self._bump()

    def clear(self) -> None:
        """Drop the bundle (for example when it expired and renewal keeps failing)."""
        if self._bundle is not None:
            self._bundle = None
            self._bump()

    def _bump(self) -> None:
        self._version += 1
        for queue in self._watchers:
            queue.put_nowait(("update", self._version))

    def watch(self) -> asyncio.Queue[tuple[str, object]]:
        """A queue that receives ``("update", version)`` on every change."""
        queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[tuple[str, object]]) -> None:
        """Stop delivering changes to ``queue``."""
        self._watchers.discard(queue)


class SdsService(SecretDiscoveryServiceBase):  # type: ignore[misc]
    """State-of-the-world SDS over a :class:`SecretCache`."""

    def __init__(self, cache: SecretCache) -> None:
        self.cache = cache
        self._nonces = itertools.count(1)
        self._counts: collections.Counter[str] = collections.Counter()
        self._open_streams = 0

    def stats(self) -> SdsStats:
        """A snapshot of the counters."""
        return SdsStats(
            streams=self._open_streams,
            pushes=self._counts["pushes"],
            acks=self._counts["acks"],
            nacks=self._counts["nacks"],
        )

    def _response(self, names: Sequence[str] | None) -> DiscoveryResponse | None:
        bundle = self.cache.current()
        if bundle is None:
            return None
        secrets = build_secrets(bundle)
        wanted = list(secrets) if not names else [n for n in names if n in secrets]
        if not wanted:
            return None
        return DiscoveryResponse(
            version_info=str(self.cache.version),
            resources=[
                AnyMessage(type_url=SECRET_TYPE_URL, value=bytes(secrets[name])) for name in wanted
            ],
            type_url=SECRET_TYPE_URL,
            nonce=str(next(self._nonces)),
        )

    async def fetch_secrets(self, message: DiscoveryRequest) -> DiscoveryResponse:
        """One-shot fetch; ``UNAVAILABLE`` while there is no valid certificate."""
        response = self._response(list(message.resource_names))
        if response is None:
            raise GRPCError(grpclib.const.Status.UNAVAILABLE, "no valid workload certificate yet")
        return response

    async def stream_secrets(
        self, messages: AsyncIterator[DiscoveryRequest]
    ) -> AsyncIterator[DiscoveryResponse]:
        """The SotW loop: requests and cache updates arrive on one queue, in order."""
        queue = self.cache.watch()

        async def read_requests() -> None:
            try:
                async for request in messages:
                    queue.put_nowait(("request", request))
            finally:
                queue.put_nowait(("closed", None))

        reader = asyncio.create_task(read_requests())
        self._open_streams += 1
        session: ServerSession[_SecretResource] = ServerSession("sotw")
        warnings = WarningBudget(log)
        try:
            while True:
                kind, item = await queue.get()
                if kind == "closed":
                    return
                if kind == "request":
                    assert isinstance(item, DiscoveryRequest)
                    if not self._receive(session, item, warnings):
                        continue
                elif not session.is_subscribed(SECRET_TYPE_URL):
                    continue
                bundle = self.cache.current()
                if bundle is None:
                    continue  # the session remembers what is owed; answered once a cert exists
                secrets = {n: _SecretResource.of(s) for n, s in build_secrets(bundle).items()}
                for push in session.plan({SECRET_TYPE_URL: secrets}, self.cache.version):
                    self._counts["pushes"] += 1
                    yield DiscoveryResponse(
                        version_info=push.version_info,
                        resources=[
                            AnyMessage(type_url=SECRET_TYPE_URL, value=r.data) for r in push.items
                        ],
                        type_url=SECRET_TYPE_URL,
                        nonce=push.nonce,
                    )
        finally:
            self._open_streams -= 1
            self.cache.unwatch(queue)
            reader.cancel()

    def _receive(
        self,
        session: ServerSession[_SecretResource],
        request: DiscoveryRequest,
        warnings: WarningBudget,
    ) -> bool:
        """Hand ``request`` to the session; whether a response may now be due."""
        if request.type_url and request.type_url != SECRET_TYPE_URL:
            raise GRPCError(
                grpclib.const.Status.INVALID_ARGUMENT,
                f"SDS serves {SECRET_TYPE_URL}, not {peer_text(request.type_url)}",
            )
        request.type_url = SECRET_TYPE_URL
        if not request.resource_names:
            # Istio's agent answers a request naming nothing with every secret it has.
            request.resource_names = [WORKLOAD_SECRET_NAME, ROOT_SECRET_NAME]
        try:
            result = session.receive(request)
        except XdsProtocolError as exc:
            raise GRPCError(grpclib.const.Status.INVALID_ARGUMENT, str(exc)) from None
        if result.kind is RequestKind.ACK:
            self._counts["acks"] += 1
        elif result.kind is RequestKind.NACK:
            self._counts["nacks"] += 1
            warnings.warn(
                "SDS NACK",
                "SDS NACK for version %s: %s",
                peer_text(result.version),
                peer_text(result.error_message, 500),
            )
        return result.needs_push
