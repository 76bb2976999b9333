"""Our PilotClient against our DiscoveryServer over loopback, in SotW and delta modes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from istio_sdk import DiscoveryServer, PilotClient, xds
from istio_sdk._net import bound_port
from istio_sdk.api.envoy.config.cluster.v3 import Cluster
from istio_sdk.api.envoy.config.endpoint.v3 import ClusterLoadAssignment, LocalityLbEndpoints
from istio_sdk.api.envoy.config.listener.v3 import Listener
from istio_sdk.pilot.client import PilotClientError, ResourceUpdate, grpc_node, sidecar_node
from istio_sdk.pilot.debounce import Debouncer
from istio_sdk.pilot.server import PushRequest, StaticGenerator

MODES = ["sotw", "delta"]
SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}]
"""


def cluster(name: str, timeout_s: int = 1) -> Cluster:
    return Cluster(name=name, connect_timeout=timedelta(seconds=timeout_s))


@pytest.fixture
async def generator() -> StaticGenerator:
    return StaticGenerator(
        [
            cluster("a"),
            cluster("b"),
            ClusterLoadAssignment(cluster_name="a"),
            ClusterLoadAssignment(cluster_name="b"),
            Listener(name="l1"),
        ]
    )


@pytest.fixture
async def server(generator: StaticGenerator) -> AsyncIterator[DiscoveryServer]:
    srv = DiscoveryServer(generator, debounce_after=0.01, debounce_max=0.5)
    await srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.stop()


