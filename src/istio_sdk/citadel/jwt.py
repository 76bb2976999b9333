"""JSON Web Tokens for the CA's JWT authenticator: parsed strictly here, verified with joserfc.

The CA checks tokens against a :class:`JwtRule` in the shape of Istio's ``JWT_RULE``
(``security.istio.io`` ``JWTRule``: ``issuer``, ``jwks`` or ``jwksUri``, ``audiences``) and reads
the workload identity from Kubernetes' service-account claims.

Accepted algorithms are the asymmetric ones Envoy's ``jwt_authn`` filter accepts (RS256/384/512,
PS256/384/512, ES256/384/512, EdDSA over Ed25519). ``none`` and the HMAC algorithms are refused:
Istio's CA verifies with public keys only. A token is checked in this order, and every failure is
a :class:`JwtError` naming the check: size, shape and strict base64url of each segment; the
header as strict JSON (bounded nesting and number sizes, no NaN, Infinity or overflowing floats,
no duplicate names) with ``alg`` a string this verifier accepts and no ``crit`` extension, since
none is supported; a key whose type and curve fit ``alg``; the signature (joserfc); the payload
as strict JSON; then the claims (joserfc's :class:`~joserfc.jwt.JWTClaimsRegistry`: issuer,
audience, finite ``exp``/``nbf``/``iat``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jws
from joserfc import jwt as jose_jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
    UnsupportedAlgorithmError,
)
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from istio_sdk.citadel._identity import Identity
from istio_sdk.citadel.errors import IdentityError, JwtError
from istio_sdk.spiffe import DEFAULT_TRUST_DOMAIN

logger = logging.getLogger(__name__)

# Tolerated clock difference for exp / nbf / iat.
DEFAULT_LEEWAY_SECONDS = 30.0
# Bounds checked before any parsing: a Kubernetes token is about 1 KiB.
MAX_TOKEN_BYTES = 64 * 1024
MAX_HEADER_BYTES = 8 * 1024
MAX_JSON_DEPTH = 32
MAX_INTEGER_DIGITS = 64
# RSA keys under this size are dropped from a JWKS (NIST SP 800-131A).
MIN_RSA_KEY_BITS = 2048
# Above this, verification cost grows for no security gain (OpenSSL's own modulus limit).
MAX_RSA_KEY_BITS = 16384
MAX_JWKS_KEYS = 100

# alg -> (kty, curve) of the key it needs; curve None for RSA.
ACCEPTED_ALGORITHMS: Mapping[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}
_CURVES = {"EC": ("P-256", "P-384", "P-521"), "OKP": ("Ed25519",)}
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_JoseKey = RSAKey | ECKey | OKPKey


class UnknownKeyError(JwtError):
    """No key of the issuer fits the token's ``kid`` and ``alg`` (the JWKS may have rotated)."""


