"""The shared ``/metrics`` rendering (Istio's series names) and the monitoring HTTP server."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from istio_sdk._http import MonitoringHttpServer, metrics_route
from istio_sdk._metrics import CONTENT_TYPE, render_metrics


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_are_written_under_istios_names_without_total_or_created() -> None:
    registry = CollectorRegistry()
    pushes = Counter("pilot_xds_pushes", "Pushes.", ["type"], registry=registry)
    pushes.labels("cds").inc(3)
    Gauge("pilot_xds", "Connected.", registry=registry).set(2)
    latency = Histogram("pilot_xds_push_time", "Seconds.", buckets=(0.1, 1.0), registry=registry)
    latency.observe(0.5)
    Info("build", "Build.", registry=registry).info({"version": 'a"b\\c\nd'})

    text = render_metrics(registry).decode()
    lines = [line for line in text.splitlines() if not line.startswith("#")]

    assert 'pilot_xds_pushes{type="cds"} 3.0' in lines
    assert "# TYPE pilot_xds_pushes counter" in text
    assert "_total" not in text and "_created" not in text
    assert "pilot_xds 2.0" in lines
    assert 'pilot_xds_push_time_bucket{le="1.0"} 1.0' in lines
    assert "pilot_xds_push_time_count 1.0" in lines
    assert "# TYPE build_info gauge" in text
    # The standard parser reads it all back (it names counter samples ..._total itself).
    assert _samples(text) == {
        ("pilot_xds_pushes_total", (("type", "cds"),)): 3.0,
        ("pilot_xds", ()): 2.0,
        ("pilot_xds_push_time_bucket", (("le", "0.1"),)): 0.0,
        ("pilot_xds_push_time_bucket", (("le", "1.0"),)): 1.0,
        ("pilot_xds_push_time_bucket", (("le", "+Inf"),)): 1.0,
        ("pilot_xds_push_time_count", ()): 1.0,
        ("pilot_xds_push_time_sum", ()): 0.5,
        ("build_info", (("version", 'a"b\\c\nd'),)): 1.0,
    }


def test_a_collector_family_counter_and_odd_values() -> None:
    class Odd:
        def collect(self) -> list[CounterMetricFamily]:
            family = CounterMetricFamily("citadel_server_csr_count", "CSRs\nwith \\ help.")
            family.add_metric([], float("inf"))
            return [family]

    registry = CollectorRegistry()
    registry.register(Odd())  # type: ignore[arg-type]
    text = render_metrics(registry).decode()
    assert text == (
        "# HELP citadel_server_csr_count CSRs\\nwith \\\\ help.\n"
        "# TYPE citadel_server_csr_count counter\n"
        "citadel_server_csr_count +Inf\n"
    )
    assert render_metrics(CollectorRegistry()) == b""


async def test_the_monitoring_port_drops_stalled_oversized_and_garbage_requests() -> None:
    registry = CollectorRegistry()
    Counter("citadel_server_csr_count", "CSRs.", registry=registry).inc()
    server = MonitoringHttpServer({"/metrics": metrics_route(registry)}, request_timeout=0.5)
    port = await server.start("127.0.0.1", 0)

    async def exchange(data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        try:
            async with asyncio.timeout(20):
                return await reader.read()
        except ConnectionError:
            return b""
        finally:
            writer.close()

    try:
        # Half a request line, then silence: closed after the timeout, unanswered.
        assert await exchange(b"GET /metr") == b""
        # A head larger than 16 KiB: closed, unanswered.
        assert await exchange(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n") == b""
        assert (await exchange(b"\x16\x03\x01 garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await exchange(b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        missing = await exchange(b"GET /nope HTTP/1.1\r\n\r\n")
        assert missing.startswith(b"HTTP/1.1 404") and b'"/metrics"' in missing
        answer = await exchange(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert f"Content-Type: {CONTENT_TYPE}".encode() in head
        assert body.decode().splitlines() == [
            "# HELP citadel_server_csr_count CSRs.",
            "# TYPE citadel_server_csr_count counter",
            "citadel_server_csr_count 1.0",
        ]
    finally:
        await server.close()
    await server.close()  # a second close is harmless
