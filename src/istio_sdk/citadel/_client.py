"""``CitadelClient``: generate a key and CSR, call CreateCertificate, get a typed bundle."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

import attrs
import grpclib.const
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.exceptions import GRPCError, StreamTerminatedError

from istio_sdk._grpc import GrpcSettings, LimitedProtoCodec, create_channel
from istio_sdk.api.istio.v1.auth import IstioCertificateRequest, IstioCertificateServiceStub
from istio_sdk.citadel._identity import Identity
from istio_sdk.citadel._tls import client_ssl_context
from istio_sdk.citadel.errors import CaUnavailableError, CertificateRequestError
from istio_sdk.citadel.keys import (
    KeyAlgorithm,
    create_csr,
    generate_private_key,
    private_key_pem,
)
from istio_sdk.timeutil import utcnow

__all__ = ["CertificateBundle", "CitadelClient"]

# Istio's agent renews at half the lifetime (SECRET_GRACE_PERIOD_RATIO).
DEFAULT_RENEW_RATIO = 0.5


@attrs.frozen
class CertificateBundle:
    """A workload's key and certificates, as PEM.

    ``cert_chain_pem`` is the leaf followed by intermediates (what a TLS peer is sent);
    ``root_cert_pem`` is the trust anchor. The key is left out of ``repr``.
    """

    identity: Identity
    private_key_pem: bytes = attrs.field(repr=False)
    cert_chain_pem: tuple[str, ...]
    root_cert_pem: str
    not_before: datetime.datetime
    not_after: datetime.datetime

    @classmethod
    def from_response(cls, private_key_pem: bytes, cert_chain: Sequence[str]) -> CertificateBundle:
        """Build from a CreateCertificate answer ``[leaf, intermediates..., root]``.

        Checks that the leaf names one SPIFFE identity and holds the public key of
        ``private_key_pem``; raises :class:`CertificateRequestError` otherwise.
        """
        pems = [pem for entry in cert_chain for pem in _split_pem(entry)]
        if len(pems) < 2:
            raise CertificateRequestError(
                "INVALID_RESPONSE", f"cert_chain has {len(pems)} certificates, expected >= 2"
            )
        leaf = x509.load_pem_x509_certificate(pems[0].encode("ascii"))
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if leaf.public_key().public_bytes(
            serialization.Encoding.DER, spki
        ) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
            raise CertificateRequestError(
                "INVALID_RESPONSE", "the issued certificate does not hold our public key"
            )
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if len(uris) != 1:
            raise CertificateRequestError(
                "INVALID_RESPONSE", f"the issued certificate has {len(uris)} URI SANs, expected 1"
            )
        return cls(
            identity=Identity.from_spiffe_uri(uris[0]),
            private_key_pem=private_key_pem,
            cert_chain_pem=tuple(pems[:-1]),
            root_cert_pem=pems[-1],
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )

    @property
    def leaf_pem(self) -> str:
        """The workload certificate alone."""
        return self.cert_chain_pem[0]

    @property
    def lifetime(self) -> datetime.timedelta:
        """not_after - not_before."""
        return self.not_after - self.not_before

    def renew_at(self, ratio: float = DEFAULT_RENEW_RATIO) -> datetime.datetime:
        """When to renew: ``ratio`` of the way through the lifetime (Istio: half)."""
        return self.not_before + self.lifetime * ratio

    def is_expired(self, now: datetime.datetime | None = None) -> bool:
        """True once ``now`` is at or past ``not_after``."""
        return (now or utcnow()) >= self.not_after


def _split_pem(text: str) -> list[str]:
    marker = "-----END CERTIFICATE-----"
    parts = []
    for chunk in text.split(marker):
        if "-----BEGIN CERTIFICATE-----" in chunk:
            parts.append(chunk[chunk.index("-----BEGIN CERTIFICATE-----") :] + marker + "\n")
    return parts


class CitadelClient:
    """Asks a Citadel CA for workload certificates.

    Authenticate with a bearer ``token`` (JWT or Kubernetes service-account token), or over
    mutual TLS with a still-valid :class:`CertificateBundle` (renewal). ``root_cert_pem`` is the
    CA root the server's certificate must chain to; ``server_name`` overrides the name checked
    against the server certificate (default: ``host``).

    Instead of ``host``, ``port`` and ``root_cert_pem``, pass a ready grpclib ``channel`` (for
    example to a server in the same process, over a Unix socket): every call then goes over
    it, and :meth:`close` leaves it open (its creator owns it). Its own TLS settings decide
    which client certificate is sent, so ``mtls=`` only names the identity to ask for.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        root_cert_pem: str | None = None,
        server_name: str | None = None,
        key_algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256,
        timeout: float = 10.0,
        settings: GrpcSettings | None = None,
        channel: Channel | None = None,
    ) -> None:
        if channel is None and (host is None or port is None or root_cert_pem is None):
            raise TypeError("CitadelClient needs host, port and root_cert_pem, or a channel")
        self.host = host
        self.port = port
        self.key_algorithm = key_algorithm
        self.timeout = timeout
        self._root_pem = root_cert_pem or ""
        self._server_name = server_name
        self._settings = settings or GrpcSettings()
        self._injected = channel
        self._channel: Channel | None = None
        self._target = f"{host}:{port}" if channel is None else "the injected channel"

    def _make_channel(self, key_pem: bytes | None = None, chain: Sequence[str] = ()) -> Channel:
        context = client_ssl_context(self._root_pem, key_pem, chain)
        if self._server_name is None:
            return create_channel(
                self.host, self.port, ssl_context=context, settings=self._settings
            )
        # The project's channel settings plus a TLS name override, which create_channel lacks.
        config: Configuration = dataclasses.replace(
            self._settings.configuration(), ssl_target_name_override=self._server_name
        )
        return Channel(
            self.host,
            self.port,
            ssl=context,
            config=config,
            codec=LimitedProtoCodec(self._settings.max_message_bytes),
        )

    async def create_certificate(
        self,
        csr_pem: str | bytes,
        *,
        token: str | None = None,
        mtls: CertificateBundle | None = None,
        ttl_seconds: int = 0,
    ) -> list[str]:
        """The raw call: send a PEM CSR, get back ``[leaf, intermediates..., root]`` PEMs.

        Raises :class:`CertificateRequestError` (with the gRPC status name) when the CA
        refuses, :class:`CaUnavailableError` when it cannot be reached.
        """
        csr = csr_pem.decode("ascii") if isinstance(csr_pem, bytes) else csr_pem
        metadata = {"authorization": f"Bearer {token}"} if token else None
        if self._injected is not None:
            channel = self._injected
        elif mtls is not None:
            channel = self._make_channel(mtls.private_key_pem, mtls.cert_chain_pem)
        else:
            if self._channel is None:
                self._channel = self._make_channel()
            channel = self._channel
        stub = IstioCertificateServiceStub(channel)
        request = IstioCertificateRequest(csr=csr, validity_duration=ttl_seconds)
        try:
            response = await stub.create_certificate(
                request, timeout=self.timeout, metadata=metadata
            )
        except GRPCError as exc:
            status = exc.status.name if isinstance(exc.status, grpclib.const.Status) else "UNKNOWN"
            if exc.status is grpclib.const.Status.UNAVAILABLE:
                raise CaUnavailableError(f"CA at {self._target}: {exc.message}") from None
            raise CertificateRequestError(status, exc.message or "") from None
        except (TimeoutError, OSError, StreamTerminatedError) as exc:
            if mtls is None and self._channel is not None:
                self._channel.close()
                self._channel = None
            raise CaUnavailableError(
                f"CA at {self._target} unreachable: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            if mtls is not None and channel is not self._injected:
                channel.close()
        return list(response.cert_chain)

    async def request_certificate(
        self,
        *,
        token: str | None = None,
        mtls: CertificateBundle | None = None,
        ttl_seconds: int = 0,
        key_algorithm: KeyAlgorithm | None = None,
        requested_identity: Identity | None = None,
    ) -> CertificateBundle:
        """Generate a fresh key and CSR, have them signed, return the bundle.

        ``requested_identity`` only fills the CSR's SAN (as Istio's agent does); the CA decides
        the identity from the credential. With ``mtls`` and no identity, the current one is
        requested again.
        """
        key = generate_private_key(key_algorithm or self.key_algorithm)
        wanted = requested_identity or (mtls.identity if mtls is not None else None)
        csr = create_csr(key, wanted)
        chain = await self.create_certificate(csr, token=token, mtls=mtls, ttl_seconds=ttl_seconds)
        return CertificateBundle.from_response(private_key_pem(key), chain)

    async def close(self) -> None:
        """Close the shared channel."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    async def __aenter__(self) -> CitadelClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
