"""Citadel's counters in the Prometheus text format, under Istio's metric names.

A :class:`CitadelCollector` reads the server's counters when scraped (there is no second copy
to keep in step) and turns them into the families istiod's CA exports
(``security/pkg/server/ca/monitoring.go``). Istio's exporter writes counters without the
``_total`` suffix that ``prometheus_client`` adds, so :func:`render_metrics` writes the text
format itself from the registry's families: a scraper sees the very series names Istio's
dashboards and alerts query. :class:`MetricsHttpServer` serves them at ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterable, Mapping

import attrs
from cryptography import x509
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from istio_sdk._grpc import TlsAcceptStats

__all__ = ["CONTENT_TYPE", "CitadelCollector", "MetricsHttpServer", "render_metrics"]


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# How each failure reason of CitadelStats.failed is counted in Istio's families.
_PARSING_REASONS = ("invalid_csr", "invalid_request")
_SIGN_ERROR_LABELS = {"invalid_ttl": "TTL_ERROR", "internal": "CERT_GEN_ERROR"}


@attrs.frozen
class CitadelCounts:
    """What the collector reads at each scrape."""

    signed: int
    failed: Mapping[str, int]
    root_certificate: x509.Certificate
    signing_certificate: x509.Certificate
    tls: TlsAcceptStats


class CitadelCollector(Collector):
    """Istio's ``citadel_server_*`` families, read from ``counts()`` at each scrape."""

    def __init__(self, counts: Callable[[], CitadelCounts]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        counts = self._counts()
        failed = counts.failed

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        yield counter(
            "citadel_server_csr_count",
            "The number of CSRs received by Citadel server.",
            counts.signed + sum(failed.values()),
        )
        yield counter(
            "citadel_server_success_cert_issuance_count",
            "The number of certificates issuances that have succeeded.",
            counts.signed,
        )
        yield counter(
            "citadel_server_authentication_failure_count",
            "The number of authentication failures.",
            failed.get("unauthenticated", 0),
        )
        yield counter(
            "citadel_server_csr_parsing_err_count",
            "The number of errors occurred when parsing the CSR.",
            sum(failed.get(reason, 0) for reason in _PARSING_REASONS),
        )
        # Istio counts CSRs whose identity it cannot read; this CA never takes the identity
        # from the CSR (the credential decides), so the family is there for dashboards only.
        yield counter(
            "citadel_server_id_extraction_err_count",
            "The number of errors occurred when extracting the ID from CSR.",
            0,
        )
        sign_errors = CounterMetricFamily(
            "citadel_server_csr_sign_err_count",
            "The number of errors occurred when signing the CSR.",
            labels=["error"],
        )
        for reason, label in _SIGN_ERROR_LABELS.items():
            sign_errors.add_metric([label], failed.get(reason, 0))
        yield sign_errors
        yield GaugeMetricFamily(
            "citadel_server_root_cert_expiry_timestamp",
            "The unix timestamp, in seconds, when Citadel root cert will expire.",
            value=counts.root_certificate.not_valid_after_utc.timestamp(),
        )
        yield GaugeMetricFamily(
            "citadel_server_cert_chain_expiry_timestamp",
            "The unix timestamp, in seconds, when Citadel cert chain will expire.",
            value=counts.signing_certificate.not_valid_after_utc.timestamp(),
        )
        # Not Istio's: what the TLS handshake gate did with accepted connections.
        handshakes = CounterMetricFamily(
            "citadel_server_tls_handshake_count",
            "Connections whose TLS handshake ended, by result (istio-sdk).",
            labels=["result"],
        )
        handshakes.add_metric(["completed"], counts.tls.completed)
        handshakes.add_metric(["failed"], counts.tls.failed)
        handshakes.add_metric(["evicted"], counts.tls.evicted)
        yield handshakes
        yield GaugeMetricFamily(
            "citadel_server_tls_handshakes_pending",
            "Connections inside their TLS handshake now (istio-sdk).",
            value=counts.tls.pending,
        )


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _sample_line(name: str, sample: Sample) -> str:
    value = _number(sample.value)
    if not sample.labels:
        return f"{name} {value}"
    labels = ",".join(f'{key}="{_escape_label(text)}"' for key, text in sample.labels.items())
    return f"{name}{{{labels}}} {value}"


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format (0.0.4) of ``registry``, counters without ``_total``."""
    lines: list[str] = []
    for family in registry.collect():
        lines.append(f"# HELP {family.name} {_escape_help(family.documentation)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            if family.type == "counter":
                if sample.name.endswith("_created"):
                    continue
                lines.append(_sample_line(family.name, sample))
            else:
                lines.append(_sample_line(sample.name, sample))
    return ("\n".join(lines) + "\n").encode("utf-8")


_MAX_REQUEST_HEAD_BYTES = 8 * 1024
_REQUEST_TIMEOUT_SECONDS = 10.0


class MetricsHttpServer:
    """A minimal HTTP/1.1 server: ``GET /metrics`` answers the registry, one request per
    connection. Request heads are bounded in size and time (a stalled scraper is dropped)."""

    def __init__(
        self, registry: CollectorRegistry, *, request_timeout: float = _REQUEST_TIMEOUT_SECONDS
    ) -> None:
        self.registry = registry
        self.request_timeout = request_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port``; returns the bound port."""
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=_MAX_REQUEST_HEAD_BYTES
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._connections):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            async with asyncio.timeout(self.request_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, content_type = self._answer(head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii")
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # stalled, cut short or oversized: nothing worth answering
        except ConnectionError:
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return "400 Bad Request", b"bad request\n", "text/plain"
        method, target, _version = parts
        if target.split("?", 1)[0] != "/metrics":
            return "404 Not Found", b"not found\n", "text/plain"
        if method != "GET":
            return "405 Method Not Allowed", b"use GET\n", "text/plain"
        return "200 OK", render_metrics(self.registry), CONTENT_TYPE
