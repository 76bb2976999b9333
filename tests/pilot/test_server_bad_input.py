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
from istio_sdk.api.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from istio_sdk.pilot._raw import EncodedMessage
from istio_sdk.pilot.client import sidecar_node
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.server import SOTW_METHOD, StaticGenerator

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


async def raw_exchange(server: DiscoveryServer, *messages: bytes) -> list[bytes]:
    channel = Channel("127.0.0.1", server.port)
    try:
        async with channel.request(
            SOTW_METHOD, Cardinality.STREAM_STREAM, EncodedMessage, EncodedMessage, timeout=2
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
    for c in [*grumpy, happy]:
        c.subscribe("clusters")
        await c.start()
    await happy.wait_for("clusters", ["c0"])
    for i in range(10):
        await server.push_now(gen.set(Cluster(name=f"storm{i}")))
    await happy.wait_for("clusters", ["storm9"])

    async def all_nacked() -> None:
        while sum(c.nacks for c in grumpy) < 5 * 11:  # noqa: ASYNC110 - counters, no event
            await asyncio.sleep(0.01)

    await asyncio.wait_for(all_nacked(), 10)
    # NACKs of responses already superseded are stale and ignored (SotW nonce rule); the
    # newest response of every grumpy proxy is NACKed for real.
    await asyncio.sleep(0.1)
    assert server.metrics.nacks + server.metrics.stale_requests >= 55
    assert server.metrics.nacks >= 5
    for status in server.proxies():
        if status.proxy_id.startswith("sidecar~10.3.0."):
            assert status.types[xds.CLUSTER]["nack_reason"] == "I reject everything"
    assert happy.nacks == 0
    # One log line per proxy and version, however many NACKs.
    assert caplog.text.count("NACK from") <= 5 * 11
    for c in [*grumpy, happy]:
        await c.close()


async def test_generator_failure_keeps_last_config(server: DiscoveryServer) -> None:
    class Flaky(StaticGenerator):
        broken = False

        def generate(
            self, proxy: ProxyInfo, type_url: str, names: frozenset[str] | None
        ) -> Mapping[str, Cluster]:  # type: ignore[override]
            if self.broken:
                raise RuntimeError("translation blew up")
            return super().generate(proxy, type_url, names)  # type: ignore[return-value]

    flaky = Flaky([Cluster(name="ok")])
    srv = DiscoveryServer(flaky, debounce_after=0.01)
    await srv.start()
    try:
        async with PilotClient(f"127.0.0.1:{srv.port}") as client:
            client.subscribe("clusters")
            await client.wait_for("clusters", ["ok"])
            flaky.broken = True
            await srv.push_now(flaky.set(Cluster(name="new")))
            assert srv.metrics.generator_errors == 1
            assert set(client.resources("clusters")) == {"ok"}
            flaky.broken = False
            await srv.push_now()
            await client.wait_for("clusters", ["new"])
    finally:
        await srv.stop()
