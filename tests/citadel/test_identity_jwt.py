"""SPIFFE identities and JWT verification (every failure path names what was wrong)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from istio_sdk.citadel import Identity, IdentityError, JwtError, JwtRule
from istio_sdk.citadel.jwt import (
    b64url_encode,
    identity_from_claims,
    parse_jwks,
    verify_jwt,
)


def test_identity_round_trip() -> None:
    identity = Identity("default", "sleep")
    assert identity.spiffe_uri == "spiffe://cluster.local/ns/default/sa/sleep"
    assert Identity.from_spiffe_uri(identity.spiffe_uri) == identity
    other = Identity.from_spiffe_uri("spiffe://example.org/ns/prod/sa/api-server")
    assert (other.trust_domain, other.namespace, other.service_account) == (
        "example.org",
        "prod",
        "api-server",
    )
    assert Identity.from_service_account_username("system:serviceaccount:a:b") == Identity("a", "b")


@pytest.mark.parametrize(
    "uri",
    [
        "https://cluster.local/ns/a/sa/b",
        "spiffe://cluster.local/ns/a",
        "spiffe://cluster.local/ns/a/sa/b/extra",
        "spiffe://cluster.local/sa/a/ns/b",
        "spiffe://cluster.local/ns/A/sa/b",
        "spiffe://cluster.local/ns//sa/b",
        "spiffe:///ns/a/sa/b",
        "spiffe://cluster.local/ns/a/sa/b?x=1",
    ],
)
def test_malformed_spiffe_uris_are_refused(uri: str) -> None:
    with pytest.raises(IdentityError):
        Identity.from_spiffe_uri(uri)


def test_bad_service_account_username() -> None:
    with pytest.raises(IdentityError, match="system:serviceaccount"):
        Identity.from_service_account_username("system:node:worker-1")


@pytest.fixture(params=["ec_issuer", "rsa_issuer"])
def issuer(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def _rule(issuer: Any) -> tuple[JwtRule, Any]:
    rule = JwtRule.from_json(json.dumps(issuer.rule()))
    return rule, parse_jwks(rule.jwks or "")


def test_valid_token_yields_service_account_identity(issuer: Any) -> None:
    rule, keys = _rule(issuer)
    claims = verify_jwt(issuer.token("prod", "reviews"), rule, keys)
    assert identity_from_claims(claims) == Identity("prod", "reviews")


def test_identity_falls_back_to_sub_claim(ec_issuer: Any) -> None:
    rule, keys = _rule(ec_issuer)
    claims = verify_jwt(ec_issuer.token("a", "b", **{"kubernetes.io": None}), rule, keys)
    assert identity_from_claims(claims) == Identity("a", "b")
    with pytest.raises(JwtError, match="service account"):
        identity_from_claims({"sub": "alice"})
    with pytest.raises(JwtError, match="no Kubernetes"):
        identity_from_claims({})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"exp": None}, "no 'exp'"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iat": int(time.time()) + 3600}, "future"),
        ({"iss": "https://evil.example.com"}, "issuer"),
        ({"aud": ["someone-else"]}, "audience"),
        ({"aud": None}, "audience"),
        ({"exp": "tomorrow"}, "must be a number"),
    ],
)
def test_claim_failures(ec_issuer: Any, overrides: dict[str, Any], message: str) -> None:
    rule, keys = _rule(ec_issuer)
    with pytest.raises(JwtError, match=message):
        verify_jwt(ec_issuer.token(**overrides), rule, keys)


def test_small_clock_skew_is_tolerated(ec_issuer: Any) -> None:
    rule, keys = _rule(ec_issuer)
    token = ec_issuer.token(exp=int(time.time()) - 5)
    assert verify_jwt(token, rule, keys)["sub"] == "system:serviceaccount:default:sleep"


def test_forged_signature_is_refused(ec_issuer: Any, rsa_issuer: Any) -> None:
    rule, keys = _rule(ec_issuer)
    # Same kid, other key: the signature cannot verify.
    forged = type(ec_issuer)(rsa_issuer.key, ec_issuer.kid).token()
    with pytest.raises(JwtError, match="no key in the JWKS"):
        verify_jwt(forged, rule, keys)
    from istio_sdk.citadel import KeyAlgorithm, generate_private_key

    impostor = type(ec_issuer)(generate_private_key(KeyAlgorithm.ECDSA_P256), ec_issuer.kid)
    with pytest.raises(JwtError, match="does not verify"):
        verify_jwt(impostor.token(), rule, keys)
    header, _payload, signature = ec_issuer.token().split(".")
    tampered_payload = b64url_encode(
        json.dumps(
            {"iss": ec_issuer.issuer, "sub": "system:serviceaccount:kube-system:admin"}
        ).encode()
    )
    with pytest.raises(JwtError, match="does not verify"):
        verify_jwt(f"{header}.{tampered_payload}.{signature}", rule, keys)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "three"),
        ("a.b", "three"),
        ("!!!.???.###", "base64url|JSON"),
        (b64url_encode(b"[]") + "." + b64url_encode(b"{}") + ".", "JSON objects"),
        (b64url_encode(b'{"alg":"none"}') + "." + b64url_encode(b"{}") + ".", "not accepted"),
        (b64url_encode(b'{"alg":"HS256"}') + "." + b64url_encode(b"{}") + ".", "not accepted"),
        ("x" * (64 * 1024 + 1), "longer"),
    ],
)
def test_malformed_tokens(ec_issuer: Any, token: str, message: str) -> None:
    rule, keys = _rule(ec_issuer)
    with pytest.raises(JwtError, match=message):
        verify_jwt(token, rule, keys)


def test_rule_parsing() -> None:
    rule = JwtRule.from_json(
        '{"issuer": "i", "jwksUri": "https://i/keys", "audiences": ["istio-ca"]}'
    )
    assert rule == JwtRule(issuer="i", audiences=("istio-ca",), jwks_uri="https://i/keys")
    assert JwtRule.from_json({"issuer": "i", "jwks_uri": "u"}).jwks_uri == "u"
    with pytest.raises(JwtError, match="issuer"):
        JwtRule.from_json('{"jwksUri": "u"}')
    with pytest.raises(JwtError, match="exactly one"):
        JwtRule.from_json('{"issuer": "i"}')
    with pytest.raises(JwtError, match="not JSON"):
        JwtRule.from_json("{")
    with pytest.raises(JwtError, match="audiences"):
        JwtRule.from_json('{"issuer": "i", "jwks": "{}", "audiences": "x"}')


def test_jwks_skips_unusable_keys() -> None:
    keys = parse_jwks(
        {
            "keys": [
                {"kty": "oct", "k": "c2VjcmV0"},
                {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
                {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},  # not on the curve
                {"kty": "RSA", "n": "AQAB", "e": "AQAB", "use": "enc"},
            ]
        }
    )
    assert keys == ()
    with pytest.raises(JwtError, match="keys"):
        parse_jwks("{}")
