"""The certificate authority core: pure and synchronous, no network.

A :class:`CertificateAuthority` holds a signing key and certificate plus the chain up to a root.
It is either a self-signed root created on first start (and written to a CA directory), or a
plugged-in CA read from the files Istio uses: ``ca-cert.pem``, ``ca-key.pem``,
``root-cert.pem`` and ``cert-chain.pem``.

Workload certificates follow Istio's template: the identity is the only SAN (a SPIFFE URI,
critical because the subject is empty), key usage digitalSignature + keyEncipherment, extended
key usage serverAuth + clientAuth, basic constraints CA:FALSE. The identity always comes from
the caller of :meth:`CertificateAuthority.sign_csr`, never from the CSR.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import pathlib
import threading
from collections.abc import Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from istio_sdk.citadel._identity import Identity
from istio_sdk.citadel.errors import CaConfigError, CsrError, TtlError
from istio_sdk.citadel.keys import (
    KeyAlgorithm,
    PrivateKey,
    PublicKey,
    check_public_key,
    generate_private_key,
    load_private_key,
    private_key_pem,
    signature_hash,
)
from istio_sdk.spiffe import DEFAULT_TRUST_DOMAIN
from istio_sdk.timeutil import utcnow

# Istio's defaults (security/pkg/pki/ca and pilot/pkg/features).
DEFAULT_WORKLOAD_CERT_TTL = datetime.timedelta(hours=24)
MAX_WORKLOAD_CERT_TTL = datetime.timedelta(days=90)
DEFAULT_SELF_SIGNED_ROOT_TTL = datetime.timedelta(days=3650)
DEFAULT_ROOT_CHECK_INTERVAL = datetime.timedelta(hours=1)
DEFAULT_ROOT_GRACE_PERIOD_PERCENTILE = 20

# Largest CSR PEM accepted; a 4096-bit RSA CSR with a few SANs is ~2 KiB.
MAX_CSR_BYTES = 64 * 1024

# CSRs whose checks passed, remembered by their exact bytes (see CertificateAuthority.sign_csr).
CHECKED_CSR_CACHE_SIZE = 1024

CA_CERT_FILE = "ca-cert.pem"
CA_KEY_FILE = "ca-key.pem"
ROOT_CERT_FILE = "root-cert.pem"
CERT_CHAIN_FILE = "cert-chain.pem"


# The extensions every leaf carries (immutable, so built once).
_LEAF_BASIC_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)
_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_LEAF_EXTENDED_KEY_USAGE = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)


@attrs.frozen
class TtlPolicy:
    """Workload certificate lifetimes: ``0`` asks for the default; above the maximum is refused."""

    default_ttl: datetime.timedelta = DEFAULT_WORKLOAD_CERT_TTL
    max_ttl: datetime.timedelta = MAX_WORKLOAD_CERT_TTL

    def __attrs_post_init__(self) -> None:
        if self.default_ttl <= datetime.timedelta(0) or self.max_ttl < self.default_ttl:
            raise CaConfigError(
                f"TTL policy needs 0 < default_ttl ({self.default_ttl}) <= max_ttl ({self.max_ttl})"
            )

    def resolve(self, requested_seconds: int) -> datetime.timedelta:
        """The lifetime to issue for a request of ``requested_seconds`` (0 means default)."""
        if requested_seconds == 0:
            return self.default_ttl
        if requested_seconds < 0:
            raise TtlError(f"validity_duration {requested_seconds}s is negative")
        max_seconds = int(self.max_ttl.total_seconds())
        if requested_seconds > max_seconds:
            raise TtlError(
                f"validity_duration {requested_seconds}s exceeds the maximum {max_seconds}s"
            )
        return datetime.timedelta(seconds=requested_seconds)


@attrs.frozen
class CaOptions:
    """How a self-signed CA is created and what it issues."""

    trust_domain: str = DEFAULT_TRUST_DOMAIN
    key_algorithm: KeyAlgorithm = KeyAlgorithm.RSA_2048
    root_ttl: datetime.timedelta = DEFAULT_SELF_SIGNED_ROOT_TTL
    ttl_policy: TtlPolicy = attrs.field(factory=TtlPolicy)
    root_check_interval: datetime.timedelta = DEFAULT_ROOT_CHECK_INTERVAL
    root_grace_period_percentile: int = attrs.field(default=DEFAULT_ROOT_GRACE_PERIOD_PERCENTILE)
    organization: str | None = None

    @root_grace_period_percentile.validator
    def _check_percentile(self, _attr: object, value: int) -> None:
        if not 0 < value < 100:
            raise CaConfigError(f"root_grace_period_percentile {value} must be in 1..99")


@attrs.frozen
class IssuedCertificate:
    """A signed workload certificate and the chain from it up to the root, all PEM."""

    identity: Identity
    certificate_pem: str
    chain_pem: tuple[str, ...]  # [leaf, intermediates..., root]
    not_before: datetime.datetime
    not_after: datetime.datetime
    serial_number: int

    @property
    def root_pem(self) -> str:
        """The last element of the chain: the trust anchor."""
        return self.chain_pem[-1]


def certificate_pem(cert: x509.Certificate) -> str:
    """PEM text of one certificate."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _load_certs(path: pathlib.Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CaConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if not data.strip():
        return []
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CaConfigError(f"{path} does not hold PEM certificates: {exc}") from exc


