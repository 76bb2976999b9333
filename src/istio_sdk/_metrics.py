"""Every server's ``/metrics``: a ``prometheus_client`` registry in the Prometheus text format
(0.0.4) with the series names Istio puts on the wire.

istiod exports through OpenTelemetry's Prometheus exporter with counter suffixes turned off
(``pkg/monitoring``; OpenCensus before it added none either), so its counters are scraped as
``pilot_xds_pushes{type="cds"}`` and ``citadel_server_csr_count``, which is what Istio's
dashboards and alerts query. ``prometheus_client.generate_latest`` would write
``pilot_xds_pushes_total``; :func:`render_metrics` writes a counter's value under its family's
name instead and leaves out the ``_created`` samples Istio does not have. Everything else
(gauges, histograms, summaries) is written as ``prometheus_client`` names it.

A counter family cannot be named with a ``_total`` ending (``prometheus_client`` strips it), so a
metric whose Istio name ends in ``_total`` cannot be served under that name here.
"""

from __future__ import annotations

import math

from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of :func:`render_metrics`' output."""

# OpenMetrics types the 0.0.4 text format has no word for, as generate_latest maps them.
_TEXT_TYPES = {
    "info": "gauge",
    "stateset": "gauge",
    "gaugehistogram": "histogram",
    "unknown": "untyped",
}
# Samples OpenMetrics adds that the Prometheus text format (and Istio) do not carry.
_DROPPED_SUFFIXES = ("_created", "_gsum", "_gcount")


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
    labels = ""
    if sample.labels:
        pairs = ",".join(f'{key}="{_escape_label(str(v))}"' for key, v in sample.labels.items())
        labels = "{" + pairs + "}"
    line = f"{name}{labels} {_number(sample.value)}"
    if sample.timestamp is not None:
        line += f" {int(float(sample.timestamp) * 1000)}"
    return line


def render_metrics(registry: Collector) -> bytes:
    """``registry``'s families in the Prometheus text format (0.0.4), counters under Istio's
    names (no ``_total``), UTF-8."""
    lines: list[str] = []
    for family in registry.collect():
        name = family.name + "_info" if family.type == "info" else family.name
        lines.append(f"# HELP {name} {_escape_help(family.documentation)}")
        lines.append(f"# TYPE {name} {_TEXT_TYPES.get(family.type, family.type)}")
        dropped = {family.name + suffix for suffix in _DROPPED_SUFFIXES}
        for sample in family.samples:
            if sample.name in dropped:
                continue
            if family.type == "counter" and sample.name == family.name + "_total":
                lines.append(_sample_line(family.name, sample))
            else:
                lines.append(_sample_line(sample.name, sample))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
