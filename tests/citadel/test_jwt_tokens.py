"""JWT verification against hostile and unusual tokens: each refusal is a JwtError naming the check.

Tokens here are signed by a small signer written with ``cryptography`` alone, so a test can
build exactly the bytes it means (NaN literals, ``crit``, a wrong curve) whatever the verifier
under test would produce itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.api.istio.v1.auth import IstioCertificateRequest
from istio_sdk.citadel import (
    CallerContext,
    CertificateAuthority,
    CitadelService,
    Identity,
    JwtAuthenticator,
    JwtError,
    JwtRule,
)
from istio_sdk.citadel.jwt import parse_jwks, public_key_to_jwk, verify_jwt

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "istio-ca"
_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVE_BYTES = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_sign(alg: str, key: Any, signing_input: bytes) -> bytes:
    """The JWS signature of ``signing_input`` with ``key`` as ``alg`` names it (RFC 7518)."""
    if alg == "EdDSA":
        return bytes(key.sign(signing_input))
    digest = _HASHES[alg[2:]]()
    if alg.startswith("RS"):
        return bytes(key.sign(signing_input, padding.PKCS1v15(), digest))
    if alg.startswith("PS"):
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        return bytes(key.sign(signing_input, pss, digest))
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
    size = _CURVE_BYTES[key.curve.name]
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    doc: dict[str, Any] = {
        "iss": ISSUER,
        "aud": [AUDIENCE],
        "iat": now,
        "exp": now + 600,
        "sub": "system:serviceaccount:default:sleep",
    }
    doc.update(overrides)
    return doc


def make_token(
    key: Any,
    alg: str,
    payload: bytes | dict[str, Any] | None = None,
    *,
    kid: str | None = "k1",
    header: bytes | dict[str, Any] | None = None,
) -> str:
    if header is None:
        header = {"alg": alg, **({"kid": kid} if kid is not None else {})}
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    payload = claims() if payload is None else payload
    payload_bytes = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(header_bytes)}.{b64(payload_bytes)}".encode()
    return signing_input.decode() + "." + b64(raw_sign(alg, key, signing_input))


def rule_for(*keys: tuple[Any, str]) -> JwtRule:
    jwks = {"keys": [public_key_to_jwk(key.public_key(), kid) for key, kid in keys]}
    return JwtRule(issuer=ISSUER, audiences=(AUDIENCE,), jwks=json.dumps(jwks))


def verify(token: str, rule: JwtRule) -> Any:
    return verify_jwt(token, rule, parse_jwks(rule.jwks or ""))


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def p256_rule(p256: ec.EllipticCurvePrivateKey) -> JwtRule:
    return rule_for((p256, "k1"))


def test_a_valid_token_verifies(p256: Any, p256_rule: JwtRule) -> None:
    assert verify(make_token(p256, "ES256"), p256_rule)["sub"].endswith(":default:sleep")


# -- numeric dates must be finite numbers -------------------------------------------------------


@pytest.mark.parametrize(
    "date",
    ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 70],
)
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_non_finite_or_oversized_numeric_dates_are_refused(
    p256: Any, p256_rule: JwtRule, claim: str, date: str
) -> None:
    doc = claims()
    doc[claim] = "@"
    payload = json.dumps(doc).replace('"@"', date).encode()
    with pytest.raises(JwtError, match=r"token payload: .*(JSON number|out of range|digits)"):
        verify(make_token(p256, "ES256", payload), p256_rule)


def test_a_long_but_finite_expiry_is_a_valid_numeric_date(p256: Any, p256_rule: JwtRule) -> None:
    assert verify(make_token(p256, "ES256", claims(exp=10**30)), p256_rule)["exp"] == 10**30
    assert verify(make_token(p256, "ES256", claims(exp=time.time() + 60)), p256_rule)


# -- header --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["http://example.com/ext"], "http://example.com/ext": True},
        {"crit": ["exp"], "exp": 1},
        {"crit": ["kid"]},
        {"crit": []},
        {"crit": "x"},
        {"b64": False, "crit": ["b64"]},
    ],
)
def test_critical_header_extensions_are_refused(
    p256: Any, p256_rule: JwtRule, extra: dict[str, Any]
) -> None:
    token = make_token(p256, "ES256", header={"alg": "ES256", "kid": "k1", **extra})
    with pytest.raises(JwtError, match="critical"):
        verify(token, p256_rule)


def test_unknown_non_critical_header_members_are_ignored(p256: Any, p256_rule: JwtRule) -> None:
    token = make_token(p256, "ES256", header={"alg": "ES256", "kid": "k1", "x-vendor": [1]})
    assert verify(token, p256_rule)["iss"] == ISSUER


@pytest.mark.parametrize(
    ("signed_as", "curve"),
    [("ES384", ec.SECP256R1()), ("ES512", ec.SECP256R1()), ("ES256", ec.SECP384R1())],
)
def test_ecdsa_algorithm_must_match_the_key_curve(signed_as: str, curve: Any) -> None:
    key = ec.generate_private_key(curve)
    # The signature is computed with the hash the header names, over the key's own curve.
    token = make_token(key, signed_as)
    with pytest.raises(JwtError, match="no key in the JWKS matches"):
        verify(token, rule_for((key, "k1")))


def test_algorithm_must_match_the_key_type(p256: Any, rsa2048: Any) -> None:
    rule = rule_for((p256, "k1"), (rsa2048, "k2"))
    with pytest.raises(JwtError, match="no key in the JWKS matches"):
        verify(make_token(rsa2048, "RS256", kid="k1"), rule)
    with pytest.raises(JwtError, match="no key in the JWKS matches"):
        verify(make_token(p256, "ES256", kid="k2"), rule)


def test_jwk_alg_member_binds_the_key_to_one_algorithm(rsa2048: Any) -> None:
    jwk = {**public_key_to_jwk(rsa2048.public_key(), "k1"), "alg": "PS256"}
    rule = JwtRule(issuer=ISSUER, audiences=(AUDIENCE,), jwks=json.dumps({"keys": [jwk]}))
    assert verify(make_token(rsa2048, "PS256"), rule)
    with pytest.raises(JwtError, match="no key in the JWKS matches"):
        verify(make_token(rsa2048, "RS256"), rule)


def _non_canonical(segment: str) -> str:
    """The same bytes spelled with non-zero unused trailing bits."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[index | 1]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda s: s + "=",
        lambda s: s + "==",
        lambda s: s[:10] + "!" + s[10:],
        lambda s: s[:10] + "*" + s[10:],
        lambda s: s + " ",
        lambda s: s[:10] + "\n" + s[10:],
        lambda s: s.replace("-", "+").replace("_", "/") if ("-" in s or "_" in s) else "+" + s,
        lambda s: base64.b64encode(base64.urlsafe_b64decode(s + "==")).decode(),
        _non_canonical,
    ],
    ids=["pad1", "pad2", "bang", "star", "space", "newline", "plus-slash", "std-b64", "bits"],
)
def test_signature_segment_must_be_strict_base64url(
    p256: Any, p256_rule: JwtRule, spoil: Any
) -> None:
    header, payload, signature = make_token(p256, "ES256").split(".")
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64  # 86 chars, 4 unused bits
    spoiled = spoil(signature)
    assert spoiled != signature
    with pytest.raises(JwtError, match="base64url"):
        verify(f"{header}.{payload}.{spoiled}", p256_rule)


