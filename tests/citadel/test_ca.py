"""The CA core: certificate contents, chains that openssl verifies, TTL policy, CA files."""

from __future__ import annotations

import datetime
import pathlib
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from istio_sdk.citadel import (
    CaConfigError,
    CaOptions,
    CertificateAuthority,
    CsrError,
    Identity,
    KeyAlgorithm,
    TtlError,
    TtlPolicy,
    create_csr,
    generate_private_key,
)
from istio_sdk.citadel.ca import MAX_CSR_BYTES

SLEEP = Identity("default", "sleep")


def _leaf(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _openssl_verify(
    tmp_path: pathlib.Path, chain: tuple[str, ...]
) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    (tmp_path / "root.pem").write_text(chain[-1])
    (tmp_path / "untrusted.pem").write_text("".join(chain[1:-1]) or chain[-1])
    (tmp_path / "leaf.pem").write_text(chain[0])
    return subprocess.run(
        [
            "openssl", "verify", "-CAfile", str(tmp_path / "root.pem"),
            "-untrusted", str(tmp_path / "untrusted.pem"), str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "algorithm", [KeyAlgorithm.ECDSA_P256, KeyAlgorithm.ECDSA_P384, KeyAlgorithm.RSA_2048]
)
def test_workload_certificate_follows_istio_template(
    ca: CertificateAuthority, algorithm: KeyAlgorithm
) -> None:
    key = generate_private_key(algorithm)
    issued = ca.sign_csr(create_csr(key, SLEEP), SLEEP)
    cert = _leaf(issued.certificate_pem)

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/default/sa/sleep"
    ]
    assert san.critical  # the subject is empty
    assert len(cert.subject) == 0
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(hours=24)
    assert cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert issued.chain_pem == (issued.certificate_pem, ca.root_pem)
    assert issued.identity == SLEEP


@pytest.mark.parametrize("which", ["ca", "rsa_ca"])
def test_openssl_verifies_issued_chain(
    which: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> None:
    authority: CertificateAuthority = request.getfixturevalue(which)
    issued = authority.sign_csr(create_csr(generate_private_key(), SLEEP), SLEEP)
    result = _openssl_verify(tmp_path, issued.chain_pem)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_identity_comes_from_the_caller_not_the_csr(ca: CertificateAuthority) -> None:
    key = generate_private_key()
    csr = create_csr(
        key,
        Identity("istio-system", "istiod"),
        extra_uris=["spiffe://cluster.local/ns/kube-system/sa/admin"],
        dns_names=["evil.example.com"],
        organization="Evil Corp",
    )
    cert = _leaf(ca.sign_csr(csr, SLEEP).certificate_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(g.value) for g in san] == [SLEEP.spiffe_uri]
    assert len(cert.subject) == 0


def test_ttl_policy() -> None:
    policy = TtlPolicy()
    assert policy.resolve(0) == datetime.timedelta(hours=24)
    assert policy.resolve(3600) == datetime.timedelta(hours=1)
    assert policy.resolve(90 * 86400) == datetime.timedelta(days=90)
    with pytest.raises(TtlError, match="exceeds the maximum"):
        policy.resolve(90 * 86400 + 1)
    with pytest.raises(TtlError, match="negative"):
        policy.resolve(-5)
    with pytest.raises(CaConfigError):
        TtlPolicy(default_ttl=datetime.timedelta(days=2), max_ttl=datetime.timedelta(days=1))


def test_requested_ttl_is_applied_and_capped_by_ca_lifetime(ca: CertificateAuthority) -> None:
    csr = create_csr(generate_private_key(), SLEEP)
    cert = _leaf(ca.sign_csr(csr, SLEEP, ttl_seconds=120).certificate_pem)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(seconds=120)
    with pytest.raises(TtlError):
        ca.sign_csr(csr, SLEEP, ttl_seconds=10**9)


def test_leaf_never_outlives_the_ca() -> None:
    short = CertificateAuthority.create_self_signed(
        CaOptions(key_algorithm=KeyAlgorithm.ECDSA_P256, root_ttl=datetime.timedelta(hours=1))
    )
    issued = short.sign_csr(create_csr(generate_private_key(), SLEEP), SLEEP)
    assert issued.not_after <= short.root_certificate.not_valid_after_utc


def test_root_is_a_ca_with_istio_defaults(rsa_ca: CertificateAuthority) -> None:
    root = rsa_ca.root_certificate
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(root.public_key(), rsa.RSAPublicKey)
    assert root.public_key().key_size == 2048
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert lifetime == datetime.timedelta(days=3650)
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "cluster.local"
    )


def test_identity_outside_trust_domain_is_refused(ca: CertificateAuthority) -> None:
    other = Identity("default", "sleep", trust_domain="example.org")
    with pytest.raises(CsrError, match="trust domain"):
        ca.sign_csr(create_csr(generate_private_key(), other), other)


# -- hostile CSRs ----------------------------------------------------------------------------


def _tampered_csr(csr_pem: bytes | None = None) -> bytes:
    # A CSR whose signature no longer matches its body (a fresh one unless given).
    csr = x509.load_pem_x509_csr(csr_pem or create_csr(generate_private_key(), SLEEP))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    sig = csr.signature
    index = der.rfind(sig)
    der[index + 5] ^= 0xFF  # flip bits inside the signature value
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)


