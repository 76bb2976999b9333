"""A tiny HTTP/1.1 server for debug and metrics endpoints (GET only, one request a connection).

Routes map a path to a function returning ``(content type, body)``; unknown paths get a 404
listing the routes. :meth:`DebugHttpServer.close` closes the listening socket and every
connection still open, and waits for their handlers, so a stopped server leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from istio_sdk._net import bound_port

__all__ = ["DebugHttpServer", "Route", "json_body"]

log = logging.getLogger("istio_sdk.pilot.debug_http")

Route = Callable[[], tuple[str, bytes]]

_READ_TIMEOUT = 5.0
_MAX_HEAD = 16 * 1024


def json_body(doc: Any) -> tuple[str, bytes]:
    """A JSON response body."""
    return "application/json", json.dumps(doc, indent=1, sort_keys=True).encode()


class DebugHttpServer:
    """Serves ``routes`` over plain HTTP on one port."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: ephemeral); returns the port."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=_MAX_HEAD)
        self.port = bound_port(self._server)
        return self.port

    async def close(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._handlers.values()):
            writer.close()
        handlers = list(self._handlers)
        if handlers:
            _, pending = await asyncio.wait(handlers, timeout=2.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._server.wait_closed()
        self._server = None

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
        if len(parts) < 2 or parts[0] != "GET":
            return ("405 Method Not Allowed", *json_body({"error": "only GET is served"}))
        route = self._routes.get(path)
        if route is None:
            body = {"error": f"no such path {path[:200]!r}", "paths": sorted(self._routes)}
            return ("404 Not Found", *json_body(body))
        return ("200 OK", *route())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            status, content_type, payload = self._answer(head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ConnectionError,
        ):
            pass
        except asyncio.CancelledError:
            pass  # closing the server: the connection goes below
        except Exception:
            log.exception("debug HTTP handler failed")
        finally:
            self._handlers.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