def _shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: peer-supplied values in messages stay short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; anything else raises :class:`JwtError`.

    Refused: characters outside ``A-Z a-z 0-9 - _`` (so ``+``, ``/``, ``=`` padding and
    whitespace), an impossible length, and non-zero unused trailing bits (two spellings of
    the same bytes).
    """
    if not isinstance(text, str) or not _SEGMENT.fullmatch(text) or len(text) % 4 == 1:
        raise JwtError("token segment is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the pattern rules it out
        raise JwtError("token segment is not base64url") from exc
    if b64url_encode(data) != text:
        raise JwtError("token segment is not canonical base64url")
    return data


def b64url_encode(data: bytes) -> str:
    """Encode as unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _refuse_constant(name: str) -> Any:
    raise JwtError(f"JSON holds {name}, which is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JwtError(f"JSON number {_shown(text)} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise JwtError(f"JSON integer has more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JwtError("JSON object repeats a member name")
    return result


def _strict_json_loads(data: bytes | str, what: str) -> Any:
    """Parse JSON the way a verifier must: UTF-8, nesting at most :data:`MAX_JSON_DEPTH`,
    finite numbers of bounded size, unique member names; else :class:`JwtError` naming ``what``."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise JwtError(f"{what} is not UTF-8") from exc
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise JwtError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_names,
        )
    except JwtError as exc:
        raise JwtError(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise JwtError(f"{what} is not JSON") from exc


@attrs.frozen
class JsonWebKey:
    """One verification key from a JWKS (public members only, checked on import)."""

    kid: str | None
    kty: str
    curve: str | None
    alg: str | None
    key: _JoseKey = attrs.field(repr=False)

    @property
    def public_key(self) -> Any:
        """The ``cryptography`` public key."""
        return self.key.public_key

    def fits(self, alg: str) -> bool:
        """Whether this key may verify a token signed with ``alg`` (type, curve, JWK ``alg``)."""
        need = ACCEPTED_ALGORITHMS.get(alg)
        return need == (self.kty, self.curve) and self.alg in (None, alg)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> JsonWebKey:
        """Build from a JWK dict; a key this verifier would not trust raises :class:`JwtError`.

        Refused: symmetric (``oct``) keys, curves other than P-256/P-384/P-521 and Ed25519,
        RSA keys under :data:`MIN_RSA_KEY_BITS` bits, a JWK ``alg`` that is not accepted or does
        not fit the key. Private members, if an issuer publishes them, are never read.
        """
        kty, kid, alg, crv = jwk.get("kty"), jwk.get("kid"), jwk.get("alg"), jwk.get("crv")
        for name, value in (("kid", kid), ("alg", alg), ("crv", crv)):
            if value is not None and not isinstance(value, str):
                raise JwtError(f"JWK {name!r} must be a string")
        if not isinstance(kty, str):
            raise JwtError("JWK 'kty' must be a string")
        if kty == "oct":
            raise JwtError("symmetric (oct) keys are not accepted")
        if kty not in _PUBLIC_MEMBERS:
            raise JwtError(f"unsupported kty {_shown(kty)}")
        if kty in _CURVES and crv not in _CURVES[kty]:
            raise JwtError(f"unsupported {kty} curve {_shown(crv)}")
        curve = crv if kty in _CURVES else None
        if alg is not None and ACCEPTED_ALGORITHMS.get(alg) != (kty, curve):
            raise JwtError(f"JWK 'alg' {_shown(alg)} is not accepted for a {kty} key")
        public: dict[str, str | list[str]] = {"kty": kty}
        for name in _PUBLIC_MEMBERS[kty]:
            value = jwk.get(name)
            if not isinstance(value, str):
                raise JwtError(f"{kty} key member {name!r} must be a string")
            public[name] = value
        try:
            with warnings.catch_warnings():
                # joserfc warns about small RSA keys; they are refused just below instead.
                warnings.simplefilter("ignore", SecurityWarning)
                key = JWKRegistry.import_key(public)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise JwtError(f"not a valid {kty} public key ({type(exc).__name__})") from None
        if isinstance(key, RSAKey):
            bits = key.public_key.key_size
            if bits < MIN_RSA_KEY_BITS:
                raise JwtError(
                    f"RSA key of {bits} bits is under the {MIN_RSA_KEY_BITS}-bit minimum"
                )
            if bits > MAX_RSA_KEY_BITS:
                raise JwtError(f"RSA key of {bits} bits is over the {MAX_RSA_KEY_BITS}-bit maximum")
        assert isinstance(key, RSAKey | ECKey | OKPKey)
        return cls(kid, kty, curve, alg, key)


def parse_jwks(jwks: str | bytes | Mapping[str, Any]) -> tuple[JsonWebKey, ...]:
    """Parse a JWKS document (JSON text or dict) into the keys this verifier trusts.

    A key it cannot use is dropped with a warning naming the key and the reason (an RSA key
    under 2048 bits, a symmetric key, an unknown curve, ...); the other keys stay usable. Keys
    marked for encryption (``"use": "enc"``) are skipped silently. A document that is not a
    JWKS raises :class:`JwtError`.
    """
    if isinstance(jwks, str | bytes):
        if len(jwks) > 1024 * 1024:
            raise JwtError("JWKS is larger than 1 MiB")
        doc = _strict_json_loads(jwks, "JWKS")
    else:
        doc = jwks
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(keys, list):
        raise JwtError("JWKS has no 'keys' list")
    parsed: list[JsonWebKey] = []
    for index, jwk in enumerate(keys):
        if not isinstance(jwk, Mapping) or jwk.get("use", "sig") != "sig":
            continue
        if len(parsed) == MAX_JWKS_KEYS:
            logger.warning("JWKS has more than %d keys; the rest are ignored", MAX_JWKS_KEYS)
            break
        try:
            parsed.append(JsonWebKey.from_jwk(jwk))
        except JwtError as exc:
            logger.warning("JWKS key #%d (kid %s) dropped: %s", index, _shown(jwk.get("kid")), exc)
    return tuple(parsed)


def _jose_key(key: PrivateKey | PublicKey) -> _JoseKey:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return RSAKey(key, key)
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return ECKey(key, key)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return OKPKey(key, key)
    raise TypeError(f"unsupported key type {type(key).__name__}")


def public_key_to_jwk(key: PublicKey, kid: str | None = None) -> dict[str, str]:
    """A JWK dict for ``key`` (handy for building JWKS documents in tests and docs)."""
    jwk = {name: str(value) for name, value in _jose_key(key).as_dict(private=False).items()}
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def default_algorithm(key: PrivateKey | PublicKey) -> str:
    """RS256 for RSA, ES256/ES384/ES512 by curve, EdDSA for Ed25519."""
    jose_key = _jose_key(key)
    if isinstance(jose_key, RSAKey):
        return "RS256"
    if isinstance(jose_key, OKPKey):
        return "EdDSA"
    return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[jose_key.curve_name]


class _Registry(jws.JWSRegistry):
    """joserfc's registry for exactly one algorithm, with this module's size bounds.

    Header checks other than joserfc's type checks of registered names are done before a
    registry is consulted; EdDSA is asked for by name here, so joserfc's RFC 9864 deprecation
    warning (it prefers the ``Ed25519`` name, Envoy sends ``EdDSA``) is not emitted per token.
    """

    max_header_length = MAX_TOKEN_BYTES
    max_payload_length = MAX_TOKEN_BYTES
    max_signature_length = MAX_TOKEN_BYTES

    def get_alg(self, name: str) -> JWSAlgModel:
        if not self.allowed or name not in self.allowed or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"algorithm {_shown(name)} is not accepted")
        return self.algorithms[name]


_REGISTRIES = {
    alg: _Registry(algorithms=[alg], strict_check_header=False) for alg in ACCEPTED_ALGORITHMS
}


def encode_jwt(
    claims: Mapping[str, Any],
    key: PrivateKey,
    *,
    kid: str | None = None,
    algorithm: str | None = None,
) -> str:
    """Sign ``claims`` into a compact JWT (``algorithm`` defaults to :func:`default_algorithm`)."""
    alg = algorithm or default_algorithm(key)
    if alg not in _REGISTRIES:
        raise JwtError(f"algorithm {_shown(alg)} is not accepted")
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    try:
        return jose_jwt.encode(header, dict(claims), _jose_key(key), registry=_REGISTRIES[alg])
    except JoseError as exc:
        raise JwtError(f"cannot sign with {alg}: {exc}") from None


@attrs.frozen
class UnverifiedJwt:
    """A compact JWT split, strictly decoded and its header checked; signature not yet checked.

    The payload is parsed as JSON only when :attr:`claims` is read, which :func:`verify_jwt` does
    after the signature verified: whatever an unauthenticated peer puts there costs a base64
    decode, not a JSON parse.
    """

    header: Mapping[str, Any]
    payload: bytes = attrs.field(repr=False)
    signing_input: bytes = attrs.field(repr=False)
    signature: bytes = attrs.field(repr=False)
    token: str = attrs.field(repr=False)

    @property
    def alg(self) -> str:
        """The header's ``alg`` (one of :data:`ACCEPTED_ALGORITHMS`)."""
        return str(self.header["alg"])

    @property
    def kid(self) -> str | None:
        """The header's ``kid``, if any."""
        kid = self.header.get("kid")
        return None if kid is None else str(kid)

    @property
    def claims(self) -> dict[str, Any]:
        """The payload parsed strictly; :class:`JwtError` if it is not a bounded JSON object."""
        claims = _strict_json_loads(self.payload, "token payload")
        if not isinstance(claims, dict):
            raise JwtError("token header and payload must be JSON objects")
        return claims

    @classmethod
    def parse(cls, token: str) -> UnverifiedJwt:
        """Split ``header.payload.signature``, decode each part and check the header."""
        if not isinstance(token, str):
            raise JwtError("token must be a string")
        if len(token) > MAX_TOKEN_BYTES:
            raise JwtError(f"token is longer than {MAX_TOKEN_BYTES} bytes")
        parts = token.split(".")
        if len(parts) != 3:
            raise JwtError("token is not a compact JWS (expected three '.'-separated parts)")
        if len(parts[0]) > MAX_HEADER_BYTES:
            raise JwtError(f"token header is longer than {MAX_HEADER_BYTES} bytes")
        header = _strict_json_loads(b64url_decode(parts[0]), "token header")
        if not isinstance(header, dict):
            raise JwtError("token header and payload must be JSON objects")
        _check_header(header)
        payload = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
        if not signature:
            raise JwtError("token has an empty signature")
        return cls(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature, token)


def _check_header(header: Mapping[str, Any]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise JwtError("token header 'alg' must be a string")
    if alg not in ACCEPTED_ALGORITHMS:
        raise JwtError(
            f"token algorithm {_shown(alg)} is not accepted (accepted: "
            f"{', '.join(ACCEPTED_ALGORITHMS)})"
        )
    if "crit" in header:
        # RFC 7515 4.1.11: extensions listed as critical must be understood; none is here.
        raise JwtError(f"token header marks extensions {_shown(header['crit'])} critical")
    if "b64" in header:
        raise JwtError("token header 'b64' (unencoded payload) is not accepted")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JwtError("token header 'kid' must be a string")


def _verify_signature(jwt: UnverifiedJwt, keys: Sequence[JsonWebKey]) -> None:
    alg, kid = jwt.alg, jwt.kid
    candidates = [k for k in keys if k.fits(alg) and (kid is None or k.kid is None or k.kid == kid)]
    if not candidates:
        raise UnknownKeyError(f"no key in the JWKS matches kid {_shown(kid)} and algorithm {alg}")
    registry = _REGISTRIES[alg]
    for jwk in candidates:
        try:
            jws.deserialize_compact(jwt.token, jwk.key, registry=registry)
        except BadSignatureError:
            continue
        except JoseError as exc:
            raise JwtError(f"token rejected: {exc.error}") from None
        return
    raise JwtError("token signature does not verify with any key of the issuer")


_CLAIM_NAMES = {"iss": "issuer", "aud": "audience", "exp": "expiry"}
_CLAIM_MESSAGES = {
    "exp": "token has expired",
    "nbf": "token is not valid yet (nbf)",
    "iat": "token was issued in the future (iat)",
}


def _check_claims(claims: Mapping[str, Any], rule: JwtRule, current: float, leeway: float) -> None:
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": rule.issuer},
        "exp": {"essential": True},
    }
    if rule.audiences:
        options["aud"] = {"essential": True, "values": list(rule.audiences)}
    registry = jose_jwt.JWTClaimsRegistry(now=int(current), leeway=int(leeway), **options)
    try:
        registry.validate(dict(claims))
    except MissingClaimError as exc:
        names = ", ".join(f"'{name}' ({_CLAIM_NAMES[name]})" for name in exc.claim.split(","))
        raise JwtError(f"token has no {names} claim") from None
    except ExpiredTokenError:
        raise JwtError("token has expired") from None
    except ClaimError as exc:
        claim = exc.claim
        value = claims.get(claim)
        if claim in _CLAIM_MESSAGES:
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise JwtError(f"claim {claim!r} must be a number (a finite NumericDate)") from None
            raise JwtError(_CLAIM_MESSAGES[claim]) from None
        if claim == "iss":
            raise JwtError(f"token issuer {_shown(value)} is not {rule.issuer!r}") from None
        if claim == "aud":
            raise JwtError(
                f"token audience {_shown(value)} is not one of {list(rule.audiences)}"
            ) from None
        raise JwtError(f"token claim {_shown(claim)} is invalid") from None


@attrs.frozen
class JwtRule:
    """Which tokens the CA trusts: Istio's ``JWT_RULE`` (issuer, JWKS or JWKS URI, audiences)."""

    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str | None = None
    jwks_uri: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.issuer:
            raise JwtError("JWT rule needs an issuer")
        if (self.jwks is None) == (self.jwks_uri is None):
            raise JwtError("JWT rule needs exactly one of 'jwks' and 'jwksUri'")

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> JwtRule:
        """Parse a rule like ``{"issuer": ..., "jwksUri": ..., "audiences": [...]}``.

        Both proto-JSON spellings (``jwksUri`` and ``jwks_uri``) are accepted; ``jwks`` may be
        the JWKS as a JSON string (as in Istio) or as an object.
        """
        try:
            doc = json.loads(text) if isinstance(text, str) else dict(text)
        except json.JSONDecodeError as exc:
            raise JwtError(f"JWT rule is not JSON: {exc.msg}") from exc
        if not isinstance(doc, dict):
            raise JwtError("JWT rule must be a JSON object")
        jwks = doc.get("jwks")
        if isinstance(jwks, Mapping):
            jwks = json.dumps(jwks)
        audiences = doc.get("audiences") or []
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise JwtError("JWT rule 'audiences' must be a list of strings")
        return cls(
            issuer=str(doc.get("issuer") or ""),
            audiences=tuple(audiences),
            jwks=jwks,
            jwks_uri=doc.get("jwksUri", doc.get("jwks_uri")),
        )


def verify_jwt(
    token: str | UnverifiedJwt,
    rule: JwtRule,
    keys: Sequence[JsonWebKey],
    *,
    now: float | None = None,
    leeway: float = DEFAULT_LEEWAY_SECONDS,
) -> Mapping[str, Any]:
    """Check shape, header, signature, issuer, audience and time claims; return the claims.

    Raises :class:`UnknownKeyError` when no key fits the token's ``kid`` and ``alg`` (worth a
    JWKS refetch), :class:`JwtError` for every other failure. ``token`` may be already parsed.
    """
    jwt = token if isinstance(token, UnverifiedJwt) else UnverifiedJwt.parse(token)
    _verify_signature(jwt, keys)
    claims = jwt.claims
    _check_claims(claims, rule, time.time() if now is None else now, leeway)
    return claims


def identity_from_claims(
    claims: Mapping[str, Any], trust_domain: str = DEFAULT_TRUST_DOMAIN
) -> Identity:
    """The workload identity in Kubernetes service-account token claims.

    Reads ``kubernetes.io: {namespace, serviceaccount: {name}}`` (projected tokens) or falls
    back to ``sub: system:serviceaccount:<ns>:<sa>``.
    """
    k8s = claims.get("kubernetes.io")
    try:
        if isinstance(k8s, Mapping):
            sa = k8s.get("serviceaccount")
            namespace = k8s.get("namespace")
            name = sa.get("name") if isinstance(sa, Mapping) else None
            if isinstance(namespace, str) and isinstance(name, str):
                return Identity(namespace, name, trust_domain)
        sub = claims.get("sub")
        if isinstance(sub, str):
            return Identity.from_service_account_username(sub, trust_domain)
    except IdentityError as exc:
        raise JwtError(f"token names an invalid service account: {exc}") from exc
    raise JwtError("token carries no Kubernetes service account claims")
