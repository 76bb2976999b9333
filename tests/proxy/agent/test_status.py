"""The status port over real sockets: rewritten HTTP, TCP and gRPC probes against real apps,
readiness, merged metrics, and apps that stall or answer too much."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from proxy.agent.apps import HealthServer, HttpApp, running

from istio_sdk.proxy.agent.app_probe import AppProbeRunner
from istio_sdk.proxy.agent.app_probers import parse_app_probers
from istio_sdk.proxy.agent.prometheus_merge import ScrapeTarget
from istio_sdk.proxy.agent.readiness import ConfigStatus, Readiness
from istio_sdk.proxy.agent.status import ReadinessServer, StatusServer
from istio_sdk.xds.types import CLUSTER, LISTENER


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probers_json(http_port: int, grpc_port: int, dead_port: int) -> str:
    def http(path: str, timeout: int = 2) -> dict[str, object]:
        return {"httpGet": {"path": path, "port": http_port}, "timeoutSeconds": timeout}

    return json.dumps(
        {
            "/app-health/web/livez": http("/ok"),
            "/app-health/web/readyz": http("/fail"),
            "/app-health/redirect/livez": http("/same-host-redirect"),
            "/app-health/loop/livez": http("/loop"),
            "/app-health/away/livez": http("/away"),
            "/app-health/headers/livez": http("/headers"),
            "/app-health/big/livez": http("/big"),
            "/app-health/stall/livez": http("/stall", timeout=1),
            "/app-health/drip/livez": http("/drip", timeout=1),
            "/app-health/tcp/livez": {"tcpSocket": {"port": http_port}},
            "/app-health/tcpdead/livez": {"tcpSocket": {"port": dead_port}},
            "/app-health/grpc/livez": {"grpc": {"port": grpc_port}},
            "/app-health/grpcgood/readyz": {"grpc": {"port": grpc_port, "service": "good"}},
            "/app-health/grpcbad/readyz": {"grpc": {"port": grpc_port, "service": "bad"}},
            "/app-health/grpcdead/readyz": {"grpc": {"port": dead_port}},
            "/app-health/grpconhttp/readyz": {"grpc": {"port": http_port}, "timeoutSeconds": 1},
        }
    )


@pytest.fixture
async def apps() -> AsyncIterator[tuple[HttpApp, int, int]]:
    app = HttpApp()
    async with running(app) as http_port, running(HealthServer()) as grpc_port:
        yield app, http_port, grpc_port


@pytest.fixture
async def status(apps: tuple[HttpApp, int, int]) -> AsyncIterator[tuple[StatusServer, HttpApp]]:
    app, http_port, grpc_port = apps
    probers = parse_app_probers(probers_json(http_port, grpc_port, closed_port()))
    server = StatusServer(
        Readiness([]),
        probers=probers,
        probe_runner=AppProbeRunner(host="127.0.0.1", source_address="127.0.0.6"),
    )
    await server.start("127.0.0.1", 0)
    try:
        yield server, app
    finally:
        await server.close()


async def get(port: int, path: str, wait: float = 10, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=wait) as client:
        return await client.get(f"http://127.0.0.1:{port}{path}", **kwargs)  # type: ignore[arg-type]


async def test_http_probe_passes_on_success_and_answers_the_app_code(
    status: tuple[StatusServer, HttpApp],
) -> None:
    server, app = status
    assert server.port is not None
    ok = await get(server.port, "/app-health/web/livez")
    assert (ok.status_code, ok.content) == (200, b"fine")
    failing = await get(server.port, "/app-health/web/readyz")
    assert (failing.status_code, failing.content) == (503, b"not today")
    # probes leave from 127.0.0.6, so the iptables capture lets them through to the app
    assert app.peers[-1] == "127.0.0.6"


async def test_http_probe_redirects(status: tuple[StatusServer, HttpApp]) -> None:
    server, app = status
    assert server.port is not None
    same = await get(server.port, "/app-health/redirect/livez")
    assert (same.status_code, same.content) == (200, b"fine")
    assert [path for path, _ in app.requests[-2:]] == ["/same-host-redirect", "/ok"]
    away = await get(server.port, "/app-health/away/livez")
    assert away.status_code == 200  # leaving the host is success, as kubelet counts it
    loop = await get(server.port, "/app-health/loop/livez")
    assert loop.status_code == 500
    assert sum(path == "/loop" for path, _ in app.requests) == 11


async def test_http_probe_forwards_headers_with_the_app_port_as_host(
    status: tuple[StatusServer, HttpApp],
) -> None:
    server, app = status
    assert server.port is not None
    answer = await get(
        server.port,
        "/app-health/headers/livez",
        headers={"X-Custom": "yes", "Host": f"10.0.0.5:{server.port}"},
    )
    seen = json.loads(answer.content)
    assert seen["x-custom"] == "yes"
    assert seen["host"] == f"10.0.0.5:{app.port}"


async def test_http_probe_body_is_bounded(status: tuple[StatusServer, HttpApp]) -> None:
    server, _ = status
    assert server.port is not None
    answer = await get(server.port, "/app-health/big/livez")
    assert answer.status_code == 200
    assert len(answer.content) == 10 * 1024


async def test_a_stalling_app_fails_the_probe_within_its_timeout(
    status: tuple[StatusServer, HttpApp],
) -> None:
    server, _ = status
    assert server.port is not None
    for path in ("/app-health/stall/livez", "/app-health/drip/livez"):
        answer = await get(server.port, path, wait=5)  # the probe's timeout is 1 s
        assert answer.status_code == 500, path


async def test_tcp_probe(status: tuple[StatusServer, HttpApp]) -> None:
    server, _ = status
    assert server.port is not None
    assert (await get(server.port, "/app-health/tcp/livez")).status_code == 200
    assert (await get(server.port, "/app-health/tcpdead/livez")).status_code == 500


async def test_grpc_probe(status: tuple[StatusServer, HttpApp]) -> None:
    server, _ = status
    assert server.port is not None
    assert (await get(server.port, "/app-health/grpc/livez")).status_code == 200
    assert (await get(server.port, "/app-health/grpcgood/readyz")).status_code == 200
    assert (await get(server.port, "/app-health/grpcbad/readyz")).status_code == 500
    assert (await get(server.port, "/app-health/grpcdead/readyz")).status_code == 500
    assert (await get(server.port, "/app-health/grpconhttp/readyz")).status_code == 500


async def test_a_path_without_a_prober_is_400(status: tuple[StatusServer, HttpApp]) -> None:
    server, _ = status
    assert server.port is not None
    answer = await get(server.port, "/app-health/nobody/livez")
    assert answer.status_code == 400
    assert b"app prober config does not exists" in answer.content


async def test_ready_follows_first_config_on_both_ports() -> None:
    config = ConfigStatus()
    readiness = Readiness([config])
    status = StatusServer(readiness)
    ready_port = ReadinessServer(readiness)
    port = await status.start("127.0.0.1", 0)
    port_15021 = await ready_port.start("127.0.0.1", 0)
    try:
        before = await get(port, "/healthz/ready")
        assert before.status_code == 503
        assert b"config not received from XDS server" in before.content
        assert (await get(port_15021, "/healthz/ready")).status_code == 503
        for url in (CLUSTER, LISTENER):
            config.response_sent(url, "n1")
            config.request_seen(url, "n1", rejected=False)
        assert (await get(port, "/healthz/ready")).status_code == 200
        assert (await get(port_15021, "/healthz/ready")).status_code == 200
        readiness.terminate()
        assert (await get(port_15021, "/healthz/ready")).status_code == 503
    finally:
        await status.close()
        await ready_port.close()


async def test_metrics_merge_agent_envoy_and_app(apps: tuple[HttpApp, int, int]) -> None:
    app, http_port, _ = apps
    # Envoy's /stats/prometheus is served by a second app standing in for Envoy's 15090
    envoy = HttpApp(lambda path, h: app.answer("/envoy" + path.split("?")[0], h))
    async with running(envoy) as envoy_port:
        server = StatusServer(
            Readiness([]),
            scrape_targets=[ScrapeTarget(http_port, "/metrics")],
            envoy_prometheus_port=envoy_port,
        )
        port = await server.start("127.0.0.1", 0)
        try:
            answer = await get(port, "/stats/prometheus?usedonly")
        finally:
            await server.close()
    body = answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert "istio_agent_scrapes_total 1.0" in body
    assert body.index("istio_agent_scrapes_total") < body.index(
        "envoy_cluster_upstream_cx_total 11"
    )
    assert body.index("envoy_cluster_upstream_cx_total") < body.index("app_requests_total 7")
    assert envoy.requests[0][0] == "/stats/prometheus?usedonly"


async def test_openmetrics_app_bodies_end_with_one_eof(apps: tuple[HttpApp, int, int]) -> None:
    _, http_port, _ = apps
    server = StatusServer(
        Readiness([]),
        scrape_targets=[ScrapeTarget(http_port, "/om"), ScrapeTarget(http_port, "/om")],
    )
    port = await server.start("127.0.0.1", 0)
    try:
        answer = await get(port, "/metrics", headers={"Accept": "application/openmetrics-text"})
    finally:
        await server.close()
    assert answer.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert answer.text.count("app_om_total 3") == 2
    assert answer.text.count("# EOF") == 1 and answer.text.endswith("# EOF\n")


async def test_stalling_and_oversized_apps_are_left_out_and_counted(
    apps: tuple[HttpApp, int, int],
) -> None:
    _, http_port, _ = apps
    server = StatusServer(
        Readiness([]),
        scrape_targets=[
            ScrapeTarget(http_port, "/stall"),
            ScrapeTarget(http_port, "/big"),
            ScrapeTarget(http_port, "/metrics"),
        ],
        max_app_metrics_bytes=64 * 1024,
    )
    port = await server.start("127.0.0.1", 0)
    try:
        answer = await get(
            port, "/stats/prometheus", headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.5"}
        )
    finally:
        await server.close()
    assert answer.status_code == 200
    assert "app_requests_total 7" in answer.text
    assert "xxxx" not in answer.text
    # this scrape's own failures are counted in its answer (the agent's metrics render last)
    assert 'istio_agent_scrape_failures_total{type="application"} 2.0' in answer.text


async def test_quit_and_drain_are_post_from_localhost_only() -> None:
    calls: list[str] = []
    server = StatusServer(
        Readiness([]), on_quit=lambda: calls.append("quit"), on_drain=lambda: calls.append("drain")
    )
    port = await server.start("127.0.0.1", 0)
    try:
        assert (await get(port, "/quitquitquit")).status_code == 405
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.post(f"http://127.0.0.1:{port}/drain")).status_code == 200
            assert (await client.post(f"http://127.0.0.1:{port}/quitquitquit")).status_code == 200
    finally:
        await server.close()
    assert calls == ["drain", "quit"]
