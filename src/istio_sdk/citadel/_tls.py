"""TLS contexts for gRPC over grpclib from in-memory PEM (``ssl`` only loads keys from files)."""

from __future__ import annotations

import os
import pathlib
import ssl
import tempfile
from collections.abc import Sequence


def load_key_pair(context: ssl.SSLContext, key_pem: bytes, chain_pem: Sequence[str]) -> None:
    """Load a private key and its certificate chain into ``context``.

    The PEM goes through a private (0700) temporary directory that is removed right away.
    """
    with tempfile.TemporaryDirectory(prefix="istio-sdk-tls-") as tmp:
        cert_path = pathlib.Path(tmp) / "cert.pem"
        key_path = pathlib.Path(tmp) / "key.pem"
        cert_path.write_text("".join(chain_pem))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        context.load_cert_chain(str(cert_path), str(key_path))


def client_ssl_context(
    root_pem: str, key_pem: bytes | None = None, chain_pem: Sequence[str] = ()
) -> ssl.SSLContext:
    """A client context trusting ``root_pem``, with h2 ALPN and an optional client cert."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=root_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    if key_pem is not None:
        load_key_pair(context, key_pem, chain_pem)
    return context


def server_ssl_context(
    key_pem: bytes, chain_pem: Sequence[str], client_ca_pem: str | None
) -> ssl.SSLContext:
    """A gRPC server context: h2 ALPN; client certificates requested, not required, and
    verified against ``client_ca_pem`` when sent."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    load_key_pair(context, key_pem, chain_pem)
    if client_ca_pem is not None:
        context.load_verify_locations(cadata=client_ca_pem)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
