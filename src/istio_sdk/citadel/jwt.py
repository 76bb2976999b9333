"""JSON Web Tokens, parsed and verified here with ``cryptography`` (RS256/384, ES256/384).

The CA's JWT authenticator checks tokens against a :class:`JwtRule` in the shape of Istio's
``JWT_RULE`` (``security.istio.io`` ``JWTRule``: ``issuer``, ``jwks`` or ``jwksUri``,
``audiences``) and reads the workload identity from Kubernetes' service-account claims.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from istio_sdk.citadel.errors import IdentityError, JwtError
from istio_sdk.citadel.identity import DEFAULT_TRUST_DOMAIN, Identity

# Tolerated clock difference for exp / nbf / iat.
DEFAULT_LEEWAY_SECONDS = 30.0
MAX_TOKEN_BYTES = 16 * 1024

_ALGORITHMS: dict[str, tuple[str, hashes.HashAlgorithm]] = {
    "RS256": ("RSA", hashes.SHA256()),
    "RS384": ("RSA", hashes.SHA384()),
    "ES256": ("EC", hashes.SHA256()),
    "ES384": ("EC", hashes.SHA384()),
}
_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
}


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; raises :class:`JwtError` on bad input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JwtError("token segment is not base64url") from exc


def b64url_encode(data: bytes) -> str:
    """Encode as unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@attrs.frozen
class JsonWebKey:
    """One verification key from a JWKS."""

    kid: str | None
    kty: str
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    coordinate_size: int = 0  # EC only: bytes per signature half

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> JsonWebKey:
        """Build from a JWK dict (``kty`` RSA with ``n``/``e`` or EC with ``crv``/``x``/``y``)."""
        kty = jwk.get("kty")
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise JwtError("JWK 'kid' must be a string")
        if kty == "RSA":
            n = int.from_bytes(b64url_decode(str(jwk.get("n", ""))), "big")
            e = int.from_bytes(b64url_decode(str(jwk.get("e", ""))), "big")
            try:
                key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = rsa.RSAPublicNumbers(
                    e, n
                ).public_key()
            except ValueError as exc:
                raise JwtError(f"JWK {kid!r} is not a valid RSA key") from exc
            return cls(kid, "RSA", key)
        if kty == "EC":
            crv = jwk.get("crv")
            if crv not in _CURVES:
                raise JwtError(f"JWK {kid!r} uses unsupported curve {crv!r}")
            curve, size = _CURVES[str(crv)]
            x = int.from_bytes(b64url_decode(str(jwk.get("x", ""))), "big")
            y = int.from_bytes(b64url_decode(str(jwk.get("y", ""))), "big")
            try:
                key = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
            except ValueError as exc:
                raise JwtError(f"JWK {kid!r} is not a point on {crv}") from exc
            return cls(kid, "EC", key, size)
        raise JwtError(f"JWK {kid!r} has unsupported kty {kty!r}")


def parse_jwks(jwks: str | Mapping[str, Any]) -> tuple[JsonWebKey, ...]:
    """Parse a JWKS document (JSON text or dict); unsupported keys are skipped."""
    try:
        doc = json.loads(jwks) if isinstance(jwks, str) else jwks
    except json.JSONDecodeError as exc:
        raise JwtError(f"JWKS is not JSON: {exc.msg}") from exc
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(keys, list):
        raise JwtError("JWKS has no 'keys' list")
    parsed = []
    for jwk in keys:
        if not isinstance(jwk, Mapping) or jwk.get("use", "sig") != "sig":
            continue
        try:
            parsed.append(JsonWebKey.from_jwk(jwk))
        except JwtError:
            continue
    return tuple(parsed)


