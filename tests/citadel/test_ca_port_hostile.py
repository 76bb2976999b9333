"""Stalled TCP connections on the CA port: bounded in number and in time, and a real client
still gets its certificate while they pile up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from istio_sdk._grpc import GrpcSettings, TlsAcceptStats
from istio_sdk.citadel import (
    CertificateAuthority,
    CitadelClient,
    CitadelServer,
    CitadelServerOptions,
    Identity,
    JwtRule,
)

LIMIT = 8
EXCESS = 5
HANDSHAKE_TIMEOUT = 4.0


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(1) == b""
    except ConnectionError:
        return True


WAIT_SECONDS = 20.0  # generous bound on every wait below


async def _eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def _wait_all(tasks: list[Awaitable[bool]]) -> list[bool]:
    async with asyncio.timeout(WAIT_SECONDS):
        return list(await asyncio.gather(*tasks))


async def test_stalled_handshakes_are_bounded_and_a_client_still_gets_a_certificate(
    ca: CertificateAuthority, ec_issuer: Any
) -> None:
    settings = GrpcSettings(
        tls_handshake_timeout=HANDSHAKE_TIMEOUT, max_pending_tls_handshakes=LIMIT
    )
    options = CitadelServerOptions(
        jwt_rule=JwtRule.from_json(ec_issuer.rule()), grpc_settings=settings
    )
    async with CitadelServer(options, ca=ca) as server:
        stalled = []
        for _ in range(LIMIT + EXCESS):
            # Connect, send nothing, never start TLS.
            stalled.append(await asyncio.open_connection("127.0.0.1", server.port))
        watchers = [asyncio.create_task(_closed_by_server(r)) for r, _w in stalled]
        # The excess goes at once, oldest first; the newest LIMIT stay pending.
        assert await _wait_all(watchers[:EXCESS]) == [True] * EXCESS
        await _eventually(lambda: server.tls_stats().pending == LIMIT)
        assert server.tls_stats().evicted == EXCESS

        # A real client during the attack: its handshake evicts one stalled connection.
        async with CitadelClient("127.0.0.1", server.port, root_cert_pem=server.root_pem) as client:
            bundle = await client.request_certificate(token=ec_issuer.token("prod", "real"))
        assert bundle.identity == Identity("prod", "real")

        # After the handshake timeout the rest are closed too.
        assert await _wait_all(watchers[EXCESS:]) == [True] * LIMIT
        await _eventually(lambda: server.tls_stats().pending == 0)
        stats = server.tls_stats()
        assert stats.completed == 1
        # Each stalled connection was closed exactly once: evicted or timed out.
        assert stats.evicted + stats.failed == LIMIT + EXCESS
        assert stats.evicted >= EXCESS
        for _reader, writer in stalled:
            writer.close()
    assert isinstance(server.tls_stats(), TlsAcceptStats)
