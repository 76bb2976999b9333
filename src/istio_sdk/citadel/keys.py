"""Private keys and certificate signing requests for workloads and CAs.

Istio's workloads use RSA 2048 by default, or ECDSA P-256 when ``ECC_SIGNATURE_ALGORITHM`` is
set; both (and RSA 3072/4096, ECDSA P-384) are accepted by the CA here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from istio_sdk.citadel._identity import Identity
from istio_sdk.citadel.errors import CsrError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
ALLOWED_CURVES = ("secp256r1", "secp384r1")


class KeyAlgorithm(enum.Enum):
    """Key types the CA issues for and the client generates."""

    RSA_2048 = "RSA_2048"
    RSA_3072 = "RSA_3072"
    RSA_4096 = "RSA_4096"
    ECDSA_P256 = "ECDSA_P256"
    ECDSA_P384 = "ECDSA_P384"


def generate_private_key(algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256) -> PrivateKey:
    """A fresh private key of ``algorithm``."""
    if algorithm is KeyAlgorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm is KeyAlgorithm.ECDSA_P384:
        return ec.generate_private_key(ec.SECP384R1())
    bits = int(algorithm.value.split("_")[1])
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM of ``key``, unencrypted (as Istio writes ``key.pem``)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> PrivateKey:
    """Load an RSA or EC private key from PEM; raises ``ValueError`` for anything else."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def signature_hash(key: PrivateKey | PublicKey) -> hashes.SHA256 | hashes.SHA384:
    """The digest Istio pairs with a key: SHA-384 for P-384, SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and (
        key.curve.name == "secp384r1"
    ):
        return hashes.SHA384()
    return hashes.SHA256()


def create_csr(
    key: PrivateKey,
    identity: Identity | None = None,
    *,
    extra_uris: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    organization: str | None = None,
) -> bytes:
    """A PEM CSR signed by ``key`` naming ``identity`` (the CA ignores it and uses the caller's).

    Like Istio's agent the subject is empty (or holds only an organization) and the identity
    travels as a URI SAN.
    """
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    sans: list[x509.GeneralName] = []
    if identity is not None:
        sans.append(x509.UniformResourceIdentifier(identity.spiffe_uri))
    sans.extend(x509.UniformResourceIdentifier(uri) for uri in extra_uris)
    sans.extend(x509.DNSName(name) for name in dns_names)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, signature_hash(key))
    return csr.public_bytes(serialization.Encoding.PEM)


def check_public_key(key: object) -> PublicKey:
    """Accept RSA 2048-4096 and ECDSA P-256/P-384 public keys; raise :class:`CsrError` else."""
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise CsrError(
                f"RSA key of {key.key_size} bits is outside {MIN_RSA_BITS}-{MAX_RSA_BITS} bits"
            )
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise CsrError(f"EC curve {key.curve.name} is not supported (P-256 or P-384 only)")
        return key
    raise CsrError(f"unsupported public key type {type(key).__name__} (RSA or ECDSA only)")