def public_key_to_jwk(
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, kid: str | None = None
) -> dict[str, str]:
    """A JWK dict for ``key`` (handy for building JWKS documents in tests and docs)."""
    jwk: dict[str, str] = {}
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        jwk = {
            "kty": "RSA",
            "n": b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url_encode(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }
    else:
        numbers_ec = key.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[key.curve.name]
        size = _CURVES[crv][1]
        jwk = {
            "kty": "EC",
            "crv": crv,
            "x": b64url_encode(numbers_ec.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers_ec.y.to_bytes(size, "big")),
        }
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def encode_jwt(
    claims: Mapping[str, Any],
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    kid: str | None = None,
) -> str:
    """Sign ``claims`` into a compact JWT (RS256 for RSA keys, ES256/ES384 for EC keys)."""
    if isinstance(key, rsa.RSAPrivateKey):
        alg = "RS256"
    else:
        alg = "ES384" if key.curve.name == "secp384r1" else "ES256"
    header: dict[str, str] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = (
        b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    )
    digest = _ALGORITHMS[alg][1]
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), digest)
    else:
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), ec.ECDSA(digest)))
        size = _CURVES["P-384" if alg == "ES384" else "P-256"][1]
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return signing_input + "." + b64url_encode(signature)


@attrs.frozen
class UnverifiedJwt:
    """A compact JWT split and decoded, signature not yet checked."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    signing_input: bytes
    signature: bytes

    @classmethod
    def parse(cls, token: str) -> UnverifiedJwt:
        """Split ``header.payload.signature`` and decode the JSON parts."""
        if len(token) > MAX_TOKEN_BYTES:
            raise JwtError(f"token is longer than {MAX_TOKEN_BYTES} bytes")
        parts = token.split(".")
        if len(parts) != 3:
            raise JwtError("token is not a compact JWS (expected three '.'-separated parts)")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise JwtError("token header or payload is not JSON") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise JwtError("token header and payload must be JSON objects")
        return cls(
            header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2])
        )


def _verify_signature(jwt: UnverifiedJwt, keys: Sequence[JsonWebKey]) -> None:
    alg = jwt.header.get("alg")
    if alg not in _ALGORITHMS:
        raise JwtError(f"token algorithm {alg!r} is not accepted")
    kty, digest = _ALGORITHMS[str(alg)]
    kid = jwt.header.get("kid")
    candidates = [k for k in keys if k.kty == kty and (kid is None or k.kid in (None, kid))]
    if not candidates:
        raise JwtError(f"no key in the JWKS matches kid {kid!r} and algorithm {alg}")
    for jwk in candidates:
        try:
            if isinstance(jwk.public_key, rsa.RSAPublicKey):
                jwk.public_key.verify(jwt.signature, jwt.signing_input, padding.PKCS1v15(), digest)
            else:
                size = jwk.coordinate_size
                if len(jwt.signature) != 2 * size:
                    continue
                der = encode_dss_signature(
                    int.from_bytes(jwt.signature[:size], "big"),
                    int.from_bytes(jwt.signature[size:], "big"),
                )
                jwk.public_key.verify(der, jwt.signing_input, ec.ECDSA(digest))
        except InvalidSignature:
            continue
        return
    raise JwtError("token signature does not verify with any key of the issuer")


def _numeric_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JwtError(f"claim {name!r} must be a number")
    return float(value)


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
    token: str,
    rule: JwtRule,
    keys: Sequence[JsonWebKey],
    *,
    now: float | None = None,
    leeway: float = DEFAULT_LEEWAY_SECONDS,
) -> Mapping[str, Any]:
    """Check signature, issuer, audience and time claims; return the claims."""
    jwt = UnverifiedJwt.parse(token)
    _verify_signature(jwt, keys)
    claims = jwt.claims
    if claims.get("iss") != rule.issuer:
        raise JwtError(f"token issuer {claims.get('iss')!r} is not {rule.issuer!r}")
    if rule.audiences:
        aud = claims.get("aud")
        token_audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(rule.audiences).intersection(a for a in token_audiences if isinstance(a, str)):
            raise JwtError(f"token audience {aud!r} is not one of {list(rule.audiences)}")
    current = time.time() if now is None else now
    exp = _numeric_claim(claims, "exp")
    if exp is None:
        raise JwtError("token has no 'exp' claim")
    if current > exp + leeway:
        raise JwtError("token has expired")
    nbf = _numeric_claim(claims, "nbf")
    if nbf is not None and current < nbf - leeway:
        raise JwtError("token is not valid yet (nbf)")
    iat = _numeric_claim(claims, "iat")
    if iat is not None and current < iat - leeway:
        raise JwtError("token was issued in the future (iat)")
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
