"""Real applications for the agent tests: a small HTTP app, a gRPC health server, a stall."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream

from istio_sdk._net import bound_port
from istio_sdk.pilot._raw import EncodedMessage

Answer = Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]


def default_answer(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """The test app's routes."""
    if path == "/ok":
        return 200, {}, b"fine"
    if path == "/fail":
        return 503, {}, b"not today"
    if path == "/same-host-redirect":
        return 302, {"Location": "/ok"}, b""
    if path == "/loop":
        return 302, {"Location": "/loop"}, b""
    if path == "/away":
        return 301, {"Location": "http://elsewhere.invalid/x"}, b""
    if path == "/headers":
        return 200, {}, json.dumps(headers, sort_keys=True).encode()
    if path == "/big":
        return 200, {}, b"x" * (1 << 20)
    if path == "/metrics":
        return 200, {"Content-Type": "text/plain; version=0.0.4"}, b"app_requests_total 7\n"
    if path == "/om":
        return (
            200,
            {"Content-Type": "application/openmetrics-text; version=1.0.0; charset=utf-8"},
            b"# TYPE app_om counter\napp_om_total 3\n# EOF\n",
        )
    if path == "/envoy/stats/prometheus":
        return 200, {}, b"envoy_cluster_upstream_cx_total 11\n"
    return 404, {}, b"no"


class HttpApp:
    """An HTTP/1.1 app on 127.0.0.1 answering with ``answer``; ``/stall`` never answers."""

    def __init__(self, answer: Answer = default_answer) -> None:
        self.answer = answer
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.peers: list[str] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = bound_port(self._server)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            self.requests.append((path, headers))
            self.peers.append(writer.get_extra_info("peername")[0])
            if path.startswith("/stall"):
                await asyncio.sleep(3600)
            if path == "/drip":  # headers at once, then a body that never finishes
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nx")
                await writer.drain()
                await asyncio.sleep(3600)
            status, extra, body = self.answer(path, headers)
            extra.setdefault("Content-Type", "text/plain")
            head_out = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
            head_out += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            writer.write(head_out.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


class HealthServer:
    """``grpc.health.v1.Health/Check``: SERVING for "" and "good", NOT_SERVING otherwise."""

    def __init__(self) -> None:
        self._server = Server([self])
        self.port = 0

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/grpc.health.v1.Health/Check": Handler(
                self._check, Cardinality.UNARY_UNARY, EncodedMessage, EncodedMessage
            )
        }

    async def _check(self, stream: Stream[EncodedMessage, EncodedMessage]) -> None:
        request = await stream.recv_message()
        assert request is not None
        service = request.data[2:].decode() if request.data else ""
        status = 1 if service in ("", "good") else 2
        await stream.send_message(EncodedMessage(bytes([0x08, status])))

    async def start(self) -> int:
        await self._server.start("127.0.0.1", 0)
        self.port = bound_port(self._server)
        return self.port

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


@contextlib.asynccontextmanager
async def running(app: HttpApp | HealthServer) -> AsyncIterator[int]:
    port = await app.start()
    try:
        yield port
    finally:
        await app.close()
