"""The agent's own metrics, under pilot-agent's names (``istio_agent_*``).

``prometheus_client`` cannot name a counter ``..._total`` (it strips the suffix), so the two
scrape counters Istio names that way are gauges that only go up; the others are counters
written without ``_total`` by :func:`istio_sdk._metrics.render_metrics`, as Istio writes them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["AgentMetrics"]


class AgentMetrics:
    """Counters of the status server and the xDS proxy in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.scrapes = Gauge(
            "istio_agent_scrapes_total", "The total number of scrapes.", registry=self.registry
        )
        self.scrape_failures = Gauge(
            "istio_agent_scrape_failures_total",
            "The total number of failed scrapes.",
            ["type"],
            registry=self.registry,
        )
        self.startup_duration = Gauge(
            "istio_agent_startup_duration_seconds",
            "The time from the process starting to being marked ready.",
            registry=self.registry,
        )
        self.xds_requests = Counter(
            "istio_agent_xds_proxy_requests",
            "The total number of Xds Proxy Requests",
            registry=self.registry,
        )
        self.xds_responses = Counter(
            "istio_agent_xds_proxy_responses",
            "The total number of Xds Proxy Responses",
            registry=self.registry,
        )
        self.istiod_connection_failures = Counter(
            "istio_agent_istiod_connection_failures",
            "The total number of connection failures to Istiod",
            registry=self.registry,
        )
