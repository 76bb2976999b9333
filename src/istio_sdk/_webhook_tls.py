"""TLS for the admission webhooks (the sidecar injector, Galley's validation webhook).

The kube-apiserver calls a webhook over HTTPS only. A webhook serves either a certificate and
key from files (what a Kubernetes Secret mounts) or, for tests and local runs, a fresh
self-signed certificate for the names it is reached by; the caller hands the certificate's PEM
to the apiserver (the webhook configuration's ``caBundle``) or to its client. A mesh that runs
our Citadel can have it sign the certificate instead (its root is then the ``caBundle``).
Private keys are loaded from memory only (:mod:`istio_sdk.citadel._tls`), never written to
disk.
"""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from istio_sdk.citadel._tls import load_key_pair
from istio_sdk.citadel.keys import (
    generate_private_key,
    load_private_key,
    private_key_pem,
    signature_hash,
)
from istio_sdk.timeutil import utcnow

if TYPE_CHECKING:
    from istio_sdk.citadel.ca import CertificateAuthority

__all__ = [
    "WebhookCertificate",
    "ca_signed_certificate",
    "load_certificate",
    "self_signed_certificate",
    "webhook_ssl_context",
]

_MAX_PEM = 1 << 20


@attrs.frozen(repr=False)
class WebhookCertificate:
    """A serving certificate chain (PEM) and its private key (PEM, never shown in repr)."""

    chain_pem: str
    key_pem: bytes

    def __repr__(self) -> str:
        return "WebhookCertificate(<certificate>, <key>)"


def self_signed_certificate(
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    ttl: datetime.timedelta = datetime.timedelta(days=365),
) -> WebhookCertificate:
    """A new key and a self-signed server certificate naming ``hosts`` (DNS names or IPs)."""
    if not hosts:
        raise ValueError("a webhook certificate needs at least one host name")
    key = generate_private_key()
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + ttl)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, signature_hash(key))
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return WebhookCertificate(chain_pem=pem, key_pem=private_key_pem(key))


def _read(path: pathlib.Path, what: str) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_PEM + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if len(data) > _MAX_PEM:
        raise ValueError(f"the {what} {path} is larger than {_MAX_PEM} bytes")
    return data


def _spki(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def load_certificate(cert_file: pathlib.Path, key_file: pathlib.Path) -> WebhookCertificate:
    """A certificate chain and key from PEM files; ValueError saying which file is unusable."""
    chain = _read(cert_file, "certificate file")
    key = _read(key_file, "key file")
    try:
        certs = x509.load_pem_x509_certificates(chain)
    except ValueError:
        raise ValueError(f"the certificate file {cert_file} holds no PEM certificate") from None
    try:
        private = load_private_key(key)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(f"the key file {key_file} holds no usable PEM private key") from None
    if _spki(certs[0].public_key()) != _spki(private.public_key()):
        raise ValueError(f"the key in {key_file} does not match the certificate in {cert_file}")
    try:
        text = chain.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"the certificate file {cert_file} is not ASCII PEM") from None
    return WebhookCertificate(chain_pem=text, key_pem=key)


def webhook_ssl_context(certificate: WebhookCertificate) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving ``certificate`` over HTTP/1.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    load_key_pair(context, certificate.key_pem, [certificate.chain_pem])
    return context


def ca_signed_certificate(
    ca: CertificateAuthority,
    hosts: Sequence[str],
    *,
    ttl: datetime.timedelta = datetime.timedelta(days=365),
) -> WebhookCertificate:
    """A new key and a serving certificate for ``hosts`` (DNS names or IPs) signed by ``ca``
    (our Citadel), valid for ``ttl`` or until the CA's own certificate expires, whichever is
    first (not a workload's 24 hours: nothing renews it). Clients trust ``ca.root_pem``, so
    the chain served stops below the root."""
    if not hosts:
        raise ValueError("a webhook certificate needs at least one host name")
    dns: list[str] = []
    ips: list[str] = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            dns.append(host)
        else:
            ips.append(host)
    key_pem, chain = ca.issue_serving_certificate(dns or ["localhost"], ips, ttl=ttl)
    return WebhookCertificate(chain_pem="".join(chain[:-1] or chain), key_pem=key_pem)
