"""The small HTTP/1.1 server behind every server's monitoring port (``/metrics``, ``/debug/*``).

GET only, one request a connection. Routes map a path to a function returning
``(content type, body)``. A request head is bounded in size (16 KiB) and in time (a scraper that
stalls is dropped unanswered); a request line that is not HTTP gets 400, another method 405, an
unknown path 404 listing the routes. :meth:`MonitoringHttpServer.close` closes the listening
socket and every connection still open and waits for their handlers, so a stopped server
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client.registry import Collector

from istio_sdk._metrics import CONTENT_TYPE, render_metrics
from istio_sdk._net import bound_port

__all__ = ["MonitoringHttpServer", "Route", "close_server", "json_body", "metrics_route"]

log = logging.getLogger("istio_sdk.http")

Route = Callable[[], tuple[str, bytes]]
"""What a path answers: ``(content type, body)``, computed per request."""

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
        self, routes: Mapping[str, Route], *, request_timeout: float = REQUEST_TIMEOUT_SECONDS
    ) -> None:
        self._routes = dict(routes)
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

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", "text/plain", b"bad request\n"
        method, target, _version = parts
        path = target.split("?", 1)[0]
        route = self._routes.get(path)
        if route is None:
            body = {"error": f"no such path {path[:200]!r}", "paths": sorted(self._routes)}
            return ("404 Not Found", *json_body(body))
        if method != "GET":
            return ("405 Method Not Allowed", *json_body({"error": "only GET is served"}))
        return ("200 OK", *route())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        try:
            async with asyncio.timeout(self.request_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            status, content_type, payload = self._answer(head)
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