def _csr_signed_by(key: object, hash_alg: hashes.HashAlgorithm | None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return builder.sign(key, hash_alg).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("csr", "message"),
    [
        (b"", "empty"),
        (b"not a csr at all", "not a PEM"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "PEM"),
        (b"A" * (MAX_CSR_BYTES + 1), "more than"),
    ],
)
def test_garbage_csrs_are_refused(ca: CertificateAuthority, csr: bytes, message: str) -> None:
    with pytest.raises(CsrError, match=message):
        ca.sign_csr(csr, SLEEP)


def test_csr_with_bad_signature_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CsrError, match="signature"):
        ca.sign_csr(_tampered_csr(), SLEEP)


@pytest.mark.parametrize(
    ("key", "hash_alg", "message"),
    [
        (ed25519.Ed25519PrivateKey.generate(), None, "unsupported public key"),
        (ec.generate_private_key(ec.SECP521R1()), hashes.SHA512(), "not supported"),
        (ec.generate_private_key(ec.SECP256K1()), hashes.SHA256(), "not supported"),
        (rsa.generate_private_key(65537, 1024), hashes.SHA256(), "outside 2048-4096"),
    ],
)
def test_unusual_key_types_are_refused(
    ca: CertificateAuthority, key: object, hash_alg: hashes.HashAlgorithm | None, message: str
) -> None:
    with pytest.raises(CsrError, match=message):
        ca.sign_csr(_csr_signed_by(key, hash_alg), SLEEP)


def test_a_repeated_csr_is_signed_each_time_and_a_bad_twin_never(ca: CertificateAuthority) -> None:
    # Agents resend the same CSR bytes on retries; the CA may remember that it checked them,
    # but what the caller sees must not change: each copy gets its own certificate, and the
    # same CSR with a broken signature (same key, same body) is refused every time, whether
    # it comes before or after its good twin.
    key = generate_private_key()
    csr = create_csr(key, SLEEP)
    twin = _tampered_csr(csr)
    with pytest.raises(CsrError, match="signature"):
        ca.sign_csr(twin, SLEEP)
    issued = [ca.sign_csr(csr, SLEEP), ca.sign_csr(csr.decode(), SLEEP)]
    for _ in range(2):
        with pytest.raises(CsrError, match="signature"):
            ca.sign_csr(twin, SLEEP)
        with pytest.raises(CsrError, match="signature"):
            ca.sign_csr(twin.decode(), SLEEP)
    issued.append(ca.sign_csr(csr, SLEEP))
    leaves = [_leaf(one.certificate_pem) for one in issued]
    assert len({leaf.serial_number for leaf in leaves}) == 3
    for leaf in leaves:
        assert leaf.public_key() == key.public_key()
        leaf.verify_directly_issued_by(ca.root_certificate)
    # A CSR that differs in one byte of its PEM (here: a line ending) is parsed on its own.
    with pytest.raises(CsrError, match="signature"):
        ca.sign_csr(twin.replace(b"\n", b"\r\n"), SLEEP)


def test_huge_csr_with_many_sans_is_refused(ca: CertificateAuthority) -> None:
    key = generate_private_key()
    csr = create_csr(key, SLEEP, dns_names=[f"host-{i}.example.com" for i in range(3000)])
    assert len(csr) > MAX_CSR_BYTES
    with pytest.raises(CsrError, match="more than"):
        ca.sign_csr(csr, SLEEP)


# -- CA files --------------------------------------------------------------------------------


