"""Authenticators the CA server tries, in order, to learn who is calling.

Each one looks for its own kind of credential in a :class:`CallerContext`. It returns ``None``
when that credential is absent (the next authenticator is tried), the caller's
:class:`Identity` when it verifies, and raises :class:`AuthenticationError` when it is present
but invalid. The identity that signs into a certificate always comes from here, never from the
CSR.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import httpx

from istio_sdk.citadel._identity import Identity
from istio_sdk.citadel.errors import AuthenticationError, CaConfigError, IdentityError
from istio_sdk.citadel.jwks import JwtVerifier
from istio_sdk.citadel.jwt import JwtRule, identity_from_claims
from istio_sdk.spiffe import DEFAULT_TRUST_DOMAIN, is_spiffe_uri

BEARER_PREFIX = "bearer "
UNVERIFIABLE_CREDENTIAL = "the credential could not be verified"

log = logging.getLogger("istio_sdk.citadel.authn")


@attrs.frozen
class CallerContext:
    """What the server knows about a caller: request metadata and its verified client cert."""

    metadata: Mapping[str, str] = attrs.field(factory=dict)
    peer_uri_sans: tuple[str, ...] = ()

    @property
    def bearer_token(self) -> str | None:
        """The token of an ``authorization: Bearer <token>`` header, if any."""
        value = self.metadata.get("authorization")
        if value is None or not value.lower().startswith(BEARER_PREFIX):
            return None
        token = value[len(BEARER_PREFIX) :].strip()
        return token or None


class Authenticator(Protocol):
    """One way of authenticating a caller."""

    @property
    def name(self) -> str:
        """Short name used in counters and error messages."""
        ...

    async def authenticate(self, caller: CallerContext) -> Identity | None:
        """The caller's identity, ``None`` if not applicable; raise if the credential is bad."""
        ...


