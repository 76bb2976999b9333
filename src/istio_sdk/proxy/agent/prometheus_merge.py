"""``/stats/prometheus`` on the status port: the agent's, Envoy's and the app's metrics merged.

The injector turns a Pod's ``prometheus.io/scrape|port|path`` annotations into
``ISTIO_PROMETHEUS_ANNOTATIONS`` (``{"scrape": "true", "port": "8080", "path": "/metrics"}``,
or a ``targets`` list of ``{"port", "path"}``) and points Prometheus at the agent instead.
:func:`parse_scrape_config` reads it as pilot-agent does: ``scrape: "false"`` turns merging
off, the path defaults to ``/metrics`` and the port to 80, and a port that is the status port
or another port Istio owns is refused (it would scrape the agent or Envoy twice).

The merge is a concatenation, as pilot-agent's is: the agent's own metrics, then Envoy's, then
the app's last, since an OpenMetrics body ends with ``# EOF``; every app body loses its
``# EOF`` and one is put back at the end when the answer is OpenMetrics. :func:`merge_metrics`
is that pure step; the scrapes themselves (bounded in size and time) live in the status server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from istio_sdk.proxy.agent._errors import AgentConfigError, env_json_object

__all__ = [
    "PROMETHEUS_ANNOTATIONS_ENV",
    "PROMETHEUS_TEXT",
    "ScrapeTarget",
    "accept_for",
    "merge_metrics",
    "negotiate_format",
    "parse_scrape_config",
    "scrape_timeout",
]

PROMETHEUS_ANNOTATIONS_ENV = "ISTIO_PROMETHEUS_ANNOTATIONS"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_0_0_1 = "application/openmetrics-text; version=0.0.1; charset=utf-8"
OPENMETRICS_1_0_0 = "application/openmetrics-text; version=1.0.0; charset=utf-8"
ENVOY_TYPES = ("text/*", "text/plain")
APP_TYPES = ("text/*", "text/plain", "application/openmetrics-text")
DEFAULT_SCRAPE_TIMEOUT = 10.0
MAX_SCRAPE_TIMEOUT = 120.0

# Ports the sidecar owns: scraping one would hit Envoy or the agent, not the app.
RESERVED_PORTS = {
    15000: "Envoy admin",
    15001: "outbound traffic capture",
    15004: "pilot debug",
    15006: "inbound traffic capture",
    15008: "HBONE tunnel",
    15020: "pilot-agent status / merged Prometheus",
    15021: "Envoy health",
    15053: "DNS proxy",
    15090: "Envoy Prometheus (already merged)",
}
_SOURCE = f"environment variable {PROMETHEUS_ANNOTATIONS_ENV}"


@attrs.frozen
class ScrapeTarget:
    """One application metrics endpoint on localhost."""

    port: int
    path: str = "/metrics"


def _target(raw_port: object, raw_path: object, status_port: int) -> ScrapeTarget:
    port_text = str(raw_port) if isinstance(raw_port, (str, int)) and raw_port != "" else "80"
    if isinstance(raw_port, bool) or not port_text.isascii() or not port_text.isdigit():
        raise AgentConfigError(_SOURCE, f"invalid target port {port_text!r:.40}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise AgentConfigError(_SOURCE, f"invalid target port {port_text!r:.40}")
    if port == status_port:
        raise AgentConfigError(
            _SOURCE,
            f"target port {port} is the same as agent port, which may lead to a recursive loop",
        )
    if port in RESERVED_PORTS:
        raise AgentConfigError(
            _SOURCE,
            f"target port {port} is reserved for Istio ({RESERVED_PORTS[port]}) and cannot be "
            "scraped",
        )
    path = raw_path if isinstance(raw_path, str) and raw_path else "/metrics"
    if not path.startswith("/") or any(c in path for c in " \r\n\0#"):
        raise AgentConfigError(_SOURCE, f"invalid target path {path!r:.60}")
    return ScrapeTarget(port, path)


def parse_scrape_config(text: str | None, *, status_port: int = 15020) -> tuple[ScrapeTarget, ...]:
    """The app endpoints to merge (empty: merging is off), checked as pilot-agent checks them."""
    if text is None or text == "":
        return ()
    doc = env_json_object(_SOURCE, text)
    if doc.get("scrape") == "false":
        return ()
    raw_targets = doc.get("targets") or []
    if not isinstance(raw_targets, list) or len(raw_targets) > 32:
        raise AgentConfigError(_SOURCE, "targets must be a list of at most 32 objects")
    if not raw_targets:
        return (_target(doc.get("port", ""), doc.get("path", ""), status_port),)
    targets = []
    for raw in raw_targets:
        if not isinstance(raw, dict):
            raise AgentConfigError(_SOURCE, "each target must be an object with port and path")
        targets.append(_target(raw.get("port", ""), raw.get("path", ""), status_port))
    return tuple(targets)


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    media, *params = (part.strip() for part in value.split(";"))
    parsed = {}
    for param in params:
        key, _, val = param.partition("=")
        if key.strip():
            parsed[key.strip().lower()] = val.strip().strip('"')
    return media.lower(), parsed


def accept_for(accept: str | None, allowed: Sequence[str]) -> str:
    """The ``Accept`` header to send a target: the scraper's, keeping only ``allowed`` types
    (``*/*`` as Prometheus text 0.0.4, ``application/*`` as OpenMetrics 0.0.1), in its order."""
    fallback = "text/plain;version=0.0.4"
    if not accept:
        return fallback
    kept: list[str] = []
    for item in accept.split(",")[:32]:
        media, params = _media_type(item)
        params.pop("q", None)
        if media in ("*/*", "*"):
            media, params = ("text/plain", {"version": "0.0.4"})
        elif media == "application/*":
            media, params = ("application/openmetrics-text", {"version": "0.0.1"})
        if media not in allowed:
            continue
        text = ";".join([media, *(f"{k}={v}" for k, v in sorted(params.items()))])
        if text not in kept:
            kept.append(text)
    if not kept:
        return fallback
    total = len(kept)
    return ",".join(f"{text};q=0.{total - i}" for i, text in enumerate(kept))


def negotiate_format(content_type: str | None) -> str:
    """The answer's format given a target's ``Content-Type``: OpenMetrics when it is, else text."""
    media, params = _media_type(content_type or "")
    if media == "application/openmetrics-text":
        if params.get("version") == "1.0.0":
            return OPENMETRICS_1_0_0
        if params.get("version", "0.0.1") == "0.0.1":
            return OPENMETRICS_0_0_1
    return PROMETHEUS_TEXT


def scrape_timeout(header: str | None) -> float:
    """Seconds a scrape may take: Prometheus' ``X-Prometheus-Scrape-Timeout-Seconds`` when it
    is a sane number, else 10 s; never more than 120 s."""
    try:
        value = float(header) if header else DEFAULT_SCRAPE_TIMEOUT
    except ValueError:
        return DEFAULT_SCRAPE_TIMEOUT
    if not math.isfinite(value) or value <= 0:
        return DEFAULT_SCRAPE_TIMEOUT
    return min(value, MAX_SCRAPE_TIMEOUT)


def _strip_eof(body: bytes) -> bytes:
    trimmed = body.rstrip(b" \t\r\n")
    if trimmed.endswith(b"# EOF"):
        return trimmed[: -len(b"# EOF")]
    return body


def merge_metrics(
    agent: bytes, envoy: bytes | None, apps: Sequence[tuple[bytes, str | None]]
) -> tuple[str, bytes]:
    """The merged ``(content type, body)``: agent, Envoy, then each app body (failed scrapes
    are left out by the caller). Mixed app formats fall back to text without ``# EOF``."""
    formats = {negotiate_format(content_type) for _, content_type in apps}
    content_type = formats.pop() if len(formats) == 1 else PROMETHEUS_TEXT
    parts = [agent]
    if envoy:
        parts.append(envoy)
    for body, _ in apps:
        parts.append(_strip_eof(body))
    out = bytearray()
    for part in parts:
        out += part
        if part and not part.endswith(b"\n"):
            out += b"\n"
    if content_type != PROMETHEUS_TEXT:
        out += b"# EOF\n"
    return content_type, bytes(out)