def _public_der(key: PublicKey | PrivateKey) -> bytes:
    public = key.public_key() if not isinstance(key, PublicKey) else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _write_private(path: pathlib.Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class CertificateAuthority:
    """Signs workload certificates for authenticated identities.

    Build one with :meth:`create_self_signed`, :meth:`from_directory` or
    :meth:`load_or_create`. Instances are safe to share between threads: signing reads only
    immutable state.
    """

    def __init__(
        self,
        signing_key: PrivateKey,
        signing_cert: x509.Certificate,
        root_cert: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        options: CaOptions | None = None,
    ) -> None:
        if _public_der(signing_key) != _public_der(signing_cert.public_key()):  # type: ignore[arg-type]
            raise CaConfigError("the CA key does not match the CA certificate's public key")
        if not _is_ca(signing_cert):
            raise CaConfigError("the CA certificate is not a CA (basicConstraints CA:FALSE)")
        self._key = signing_key
        self._cert = signing_cert
        self._issuer = signing_cert.subject
        self._signing_not_after = signing_cert.not_valid_after_utc
        self._signature_hash = signature_hash(signing_key)
        self._root = root_cert
        self._intermediates = tuple(c for c in intermediates if c != root_cert)
        self.options = options or CaOptions()
        # What follows a leaf in a chain: the signing cert and intermediates (unless the signing
        # cert is the root itself), then the root.
        above = [] if signing_cert == root_cert else [signing_cert, *self._intermediates]
        self._chain_tail = (*(certificate_pem(c) for c in above), certificate_pem(root_cert))
        try:
            self._ski: x509.SubjectKeyIdentifier | None = (
                signing_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            )
        except x509.ExtensionNotFound:
            self._ski = None
        # CSR bytes -> the public key they carry, for CSRs that passed every check. Verifying a
        # CSR is a pure function of its bytes, so a byte-identical CSR (an agent retrying, or
        # renewing with the same key pair) need not be parsed and verified again.
        self._checked_csrs: dict[bytes, PublicKey] = {}
        self._checked_csrs_lock = threading.Lock()
        self._aki = (
            None
            if self._ski is None
            else x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski)
        )

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def create_self_signed(
        cls, options: CaOptions | None = None, *, now: datetime.datetime | None = None
    ) -> CertificateAuthority:
        """A new root CA with a fresh key (RSA 2048 by default, like Istio's self-signed CA)."""
        options = options or CaOptions()
        key = generate_private_key(options.key_algorithm)
        root = _self_signed_root(key, options, now or utcnow())
        return cls(key, root, root, (), options)

    @classmethod
    def from_directory(
        cls, ca_dir: str | os.PathLike[str], options: CaOptions | None = None
    ) -> CertificateAuthority:
        """Load a CA from Istio's files in ``ca_dir``.

        ``ca-cert.pem`` and ``ca-key.pem`` are required. ``root-cert.pem`` is required unless the
        CA certificate is itself self-signed; ``cert-chain.pem`` (intermediates) is optional.
        """
        directory = pathlib.Path(ca_dir)
        certs = _load_certs(directory / CA_CERT_FILE)
        if len(certs) != 1:
            raise CaConfigError(f"{directory / CA_CERT_FILE} must hold exactly one certificate")
        signing_cert = certs[0]
        key_path = directory / CA_KEY_FILE
        try:
            signing_key = load_private_key(key_path.read_bytes())
        except OSError as exc:
            raise CaConfigError(f"cannot read {key_path}: {exc.strerror}") from exc
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CaConfigError(f"{key_path} is not an unencrypted RSA/EC PEM key") from exc
        root_path = directory / ROOT_CERT_FILE
        if root_path.exists():
            roots = _load_certs(root_path)
            if not roots:
                raise CaConfigError(f"{root_path} is empty")
            root = roots[0]
        elif signing_cert.issuer == signing_cert.subject:
            root = signing_cert
        else:
            raise CaConfigError(f"{root_path} is missing and {CA_CERT_FILE} is not self-signed")
        chain_path = directory / CERT_CHAIN_FILE
        intermediates = [
            c for c in (_load_certs(chain_path) if chain_path.exists() else []) if c != signing_cert
        ]
        ca = cls(signing_key, signing_cert, root, intermediates, options)
        ca._check_chain()
        return ca

    @classmethod
    def load_or_create(
        cls, ca_dir: str | os.PathLike[str], options: CaOptions | None = None
    ) -> CertificateAuthority:
        """Load the CA in ``ca_dir``, or create a self-signed root there when it holds none."""
        directory = pathlib.Path(ca_dir)
        names = (CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE, CERT_CHAIN_FILE)
        if any((directory / name).exists() for name in names):
            # Never overwrite someone's CA files: a partial set is an error, not a fresh start.
            return cls.from_directory(directory, options)
        ca = cls.create_self_signed(options)
        ca.write_directory(directory)
        return ca

    @classmethod
    def from_pem(
        cls,
        key_pem: bytes,
        cert_pem: str,
        root_pem: str,
        intermediates_pem: str = "",
        options: CaOptions | None = None,
    ) -> CertificateAuthority:
        """Build from in-memory PEM (signing key, signing cert, root, optional intermediates)."""
        try:
            key = load_private_key(key_pem)
            cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
            root = x509.load_pem_x509_certificate(root_pem.encode("ascii"))
            intermediates = (
                x509.load_pem_x509_certificates(intermediates_pem.encode("ascii"))
                if intermediates_pem.strip()
                else []
            )
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CaConfigError(f"CA PEM material cannot be loaded: {exc}") from exc
        ca = cls(key, cert, root, intermediates, options)
        ca._check_chain()
        return ca

    def worker_state(self) -> tuple[bytes, str, str, str, CaOptions]:
        """What :meth:`from_pem` needs to rebuild this CA in a signing worker process.

        Holds the private key: pass it only to processes of this program.
        """
        return (
            private_key_pem(self._key),
            certificate_pem(self._cert),
            "".join(certificate_pem(c) for c in self._intermediates),
            certificate_pem(self._root),
            self.options,
        )

    def write_directory(self, ca_dir: str | os.PathLike[str]) -> None:
        """Write Istio's four CA files into ``ca_dir`` (the key with mode 0600)."""
        directory = pathlib.Path(ca_dir)
        directory.mkdir(parents=True, exist_ok=True)
        _write_private(directory / CA_KEY_FILE, private_key_pem(self._key))
        (directory / CA_CERT_FILE).write_text(certificate_pem(self._cert))
        (directory / ROOT_CERT_FILE).write_text(certificate_pem(self._root))
        (directory / CERT_CHAIN_FILE).write_text("".join(self._chain_tail[:-1]))

    def _check_chain(self) -> None:
        # Each certificate must be signed by the next one up: signing cert -> intermediates -> root.
        chain = [self._cert, *self._intermediates, self._root]
        for child, parent in itertools.pairwise(chain):
            if child == parent:
                continue
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise CaConfigError(
                    f"certificate {child.subject.rfc4514_string()!r} is not issued by "
                    f"{parent.subject.rfc4514_string()!r}: {exc}"
                ) from exc

    # -- accessors ----------------------------------------------------------------------------

    @property
    def trust_domain(self) -> str:
        """The trust domain of identities this CA signs."""
        return self.options.trust_domain

    @property
    def root_certificate(self) -> x509.Certificate:
        """The trust anchor."""
        return self._root

    @property
    def root_pem(self) -> str:
        """The trust anchor as PEM (what workloads put in ``root-cert.pem``)."""
        return self._chain_tail[-1]

    @property
    def signing_certificate(self) -> x509.Certificate:
        """The certificate whose key signs workload certificates."""
        return self._cert

    @property
    def chain_above_leaf(self) -> tuple[str, ...]:
        """PEMs a leaf's chain continues with: the signing cert, intermediates, then the root."""
        return self._chain_tail

    # -- CSR handling -------------------------------------------------------------------------

    @staticmethod
    def parse_csr(csr_pem: str | bytes) -> x509.CertificateSigningRequest:
        """Parse and check a PEM CSR: size, syntax, self-signature and key type."""
        return CertificateAuthority._parse_csr_and_key(csr_pem)[0]

    @staticmethod
    def _parse_csr_and_key(
        csr_pem: str | bytes,
    ) -> tuple[x509.CertificateSigningRequest, PublicKey]:
        # The checked key comes back too, so signing does not decode it a second time.
        data = csr_pem.encode("utf-8", "replace") if isinstance(csr_pem, str) else csr_pem
        if not data.strip():
            raise CsrError("the CSR is empty")
        if len(data) > MAX_CSR_BYTES:
            raise CsrError(f"the CSR is {len(data)} bytes, more than the {MAX_CSR_BYTES} allowed")
        try:
            csr = x509.load_pem_x509_csr(data)
        except ValueError as exc:
            raise CsrError(f"the CSR is not a PEM certificate request: {exc}") from exc
        try:
            public_key = csr.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CsrError(f"the CSR's public key cannot be read: {exc}") from exc
        checked_key = check_public_key(public_key)
        try:
            valid = csr.is_signature_valid
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CsrError(f"the CSR's signature cannot be checked: {exc}") from exc
        if not valid:
            raise CsrError("the CSR's signature does not match its public key")
        return csr, checked_key

    def sign_csr(
        self,
        csr_pem: str | bytes,
        identity: Identity,
        ttl_seconds: int = 0,
        *,
        now: datetime.datetime | None = None,
    ) -> IssuedCertificate:
        """Issue a workload certificate for ``identity`` over the CSR's public key.

        Whatever subject or SANs the CSR asks for are ignored: the certificate names
        ``identity`` only. Raises :class:`CsrError` or :class:`TtlError`.
        """
        ttl = self.options.ttl_policy.resolve(ttl_seconds)
        return self.issue(self._checked_csr_key(csr_pem), identity, ttl, now=now)

    def _checked_csr_key(self, csr_pem: str | bytes) -> PublicKey:
        # The public key of a CSR that passed _parse_csr_and_key's checks, from the cache of
        # byte-identical CSRs when possible. A CSR that fails is never cached.
        data = csr_pem.encode("utf-8", "replace") if isinstance(csr_pem, str) else csr_pem
        public_key = self._checked_csrs.get(data)
        if public_key is not None:
            return public_key
        public_key = self._parse_csr_and_key(data)[1]
        with self._checked_csrs_lock:
            if len(self._checked_csrs) >= CHECKED_CSR_CACHE_SIZE:
                # Oldest first: dicts keep insertion order.
                del self._checked_csrs[next(iter(self._checked_csrs))]
            self._checked_csrs[data] = public_key
        return public_key

    def issue(
        self,
        public_key: PublicKey,
        identity: Identity,
        ttl: datetime.timedelta,
        *,
        now: datetime.datetime | None = None,
    ) -> IssuedCertificate:
        """Issue a workload certificate for ``identity`` (TTL already checked by the caller)."""
        if identity.trust_domain != self.trust_domain:
            raise CsrError(
                f"identity {identity.spiffe_uri} is outside this CA's trust domain "
                f"{self.trust_domain!r}"
            )
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.spiffe_uri)]
        cert = self._build_leaf(public_key, x509.Name([]), sans, ttl, now or utcnow())
        leaf = certificate_pem(cert)
        return IssuedCertificate(
            identity=identity,
            certificate_pem=leaf,
            chain_pem=(leaf, *self._chain_tail),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            serial_number=cert.serial_number,
        )

    def issue_serving_certificate(
        self,
        dns_names: Sequence[str] = ("istiod.istio-system.svc", "localhost"),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        *,
        key_algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256,
        ttl: datetime.timedelta | None = None,
        now: datetime.datetime | None = None,
    ) -> tuple[bytes, tuple[str, ...]]:
        """A key (PEM) and chain for the CA's own TLS server, with DNS and IP SANs."""
        key = generate_private_key(key_algorithm)
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        sans.extend(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
        cert = self._build_leaf(
            key.public_key(),
            subject,
            sans,
            ttl or self.options.ttl_policy.default_ttl,
            now or utcnow(),
        )
        return private_key_pem(key), (certificate_pem(cert), *self._chain_tail)

    def _build_leaf(
        self,
        public_key: PublicKey,
        subject: x509.Name,
        sans: list[x509.GeneralName],
        ttl: datetime.timedelta,
        now: datetime.datetime,
    ) -> x509.Certificate:
        not_after = min(now + ttl, self._signing_not_after)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(not_after)
            .add_extension(_LEAF_BASIC_CONSTRAINTS, critical=True)
            .add_extension(_LEAF_KEY_USAGE, critical=True)
            .add_extension(_LEAF_EXTENDED_KEY_USAGE, critical=False)
            # RFC 5280: the SAN extension is critical when the subject is empty.
            .add_extension(x509.SubjectAlternativeName(sans), critical=len(subject) == 0)
        )
        if self._aki is not None:
            builder = builder.add_extension(self._aki, critical=False)
        return builder.sign(self._key, self._signature_hash)

    # -- root rotation ------------------------------------------------------------------------

    def is_self_signed(self) -> bool:
        """True when this CA's signing certificate is its own root."""
        return self._cert == self._root

    def root_needs_rotation(self, now: datetime.datetime | None = None) -> bool:
        """True once the root's remaining life drops below the grace percentile of its life."""
        now = now or utcnow()
        start, end = self._root.not_valid_before_utc, self._root.not_valid_after_utc
        grace = (end - start) * (self.options.root_grace_period_percentile / 100)
        return end - now <= grace

    def rotate_self_signed_root(self, now: datetime.datetime | None = None) -> CertificateAuthority:
        """A CA with a new self-signed root over the same key, so issued certs keep verifying.

        Only self-signed CAs rotate here; a plugged-in CA is rotated by replacing its files.
        """
        if not self.is_self_signed():
            raise CaConfigError("only a self-signed CA can rotate its own root")
        root = _self_signed_root(self._key, self.options, now or utcnow())
        return CertificateAuthority(self._key, root, root, (), self.options)


def _self_signed_root(
    key: PrivateKey, options: CaOptions, now: datetime.datetime
) -> x509.Certificate:
    org = options.organization or options.trust_domain
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + options.root_ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, signature_hash(key))
    )
