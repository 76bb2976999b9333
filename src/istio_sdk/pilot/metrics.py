"""What the discovery server counts, readable from Python and scraped by Prometheus.

:class:`ServerMetrics` keeps plain counters (``metrics.pushes``, ``metrics.nacks``, ...) and
histograms for programs and tests; its ``registry`` (a ``prometheus_client`` registry of its own,
so several servers in one process never collide) reads them at scrape time under Istio's metric
names:

* ``pilot_xds`` (gauge): connected proxies.
* ``pilot_xds_pushes`` (counter, label ``type``: ``cds``, ``eds``, ``lds``, ``rds``, ...; and
  ``cds_senderr`` etc. for failed sends, as istiod counts them).
* ``pilot_total_xds_rejects`` (counter, label ``type``): NACKs.
* ``pilot_xds_expired_nonce`` (counter, label ``type``): answers to superseded responses.
* ``pilot_total_xds_internal_errors`` (counter): generator failures.
* ``pilot_xds_push_time`` and ``pilot_xds_send_time`` (histograms, label ``type``): seconds to
  encode and send a response, and to hand it to the stream.
* ``pilot_proxy_convergence_time`` (histogram): seconds from a config change to a proxy having
  been sent everything it needs.
* ``pilot_debounce_time`` (histogram): seconds a change waited in the debouncer.
* ``pilot_xds_config_size_bytes`` (histogram, label ``type``): response sizes.

:meth:`ServerMetrics.prometheus_text` is what the debug HTTP server returns at ``/metrics``: the
Prometheus text format with the series names istiod writes (counters without a ``_total``
suffix, ``pilot_xds_pushes{type="cds"}``; see :mod:`istio_sdk._metrics`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from typing import Any

import attrs
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from istio_sdk._metrics import render_metrics
from istio_sdk.xds.types import is_known, resource_type

__all__ = ["LatencyHistogram", "ServerMetrics", "metric_type"]

_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Istio's buckets (pilot/pkg/xds/monitoring.go).
PUSH_BUCKETS = (0.01, 0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0)
CONVERGENCE_BUCKETS = (0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0)
SIZE_BUCKETS = (1.0, 10_000.0, 1_000_000.0, 4_000_000.0, 10_000_000.0, 40_000_000.0)


def metric_type(type_url: str) -> str:
    """The ``type`` label of a type URL, as istiod writes it (``cds``, ``eds``, ...)."""
    if not is_known(type_url):
        return "other"
    return resource_type(type_url).short_name.lower()


@attrs.define
class LatencyHistogram:
    """Cumulative histogram (Prometheus-style upper bounds, plus sum and count)."""

    buckets: tuple[float, ...] = _BUCKETS
    counts: list[int] = attrs.field()
    total: float = 0.0
    count: int = 0

    @counts.default
    def _zeros(self) -> list[int]:
        return [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (0 when empty)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return float("inf")

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs ending with ``+Inf``."""
        les = [str(b) for b in self.buckets] + ["+Inf"]
        return list(zip(les, (float(c) for c in itertools.accumulate(self.counts)), strict=True))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``le`` buckets (cumulative), sum and count."""
        return {
            "buckets": {le: int(c) for le, c in self.cumulative()},
            "sum": self.total,
            "count": self.count,
        }


class ServerMetrics:
    """Counters of what one discovery server did, and the Prometheus registry reading them."""

    def __init__(self) -> None:
        self.pushes = 0
        self.push_rounds = 0
        self.pushes_by_type: dict[str, int] = {}
        self.send_failures_by_type: dict[str, int] = {}
        self.acks = 0
        self.nacks = 0
        self.nacks_by_type: dict[str, int] = {}
        self.stale_requests = 0
        self.stale_by_type: dict[str, int] = {}
        self.unknown_type_requests = 0
        self.malformed_requests = 0
        self.protocol_errors = 0
        self.generator_errors = 0
        self.send_failures = 0
        self.connections_total = 0
        self.connected_proxies = 0
        self.config_to_ack = LatencyHistogram()
        self.push_time: dict[str, LatencyHistogram] = {}
        self.send_time: dict[str, LatencyHistogram] = {}
        self.config_size: dict[str, LatencyHistogram] = {}
        self.convergence = LatencyHistogram(CONVERGENCE_BUCKETS)
        self.debounce = LatencyHistogram(PUSH_BUCKETS)
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    # -- events ----------------------------------------------------------------------------
    def connected(self) -> None:
        """A stream opened."""
        self.connections_total += 1
        self.connected_proxies += 1

    def disconnected(self) -> None:
        """A stream closed."""
        self.connected_proxies -= 1

    def pushed(self, type_url: str, size: int, push_seconds: float, send_seconds: float) -> None:
        """A response of ``size`` bytes went out."""
        self.pushes += 1
        self.pushes_by_type[type_url] = self.pushes_by_type.get(type_url, 0) + 1
        hist = self.push_time.get(type_url)
        if hist is None:
            hist = self.push_time[type_url] = LatencyHistogram(PUSH_BUCKETS)
            self.send_time[type_url] = LatencyHistogram(PUSH_BUCKETS)
            self.config_size[type_url] = LatencyHistogram(SIZE_BUCKETS)
        hist.observe(push_seconds)
        self.send_time[type_url].observe(send_seconds)
        self.config_size[type_url].observe(size)

    def send_failed(self, type_url: str) -> None:
        """A response could not be written (the peer went away)."""
        self.send_failures += 1
        self.send_failures_by_type[type_url] = self.send_failures_by_type.get(type_url, 0) + 1

    def acked(self, type_url: str, latency: float | None) -> None:
        """The current response of ``type_url`` was ACKed (``latency``: change to ACK)."""
        self.acks += 1
        if latency is not None:
            self.config_to_ack.observe(latency)

    def nacked(self, type_url: str, latency: float | None) -> None:
        """The current response of ``type_url`` was NACKed."""
        self.nacks += 1
        self.nacks_by_type[type_url] = self.nacks_by_type.get(type_url, 0) + 1
        if latency is not None:
            self.config_to_ack.observe(latency)

    def stale(self, type_url: str) -> None:
        """A request answered a superseded response."""
        self.stale_requests += 1
        self.stale_by_type[type_url] = self.stale_by_type.get(type_url, 0) + 1

    def generator_failed(self) -> None:
        """Translation of one type for one proxy scope raised."""
        self.generator_errors += 1

    def round_done(self, debounce_seconds: float) -> None:
        """A push round finished; its first change had waited ``debounce_seconds``."""
        self.push_rounds += 1
        self.debounce.observe(debounce_seconds)

    def converged(self, seconds: float) -> None:
        """One proxy was sent everything a change required, ``seconds`` after the change."""
        self.convergence.observe(seconds)

    # -- views -----------------------------------------------------------------------------
    def prometheus_text(self) -> bytes:
        """Every metric in the Prometheus text format, under Istio's series names."""
        return render_metrics(self.registry)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counters (what ``/debug/metrics`` returns)."""
        return {
            "pushes": self.pushes,
            "push_rounds": self.push_rounds,
            "pushes_by_type": dict(self.pushes_by_type),
            "acks": self.acks,
            "nacks": self.nacks,
            "stale_requests": self.stale_requests,
            "unknown_type_requests": self.unknown_type_requests,
            "malformed_requests": self.malformed_requests,
            "protocol_errors": self.protocol_errors,
            "generator_errors": self.generator_errors,
            "send_failures": self.send_failures,
            "connections_total": self.connections_total,
            "connected_proxies": self.connected_proxies,
            "config_to_ack": self.config_to_ack.to_dict(),
        }


def _histogram(
    name: str, doc: str, by_type: dict[str, LatencyHistogram] | LatencyHistogram
) -> HistogramMetricFamily:
    if isinstance(by_type, LatencyHistogram):
        family = HistogramMetricFamily(name, doc)
        family.add_metric([], by_type.cumulative(), by_type.total)
        return family
    family = HistogramMetricFamily(name, doc, labels=["type"])
    for url, hist in sorted(by_type.items()):
        family.add_metric([metric_type(url)], hist.cumulative(), hist.total)
    return family


class _Collector:
    """Reads a :class:`ServerMetrics` when Prometheus scrapes (nothing to update per event)."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        yield GaugeMetricFamily(
            "pilot_xds",
            "Number of endpoints connected to this pilot using XDS.",
            value=m.connected_proxies,
        )
        pushes = CounterMetricFamily(
            "pilot_xds_pushes",
            "Pilot build and send errors for lds, rds, cds and eds, and pushes by type.",
            labels=["type"],
        )
        for url, n in sorted(m.pushes_by_type.items()):
            pushes.add_metric([metric_type(url)], n)
        for url, n in sorted(m.send_failures_by_type.items()):
            pushes.add_metric([metric_type(url) + "_senderr"], n)
        yield pushes
        rejects = CounterMetricFamily(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            labels=["type"],
        )
        for url, n in sorted(m.nacks_by_type.items()):
            rejects.add_metric([metric_type(url)], n)
        yield rejects
        expired = CounterMetricFamily(
            "pilot_xds_expired_nonce",
            "Total number of XDS requests with an expired nonce.",
            labels=["type"],
        )
        for url, n in sorted(m.stale_by_type.items()):
            expired.add_metric([metric_type(url)], n)
        yield expired
        yield CounterMetricFamily(
            "pilot_total_xds_internal_errors",
            "Total number of internal XDS errors in pilot.",
            value=m.generator_errors,
        )
        yield _histogram(
            "pilot_xds_push_time",
            "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
            m.push_time,
        )
        yield _histogram(
            "pilot_xds_send_time",
            "Total time in seconds Pilot takes to send generated configuration.",
            m.send_time,
        )
        yield _histogram(
            "pilot_xds_config_size_bytes",
            "Distribution of configuration sizes pushed to clients",
            m.config_size,
        )
        yield _histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required "
            "configuration.",
            m.convergence,
        )
        yield _histogram(
            "pilot_debounce_time",
            "Delay in seconds between the first config enters debouncing and the merged push "
            "request is pushed.",
            m.debounce,
        )