def test_load_or_create_writes_istio_files_and_reloads_same_root(tmp_path: pathlib.Path) -> None:
    options = CaOptions(key_algorithm=KeyAlgorithm.ECDSA_P256)
    first = CertificateAuthority.load_or_create(tmp_path, options)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0
    second = CertificateAuthority.load_or_create(tmp_path, options)
    assert second.root_pem == first.root_pem
    issued = second.sign_csr(create_csr(generate_private_key(), SLEEP), SLEEP)
    _leaf(issued.certificate_pem).verify_directly_issued_by(first.root_certificate)


def _intermediate_dir(root: CertificateAuthority, tmp_path: pathlib.Path) -> pathlib.Path:
    """Plug-in CA files: an intermediate signed by ``root`` (built by hand, as an admin would)."""
    key = generate_private_key(KeyAlgorithm.ECDSA_P256)
    now = datetime.datetime.now(datetime.UTC)
    root_cert = root.root_certificate
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "intermediate")])
    root_dir = tmp_path / "root"
    root.write_directory(root_dir)
    root_key = serialization.load_pem_private_key(
        (root_dir / "ca-key.pem").read_bytes(), password=None
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    plug = tmp_path / "plugged"
    plug.mkdir()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (plug / "ca-cert.pem").write_text(cert_pem)
    (plug / "ca-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (plug / "root-cert.pem").write_text(root.root_pem)
    (plug / "cert-chain.pem").write_text(cert_pem + root.root_pem)
    return plug


def test_plugged_in_ca_chain_is_leaf_intermediate_root(
    ca: CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    plugged = CertificateAuthority.from_directory(_intermediate_dir(ca, tmp_path))
    assert not plugged.is_self_signed()
    issued = plugged.sign_csr(create_csr(generate_private_key(), SLEEP), SLEEP)
    assert len(issued.chain_pem) == 3
    assert issued.chain_pem[-1] == ca.root_pem
    result = _openssl_verify(tmp_path, issued.chain_pem)
    assert result.returncode == 0, result.stderr


def test_plugged_in_ca_errors_name_the_file(
    ca: CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(CaConfigError, match=r"ca-cert\.pem"):
        CertificateAuthority.from_directory(tmp_path)
    plug = _intermediate_dir(ca, tmp_path)
    (plug / "ca-key.pem").write_bytes(
        serialization.load_pem_private_key(
            (tmp_path / "root" / "ca-key.pem").read_bytes(), password=None
        ).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(CaConfigError, match="does not match"):
        CertificateAuthority.from_directory(plug)
    (plug / "ca-key.pem").write_text("garbage")
    with pytest.raises(CaConfigError, match=r"ca-key\.pem"):
        CertificateAuthority.from_directory(plug)


def test_plugged_in_chain_that_does_not_link_is_refused(
    ca: CertificateAuthority, rsa_ca: CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    plug = _intermediate_dir(ca, tmp_path)
    (plug / "root-cert.pem").write_text(rsa_ca.root_pem)
    with pytest.raises(CaConfigError, match="not issued by"):
        CertificateAuthority.from_directory(plug)


def test_root_rotation_check_and_rotation_keep_old_leaves_valid() -> None:
    options = CaOptions(
        key_algorithm=KeyAlgorithm.ECDSA_P256, root_ttl=datetime.timedelta(days=100)
    )
    start = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    authority = CertificateAuthority.create_self_signed(options, now=start)
    assert not authority.root_needs_rotation(start + datetime.timedelta(days=79))
    assert authority.root_needs_rotation(start + datetime.timedelta(days=81))
    leaf = authority.sign_csr(
        create_csr(generate_private_key(), SLEEP), SLEEP, now=start + datetime.timedelta(days=1)
    )
    rotated = authority.rotate_self_signed_root(start + datetime.timedelta(days=81))
    assert rotated.root_pem != authority.root_pem
    assert not rotated.root_needs_rotation(start + datetime.timedelta(days=82))
    _leaf(leaf.certificate_pem).verify_directly_issued_by(rotated.root_certificate)


def test_partial_ca_directory_is_an_error_not_overwritten(
    ca: CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "root-cert.pem").write_text(ca.root_pem)
    with pytest.raises(CaConfigError, match=r"ca-cert\.pem"):
        CertificateAuthority.load_or_create(tmp_path)
    assert (tmp_path / "root-cert.pem").read_text() == ca.root_pem
