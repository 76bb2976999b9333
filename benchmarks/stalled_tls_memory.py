"""RSS of a Citadel server while TCP connections that never finish TLS pile up on its port.

Not a test: prints the server's resident memory before, during and after an attack of
``--connections`` stalled connections (opened by a child process), and whether a legitimate
client still got a certificate during the attack::

    PYTHONPATH=src python benchmarks/stalled_tls_memory.py --connections 2000
    PYTHONPATH=src python benchmarks/stalled_tls_memory.py --send-bytes 5   # partial ClientHello
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time

from istio_sdk.citadel import (
    CaOptions,
    CertificateAuthority,
    CitadelClient,
    CitadelServer,
    CitadelServerOptions,
    JwtRule,
    KeyAlgorithm,
)

ATTACKER = r"""
import socket, sys, time
port, count, send, hold = (int(a) for a in sys.argv[1:5])
socks = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    if send:
        s.send(b"\x16\x03\x01\x02\x00"[:send])  # the start of a TLS record, never finished
    socks.append(s)
print("open", flush=True)
time.sleep(hold)
for s in socks:
    s.close()
print("closed", flush=True)
"""


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--send-bytes", type=int, default=0)
    parser.add_argument("--hold", type=int, default=15, help="seconds the attack lasts")
    args = parser.parse_args()

    from istio_sdk.citadel.jwt import encode_jwt, public_key_to_jwk
    from istio_sdk.citadel.keys import generate_private_key

    key = generate_private_key(KeyAlgorithm.ECDSA_P256)
    jwks = {"keys": [public_key_to_jwk(key.public_key(), "k")]}
    import json

    rule = JwtRule.from_json({"issuer": "bench", "jwks": json.dumps(jwks)})
    ca = CertificateAuthority.create_self_signed(CaOptions(key_algorithm=KeyAlgorithm.ECDSA_P256))

    def token() -> str:
        now = time.time()
        claims = {
            "iss": "bench",
            "sub": "system:serviceaccount:default:sleep",
            "iat": int(now),
            "exp": int(now + 600),
        }
        return encode_jwt(claims, key, kid="k")

    async with CitadelServer(CitadelServerOptions(jwt_rule=rule), ca=ca) as server:
        async with CitadelClient("127.0.0.1", server.port, root_cert_pem=server.root_pem) as c:
            await c.request_certificate(token=token())
        gc.collect()
        before = rss_mib()
        attacker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ATTACKER,
            str(server.port),
            str(args.connections),
            str(args.send_bytes),
            str(args.hold),
            stdout=subprocess.PIPE,
        )
        assert attacker.stdout is not None
        await attacker.stdout.readline()  # "open"
        await asyncio.sleep(2)
        during = rss_mib()
        started = time.monotonic()
        try:
            async with CitadelClient(
                "127.0.0.1", server.port, root_cert_pem=server.root_pem, timeout=30
            ) as c:
                await c.request_certificate(token=token())
            legit = f"got a certificate in {time.monotonic() - started:.2f} s"
        except Exception as exc:  # report, do not hide
            legit = f"FAILED: {type(exc).__name__}: {exc}"
        peak = max(during, rss_mib())
        await attacker.stdout.readline()  # "closed"
        await attacker.wait()
        await asyncio.sleep(3)
        gc.collect()
        after = rss_mib()
        print(
            f"connections={args.connections} send_bytes={args.send_bytes} "
            f"pid={os.getpid()}\n"
            f"RSS before {before:.1f} MiB, during {peak:.1f} MiB "
            f"(+{(peak - before) * 1024 / max(args.connections, 1):.1f} KiB per connection), "
            f"after {after:.1f} MiB\n"
            f"legitimate client during the attack: {legit}"
        )


if __name__ == "__main__":
    asyncio.run(main())