# -- algorithms ---------------------------------------------------------------------------------

_KEYS: dict[str, Any] = {}


def _key_for(alg: str) -> Any:
    if alg not in _KEYS:
        if alg.startswith(("RS", "PS")):
            _KEYS[alg] = _KEYS.setdefault("rsa", rsa.generate_private_key(65537, 2048))
        elif alg == "EdDSA":
            _KEYS[alg] = ed25519.Ed25519PrivateKey.generate()
        else:
            curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
            _KEYS[alg] = ec.generate_private_key(curve[alg])
    return _KEYS[alg]


ENVOY_ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]


@pytest.mark.parametrize("alg", ENVOY_ALGORITHMS)
def test_every_asymmetric_algorithm_envoy_accepts_verifies(alg: str) -> None:
    key = _key_for(alg)
    rule = rule_for((key, "k1"))
    assert verify(make_token(key, alg), rule)["iss"] == ISSUER
    with pytest.raises(JwtError, match="does not verify"):
        other = make_token(key, alg, claims(sub="system:serviceaccount:kube-system:admin"))
        header, payload, _ = other.split(".")
        verify(f"{header}.{payload}.{make_token(key, alg).split('.')[2]}", rule)


@pytest.mark.parametrize("alg", ["none", "HS256", "HS384", "HS512", "ES256K", "RSA1_5", "Ed448"])
def test_none_hmac_and_other_algorithms_are_refused(alg: str) -> None:
    oct_key = {"kty": "oct", "kid": "k1", "k": b64(b"a shared secret of 32 bytes!!!!!")}
    rule = JwtRule(issuer=ISSUER, jwks=json.dumps({"keys": [oct_key]}))
    header = b64(json.dumps({"alg": alg, "kid": "k1"}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}.{b64(b'x' * 32)}"
    with pytest.raises(JwtError, match="not accepted"):
        verify(token, rule)


def test_symmetric_keys_in_a_jwks_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    secret = b64(b"a shared secret of 32 bytes!!!!!")
    assert parse_jwks({"keys": [{"kty": "oct", "kid": "hs", "k": secret}]}) == ()
    assert "symmetric" in caplog.text
    assert secret not in caplog.text


# -- key size -----------------------------------------------------------------------------------


def test_rsa_keys_under_2048_bits_are_dropped_with_a_warning(
    rsa2048: Any, caplog: pytest.LogCaptureFixture
) -> None:
    weak = rsa.generate_private_key(65537, 1024)
    rule = rule_for((weak, "weak"), (rsa2048, "strong"))
    caplog.set_level(logging.WARNING)
    keys = parse_jwks(rule.jwks or "")
    assert [k.kid for k in keys] == ["strong"]
    assert "'weak'" in caplog.text
    assert "1024 bits" in caplog.text
    assert public_key_to_jwk(weak.public_key())["n"][:20] not in caplog.text
    with pytest.raises(JwtError, match="no key in the JWKS matches kid 'weak'"):
        verify_jwt(make_token(weak, "RS256", kid="weak"), rule, keys)
    assert verify_jwt(make_token(rsa2048, "RS256", kid="strong"), rule, keys)


# -- shapes that used to escape as RecursionError / ValueError / TypeError ----------------------

DEEP = 5000


@pytest.mark.parametrize(
    ("header", "payload", "message"),
    [
        (b'{"alg": ["ES256"], "kid": "k1"}', None, "'alg' must be a string"),
        (b'{"alg": {"ES256": 1}}', None, "'alg' must be a string"),
        (b'{"alg": "ES256", "kid": 7}', None, "'kid' must be a string"),
        (b'{"alg": "ES256", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}", None, "deeper"),
        (b'{"alg": "ES256", "x": ' + b"[" * DEEP + b"]" * DEEP + b"}", None, "header is longer"),
        (None, b'{"iss": 1, "x": ' + b"[" * DEEP + b"]" * DEEP + b"}", "deeper"),
        (None, b'{"x": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}", "deeper"),
        (None, b'{"exp": ' + b"9" * DEEP + b"}", "digits"),
        (None, b'{"x": -' + b"9" * DEEP + b"}", "digits"),
        (None, b'{"x": 1.' + b"9" * DEEP + b"e999}", "out of range"),
        (b'{"alg": "ES256", "alg": "none"}', None, "repeats"),
        (None, b'{"sub": "a", "sub": "b"}', "repeats"),
        (None, b"\xff\xfe{}", "UTF-8"),
        (None, b"[1, 2", "not JSON"),
        (None, b'"just a string"', "JSON objects"),
    ],
)
def test_hostile_json_gives_a_jwt_error(
    p256: Any, p256_rule: JwtRule, header: bytes | None, payload: bytes | None, message: str
) -> None:
    token = make_token(p256, "ES256", payload, header=header)
    assert len(token) < 64 * 1024
    with pytest.raises(JwtError, match=message):
        verify(token, p256_rule)


def test_a_payload_is_parsed_only_once_its_signature_verified(p256_rule: JwtRule) -> None:
    impostor = ec.generate_private_key(ec.SECP256R1())
    hostile = b'{"x": ' + b"[" * DEEP + b"]" * DEEP + b', "exp": NaN, "n": ' + b"9" * DEEP + b"}"
    with pytest.raises(JwtError, match="does not verify"):
        verify(make_token(impostor, "ES256", hostile), p256_rule)


def test_nesting_under_the_bound_is_fine(p256: Any, p256_rule: JwtRule) -> None:
    payload = json.dumps(claims(x=[[[[{"a": [1, "]]]]"]}]]]])).encode()
    assert verify(make_token(p256, "ES256", payload), p256_rule)["x"][0][0][0][0]["a"][1] == "]]]]"


async def test_hostile_tokens_are_unauthenticated_at_the_service(
    ca: CertificateAuthority, p256: Any, p256_rule: JwtRule
) -> None:
    service = CitadelService(ca, [JwtAuthenticator(p256_rule)])
    tokens = [
        make_token(p256, "ES256", header=b'{"alg": ["ES256"]}'),
        make_token(p256, "ES256", b'{"x": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
        make_token(p256, "ES256", b'{"exp": ' + b"7" * DEEP + b"}"),
        make_token(
            p256, "ES256", json.dumps(claims()).replace('"exp": ', '"exp": NaN, "e":').encode()
        ),
        "x" * (70 * 1024),
    ]
    for token in tokens:
        caller = CallerContext(metadata={"authorization": f"Bearer {token}"})
        with pytest.raises(GRPCError) as raised:
            await service.create_certificate_for(IstioCertificateRequest(csr="x"), caller)
        assert raised.value.status is Status.UNAUTHENTICATED
    assert service.stats().failed == {"unauthenticated": len(tokens)}
    good = make_token(p256, "ES256", claims(**{"kubernetes.io": None}))
    caller = CallerContext(metadata={"authorization": f"Bearer {good}"})
    authenticated = await JwtAuthenticator(p256_rule).authenticate(caller)
    assert authenticated == Identity("default", "sleep")


def test_failures_never_log_the_token(
    p256: Any, p256_rule: JwtRule, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = make_token(p256, "ES256", claims(aud=["elsewhere"]))
    service_like = JwtAuthenticator(p256_rule)
    caller = CallerContext(metadata={"authorization": f"Bearer {token}"})
    with pytest.raises(JwtError, match="audience") as raised:
        asyncio.run(service_like.authenticate(caller))
    for segment in token.split("."):
        assert segment not in caplog.text
        assert segment not in str(raised.value)


# -- properties ---------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from([*ENVOY_ALGORITHMS, "none", "HS256", ISSUER, AUDIENCE, "k1", "crit"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["alg", "kid", "crit", "typ", "b64", "iss", "aud", "exp", "nbf", "iat"])
            | st.text(max_size=5),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@given(header=_json, payload=_json, sign=st.booleans())
def test_random_json_headers_and_payloads_give_only_jwt_errors(
    p256: Any, p256_rule: JwtRule, header: Any, payload: Any, sign: bool
) -> None:
    header_bytes = json.dumps(header).encode()
    payload_bytes = json.dumps(payload).encode()
    if sign:
        token = make_token(p256, "ES256", payload_bytes, header=header_bytes)
    else:
        token = f"{b64(header_bytes)}.{b64(payload_bytes)}.{b64(b'0' * 64)}"
    try:
        verify(token, p256_rule)
    except JwtError:
        return


@given(
    data=st.binary(max_size=300),
    parts=st.lists(st.binary(max_size=80), min_size=1, max_size=4),
)
def test_random_bytes_give_only_jwt_errors(
    p256_rule: JwtRule, data: bytes, parts: list[bytes]
) -> None:
    for token in (data.decode("latin-1"), ".".join(b64(part) for part in parts)):
        with pytest.raises(JwtError):
            verify(token, p256_rule)


_jwk_members = st.fixed_dictionaries(
    {"kty": st.sampled_from(["RSA", "EC", "OKP", "oct", "x"]) | _json},
    optional={
        name: st.sampled_from(["P-256", "P-521", "Ed25519", "Ed448", "AQAB", "AA", ""]) | _json
        for name in ("crv", "x", "y", "n", "e", "k", "kid", "alg", "use", "d")
    },
)


@given(doc=_json | st.fixed_dictionaries({"keys": st.lists(_jwk_members | _json, max_size=4)}))
def test_random_jwks_documents_give_keys_or_a_jwt_error(doc: Any) -> None:
    try:
        keys = parse_jwks(json.dumps(doc))
    except JwtError:
        return
    assert all(k.kty in ("RSA", "EC", "OKP") for k in keys)
