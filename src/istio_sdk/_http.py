"""The small HTTP/1.1 server behind every server's monitoring port (``/metrics``, ``/debug/*``).

One request a connection. Routes map a path to a function returning ``(content type, body)``
for GET; a server that needs more (other methods, request headers, status codes, work that
awaits) passes a ``handler`` coroutine that answers every path the routes do not hold with an
:class:`HttpResponse`. A request head is bounded in size (16 KiB) and in time (a scraper that
stalls is dropped unanswered); a request line that is not HTTP gets 400, another method 405, an
unknown path 404 listing the routes. :meth:`MonitoringHttpServer.close` closes the listening
socket and every connection still open and waits for their handlers, so a stopped server
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from prometheus_client.registry import Collector

from istio_sdk._metrics import CONTENT_TYPE, render_metrics
from istio_sdk._net import bound_port

__all__ = [
    "HttpHandler",
    "HttpRequest",
    "HttpResponse",
    "MonitoringHttpServer",
    "Route",
    "close_server",
    "json_body",
    "metrics_route",
]

log = logging.getLogger("istio_sdk.http")

Route = Callable[[], tuple[str, bytes]]
"""What a path answers: ``(content type, body)``, computed per request."""


@attrs.frozen
class HttpRequest:
    """A parsed request head: the method, the path and query, the headers as sent, the peer."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    peer_host: str = ""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


@attrs.frozen
class HttpResponse:
    """What a handler answers: a status code, a content type and the body."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]
"""Answers the requests whose path is not one of the routes."""

MAX_REQUEST_HEAD_BYTES = 16 * 1024
REQUEST_TIMEOUT_SECONDS = 10.0


async def close_server(
    server: asyncio.Server, handlers: Mapping[asyncio.Task[Any], asyncio.StreamWriter]
) -> None:
    """Stop ``server`` listening, close every connection its ``handlers`` (task -> writer)
    serve, and wait for the handlers (cancelled after 2 s) and the server."""
    server.close()
    for writer in list(handlers.values()):
        writer.close()
    tasks = list(handlers)
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=2.0)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    await server.wait_closed()


def json_body(doc: Any) -> tuple[str, bytes]:
    """A JSON response body."""
    return "application/json", json.dumps(doc, indent=1, sort_keys=True).encode()


def metrics_route(registry: Collector) -> Route:
    """The ``/metrics`` route of ``registry`` (see :func:`istio_sdk._metrics.render_metrics`)."""
    return lambda: (CONTENT_TYPE, render_metrics(registry))


class MonitoringHttpServer:
    """Serves ``routes`` over plain HTTP on one port."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        handler: HttpHandler | None = None,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._routes = dict(routes)
        self._handler = handler
        self.request_timeout = request_timeout
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: an ephemeral port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("the HTTP server is already started")
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_REQUEST_HEAD_BYTES
        )
        self.port = bound_port(self._server)
        return self.port

    async def close(self) -> None:
        """Stop listening and close every open connection (nothing happens when not started)."""
        server, self._server = self._server, None
        if server is None:
            return
        await close_server(server, self._handlers)

    @staticmethod
    def _parse(head: bytes, peer_host: str) -> HttpRequest | None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/") or not parts[1]:
            return None
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                return None
            headers.append((name, value.strip()))
        path, _, query = parts[1].partition("?")
        return HttpRequest(parts[0], path, query, tuple(headers), peer_host)

    async def _answer(self, head: bytes, peer_host: str) -> tuple[str, str, bytes]:
        request = self._parse(head, peer_host)
        if request is None:
            return "400 Bad Request", "text/plain", b"bad request\n"
        route = self._routes.get(request.path)
        if route is None and self._handler is not None:
            response = await self._handler(request)
            try:
                reason = http.HTTPStatus(response.status).phrase
            except ValueError:
                reason = "Status"
            return f"{response.status} {reason}", response.content_type, response.body
        if route is None:
            body = {"error": f"no such path {request.path[:200]!r}", "paths": sorted(self._routes)}
            return ("404 Not Found", *json_body(body))
        if request.method != "GET":
            return ("405 Method Not Allowed", *json_body({"error": "only GET is served"}))
        return ("200 OK", *route())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        try:
            async with asyncio.timeout(self.request_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            peer = writer.get_extra_info("peername")
            peer_host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            status, content_type, payload = await self._answer(head, peer_host)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode("ascii")
                + payload
            )
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ConnectionError,
        ):
            pass  # stalled, cut short, oversized or gone: nothing worth answering
        except asyncio.CancelledError:
            pass  # closing the server: the connection goes below
        except Exception:
            log.exception("HTTP handler failed")
        finally:
            self._handlers.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
