"""The discovery server under bad input: it answers with a clear status and keeps serving."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from istio_sdk import DiscoveryServer, PilotClient, xds
from istio_sdk.api.envoy.config.cluster.v3 import Cluster
from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.envoy.config.endpoint.v3 import ClusterLoadAssignment
from istio_sdk.api.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from istio_sdk.pilot._raw import EncodedMessage
from istio_sdk.pilot.client import sidecar_node
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.server import SOTW_METHOD, ProxyEvent, StaticGenerator

NODE = Node(id="sidecar~10.0.0.9~raw.default~default.svc.cluster.local")


@pytest.fixture
async def server() -> AsyncIterator[DiscoveryServer]:
    gen = StaticGenerator([Cluster(name=f"c{i}") for i in range(50)])
    srv = DiscoveryServer(gen, debounce_after=0.01)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def still_serving(server: DiscoveryServer) -> None:
    async with PilotClient(f"127.0.0.1:{server.port}") as client:
        client.subscribe("clusters")
        await client.wait_for("clusters", ["c0"])


async def raw_exchange(
    server: DiscoveryServer, *messages: bytes, deadline: float = 2
) -> list[bytes]:
    channel = Channel("127.0.0.1", server.port)
    try:
        async with channel.request(
            SOTW_METHOD, Cardinality.STREAM_STREAM, EncodedMessage, EncodedMessage, timeout=deadline
        ) as stream:
            for m in messages:
                await stream.send_message(EncodedMessage(m))
            await stream.end()
            return [r.data async for r in stream]
    finally:
        channel.close()


async def test_malformed_request_gets_invalid_argument(server: DiscoveryServer) -> None:
    with pytest.raises(GRPCError) as info:
        await raw_exchange(server, b"\x0a\xff\xff\xff")
    assert info.value.status is Status.INVALID_ARGUMENT
    assert "malformed discovery request" in (info.value.message or "")
    assert server.metrics.malformed_requests == 1
    await still_serving(server)


async def test_first_request_without_node_is_refused(server: DiscoveryServer) -> None:
    with pytest.raises(GRPCError) as info:
        await raw_exchange(server, bytes(DiscoveryRequest(type_url=xds.CLUSTER)))
    assert info.value.status is Status.INVALID_ARGUMENT
    assert "node.id" in (info.value.message or "")
    await still_serving(server)


async def test_unknown_type_url_is_logged_and_the_stream_goes_on(
    server: DiscoveryServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "istio_sdk.pilot.server")
    unknown = DiscoveryRequest(node=NODE, type_url="type.googleapis.com/no.such.Type")
    cds = DiscoveryRequest(type_url=xds.CLUSTER)
    replies = await raw_exchange(server, bytes(unknown), bytes(cds))
    assert len(replies) == 1
    response = DiscoveryResponse.parse(replies[0])
    assert response.type_url == xds.CLUSTER and len(response.resources) == 50
    assert server.metrics.unknown_type_requests == 1
    assert "unknown type URL 'type.googleapis.com/no.such.Type'" in caplog.text


async def test_clients_vanishing_mid_push_do_not_hurt_the_server(
    server: DiscoveryServer,
) -> None:
    gen = server.generator
    assert isinstance(gen, StaticGenerator)
    clients = [
        PilotClient(
            f"127.0.0.1:{server.port}", node=sidecar_node(f"10.2.0.{i}", f"p{i}", "x"), decode=False
        )
        for i in range(20)
    ]
    for c in clients:
        c.subscribe("clusters")
        await c.start()
    await asyncio.gather(*(c.wait_for("clusters", ["c0"]) for c in clients))
    big = [Cluster(name=f"big{i}", alt_stat_name="x" * 2000) for i in range(300)]
    push = asyncio.create_task(server.push_now(gen.set(*big)))
    await asyncio.sleep(0)
    await asyncio.gather(*(c.close() for c in clients[:10]))  # gone, mid-push
    await push
    await asyncio.gather(*(c.wait_for("clusters", ["big299"]) for c in clients[10:]))
    await asyncio.gather(*(c.close() for c in clients[10:]))
    await still_serving(server)


async def test_nack_storm_is_counted_logged_once_and_isolated(
    server: DiscoveryServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "istio_sdk.pilot.server")
    gen = server.generator
    assert isinstance(gen, StaticGenerator)

    def reject_all(type_url: str, resources: Mapping[str, object]) -> str:
        return "I reject everything"

    grumpy = [
        PilotClient(
            f"127.0.0.1:{server.port}",
            validator=reject_all,
            node=sidecar_node(f"10.3.0.{i}", f"g{i}", "x"),
        )
        for i in range(5)
    ]
    happy = PilotClient(f"127.0.0.1:{server.port}", node=sidecar_node("10.3.1.1", "h", "x"))
    nacks: list[ProxyEvent] = []
    arrived = asyncio.Event()

    def on_event(event: ProxyEvent) -> None:
        if event.kind == "nack":
            nacks.append(event)
            arrived.set()

    async def nacks_reach(count: int) -> None:
        while len(nacks) < count:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 10)

    server.add_listener(on_event)
    for c in [*grumpy, happy]:
        c.subscribe("clusters")
        await c.start()
    await happy.wait_for("clusters", ["c0"])
    await nacks_reach(5)
    for i in range(10):
        # Each push is NACKed by every grumpy proxy before the next one goes out, so every
        # NACK is current (none stale): 55 real NACKs.
        await server.push_now(gen.set(Cluster(name=f"storm{i}")))
        await nacks_reach(5 * (i + 2))
    await happy.wait_for("clusters", ["storm9"])
    assert server.metrics.nacks == 55 and len(nacks) == 55
    for status in server.proxies():
        if status.proxy_id.startswith("sidecar~10.3.0."):
            assert status.types[xds.CLUSTER]["nack_reason"] == "I reject everything"
    assert happy.nacks == 0
    # One log line per proxy for the same reason, however many versions it NACKs.
    lines = [r.getMessage() for r in caplog.records if "NACK from" in r.getMessage()]
    assert len(lines) == 5
    assert {line.split(" ")[2] for line in lines} == {c.node.id for c in grumpy}
    for c in [*grumpy, happy]:
        await c.close()


async def test_generator_failure_keeps_last_config(server: DiscoveryServer) -> None:
    class Flaky(StaticGenerator):
        broken = False

        def generate(
            self, proxy: ProxyInfo, type_url: str, names: frozenset[str] | None
        ) -> Mapping[str, Cluster]:  # type: ignore[override]
            if self.broken and type_url == xds.CLUSTER:
                raise RuntimeError("translation blew up")
            return super().generate(proxy, type_url, names)  # type: ignore[return-value]

    flaky = Flaky([Cluster(name="ok"), ClusterLoadAssignment(cluster_name="e1")])
    srv = DiscoveryServer(flaky, debounce_after=0.01)
    await srv.start()
    try:
        async with PilotClient(f"127.0.0.1:{srv.port}") as client:
            client.subscribe("clusters")
            client.subscribe("endpoints", ["e1", "e2"])
            await client.wait_for("clusters", ["ok"])
            await client.wait_for("endpoints", ["e1"])
            flaky.broken = True
            await srv.push_now(flaky.set(Cluster(name="new")))
            assert srv.metrics.generator_errors == 1
            # A later good push on the same stream: once it arrived, anything the failed
            # round sent would have arrived before it.
            await srv.push_now(flaky.set(ClusterLoadAssignment(cluster_name="e2")))
            await client.wait_for("endpoints", ["e2"])
            assert set(client.resources("clusters")) == {"ok"}
            flaky.broken = False
            await srv.push_now()
            await client.wait_for("clusters", ["new", "ok"])
    finally:
        await srv.stop()


async def test_peer_supplied_node_ids_are_logged_escaped_and_bounded(
    server: DiscoveryServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "istio_sdk.pilot.server")
    forged = "evil\n2026-01-01 INFO forged line" + "x" * 1_000_000
    hello = DiscoveryRequest(node=Node(id=forged), type_url=xds.CLUSTER)
    unknown = DiscoveryRequest(type_url="type.googleapis.com/\nforged" + "y" * 5000)
    replies = await raw_exchange(server, bytes(hello), bytes(unknown))
    assert len(replies) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "istio_sdk.pilot.server"]
    mentioning = [m for m in messages if "evil" in m]
    assert mentioning, messages
    for message in messages:
        assert "\n" not in message and len(message) < 2000, message[:300]
    assert any("evil\\n2026-01-01 INFO forged line" in m for m in mentioning)
    assert any("[truncated, " in m for m in mentioning)


async def test_a_flood_of_unknown_type_urls_logs_a_bounded_number_of_lines(
    server: DiscoveryServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "istio_sdk.pilot.server")
    first = DiscoveryRequest(node=NODE, type_url="type.googleapis.com/no.such.Type0")
    rest = [
        bytes(DiscoveryRequest(type_url=f"type.googleapis.com/no.such.Type{i}"))
        for i in range(1, 20_000)
    ]
    assert await raw_exchange(server, bytes(first), *rest, deadline=60) == []
    assert server.metrics.unknown_type_requests == 20_000
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 11
    assert "suppressing the rest" in warnings[-1].getMessage()
    assert sum(len(r.getMessage()) for r in warnings) < 5_000
    await still_serving(server)


async def test_stop_closes_open_debug_connections(
    server: DiscoveryServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = await server.start_debug_http()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /debug/sy")  # a request that never ends: the handler waits for more
    await writer.drain()
    await asyncio.sleep(0.05)
    await server.stop()
    assert await asyncio.wait_for(reader.read(), 2) == b""  # the server closed it
    writer.close()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "CancelledError" not in caplog.text
