"""Property: no CSR, TTL or metadata gets a certificate for anyone but the authenticated caller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import event, given
from hypothesis import strategies as st

from istio_sdk.api.google.protobuf import Struct
from istio_sdk.api.istio.v1.auth import IstioCertificateRequest
from istio_sdk.citadel import (
    CallerContext,
    CertificateAuthority,
    CitadelService,
    ClientCertificateAuthenticator,
    Identity,
    JwtAuthenticator,
    JwtRule,
    KeyAlgorithm,
    generate_private_key,
)
from istio_sdk.citadel.keys import signature_hash

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
identities = st.builds(Identity, namespace=_label, service_account=_label)
_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
_uris = st.one_of(
    identities.map(lambda i: i.spiffe_uri),
    st.builds(
        lambda td, i: f"spiffe://{td}/ns/{i.namespace}/sa/{i.service_account}", _label, identities
    ),
    _text.map(lambda t: "spiffe://" + t),
    st.just("spiffe://cluster.local/ns/istio-system/sa/istiod"),
)
_dns = st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,10}){0,3}", fullmatch=True)
_metadata_values = st.one_of(_text, identities.map(lambda i: i.spiffe_uri))

# Key generation is the slow part: draw keys from a small pool made once.
KEYS = [generate_private_key(KeyAlgorithm.ECDSA_P256) for _ in range(3)] + [
    generate_private_key(KeyAlgorithm.RSA_2048)
]


@st.composite
def csrs(draw: st.DrawFn) -> str:
    """A CSR with any subject and SANs, sometimes carrying another key's signature."""
    key_index = draw(st.integers(0, len(KEYS) - 1))
    signer_index = draw(st.integers(0, len(KEYS) - 1))
    key = KEYS[key_index]
    attributes = []
    cn = draw(st.one_of(st.just(""), _dns, identities.map(lambda i: i.spiffe_uri)))
    if cn:
        attributes.append(x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn))
    org = draw(st.one_of(st.just(""), _label))
    if org:
        attributes.append(x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, org))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(u) for u in draw(st.lists(_uris, max_size=3))
    ]
    sans += [x509.DNSName(d) for d in draw(st.lists(_dns, max_size=3))]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, signature_hash(key))
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    if signer_index != key_index:
        # Graft another key's signature on: the CSR no longer verifies.
        other = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
        other_csr = other.sign(KEYS[signer_index], signature_hash(KEYS[signer_index]))
        der = bytearray(csr.public_bytes(serialization.Encoding.DER))
        if len(other_csr.signature) == len(csr.signature):
            start = der.index(csr.signature)
            der[start : start + len(csr.signature)] = other_csr.signature
            pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
            return pem.decode()
    return pem


ttls = st.one_of(st.integers(-(2**40), 2**40), st.integers(0, 200 * 86400), st.just(0))
metadata = st.dictionaries(
    st.sampled_from(["ImpersonatedIdentity", "ClusterID", "identity", "x"]),
    _metadata_values,
    max_size=3,
)
headers = st.dictionaries(
    st.sampled_from(["x-identity", "impersonate", "spiffe", "x-forwarded-client-cert"]),
    _metadata_values,
    max_size=3,
)


@pytest.fixture(scope="module")
def service(ca: CertificateAuthority, ec_issuer: Any) -> CitadelService:
    rule = JwtRule.from_json(ec_issuer.rule())
    return CitadelService(ca, [ClientCertificateAuthenticator(), JwtAuthenticator(rule)])


@given(
    caller=identities,
    by_certificate=st.booleans(),
    csr=csrs(),
    ttl=ttls,
    request_metadata=metadata,
    call_headers=headers,
)
def test_certificate_only_ever_names_the_authenticated_caller(  # noqa: PLR0917
    service: CitadelService,
    ec_issuer: Any,
    caller: Identity,
    by_certificate: bool,
    csr: str,
    ttl: int,
    request_metadata: dict[str, str],
    call_headers: dict[str, str],
) -> None:
    if by_certificate:
        context = CallerContext(metadata=call_headers, peer_uri_sans=(caller.spiffe_uri,))
    else:
        token = ec_issuer.token(caller.namespace, caller.service_account)
        context = CallerContext(metadata={**call_headers, "authorization": f"Bearer {token}"})
    request = IstioCertificateRequest(
        csr=csr, validity_duration=ttl, metadata=Struct.from_dict(request_metadata)
    )
    try:
        response = asyncio.run(service.create_certificate_for(request, context))
    except GRPCError as exc:
        # An authenticated caller is only ever refused for its request, never let in as another.
        assert exc.status is Status.INVALID_ARGUMENT
        event("refused: invalid argument")
        return
    event("signed")
    leaf = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(name.value) for name in san] == [caller.spiffe_uri]
    assert len(leaf.subject) == 0
    assert 0 <= ttl <= 90 * 86400


_b64ish = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/."),
    max_size=200,
)


@given(token=st.one_of(_b64ish, st.text(max_size=200)))
def test_any_token_string_is_refused_with_a_jwt_error(ec_issuer: Any, token: str) -> None:
    from istio_sdk.citadel import JwtError
    from istio_sdk.citadel.jwt import parse_jwks, verify_jwt

    rule = JwtRule.from_json(ec_issuer.rule())
    with pytest.raises(JwtError):
        verify_jwt(token, rule, parse_jwks(rule.jwks or ""))


@given(data=st.one_of(st.binary(max_size=600), _b64ish.map(str.encode)))
def test_any_csr_bytes_are_refused_with_a_csr_error(ca: CertificateAuthority, data: bytes) -> None:
    from istio_sdk.citadel import CsrError

    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + data + b"\n-----END CERTIFICATE REQUEST-----\n"
    for candidate in (data, pem):
        with pytest.raises(CsrError):
            ca.sign_csr(candidate, Identity("a", "b"))