class ClientCertificateAuthenticator:
    """Trusts the SPIFFE URI of a client certificate the TLS layer verified against our root."""

    name = "client-certificate"

    def __init__(self, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> None:
        self._trust_domain = trust_domain

    async def authenticate(self, caller: CallerContext) -> Identity | None:
        """Identity from the peer's single SPIFFE URI SAN."""
        uris = [u for u in caller.peer_uri_sans if is_spiffe_uri(u)]
        if not caller.peer_uri_sans:
            return None
        if len(uris) != 1:
            raise AuthenticationError(
                f"client certificate must carry exactly one SPIFFE URI, found {len(uris)}"
            )
        try:
            identity = Identity.from_spiffe_uri(uris[0])
        except IdentityError as exc:
            raise AuthenticationError(f"client certificate identity: {exc}") from exc
        if identity.trust_domain != self._trust_domain:
            raise AuthenticationError(
                f"client certificate is for trust domain {identity.trust_domain!r}, "
                f"not {self._trust_domain!r}"
            )
        return identity


class JwtAuthenticator:
    """Verifies a bearer JWT against a :class:`JwtRule`; JWKS URIs are fetched and cached."""

    name = "jwt"

    def __init__(
        self,
        rule: JwtRule,
        *,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        jwks_cache_seconds: float = 20 * 60,
        min_refresh_seconds: float = 10.0,
        verified_cache_seconds: float = 60.0,
        http_client: httpx.AsyncClient | None = None,
        clock: Any = time.time,
    ) -> None:
        self.rule = rule
        self._trust_domain = trust_domain
        self._clock = clock
        self._verifier = JwtVerifier(
            rule,
            http_client=http_client,
            cache_seconds=jwks_cache_seconds,
            min_refetch_seconds=min_refresh_seconds,
            clock=clock,
        )
        self._verified: dict[str, tuple[Identity, float]] = {}
        self._verified_seconds = verified_cache_seconds
        self._cache_size = 4096

    @property
    def jwks_fetches(self) -> int:
        """JWKS fetch attempts so far (0 for an inline JWKS)."""
        jwks = self._verifier.jwks
        return 0 if jwks is None else jwks.fetches

    async def aclose(self) -> None:
        """Cancel a JWKS fetch in flight."""
        await self._verifier.aclose()

    async def authenticate(self, caller: CallerContext) -> Identity | None:
        """Identity from the service-account claims of a valid token."""
        token = caller.bearer_token
        if token is None:
            return None
        now = self._clock()
        cached = self._verified.get(token)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._verified[token]
        identity, exp = await self._verify(token)
        # Remember the exact token (signature included) briefly: agents renew with the same
        # token, and re-verifying it each time is pure cost. Never past its expiry.
        if len(self._verified) >= self._cache_size:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (identity, min(exp, now + self._verified_seconds))
        return identity

    async def _verify(self, token: str) -> tuple[Identity, float]:
        claims = await self._verifier.verify(token)
        return identity_from_claims(claims, self._trust_domain), float(claims["exp"])


class TokenReviewAuthenticator:
    """Asks the Kubernetes API server (TokenReview) whether a bearer token is valid."""

    name = "kubernetes-token-review"
    path = "/apis/authentication.k8s.io/v1/tokenreviews"

    def __init__(
        self,
        api_server_url: str,
        *,
        reviewer_token: str | None = None,
        ca: str | ssl.SSLContext | bool = True,
        audiences: tuple[str, ...] = (),
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        """``ca`` verifies the API server: a PEM file path, an ``SSLContext``, ``True`` for the
        system CAs. ``reviewer_token`` authenticates this CA to the API server."""
        self._url = api_server_url.rstrip("/") + self.path
        self._reviewer_token = reviewer_token
        self._audiences = audiences
        self._trust_domain = trust_domain
        if isinstance(ca, str):
            try:
                ca = ssl.create_default_context(cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                raise CaConfigError(f"cannot load API server CA file {ca}: {exc}") from exc
        self._client = http_client or httpx.AsyncClient(verify=ca, timeout=timeout)
        self._owns_client = http_client is None

    async def aclose(self) -> None:
        """Close the HTTP client if this authenticator created it."""
        if self._owns_client:
            await self._client.aclose()

    async def authenticate(self, caller: CallerContext) -> Identity | None:
        """Identity from the reviewed token's ``system:serviceaccount:<ns>:<sa>`` user."""
        token = caller.bearer_token
        if token is None:
            return None
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = list(self._audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        headers = {"Accept": "application/json"}
        if self._reviewer_token:
            headers["Authorization"] = f"Bearer {self._reviewer_token}"
        try:
            async with self._client.stream(
                "POST", self._url, json=body, headers=headers
            ) as response:
                if response.status_code not in (200, 201):
                    raise AuthenticationError(f"TokenReview answered HTTP {response.status_code}")
                answer = bytearray()
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) > MAX_TOKEN_REVIEW_BYTES:
                        raise AuthenticationError(
                            f"TokenReview answer is larger than {MAX_TOKEN_REVIEW_BYTES} bytes"
                        )
        except httpx.HTTPError as exc:
            raise AuthenticationError(f"TokenReview request failed: {type(exc).__name__}") from exc
        # Off the event loop: the answer is up to a MiB of JSON from another server.
        document = await asyncio.to_thread(_parse_json, bytes(answer))
        return identity_from_token_review(document, self._audiences, self._trust_domain)


MAX_TOKEN_REVIEW_BYTES = 1024 * 1024
"""The largest TokenReview answer read; a real one is well under a KiB."""

_MAX_REASON_CHARS = 200


def _parse_json(data: bytes) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad syntax, bad UTF-8 and integers past Python's digit limit.
        raise AuthenticationError(f"TokenReview answer is not JSON ({type(exc).__name__})") from exc


def _peer_text(value: object) -> str:
    # A string from the API server, safe to put in a log line or a gRPC status.
    text = value if isinstance(value, str) else type(value).__name__
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    if len(text) > _MAX_REASON_CHARS:
        text = text[:_MAX_REASON_CHARS] + "..."
    return text


def identity_from_token_review(
    document: object, audiences: tuple[str, ...], trust_domain: str = DEFAULT_TRUST_DOMAIN
) -> Identity:
    """The service-account identity a TokenReview answer vouches for, or
    :class:`AuthenticationError` naming what is wrong (of any shape the answer has)."""
    if not isinstance(document, dict):
        raise AuthenticationError(
            f"TokenReview answer is a JSON {type(document).__name__}, not an object"
        )
    status = document.get("status")
    if not isinstance(status, dict):
        raise AuthenticationError("TokenReview answer has no status object")
    if status.get("authenticated") is not True:
        error = status.get("error")
        reason = _peer_text(error) if isinstance(error, str) and error else "unauthenticated"
        raise AuthenticationError(f"token rejected by TokenReview: {reason}")
    if audiences:
        granted = status.get("audiences")
        if not isinstance(granted, list):
            granted = []
        if not set(audiences).intersection(a for a in granted if isinstance(a, str)):
            raise AuthenticationError("TokenReview did not grant any required audience")
    user = status.get("user")
    username = user.get("username") if isinstance(user, dict) else None
    if not isinstance(username, str):
        raise AuthenticationError("TokenReview answer has no user name")
    try:
        return Identity.from_service_account_username(username, trust_domain)
    except IdentityError as exc:
        raise AuthenticationError(
            f"TokenReview user is not a service account: {_peer_text(str(exc))}"
        ) from exc


@attrs.frozen
class Authenticated:
    """Who the caller is and which authenticator vouched for it."""

    identity: Identity
    method: str


async def authenticate_caller(
    authenticators: tuple[Authenticator, ...], caller: CallerContext
) -> Authenticated:
    """Try ``authenticators`` in order; the first identity wins, else raise with every reason."""
    reasons: list[str] = []
    for authenticator in authenticators:
        try:
            identity = await authenticator.authenticate(caller)
        except AuthenticationError as exc:
            reasons.append(f"{authenticator.name}: {exc}")
            continue
        except Exception as exc:
            # A credential that breaks a verifier (deep nesting, huge numbers, odd types) is
            # a bad credential, not a server fault: refuse it without a traceback.
            log.warning(
                "authenticator %s failed on a credential: %s",
                authenticator.name,
                type(exc).__name__,
            )
            reasons.append(f"{authenticator.name}: {UNVERIFIABLE_CREDENTIAL}")
            continue
        if identity is not None:
            return Authenticated(identity, authenticator.name)
    if not reasons:
        raise AuthenticationError("no credential: send a client certificate or a bearer token")
    raise AuthenticationError("; ".join(reasons))
