"""Workload certificate files for gRPC's ``file_watcher`` certificate provider (and for Envoy).

Istio's agent writes ``cert-chain.pem``, ``key.pem`` and ``root-cert.pem`` into an output
directory (``OUTPUT_CERTS``); proxyless gRPC reads them through a ``file_watcher`` certificate
provider instance declared in its xDS bootstrap. Each file is replaced atomically (write a
temporary file in the same directory, then rename) so a reader never sees half a file.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any

from istio_sdk.citadel._client import CertificateBundle

CERT_CHAIN_FILE = "cert-chain.pem"
KEY_FILE = "key.pem"
ROOT_CERT_FILE = "root-cert.pem"

# The certificate provider instance name Istio puts in proxyless gRPC bootstraps.
DEFAULT_PROVIDER_INSTANCE = "default"
DEFAULT_REFRESH_INTERVAL = "900s"


def write_atomically(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one rename; the file gets ``mode``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_workload_files(directory: str | os.PathLike[str], bundle: CertificateBundle) -> None:
    """Write ``bundle`` as ``cert-chain.pem``, ``key.pem`` (0600) and ``root-cert.pem``.

    The root goes first, then the key, then the chain, so a reader that sees a new chain also
    finds its key and a root that verifies it.
    """
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / ROOT_CERT_FILE, bundle.root_cert_pem.encode("ascii"))
    write_atomically(out / KEY_FILE, bundle.private_key_pem, mode=0o600)
    write_atomically(out / CERT_CHAIN_FILE, "".join(bundle.cert_chain_pem).encode("ascii"))


def file_watcher_provider_config(
    directory: str | os.PathLike[str],
    *,
    instance_name: str = DEFAULT_PROVIDER_INSTANCE,
    refresh_interval: str = DEFAULT_REFRESH_INTERVAL,
) -> dict[str, Any]:
    """The ``certificate_providers`` entry of a gRPC xDS bootstrap reading these files.

    Merge it into the bootstrap JSON: ``{"certificate_providers": <this>}``.
    """
    out = pathlib.Path(directory).resolve()
    return {
        instance_name: {
            "plugin_name": "file_watcher",
            "config": {
                "certificate_file": str(out / CERT_CHAIN_FILE),
                "private_key_file": str(out / KEY_FILE),
                "ca_certificate_file": str(out / ROOT_CERT_FILE),
                "refresh_interval": refresh_interval,
            },
        }
    }
