"""Running one rewritten application probe, as pilot-agent's status server does for kubelet.

- HTTP: GET the app's port and path with the headers kubelet sent (its ``Host`` moved from the
  status port to the app's port), no keep-alive, TLS unverified as kubelet does; redirects to the
  same host are followed (at most 10), any other redirect counts as success (200); otherwise the
  app's status code and at most 10 KiB of its body are answered.
- TCP: a connection that opens within the timeout is success.
- gRPC: ``grpc.health.v1.Health/Check`` for the probe's service; ``SERVING`` is success.

Success answers 200 (or the app's own code), failure 500, and every probe is bounded by its
``timeoutSeconds``: an app that accepts and then stalls costs the probe its timeout, no more.
Connections leave from ``source_address`` (pilot-agent uses 127.0.0.6 so the iptables capture
does not send probes back through Envoy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable

import attrs
import httpx
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from istio_sdk.pilot._raw import EncodedMessage
from istio_sdk.proxy.agent.app_probers import AppProber, ProbeKind
from istio_sdk.xds.errors import MalformedMessageError
from istio_sdk.xds.wire import iter_fields

__all__ = ["MAX_PROBE_BODY_BYTES", "AppProbeRunner", "ProbeResult"]

log = logging.getLogger("istio_sdk.proxy.agent.probes")

MAX_PROBE_BODY_BYTES = 10 * 1024
MAX_REDIRECTS = 10
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = 1
# Headers that describe kubelet's connection to the agent, not the agent's request to the app.
_HOP_HEADERS = frozenset(
    {"connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "te"}
)


@attrs.frozen
class ProbeResult:
    """What the status server answers for a probe: a status code and a (bounded) body."""

    status: int
    body: bytes = b""

    @property
    def ok(self) -> bool:
        """Kubernetes' reading: 200-399 passes."""
        return 200 <= self.status < 400


_FAILED = ProbeResult(500)


class AppProbeRunner:
    """Runs probes against the app at ``host``, leaving from ``source_address`` (``None``: any)."""

    def __init__(
        self, *, host: str = "127.0.0.1", source_address: str | None = None, status_port: int = 0
    ) -> None:
        self.host = host
        self.source_address = source_address
        self.status_port = status_port
        transport = httpx.AsyncHTTPTransport(
            local_address=source_address,
            verify=_unverified_tls(),
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        # The probe's own timeoutSeconds bounds it (run()); httpx's per-read timeouts are off.
        self._http = httpx.AsyncClient(
            transport=transport, follow_redirects=False, trust_env=False, timeout=None
        )

    async def aclose(self) -> None:
        """Release the HTTP client."""
        await self._http.aclose()

    async def run(self, prober: AppProber, headers: Iterable[tuple[str, str]] = ()) -> ProbeResult:
        """Probe the app once; never raises for anything the app does."""
        try:
            async with asyncio.timeout(prober.timeout_seconds):
                if prober.kind is ProbeKind.HTTP:
                    return await self._http_probe(prober, list(headers))
                if prober.kind is ProbeKind.TCP:
                    return await self._tcp_probe(prober)
                return await self._grpc_probe(prober)
        except TimeoutError:
            log.warning(
                "probe of port %d timed out after %d s", prober.port, prober.timeout_seconds
            )
            return _FAILED

    def _host_port(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    def _forwarded_headers(
        self, prober: AppProber, headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        forwarded: list[tuple[str, str]] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered in _HOP_HEADERS:
                continue
            if lowered == "host":
                host, sep, port = value.rpartition(":")
                if sep and port == str(self.status_port) and host:
                    forwarded.append((name, f"{host}:{prober.port}"))
                    continue
            forwarded.append((name, value))
        return forwarded

    async def _http_probe(self, prober: AppProber, headers: list[tuple[str, str]]) -> ProbeResult:
        scheme = "https" if prober.scheme == "HTTPS" else "http"
        url = httpx.URL(f"{scheme}://{self._host_port(prober.port)}{prober.path}")
        request_headers = self._forwarded_headers(prober, headers)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                request = self._http.build_request("GET", url, headers=request_headers)
                response = await self._http.send(request, stream=True)
            except (httpx.HTTPError, OSError, ValueError) as exc:
                log.warning("HTTP probe of %s failed: %s", url, exc)
                return _FAILED
            try:
                if response.is_redirect:
                    target = url.join(response.headers.get("location", ""))
                    if target.host != url.host:
                        return ProbeResult(200)  # leaving the pod: kubelet counts it as success
                    url = target
                    continue
                body = await _read_at_most(response, MAX_PROBE_BODY_BYTES)
                return ProbeResult(response.status_code, body)
            except (httpx.HTTPError, OSError) as exc:
                log.warning("HTTP probe of %s failed reading the answer: %s", url, exc)
                return _FAILED
            finally:
                await response.aclose()
        log.warning("HTTP probe of port %d: stopped after %d redirects", prober.port, MAX_REDIRECTS)
        return _FAILED

    async def _tcp_probe(self, prober: AppProber) -> ProbeResult:
        local = (self.source_address, 0) if self.source_address else None
        try:
            _, writer = await asyncio.open_connection(self.host, prober.port, local_addr=local)
        except OSError as exc:
            log.warning("TCP probe of port %d failed: %s", prober.port, exc)
            return _FAILED
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return ProbeResult(200)

    async def _grpc_probe(self, prober: AppProber) -> ProbeResult:
        channel = Channel(self.host, prober.port)
        try:
            async with channel.request(
                _HEALTH_CHECK, Cardinality.UNARY_UNARY, EncodedMessage, EncodedMessage
            ) as stream:
                await stream.send_message(
                    EncodedMessage(_health_request(prober.grpc_service)), end=True
                )
                message = await stream.recv_message()
                await stream.recv_trailing_metadata()
        except GRPCError as exc:
            log.warning("gRPC probe of port %d failed: %s %s", prober.port, exc.status, exc.message)
            return _FAILED
        except (ProtocolError, StreamTerminatedError, OSError) as exc:
            log.warning("gRPC probe of port %d failed: %s", prober.port, exc)
            return _FAILED
        finally:
            channel.close()
        if message is not None and _health_status(message.data) == _SERVING:
            return ProbeResult(200)
        return _FAILED


def _unverified_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # kubelet does not verify HTTPS probes either
    return context


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _health_request(service: str) -> bytes:
    """A ``grpc.health.v1.HealthCheckRequest`` naming ``service`` (field 1)."""
    data = service.encode("utf-8")
    if not data:
        return b""
    length = len(data)
    prefix = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        prefix.append(byte | (0x80 if length else 0))
        if not length:
            break
    return b"\x0a" + bytes(prefix) + data


def _health_status(data: bytes) -> int:
    """The ``status`` of a ``HealthCheckResponse`` (0, UNKNOWN, when absent or garbled)."""
    try:
        for number, wire_type, value in iter_fields(data):
            if number == 1 and wire_type == 0 and isinstance(value, int):
                return value
    except MalformedMessageError:  # a garbled answer is a failed probe, not a crash
        return 0
    return 0
