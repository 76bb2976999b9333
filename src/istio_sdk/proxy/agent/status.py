"""pilot-agent's status server (15020) and the readiness port (15021): thin HTTP over the cores.

Paths on the status port, as pilot-agent serves them:

- ``/healthz/ready``: 200 when :class:`~istio_sdk.proxy.agent.readiness.Readiness` passes, else
  503 with the reason;
- ``/app-health/CONTAINER/livez|readyz|startupz`` (and ``/app-lifecycle/...``): the rewritten
  Kubernetes probes (:mod:`~istio_sdk.proxy.agent.app_probers`,
  :mod:`~istio_sdk.proxy.agent.app_probe`); a path with no prober is 400;
- ``/stats/prometheus`` and ``/metrics``: the agent's, Envoy's and the app's metrics merged
  (:mod:`~istio_sdk.proxy.agent.prometheus_merge`); each scrape is bounded (10 MiB, the
  scraper's timeout or 10 s) and a failed one is left out and counted, never fatal;
- ``POST /quitquitquit`` and ``POST /drain`` from localhost only: exit now, or start draining.

:class:`ReadinessServer` answers ``/healthz/ready`` alone: the readiness port Envoy's bootstrap
listener serves when Envoy runs, which the agent serves itself when it does not.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import httpx

from istio_sdk._http import HttpRequest, HttpResponse, MonitoringHttpServer
from istio_sdk._metrics import render_metrics
from istio_sdk.proxy.agent.agent_metrics import AgentMetrics
from istio_sdk.proxy.agent.app_probe import AppProbeRunner
from istio_sdk.proxy.agent.app_probers import AppProber
from istio_sdk.proxy.agent.prometheus_merge import (
    APP_TYPES,
    ENVOY_TYPES,
    ScrapeTarget,
    accept_for,
    merge_metrics,
    scrape_timeout,
)
from istio_sdk.proxy.agent.readiness import Readiness

__all__ = ["MAX_APP_METRICS_BYTES", "ReadinessServer", "StatusServer"]

log = logging.getLogger("istio_sdk.proxy.agent.status")

READY_PATH = "/healthz/ready"
MAX_APP_METRICS_BYTES = 10 * 1024 * 1024


class _ScrapeFailed(Exception):
    pass


def _from_localhost(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.peer_host).is_loopback
    except ValueError:
        return False


async def _ready_answer(readiness: Readiness) -> HttpResponse:
    problem = await readiness.problem()
    if problem is None:
        return HttpResponse(200)
    return HttpResponse(503, (problem + "\n").encode("utf-8", "replace"))


class StatusServer:
    """The status port. ``probers`` come from ``ISTIO_KUBE_APP_PROBERS``, ``scrape_targets``
    from ``ISTIO_PROMETHEUS_ANNOTATIONS``; ``envoy_prometheus_port`` is where Envoy's own
    ``/stats/prometheus`` is (``None``: no Envoy)."""

    def __init__(
        self,
        readiness: Readiness,
        *,
        probers: Mapping[str, AppProber] | None = None,
        probe_runner: AppProbeRunner | None = None,
        scrape_targets: Sequence[ScrapeTarget] = (),
        envoy_prometheus_port: int | None = None,
        metrics: AgentMetrics | None = None,
        on_quit: Callable[[], None] | None = None,
        on_drain: Callable[[], None] | None = None,
        max_app_metrics_bytes: int = MAX_APP_METRICS_BYTES,
    ) -> None:
        self.readiness = readiness
        self.probers = dict(probers or {})
        self._runner = probe_runner or AppProbeRunner()
        self.scrape_targets = tuple(scrape_targets)
        self.envoy_prometheus_port = envoy_prometheus_port
        self.metrics = metrics or AgentMetrics()
        self._on_quit = on_quit
        self._on_drain = on_drain
        self.max_app_metrics_bytes = max_app_metrics_bytes
        self._started_at = time.monotonic()
        self._ready_seen = False
        self._http = MonitoringHttpServer({}, handler=self._handle)
        self._scraper = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 15020) -> int:
        """Listen on ``host:port`` (0: ephemeral); returns the port."""
        self.port = await self._http.start(host, port)
        self._runner.status_port = self.port
        return self.port

    async def close(self) -> None:
        """Stop serving and release the HTTP clients."""
        await self._http.close()
        await self._scraper.aclose()
        await self._runner.aclose()

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path == READY_PATH:
            response = await _ready_answer(self.readiness)
            if response.status == 200 and not self._ready_seen:
                self._ready_seen = True
                self.metrics.startup_duration.set(time.monotonic() - self._started_at)
            return response
        if path.startswith(("/app-health/", "/app-lifecycle/")):
            prober = self.probers.get(path)
            if prober is None:
                return HttpResponse(400, f"app prober config does not exists for {path}".encode())
            result = await self._runner.run(prober, request.headers)
            return HttpResponse(result.status, result.body)
        if path in ("/stats/prometheus", "/metrics"):
            content_type, body = await self._merged_metrics(request)
            return HttpResponse(200, body, content_type)
        if path in ("/quitquitquit", "/drain"):
            return self._lifecycle(request)
        return HttpResponse(404, f"no such path {path[:200]!r}\n".encode())

    def _lifecycle(self, request: HttpRequest) -> HttpResponse:
        if not _from_localhost(request):
            return HttpResponse(403, b"Only requests from localhost are allowed\n")
        if request.method != "POST":
            return HttpResponse(405, b"Method Not Allowed\n")
        callback = self._on_quit if request.path == "/quitquitquit" else self._on_drain
        if callback is None:
            return HttpResponse(404, b"not supported by this agent\n")
        log.info("handling %s", request.path)
        callback()
        return HttpResponse(200, b"OK")

    async def _scrape(
        self, url: str, request: HttpRequest, accept: str, limit: int
    ) -> tuple[bytes, str | None]:
        headers = {"Accept": accept}
        for name in ("User-Agent", "X-Prometheus-Scrape-Timeout-Seconds"):
            value = request.header(name)
            if value:
                headers[name] = value
        try:
            async with (
                asyncio.timeout(
                    scrape_timeout(request.header("X-Prometheus-Scrape-Timeout-Seconds"))
                ),
                self._scraper.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code != 200:
                    raise _ScrapeFailed(
                        f"error scraping {url}, status code: {response.status_code}"
                    )
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > limit:
                        raise _ScrapeFailed(f"response exceeds {limit} bytes; dropping target")
                return bytes(body), response.headers.get("content-type")
        except TimeoutError:
            raise _ScrapeFailed(f"error scraping {url}: timed out") from None
        except (httpx.HTTPError, OSError) as exc:
            raise _ScrapeFailed(f"error scraping {url}: {exc or type(exc).__name__}") from None

    async def _envoy_metrics(self, request: HttpRequest) -> bytes | None:
        if self.envoy_prometheus_port is None:
            return None
        url = f"http://127.0.0.1:{self.envoy_prometheus_port}/stats/prometheus"
        if request.query:
            url += "?" + request.query
        try:
            body, _ = await self._scrape(
                url,
                request,
                accept_for(request.header("Accept"), ENVOY_TYPES),
                4 * self.max_app_metrics_bytes,
            )
        except _ScrapeFailed as exc:
            log.error("failed scraping envoy metrics: %s", exc)
            self.metrics.scrape_failures.labels("envoy").inc()
            return None
        return body

    async def _app_metrics(
        self, request: HttpRequest, target: ScrapeTarget
    ) -> tuple[bytes, str | None] | None:
        url = f"http://127.0.0.1:{target.port}{target.path}"
        accept = accept_for(request.header("Accept"), APP_TYPES)
        try:
            return await self._scrape(url, request, accept, self.max_app_metrics_bytes)
        except _ScrapeFailed as exc:
            log.error("failed scraping application metrics: %s", exc)
            self.metrics.scrape_failures.labels("application").inc()
            return None

    async def _merged_metrics(self, request: HttpRequest) -> tuple[str, bytes]:
        self.metrics.scrapes.inc()
        envoy, *apps = await asyncio.gather(
            self._envoy_metrics(request),
            *(self._app_metrics(request, target) for target in self.scrape_targets),
        )
        agent = render_metrics(self.metrics.registry)
        scraped = [app for app in apps if app is not None]
        return merge_metrics(agent, envoy, scraped)  # type: ignore[arg-type]


class ReadinessServer:
    """The readiness port (15021) without Envoy: ``/healthz/ready`` from the same readiness."""

    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness
        self._http = MonitoringHttpServer({}, handler=self._handle)
        self.port: int | None = None

    async def start(self, host: str = "0.0.0.0", port: int = 15021) -> int:
        """Listen on ``host:port`` (0: ephemeral); returns the port."""
        self.port = await self._http.start(host, port)
        return self.port

    async def close(self) -> None:
        """Stop serving."""
        await self._http.close()

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        if request.path == READY_PATH:
            return await _ready_answer(self.readiness)
        return HttpResponse(404, b"only /healthz/ready is served here\n")
