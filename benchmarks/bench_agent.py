"""pilot-agent benchmark: probe latency through the status port's ``/app-health`` paths.

A real HTTP app, a TCP listener and a gRPC health server run on loopback; the agent's
:class:`~istio_sdk.proxy.agent.status.StatusServer` rewrites probes to them as kubelet would
use it. Sequential probes (as kubelet sends them) are timed end to end from an HTTP client
(one new connection per probe, as kubelet's) and reported as p50/p99 milliseconds. The
reference measured in the same run is the same client GETting the app directly; "x direct" is
the HTTP probe's p50 over that. Client, agent and apps share one event loop, so the figures
include both sides of every hop.

Run with ``nox -s bench`` or ``python -m benchmarks agent``; ``--quick`` sends fewer probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time

import httpx
from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream

from istio_sdk._net import bound_port
from istio_sdk.pilot._raw import EncodedMessage
from istio_sdk.proxy.agent.app_probe import AppProbeRunner
from istio_sdk.proxy.agent.app_probers import parse_app_probers
from istio_sdk.proxy.agent.readiness import Readiness
from istio_sdk.proxy.agent.status import StatusServer


async def _http_app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    writer.close()


class _Health:
    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/grpc.health.v1.Health/Check": Handler(
                self._check, Cardinality.UNARY_UNARY, EncodedMessage, EncodedMessage
            )
        }

    async def _check(self, stream: Stream[EncodedMessage, EncodedMessage]) -> None:
        await stream.recv_message()
        await stream.send_message(EncodedMessage(b"\x08\x01"))  # SERVING


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


async def _time(client: httpx.AsyncClient, url: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get(url)
        samples.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
    return samples


async def run(count: int) -> dict[str, tuple[float, float]]:
    app = await asyncio.start_server(_http_app, "127.0.0.1", 0)
    grpc_server = Server([_Health()])
    await grpc_server.start("127.0.0.1", 0)
    app_port, grpc_port = bound_port(app), bound_port(grpc_server)
    probers = parse_app_probers(
        json.dumps(
            {
                "/app-health/web/livez": {"httpGet": {"path": "/", "port": app_port}},
                "/app-health/web/readyz": {"tcpSocket": {"port": app_port}},
                "/app-health/grpc/livez": {"grpc": {"port": grpc_port}},
            }
        )
    )
    status = StatusServer(
        Readiness([]), probers=probers, probe_runner=AppProbeRunner(source_address="127.0.0.6")
    )
    port = await status.start("127.0.0.1", 0)
    results = {}
    limits = httpx.Limits(max_keepalive_connections=0)  # kubelet opens a connection per probe
    try:
        async with httpx.AsyncClient(trust_env=False, limits=limits, timeout=10) as client:
            base = f"http://127.0.0.1:{port}"
            await _time(client, f"{base}/app-health/web/livez", 20)  # warm up
            results["direct HTTP GET (reference)"] = _quantiles(
                await _time(client, f"http://127.0.0.1:{app_port}/", count)
            )
            for name, path in (
                ("HTTP probe", "/app-health/web/livez"),
                ("TCP probe", "/app-health/web/readyz"),
                ("gRPC probe", "/app-health/grpc/livez"),
            ):
                results[name] = _quantiles(await _time(client, base + path, count))
    finally:
        await status.close()
        app.close()
        grpc_server.close()
        await grpc_server.wait_closed()
    return results


def main() -> None:
    count = 100 if "--quick" in sys.argv else 500
    results = asyncio.run(run(count))
    reference = results["direct HTTP GET (reference)"][0]
    print(f"{count} sequential probes each, one connection per probe")
    print(f"{'':30} {'p50 ms':>8} {'p99 ms':>8} {'x direct':>9}")
    for name, (p50, p99) in results.items():
        print(f"{name:30} {p50:8.2f} {p99:8.2f} {p50 / reference:9.1f}")


if __name__ == "__main__":
    main()