def client_for(server: DiscoveryServer, mode: str, **kw: object) -> PilotClient:
    return PilotClient(f"127.0.0.1:{server.port}", mode=mode, backoff_initial=0.05, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
async def test_subscribe_update_remove(
    server: DiscoveryServer, generator: StaticGenerator, mode: str
) -> None:
    async with client_for(server, mode) as client:
        client.subscribe("clusters")
        client.subscribe("endpoints", ["a"])
        clusters = await client.wait_for("clusters", ["a", "b"])
        assert clusters["a"] == cluster("a")
        endpoints = await client.wait_for("endpoints", ["a"])
        assert set(endpoints) == {"a"}  # only what was asked for
        server.push(generator.set(cluster("c"), cluster("a", timeout_s=5)))
        await client.wait_for(
            "clusters", ["c"], predicate=lambda s: s["a"] == cluster("a", timeout_s=5)
        )
        server.push(generator.remove(xds.CLUSTER, "b"))
        await client.wait_for("clusters", predicate=lambda s: "b" not in s)
        client.subscribe("endpoints", ["b"])
        await client.wait_for("endpoints", ["a", "b"])
        client.unsubscribe("endpoints", ["a"])
        assert set(client.resources("endpoints")) == {"b"}
    assert client.nacks == 0


@pytest.mark.parametrize("mode", MODES)
async def test_endpoint_change_reaches_only_watchers(
    server: DiscoveryServer, generator: StaticGenerator, mode: str
) -> None:
    watcher_a = client_for(server, mode, node=sidecar_node("10.0.0.1", "pa", "default"))
    watcher_b = client_for(server, mode, node=sidecar_node("10.0.0.2", "pb", "default"))
    async with watcher_a, watcher_b:
        watcher_a.subscribe("endpoints", ["a"])
        watcher_b.subscribe("endpoints", ["b"])
        await watcher_a.wait_for("endpoints", ["a"])
        await watcher_b.wait_for("endpoints", ["b"])
        b_updates_before = watcher_b.acks
        pushes_before = server.metrics.pushes
        request = generator.set(
            ClusterLoadAssignment(
                cluster_name="a",
                endpoints=[LocalityLbEndpoints(priority=1)],
            )
        )
        assert request.types == {xds.ENDPOINT}
        await server.push_now(request)
        await watcher_a.wait_for("endpoints", predicate=lambda s: bool(s["a"].endpoints))
        assert server.metrics.pushes == pushes_before + 1  # one EDS response, to one proxy
        assert watcher_b.acks == b_updates_before


@pytest.mark.parametrize("mode", MODES)
async def test_nack_is_recorded_and_blocks_nobody_else(
    server: DiscoveryServer, generator: StaticGenerator, mode: str
) -> None:
    def reject_c(type_url: str, resources: Mapping[str, object]) -> str | None:
        return "cluster c is not allowed here" if "c" in resources else None

    picky = client_for(
        server, mode, validator=reject_c, node=sidecar_node("10.0.0.3", "picky", "default")
    )
    easy = client_for(server, mode, node=sidecar_node("10.0.0.4", "easy", "default"))
    events: list[object] = []
    server.add_listener(events.append)
    async with picky, easy:
        for c in (picky, easy):
            c.subscribe("clusters")
            c.subscribe("endpoints", ["a"])
        await picky.wait_for("clusters", ["a", "b"])
        await easy.wait_for("clusters", ["a", "b"])
        updates: list[ResourceUpdate] = []

        async def collect() -> None:
            async for u in picky.updates():
                updates.append(u)
                if not u.accepted:
                    return

        collector = asyncio.create_task(collect())
        await asyncio.sleep(0)
        server.push(generator.set(cluster("c")))
        await easy.wait_for("clusters", ["c"])
        await asyncio.wait_for(collector, 5)
        assert updates[-1].error == "cluster c is not allowed here"
        assert "c" not in picky.resources("clusters")
        # The NACKing proxy still gets other resources.
        server.push(
            generator.set(
                ClusterLoadAssignment(
                    cluster_name="a",
                    endpoints=[LocalityLbEndpoints(priority=2)],
                )
            )
        )
        await picky.wait_for("endpoints", predicate=lambda s: bool(s["a"].endpoints))
        status = {p.proxy_id: p for p in server.proxies()}
        picky_cds = status[picky.node.id].types[xds.CLUSTER]
        assert picky_cds["nack_reason"] == "cluster c is not allowed here"
        assert picky_cds["nacked_version"] != ""
        assert status[easy.node.id].types[xds.CLUSTER]["nack_reason"] == ""
        assert server.metrics.nacks >= 1
        assert any(getattr(e, "kind", "") == "nack" for e in events)


@pytest.mark.parametrize("mode", MODES)
async def test_reconnect_resubscribes(generator: StaticGenerator, mode: str) -> None:
    first = DiscoveryServer(generator, debounce_after=0.01)
    port = await first.start()
    client = PilotClient(
        f"127.0.0.1:{port}",
        mode=mode,
        backoff_initial=0.05,  # type: ignore[arg-type]
        backoff_max=0.2,
    )
    async with client:
        client.subscribe("clusters")
        client.subscribe("endpoints", ["a"])
        await client.wait_for("clusters", ["a", "b"])
        await client.wait_for("endpoints", ["a"])
        await first.stop()
        generator.set(cluster("after-restart"))
        second = DiscoveryServer(generator, debounce_after=0.01)
        await second.start("127.0.0.1", port)
        try:
            await client.wait_for("clusters", ["after-restart"], timeout=10)
            assert client.reconnects >= 1
            status = second.proxies()
            assert len(status) == 1
            subscribed = status[0].types
            assert subscribed[xds.CLUSTER]["wildcard"] is True
            assert subscribed[xds.ENDPOINT]["subscribed"] == 1
            if mode == "delta":
                # initial_resource_versions told the new server what the client held: only the
                # new cluster had to be sent.
                assert second.metrics.pushes_by_type.get(xds.ENDPOINT, 0) == 0
        finally:
            await second.stop()


async def test_debounce_merges_a_burst_into_one_round(
    generator: StaticGenerator,
) -> None:
    srv = DiscoveryServer(generator, debounce_after=0.05, debounce_max=2.0)
    await srv.start()
    try:
        async with client_for(srv, "sotw") as client:
            client.subscribe("clusters")
            await client.wait_for("clusters", ["a"])
            rounds = srv.metrics.push_rounds
            for i in range(5):
                srv.push(generator.set(cluster(f"burst-{i}")))
            await client.wait_for("clusters", [f"burst-{i}" for i in range(5)])
            assert srv.metrics.push_rounds == rounds + 1
    finally:
        await srv.stop()


async def test_grpc_identity_and_syncz_over_http(server: DiscoveryServer) -> None:
    node = grpc_node("10.1.1.1", "greeter-0", "apps", labels={"app": "greeter"})
    assert node.id == "sidecar~10.1.1.1~greeter-0.apps~apps.svc.cluster.local"
    meta = node.metadata.to_dict()
    assert meta["GENERATOR"] == "grpc" and meta["NAMESPACE"] == "apps"
    assert meta["LABELS"] == {"app": "greeter"}
    port = await server.start_debug_http()
    async with client_for(server, "sotw", node=node) as client:
        client.subscribe("listeners", ["l1"])
        await client.wait_for("listeners", ["l1"])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /debug/syncz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        raw = await reader.read()
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        doc = json.loads(body)
        (proxy,) = doc["proxies"]
        assert proxy["proxy_id"] == node.id
        assert proxy["types"][xds.LISTENER]["acked_version"] != ""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /debug/metrics HTTP/1.1\r\n\r\n")
        await writer.drain()
        metrics = json.loads((await reader.read()).partition(b"\r\n\r\n")[2])
        writer.close()
        assert metrics["acks"] >= 1
        assert metrics["config_to_ack"]["count"] >= 1


async def test_wait_for_times_out_naming_what_is_missing(server: DiscoveryServer) -> None:
    async with client_for(server, "sotw") as client:
        client.subscribe("clusters")
        with pytest.raises(PilotClientError, match="missing \\['nope'\\]"):
            await client.wait_for("clusters", ["nope"], timeout=0.5)


def test_bad_address_is_refused() -> None:
    with pytest.raises(PilotClientError, match="HOST:PORT"):
        PilotClient("localhost")


def test_push_requests_merge() -> None:
    a = PushRequest(types={xds.ENDPOINT}, changed={xds.ENDPOINT: {"x"}})
    b = PushRequest(types={xds.ENDPOINT}, changed={xds.ENDPOINT: {"y"}})
    merged = a.merge(b)
    assert merged.types == {xds.ENDPOINT}
    assert merged.changed == {xds.ENDPOINT: {"x", "y"}}
    full = a.merge(PushRequest())
    assert full.types is None and full.changed is None


async def test_client_survives_a_server_that_breaks_the_protocol() -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server

    from istio_sdk.pilot._raw import EncodedMessage
    from istio_sdk.pilot.server import SOTW_METHOD

    streams = 0

    class Rogue:
        async def ads(self, stream: object) -> None:
            nonlocal streams
            streams += 1
            await stream.recv_message()  # type: ignore[attr-defined]
            # A response for a type nobody subscribed to, then garbage.
            await stream.send_message(  # type: ignore[attr-defined]
                EncodedMessage(
                    xds.wire.encode_discovery_response(
                        version_info="1", type_url=xds.ROUTE, nonce="n1", resources=[]
                    )
                )
            )
            await asyncio.sleep(1)

        def __mapping__(self) -> dict[str, Handler]:
            return {
                SOTW_METHOD: Handler(
                    self.ads, Cardinality.STREAM_STREAM, EncodedMessage, EncodedMessage
                )
            }

    rogue = Server([Rogue()])
    await rogue.start("127.0.0.1", 0)
    port = bound_port(rogue)
    try:
        client = PilotClient(f"127.0.0.1:{port}", backoff_initial=0.01, backoff_max=0.05)
        async with client:
            client.subscribe("clusters")
            for _ in range(200):
                if streams >= 2:
                    break
                await asyncio.sleep(0.01)
            assert streams >= 2  # it came back after the protocol error
            assert "protocol error" in client.last_error
            assert "never subscribed" in client.last_error
    finally:
        rogue.close()
        await rogue.wait_closed()


def test_debounce_max_delay_bounds_a_steady_stream_of_changes() -> None:
    # A change every 20 ms never leaves a 200 ms quiet period; the 300 ms cap still flushes,
    # exactly at first change + 300 ms, with every change merged. (Times in ms, a fake clock.)
    debouncer = Debouncer(after=200, max_delay=300)
    for t in range(0, 300, 20):
        debouncer.add(PushRequest(types={xds.ENDPOINT}, changed={xds.ENDPOINT: {f"e{t}"}}), t)
        assert debouncer.flush(t) is None
        assert debouncer.deadline() == min(t + 200, 300)
    assert debouncer.flush(299.9) is None
    due = debouncer.flush(300)
    assert due is not None and (due.first_change, due.changes) == (0, 15)
    assert due.request.changed == {xds.ENDPOINT: {f"e{t}" for t in range(0, 300, 20)}}
    assert debouncer.deadline() is None and debouncer.flush(10_000) is None


def test_debounce_waits_for_a_quiet_period() -> None:
    debouncer = Debouncer(after=100, max_delay=10_000)
    debouncer.add(PushRequest(reason="a"), 0)
    debouncer.add(PushRequest(reason="b"), 50)
    assert debouncer.deadline() == 150
    assert debouncer.flush(149) is None
    due = debouncer.flush(150)
    assert due is not None and due.request.reason == "a; b" and due.request.types is None


async def test_metrics_endpoint_speaks_prometheus(generator: StaticGenerator) -> None:
    srv = DiscoveryServer(generator, debounce_after=0.01)
    other = DiscoveryServer(generator)  # a second server in the process: its own registry
    await srv.start()
    port = await srv.start_debug_http()
    nacked = asyncio.Event()
    srv.add_listener(lambda e: nacked.set() if e.kind == "nack" else None)

    def reject_bad(type_url: str, resources: Mapping[str, object]) -> str | None:
        return "no bad clusters" if "bad" in resources else None

    try:
        easy = client_for(srv, "sotw", node=sidecar_node("10.0.0.1", "easy", "default"))
        picky = client_for(
            srv, "sotw", validator=reject_bad, node=sidecar_node("10.0.0.2", "picky", "default")
        )
        async with easy, picky:
            for c in (easy, picky):
                c.subscribe("clusters")
                await c.wait_for("clusters", ["a"])
            await srv.push_now(generator.set(cluster("bad")))
            await easy.wait_for("clusters", ["bad"])
            await asyncio.wait_for(nacked.wait(), 10)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head, _, body = (await reader.read()).partition(b"\r\n\r\n")
            writer.close()
    finally:
        await srv.stop()
    assert head.startswith(b"HTTP/1.1 200") and b"text/plain; version=0.0.4" in head
    # On the wire, counters carry istiod's names (no _total), as Istio's dashboards query them.
    wire = body.decode().splitlines()
    assert 'pilot_xds_pushes{type="cds"} 4.0' in wire
    assert 'pilot_total_xds_rejects{type="cds"} 1.0' in wire
    assert "pilot_total_xds_internal_errors 0.0" in wire
    assert "pilot_xds 2.0" in wire
    assert not [line for line in wire if "_total{" in line or "_total " in line]
    assert not [line for line in wire if "_created" in line]
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}

    def value(family: str, sample: str, **labels: str) -> float:
        for s in families[family].samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
        raise AssertionError(f"no {sample}{labels} in {families[family].samples}")

    assert families["pilot_xds"].type == "gauge" and value("pilot_xds", "pilot_xds") == 2
    assert families["pilot_xds_pushes"].type == "counter"
    # Two initial CDS responses, then the push of "bad" to both proxies. (The parser names a
    # counter's sample <family>_total whatever the wire said.)
    assert value("pilot_xds_pushes", "pilot_xds_pushes_total", type="cds") == 4
    assert value("pilot_total_xds_rejects", "pilot_total_xds_rejects_total", type="cds") == 1
    assert families["pilot_proxy_convergence_time"].type == "histogram"
    assert value("pilot_proxy_convergence_time", "pilot_proxy_convergence_time_count") == 2
    assert value("pilot_xds_push_time", "pilot_xds_push_time_count", type="cds") == 4
    assert value("pilot_xds_send_time", "pilot_xds_send_time_count", type="cds") == 4
    assert value("pilot_debounce_time", "pilot_debounce_time_count") == 1
    untouched = {
        f.name: f for f in text_string_to_metric_families(other.metrics.prometheus_text().decode())
    }
    assert untouched["pilot_xds_pushes"].samples == []


def test_latency_histogram_buckets_and_quantiles() -> None:
    from istio_sdk.pilot.metrics import LatencyHistogram

    h = LatencyHistogram()
    for seconds in (0.002, 0.02, 0.02, 3.0):
        h.observe(seconds)
    doc = h.to_dict()
    assert doc["count"] == 4
    assert doc["buckets"]["0.005"] == 1 and doc["buckets"]["0.025"] == 3
    assert doc["buckets"]["+Inf"] == 4
    assert h.quantile(0.5) == 0.025
    assert h.quantile(0.99) == 5.0


async def test_stop_is_safe_before_start_after_a_failed_start_and_twice(
    generator: StaticGenerator,
) -> None:
    import socket

    server = DiscoveryServer(generator)
    await server.stop()  # never started
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            await server.start("127.0.0.1", taken.getsockname()[1])
        await server.stop()  # the failed start left nothing listening
    # The same server still starts and serves afterwards, and stops twice.
    await server.start()
    try:
        async with client_for(server, "sotw") as client:
            client.subscribe("clusters")
            await client.wait_for("clusters", ["a"])
    finally:
        await server.stop()
    await server.stop()
