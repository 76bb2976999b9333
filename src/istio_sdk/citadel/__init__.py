"""Citadel: the mesh's certificate authority, its gRPC server and client, and the node agent.

- :class:`CertificateAuthority` (pure, synchronous) signs workload certificates for
  :class:`Identity` values, from a self-signed root or a plugged-in CA directory.
- :class:`CitadelServer` serves ``IstioCertificateService/CreateCertificate`` over TLS and
  authenticates callers by client certificate, JWT or Kubernetes TokenReview.
- :class:`CitadelClient` generates keys and CSRs and returns a :class:`CertificateBundle`.
- :mod:`istio_sdk.citadel.agent` keeps a workload certificate fresh and serves it over SDS.
"""

from __future__ import annotations

from istio_sdk.citadel._authn import (
    Authenticator,
    CallerContext,
    ClientCertificateAuthenticator,
    JwtAuthenticator,
    TokenReviewAuthenticator,
)
from istio_sdk.citadel._client import CertificateBundle, CitadelClient
from istio_sdk.citadel._identity import Identity
from istio_sdk.citadel.agent import AgentOptions, CitadelAgent, NoCredentialError
from istio_sdk.citadel.ca import CaOptions, CertificateAuthority, IssuedCertificate, TtlPolicy
from istio_sdk.citadel.errors import (
    AuthenticationError,
    CaConfigError,
    CaUnavailableError,
    CertificateRequestError,
    CitadelError,
    CsrError,
    IdentityError,
    JwtError,
    TtlError,
)
from istio_sdk.citadel.jwt import JwtRule, UnknownKeyError
from istio_sdk.citadel.keys import KeyAlgorithm, create_csr, generate_private_key
from istio_sdk.citadel.server import (
    CitadelServer,
    CitadelServerOptions,
    CitadelService,
    CitadelStats,
    TokenReviewOptions,
)

__all__ = [
    "AgentOptions",
    "AuthenticationError",
    "Authenticator",
    "CaConfigError",
    "CaOptions",
    "CaUnavailableError",
    "CallerContext",
    "CertificateAuthority",
    "CertificateBundle",
    "CertificateRequestError",
    "CitadelAgent",
    "CitadelClient",
    "CitadelError",
    "CitadelServer",
    "CitadelServerOptions",
    "CitadelService",
    "CitadelStats",
    "ClientCertificateAuthenticator",
    "CsrError",
    "Identity",
    "IdentityError",
    "IssuedCertificate",
    "JwtAuthenticator",
    "JwtError",
    "JwtRule",
    "KeyAlgorithm",
    "NoCredentialError",
    "TokenReviewAuthenticator",
    "TokenReviewOptions",
    "TtlError",
    "TtlPolicy",
    "UnknownKeyError",
    "create_csr",
    "generate_private_key",
]
