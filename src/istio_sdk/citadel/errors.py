"""Typed errors raised by the Citadel CA, its server, client and agent.

Every error names what was wrong (the field, the file, the claim) so a caller can act on it.
None of them ever carries a private key or a bearer token.
"""

from __future__ import annotations

from istio_sdk.spiffe import SpiffeError


class CitadelError(Exception):
    """Base class of every Citadel error."""


class IdentityError(CitadelError, SpiffeError):
    """A SPIFFE identity (or one of its parts) is malformed (a ``ValueError``)."""


class CsrError(CitadelError, ValueError):
    """A certificate signing request is malformed, badly signed or uses an unsupported key."""


class TtlError(CitadelError, ValueError):
    """A requested certificate lifetime is outside the CA's policy."""


class CaConfigError(CitadelError):
    """The CA's files or options are inconsistent (missing file, key not matching cert, ...)."""


class AuthenticationError(CitadelError):
    """A caller's credential is missing or invalid; the message says which check failed."""


class JwtError(AuthenticationError):
    """A JSON Web Token failed parsing or verification."""


class CertificateRequestError(CitadelError):
    """The CA server refused a CreateCertificate call (carries the gRPC status name)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class CaUnavailableError(CitadelError):
    """The CA could not be reached (connection refused, TLS failure, timeout)."""
