"""What every admission webhook does alike (the sidecar injector, Galley's validation webhook).

The kube-apiserver POSTs an ``AdmissionReview`` (``admission.k8s.io/v1`` or ``v1beta1``) and
expects one back in the same apiVersion, carrying the request's ``uid``. Istio's webhooks share
their answers to what is no AdmissionReview at all, and so do ours:

- an HTTP error for a request no review can be read from: an empty body 400 (``no body
  found``), a body over :data:`MAX_BODY_BYTES` 413, a content type other than JSON 415;
- a denied review naming the problem for a body that is JSON but no usable review (``could not
  decode body: ...``, a missing ``request`` or ``uid``): :func:`read_review`.

:class:`AdmissionServer` is the HTTPS loop both webhooks run: HTTP/1.1 with keep-alive, a
bounded head and body, a stalled peer dropped, and the answer computed in a worker thread (never
on the event loop). A webhook gives it a function from an HTTP request to a
:class:`WebhookAnswer`. Nothing here raises on bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from istio_sdk._http import close_server
from istio_sdk._net import bound_port
from istio_sdk._webhook_tls import WebhookCertificate, webhook_ssl_context
from istio_sdk.config import ConfigError
from istio_sdk.config._yaml import describe_json, parse_json

__all__ = [
    "ADMISSION_VERSIONS",
    "MAX_BODY_BYTES",
    "AdmissionRequest",
    "AdmissionServer",
    "WebhookAnswer",
    "admission_review",
    "check_http",
    "decode_review",
    "read_review",
]

log = logging.getLogger("istio_sdk.admission")

MAX_BODY_BYTES = 6 * 1024 * 1024
"""The largest request body read (istiod's limit)."""

ADMISSION_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
"""The AdmissionReview versions served; a review that cannot be read is answered in the first."""

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


@attrs.frozen
class WebhookAnswer:
    """An HTTP answer: status, content type and body."""

    status: int
    content_type: str
    body: bytes

    @classmethod
    def text(cls, status: int, message: str) -> WebhookAnswer:
        return cls(status, "text/plain; charset=utf-8", (message + "\n").encode())

    @classmethod
    def review(cls, review: Mapping[str, Any]) -> WebhookAnswer:
        """200 with an AdmissionReview (see :func:`admission_review`)."""
        return cls(200, "application/json", json.dumps(review, separators=(",", ":")).encode())


def admission_review(api_version: str, response: Mapping[str, Any]) -> dict[str, Any]:
    """The AdmissionReview answering with ``response`` (``uid``, ``allowed``, ...)."""
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": dict(response)}


def _refused(message: str) -> dict[str, Any]:
    log.info("admission review refused: %.300s", message)
    return admission_review(
        ADMISSION_VERSIONS[0], {"allowed": False, "status": {"message": message}}
    )


@attrs.frozen
class AdmissionRequest:
    """The ``request`` of an AdmissionReview, with the apiVersion to answer in."""

    api_version: str
    uid: str
    request: Mapping[str, Any]

    def answer(self, response: Mapping[str, Any]) -> dict[str, Any]:
        """The review answering this request with ``response`` (its uid added)."""
        return admission_review(self.api_version, {"uid": self.uid, **response})

    def allow(self, **fields: Any) -> dict[str, Any]:
        """The review allowing this request (``fields``: ``patch``, ``warnings``, ...)."""
        return self.answer({"allowed": True, **fields})

    def deny(self, message: str) -> dict[str, Any]:
        """The review denying this request with ``message``."""
        return self.answer({"allowed": False, "status": {"message": message}})


def read_review(review: object) -> AdmissionRequest | dict[str, Any]:
    """The request of a decoded AdmissionReview (any JSON value), or the review denying it."""
    if not isinstance(review, Mapping):
        return _refused(
            f"could not decode body: expected an AdmissionReview object, "
            f"got {describe_json(review)}"
        )
    api_version = review.get("apiVersion")
    if api_version not in ADMISSION_VERSIONS or review.get("kind") != "AdmissionReview":
        return _refused(
            f"could not decode body: expected kind AdmissionReview of apiVersion "
            f"{' or '.join(ADMISSION_VERSIONS)}, got kind {review.get('kind')!r:.60} "
            f"of apiVersion {api_version!r:.60}"
        )
    assert isinstance(api_version, str)
    request = review.get("request")
    if not isinstance(request, Mapping):
        return admission_review(
            api_version,
            {"allowed": False, "status": {"message": "the AdmissionReview has no request"}},
        )
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        return admission_review(
            api_version,
            {"allowed": False, "status": {"message": "the AdmissionReview request has no uid"}},
        )
    return AdmissionRequest(api_version, uid, request)


def decode_review(body: bytes | str) -> AdmissionRequest | dict[str, Any]:
    """The request of an AdmissionReview's JSON text, or the review denying it (within the
    config layer's limits on depth and numbers; NaN and Infinity are refused)."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _refused(f"could not decode body: not UTF-8 at byte {exc.start}")
    try:
        (document,) = parse_json(body, "request body")
    except ConfigError as exc:
        return _refused(f"could not decode body: {exc.problem.message}")
    return read_review(document.value)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def check_http(
    *, method: str, content_type: str | None, body: bytes, what: str
) -> WebhookAnswer | None:
    """The HTTP error for a request that carries no review to read (None: read it).

    ``what`` names the webhook in the 405 message."""
    if method != "POST":
        return WebhookAnswer.text(405, f"the {what} accepts POST only")
    if not body:
        return WebhookAnswer.text(400, "no body found")
    if len(body) > MAX_BODY_BYTES:
        return WebhookAnswer.text(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    if not _is_json(content_type):
        return WebhookAnswer.text(415, "invalid Content-Type, want `application/json`")
    return None


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


Answer = Callable[[str, str, "str | None", bytes], WebhookAnswer]
"""A webhook's decision: ``(method, path, content type, body)`` to the HTTP answer."""


class AdmissionServer:
    """An admission webhook over HTTPS: ``answer`` decides, this moves the bytes.

    ``certificate`` is what the server presents (see :mod:`istio_sdk._webhook_tls`); ``name``
    names the webhook in logs. ``requests`` counts answers by HTTP status, ``connections`` the
    connections accepted. A request head is bounded (16 KiB) and so is its body
    (:data:`MAX_BODY_BYTES`, refused with 413 before it is read); a body without
    ``Content-Length`` gets 411; a peer that stalls is dropped after ``request_timeout``.
    """

    def __init__(
        self,
        answer: Answer,
        certificate: WebhookCertificate,
        *,
        name: str,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._answer = answer
        self.certificate = certificate
        self.name = name
        self.request_timeout = request_timeout
        self.requests: dict[int, int] = {}
        self.connections = 0
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: an ephemeral port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError(f"the {self.name} is already started")
        context = webhook_ssl_context(self.certificate)
        self._server = await asyncio.start_server(
            self._serve, host, port, ssl=context, limit=MAX_HEAD_BYTES
        )
        self.port = bound_port(self._server)
        log.info("%s listening on %s:%d", self.name, host, self.port)
        return self.port

    async def close(self) -> None:
        """Stop listening and close every open connection (nothing happens when not started)."""
        server, self._server = self._server, None
        if server is None:
            return
        await close_server(server, self._handlers)

    async def __aenter__(self) -> AdmissionServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, message: str) -> bool:
        await self._write(writer, WebhookAnswer.text(status, message), close=True)
        return False

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; whether the connection stays open for another."""
        async with asyncio.timeout(self.request_timeout):
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    return await self._refuse(writer, 400, "incomplete request")
                return False
            except asyncio.LimitOverrunError:
                return await self._refuse(
                    writer, 400, f"request head is larger than {MAX_HEAD_BYTES} bytes"
                )
            head = _parse_head(raw)
            if head is None:
                return await self._refuse(writer, 400, "bad request")
            if "chunked" in head.headers.get("transfer-encoding", "").lower():
                return await self._refuse(writer, 411, "a request body needs a Content-Length")
            length_text = head.headers.get("content-length", "0")
            if not (length_text.isascii() and length_text.isdigit()) or len(length_text) > 12:
                return await self._refuse(writer, 400, "bad Content-Length")
            if int(length_text) > MAX_BODY_BYTES:
                return await self._refuse(
                    writer, 413, f"request body is larger than {MAX_BODY_BYTES} bytes"
                )
            body = await reader.readexactly(int(length_text))
        answer = await asyncio.to_thread(
            self._answer, head.method, head.target, head.headers.get("content-type"), body
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
            log.exception("%s request failed", self.name)
            with contextlib.suppress(Exception):
                await self._write(writer, WebhookAnswer.text(500, "internal error"), close=True)
        finally:
            self._handlers.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
