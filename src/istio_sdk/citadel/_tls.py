"""TLS contexts for gRPC over grpclib from in-memory PEM.

``ssl`` loads a certificate chain and private key only from file paths. A private key must
never reach a filesystem (not even a temporary directory that is removed right away: it can
land on disk, in a backup, or be read by another process of the same user while it exists),
so the PEM goes into anonymous memory files (``memfd_create``) and OpenSSL opens them through
``/proc/self/fd/N``. Where there are none (not Linux, or no ``/proc``), loading fails with
:class:`~istio_sdk.citadel.errors.CaConfigError` instead of falling back to a disk file.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator, Sequence

from istio_sdk.citadel.errors import CaConfigError


@contextlib.contextmanager
def _memory_file(name: str, data: bytes) -> Iterator[str]:
    """A path to an anonymous in-memory file holding ``data``, valid inside the block."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        raise CaConfigError(
            "cannot load a TLS key from memory: os.memfd_create is unavailable on this "
            "platform (Linux only); private keys are never written to disk"
        )
    fd = memfd_create(name, getattr(os, "MFD_CLOEXEC", 1))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        path = f"/proc/self/fd/{fd}"
        if not os.path.exists(path):
            raise CaConfigError(
                f"cannot load a TLS key from memory: {path} does not exist (is /proc mounted?)"
            )
        yield path
    finally:
        os.close(fd)


def load_key_pair(context: ssl.SSLContext, key_pem: bytes, chain_pem: Sequence[str]) -> None:
    """Load a private key and its certificate chain into ``context``, from memory only."""
    with (
        _memory_file("istio-sdk-cert", "".join(chain_pem).encode("ascii")) as cert_path,
        _memory_file("istio-sdk-key", key_pem) as key_path,
    ):
        context.load_cert_chain(cert_path, key_path)


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
