"""Signing in worker processes: ``cryptography`` holds the GIL while it signs, so threads do not
add throughput, processes do. Each worker rebuilds the CA once from PEM, then signs CSRs."""

from __future__ import annotations

import concurrent.futures
import multiprocessing

from istio_sdk.citadel.ca import CaOptions, CertificateAuthority, IssuedCertificate
from istio_sdk.citadel.identity import Identity

_worker_ca: CertificateAuthority | None = None


def _init_worker(
    key_pem: bytes, cert_pem: str, intermediates_pem: str, root_pem: str, options: CaOptions
) -> None:
    global _worker_ca  # noqa: PLW0603  (one CA per worker process, set once)
    _worker_ca = CertificateAuthority.from_pem(
        key_pem, cert_pem, root_pem, intermediates_pem, options
    )


def _sign(csr: str, identity: Identity, ttl_seconds: int) -> IssuedCertificate:
    assert _worker_ca is not None, "signing worker used before initialisation"
    return _worker_ca.sign_csr(csr, identity, ttl_seconds)


def signing_pool(ca: CertificateAuthority, processes: int) -> concurrent.futures.Executor:
    """A process pool whose workers sign with a copy of ``ca`` (started with ``spawn``)."""
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=ca.worker_state(),
    )


def sign_in_pool(csr: str, identity: Identity, ttl_seconds: int) -> IssuedCertificate:
    """The function submitted to the pool (module-level so it pickles by reference)."""
    return _sign(csr, identity, ttl_seconds)
