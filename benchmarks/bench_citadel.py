"""Citadel benchmark: certificates signed per second through the gRPC server, end to end,
against the raw ``cryptography`` signing rate measured in the same run.

The CA has Istio's default RSA 2048 self-signed root. Workload CSRs (ECDSA P-256 and RSA 2048
keys) are generated up front, one per served call (a fleet of agents sends distinct CSRs, and
the server caches its check of a byte-identical one). "raw" parses each CSR and builds and
signs the same workload certificate template with ``cryptography`` directly, in a loop, on one
core. "server" runs
``CitadelServer`` in its own process (TLS, JWT authentication, CSR checks, signing) while this
process drives many concurrent CreateCertificate calls over a few channels.

Two ratios are printed. "wall" is server throughput over raw throughput: the figure of merit
(goal >= 70%), but on a shared 2-core machine the load generator and anything else running
compete with the server for CPU. "cpu" compares CPU seconds per signature (raw vs the server
process, without signing workers), which does not depend on what else the machine does. With
workers, "server ms cpu" (marked "*") is the server process alone: gRPC, TLS, authentication
and the hand-off to the workers. "client ms cpu" is this process driving the calls, the load
generator's share of the two cores.

Run with ``nox -s bench`` or ``python -m benchmarks citadel``. Options: ``--quick`` (fewer
calls), ``--processes=0,1,2`` (the server configurations to run: signing worker processes
inside the server; default 0, 1 and 2).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import multiprocessing
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

CONCURRENCY = 64
CHANNELS = 4


def _serve(ca_dir: str, rule_json: str, processes: int, conn: Any) -> None:
    """Child process: run the CA server; answer "cpu" with its CPU time; "stop" ends it."""
    from istio_sdk.citadel import CitadelServer, CitadelServerOptions, JwtRule

    async def run() -> None:
        options = CitadelServerOptions(
            ca_dir=ca_dir, jwt_rule=JwtRule.from_json(rule_json), signing_processes=processes
        )
        server = CitadelServer(options)
        await server.start()
        conn.send(server.port)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, conn.recv) == "cpu":
            conn.send(time.process_time())
        stats = server.stats()
        conn.send((stats.signed, dict(stats.failed)))
        await server.stop()

    asyncio.run(run())


def raw_signing(ca_dir: str, csrs: list[bytes], rounds: int) -> tuple[float, float]:
    """Signatures per second and CPU seconds per signature, ``cryptography`` alone."""
    from cryptography.hazmat.primitives import hashes, serialization

    directory = pathlib.Path(ca_dir)
    ca_key: Any = serialization.load_pem_private_key(
        (directory / "ca-key.pem").read_bytes(), password=None
    )
    ca_cert = x509.load_pem_x509_certificate((directory / "ca-cert.pem").read_bytes())
    san = x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/default/sa/bench")]
    )
    usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    start, cpu_start = time.perf_counter(), time.process_time()
    count = 0
    for _ in range(rounds):
        for pem in csrs:
            csr = x509.load_pem_x509_csr(pem)
            now = datetime.datetime.now(datetime.UTC)
            (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(ca_cert.subject)
                .public_key(csr.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(now + datetime.timedelta(hours=24))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(usage, critical=True)
                .add_extension(eku, critical=False)
                .add_extension(san, critical=True)
                .sign(ca_key, hashes.SHA256())
            )
            count += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return count / elapsed, cpu / count


async def server_rate(port: int, root_pem: str, token: str, csrs: list[str], calls: int) -> float:
    """CreateCertificate calls per second with CONCURRENCY calls in flight."""
    from istio_sdk.citadel import CitadelClient

    clients = [
        CitadelClient("127.0.0.1", port, root_cert_pem=root_pem, timeout=120)
        for _ in range(CHANNELS)
    ]
    # Warm up (connections, TLS handshakes, code paths) with the first CHANNELS CSRs.
    await asyncio.gather(
        *(c.create_certificate(csrs[i], token=token) for i, c in enumerate(clients))
    )
    next_call = iter(range(calls))

    async def worker(client: Any) -> None:
        for index in next_call:
            chain = await client.create_certificate(
                csrs[(CHANNELS + index) % len(csrs)], token=token
            )
            assert len(chain) == 2

    start = time.perf_counter()
    await asyncio.gather(*(worker(clients[i % CHANNELS]) for i in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    for client in clients:
        await client.close()
    return calls / elapsed


def run_config(
    ca_dir: str, root_pem: str, rule: dict[str, Any], token: str, *, processes: int, calls: int
) -> None:
    """One server configuration: both workload key types, raw vs served, one table."""
    from istio_sdk.citadel import Identity, KeyAlgorithm, create_csr, generate_private_key

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    # Not a daemon: daemonic processes may not start the signing worker processes.
    process = context.Process(target=_serve, args=(ca_dir, json.dumps(rule), processes, child))
    process.start()
    port = parent.recv()
    print(
        f"server in its own process, signing worker processes: {processes}; "
        f"{CONCURRENCY} calls in flight over {CHANNELS} TLS channels; {calls} calls per run"
    )
    print(
        f"{'workload key':<13}{'raw/s':>8}{'server/s':>10}{'wall':>7}"
        f"{'raw ms cpu':>12}{'server ms cpu':>15}{'cpu':>6}{'client ms cpu':>15}"
    )
    try:
        for algorithm in (KeyAlgorithm.ECDSA_P256, KeyAlgorithm.RSA_2048):
            identity = Identity("default", "bench")
            keys = [generate_private_key(algorithm) for _ in range(16)]
            csrs = [create_csr(key, identity) for key in keys]
            raw, raw_cpu = raw_signing(ca_dir, csrs, rounds=max(calls // 16 // 2, 4))
            # Every served call gets a CSR of its own (16 keys, a distinct subject each), as a
            # fleet of agents would send: the server's check of a byte-identical CSR is cached,
            # and reusing a few CSRs would leave proof-of-possession checks out of the figure.
            served_csrs = [
                create_csr(keys[i % len(keys)], identity, organization=f"bench-{i}").decode()
                for i in range(calls + CHANNELS)
            ]
            parent.send("cpu")
            cpu_before = parent.recv()
            client_before = time.process_time()
            served = asyncio.run(server_rate(port, root_pem, token, served_csrs, calls))
            client_cpu = (time.process_time() - client_before) / (calls + CHANNELS)
            parent.send("cpu")
            server_cpu = (parent.recv() - cpu_before) / (calls + CHANNELS)
            # With workers, the server process's own CPU leaves out the signing itself
            # (marked "*"), so the CPU ratio is left out too.
            cpu_column = (
                f"{server_cpu * 1000:>15.2f}{raw_cpu / server_cpu:>6.0%}"
                if processes == 0
                else f"{server_cpu * 1000:>14.2f}*{'-':>6}"
            )
            print(
                f"{algorithm.value:<13}{raw:>8.0f}{served:>10.0f}{served / raw:>7.0%}"
                f"{raw_cpu * 1000:>12.2f}{cpu_column}{client_cpu * 1000:>15.2f}",
                flush=True,
            )
    finally:
        parent.send("stop")
        signed, failed = parent.recv()
        process.join(10)
        if process.is_alive():
            process.terminate()
    if processes:
        print("* the server process alone: gRPC, TLS, authentication; signing is in the workers")
    print(f"server counters: signed={signed} failed={failed}")


def main(argv: list[str] | None = None) -> None:
    from istio_sdk.citadel import (
        CaOptions,
        CertificateAuthority,
        KeyAlgorithm,
        generate_private_key,
    )
    from istio_sdk.citadel.jwt import encode_jwt, public_key_to_jwk

    args = sys.argv[1:] if argv is None else argv
    calls = 400 if "--quick" in args else 2000
    chosen = next((a.split("=", 1)[1] for a in args if a.startswith("--processes=")), "0,1,2")
    configurations = [int(n) for n in chosen.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-citadel-") as ca_dir:
        ca = CertificateAuthority.create_self_signed(CaOptions())  # RSA 2048 root, as Istio
        ca.write_directory(ca_dir)
        jwt_key = generate_private_key(KeyAlgorithm.ECDSA_P256)
        rule = {
            "issuer": "bench",
            "jwks": {"keys": [public_key_to_jwk(jwt_key.public_key(), "k")]},
            "audiences": ["istio-ca"],
        }
        claims = {
            "iss": "bench",
            "aud": "istio-ca",
            "exp": time.time() + 3600,
            "sub": "system:serviceaccount:default:bench",
        }
        token = encode_jwt(claims, jwt_key, kid="k")
        print("CA: RSA 2048 self-signed root (Istio's default); JWT (ES256) authentication")
        for processes in configurations:
            run_config(ca_dir, ca.root_pem, rule, token, processes=processes, calls=calls)
        print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
