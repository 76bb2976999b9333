"""The injector's HTTPS server: a thin loop around :func:`webhook.answer_request`.

HTTP/1.1 over TLS, connections kept alive between requests as the kube-apiserver's client
keeps them. A request head is bounded (16 KiB) and so is its body (:data:`MAX_BODY_BYTES`,
refused with 413 before it is read); a body without ``Content-Length`` gets 411; a peer that
stalls is dropped after ``request_timeout``. Decoding, injection and patch building run in a
worker thread, never on the event loop. :meth:`InjectorServer.close` stops listening, closes
every connection and waits for their handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from istio_sdk._http import close_server
from istio_sdk._net import bound_port
from istio_sdk._webhook_tls import WebhookCertificate, webhook_ssl_context
from istio_sdk.proxy.inject.settings import InjectSettings
from istio_sdk.proxy.inject.webhook import MAX_BODY_BYTES, WebhookAnswer, answer_request

__all__ = ["InjectorServer"]

log = logging.getLogger("istio_sdk.proxy.inject.server")

MAX_HEAD_BYTES = 16 * 1024
REQUEST_TIMEOUT_SECONDS = 10.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


class _Head:
    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.headers = headers


def _parse_head(data: bytes) -> _Head | None:
    lines = data.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return _Head(parts[0], parts[1], headers)


class InjectorServer:
    """The mutating webhook over HTTPS, answering with ``settings``.

    ``certificate`` is what the server presents (see :mod:`istio_sdk._webhook_tls`).
    ``requests`` counts answers by HTTP status, ``connections`` the connections accepted.
    ``namespaces`` (namespace name -> labels; ``None``: the apiserver selects) makes the server
    apply Istio's webhook selectors itself.
    """

    def __init__(
        self,
        settings: InjectSettings,
        certificate: WebhookCertificate,
        *,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.namespaces = namespaces
        self.certificate = certificate
        self.request_timeout = request_timeout
        self.requests: dict[int, int] = {}
        self.connections = 0
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: an ephemeral port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("the injector is already started")
        context = webhook_ssl_context(self.certificate)
        self._server = await asyncio.start_server(
            self._serve, host, port, ssl=context, limit=MAX_HEAD_BYTES
        )
        self.port = bound_port(self._server)
        log.info("sidecar injector listening on %s:%d", host, self.port)
        return self.port

    async def close(self) -> None:
        """Stop listening and close every open connection (nothing happens when not started)."""
        server, self._server = self._server, None
        if server is None:
            return
        await close_server(server, self._handlers)

    async def _write(
        self, writer: asyncio.StreamWriter, answer: WebhookAnswer, *, close: bool
    ) -> None:
        self.requests[answer.status] = self.requests.get(answer.status, 0) + 1
        reason = _REASONS.get(answer.status, "")
        head = (
            f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: {answer.content_type}\r\n"
            f"Content-Length: {len(answer.body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n"
        )
        writer.write(head.encode("ascii") + answer.body)
        await writer.drain()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; whether the connection stays open for another."""
        async with asyncio.timeout(self.request_timeout):
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    await self._write(
                        writer, WebhookAnswer.text(400, "incomplete request"), close=True
                    )
                return False
            except asyncio.LimitOverrunError:
                answer = WebhookAnswer.text(
                    400, f"request head is larger than {MAX_HEAD_BYTES} bytes"
                )
                await self._write(writer, answer, close=True)
                return False
            head = _parse_head(raw)
            if head is None:
                await self._write(writer, WebhookAnswer.text(400, "bad request"), close=True)
                return False
            if "chunked" in head.headers.get("transfer-encoding", "").lower():
                answer = WebhookAnswer.text(411, "a request body needs a Content-Length")
                await self._write(writer, answer, close=True)
                return False
            length_text = head.headers.get("content-length", "0")
            if not (length_text.isascii() and length_text.isdigit()) or len(length_text) > 12:
                await self._write(writer, WebhookAnswer.text(400, "bad Content-Length"), close=True)
                return False
            length = int(length_text)
            if length > MAX_BODY_BYTES:
                answer = WebhookAnswer.text(
                    413, f"request body is larger than {MAX_BODY_BYTES} bytes"
                )
                await self._write(writer, answer, close=True)
                return False
            body = await reader.readexactly(length)
        answer = await asyncio.to_thread(
            answer_request,
            method=head.method,
            path=head.target,
            content_type=head.headers.get("content-type"),
            body=body,
            settings=self.settings,
            namespaces=self.namespaces,
        )
        keep = head.headers.get("connection", "").lower() != "close"
        await self._write(writer, answer, close=not keep)
        return keep

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        self.connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # cut short, stalled or gone: nothing worth answering
        except asyncio.CancelledError:
            pass  # closing the server: the connection goes below
        except Exception:
            log.exception("injector request failed")
            with contextlib.suppress(Exception):
                await self._write(writer, WebhookAnswer.text(500, "internal error"), close=True)
        finally:
            self._handlers.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
