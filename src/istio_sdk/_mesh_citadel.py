"""A CitadelClient that asks as one workload: the credential a :class:`~istio_sdk.Mesh` issues.

``Mesh.citadel_client(identity)`` returns one. Calls that bring no ``token`` and no ``mtls``
bundle authenticate over mutual TLS with a certificate for the identity, fetched once from
``credential`` (and again once it expired), as a workload that already holds a certificate
renews it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from istio_sdk.citadel import CertificateBundle, CitadelClient

__all__ = ["IdentityCitadelClient"]


class IdentityCitadelClient(CitadelClient):
    """:class:`~istio_sdk.citadel.CitadelClient` whose default credential is ``credential()``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        root_cert_pem: str,
        credential: Callable[[], Awaitable[CertificateBundle]],
    ) -> None:
        super().__init__(host, port, root_cert_pem=root_cert_pem)
        self._credential = credential
        self._bundle: CertificateBundle | None = None

    async def credential(self) -> CertificateBundle:
        """The bundle calls authenticate with by default (issued on first use)."""
        if self._bundle is None or self._bundle.is_expired():
            self._bundle = await self._credential()
        return self._bundle

    async def create_certificate(
        self,
        csr_pem: str | bytes,
        *,
        token: str | None = None,
        mtls: CertificateBundle | None = None,
        ttl_seconds: int = 0,
    ) -> list[str]:
        if token is None and mtls is None:
            mtls = await self.credential()
        return await super().create_certificate(
            csr_pem, token=token, mtls=mtls, ttl_seconds=ttl_seconds
        )
