"""Signing worker processes: answers, errors carried back typed, a dead worker, closing."""

from __future__ import annotations

import asyncio

import pytest
from cryptography import x509

from istio_sdk.citadel import (
    CertificateAuthority,
    CsrError,
    Identity,
    TtlError,
    create_csr,
    generate_private_key,
)
from istio_sdk.citadel._signing_pool import SigningPool, SigningWorkerError

SLEEP = Identity("default", "sleep")


async def test_workers_sign_pipelined_requests_and_carry_errors_back(
    ca: CertificateAuthority,
) -> None:
    pool = SigningPool(ca, 2)
    try:
        keys = [generate_private_key() for _ in range(6)]
        identities = [Identity("default", f"sa{i}") for i in range(6)]
        issued = await asyncio.gather(
            *(pool.sign_csr(create_csr(k, i), i) for k, i in zip(keys, identities, strict=True))
        )
        for key, identity, one in zip(keys, identities, issued, strict=True):
            leaf = x509.load_pem_x509_certificate(one.certificate_pem.encode())
            assert one.identity == identity
            assert leaf.public_key() == key.public_key()
            leaf.verify_directly_issued_by(ca.root_certificate)
            assert one.chain_pem[1:] == ca.chain_above_leaf
        with pytest.raises(CsrError, match="not a PEM"):
            await pool.sign_csr("garbage", SLEEP)
        with pytest.raises(TtlError, match="exceeds the maximum"):
            await pool.sign_csr(create_csr(keys[0], SLEEP), SLEEP, 10**9)
    finally:
        await pool.aclose()
    assert all(not w.process.is_alive() for w in pool._workers)
    with pytest.raises(SigningWorkerError, match="closed"):
        await pool.sign_csr(create_csr(keys[0], SLEEP), SLEEP)


@pytest.mark.parametrize("loop_runs_after_the_death", [False, True])
async def test_a_dead_worker_fails_its_requests_and_is_skipped(
    ca: CertificateAuthority, loop_runs_after_the_death: bool
) -> None:
    pool = SigningPool(ca, 1)
    try:
        csr = create_csr(generate_private_key(), SLEEP)
        await pool.sign_csr(csr, SLEEP)  # started and connected
        worker = pool._workers[0]
        worker.process.kill()
        if loop_runs_after_the_death:
            # The answer reader may see the end of file before the next request is sent.
            await asyncio.to_thread(worker.process.join, 10)
            await asyncio.sleep(0.05)
        else:
            # The loop does not run between the death and the next request: the sender sees
            # the broken pipe before the answer reader sees the end of file.
            worker.process.join(10)
        assert not worker.process.is_alive()
        with pytest.raises(SigningWorkerError, match="exited"):
            await pool.sign_csr(csr, SLEEP)
        with pytest.raises(SigningWorkerError, match="every signing worker"):
            await pool.sign_csr(csr, SLEEP)
    finally:
        await pool.aclose()


async def test_ready_once_every_worker_loaded_its_ca(ca: CertificateAuthority) -> None:
    pool = SigningPool(ca, 2)
    try:
        await pool.wait_ready()
        assert all(w.process.is_alive() for w in pool._workers)
    finally:
        await pool.aclose()
    starting = SigningPool(ca, 1)
    try:
        starting._workers[0].process.kill()
        with pytest.raises(SigningWorkerError, match="exited while starting"):
            await starting.wait_ready()
    finally:
        await starting.aclose()


def test_a_pool_needs_a_process(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="at least one process"):
        SigningPool(ca, 0)
