"""Citadel's counters in the Prometheus text format, under Istio's metric names.

A :class:`CitadelCollector` reads the server's counters when scraped (there is no second copy
to keep in step) and turns them into the families istiod's CA exports
(``security/pkg/server/ca/monitoring.go``). :mod:`istio_sdk._metrics` renders them with the
series names Istio writes (``citadel_server_csr_count``, no ``_total``) and
:mod:`istio_sdk._http` serves them at ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import attrs
from cryptography import x509
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from istio_sdk._grpc import TlsAcceptStats

__all__ = ["CitadelCollector", "CitadelCounts"]

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
