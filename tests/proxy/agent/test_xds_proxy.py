"""The agent's xDS proxy between our PilotClient (as the proxy) and our Pilot, over real sockets:
round trip, pushes, readiness after the first config, Pilot restarting under a connected proxy,
the agent's own response types, delta relay and a malformed request."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from istio_sdk._grpc import create_channel
from istio_sdk.api.envoy.config.cluster.v3 import Cluster
from istio_sdk.api.envoy.config.listener.v3 import Listener
from istio_sdk.api.envoy.extensions.transport_sockets.tls.v3 import Secret
from istio_sdk.pilot.client import PilotClient
from istio_sdk.pilot.server import DiscoveryServer, StaticGenerator
from istio_sdk.proxy.agent.readiness import Readiness
from istio_sdk.proxy.agent.status import StatusServer
from istio_sdk.proxy.agent.xds_proxy import SOTW_METHOD, XdsProxy
from istio_sdk.xds.types import CLUSTER, LISTENER, SECRET


def cluster(name: str, seconds: int = 1) -> Cluster:
    return Cluster(name=name, connect_timeout=timedelta(seconds=seconds))


async def start_pilot(generator: StaticGenerator, port: int = 0) -> DiscoveryServer:
    server = DiscoveryServer(generator, debounce_after=0.01, debounce_max=0.2)
    await server.start("127.0.0.1", port)
    return server


@pytest.fixture
async def pilot() -> AsyncIterator[tuple[DiscoveryServer, StaticGenerator]]:
    generator = StaticGenerator([cluster("a"), Listener(name="l1")])
    server = await start_pilot(generator)
    try:
        yield server, generator
    finally:
        await server.stop()


@pytest.fixture
async def xds_proxy(
    pilot: tuple[DiscoveryServer, StaticGenerator], tmp_path: pathlib.Path
) -> AsyncIterator[XdsProxy]:
    server, _ = pilot
    proxy = XdsProxy("127.0.0.1", server.port, backoff_initial=0.05, backoff_max=0.2)
    await proxy.start(path=str(tmp_path / "XDS"))
    try:
        yield proxy
    finally:
        await proxy.close()


def client_over(proxy: XdsProxy, mode: str = "sotw") -> PilotClient:
    assert proxy.path is not None
    return PilotClient(
        "127.0.0.1:1",  # never dialled: the channel is the agent's Unix socket
        channel=create_channel(path=proxy.path),
        mode=mode,  # type: ignore[arg-type]
        backoff_initial=0.05,
        backoff_max=0.2,
    )


async def test_round_trip_push_and_readiness_after_first_config(
    pilot: tuple[DiscoveryServer, StaticGenerator], xds_proxy: XdsProxy
) -> None:
    server, generator = pilot
    status = StatusServer(Readiness([xds_proxy.config_status]))
    port = await status.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(trust_env=False) as http:
            ready_url = f"http://127.0.0.1:{port}/healthz/ready"
            before = await http.get(ready_url)
            assert before.status_code == 503
            async with client_over(xds_proxy) as client:
                client.subscribe(CLUSTER)
                assert set(await client.wait_for(CLUSTER, ["a"])) == {"a"}
                # clusters alone are not the first config: listeners are still missing
                partial = await http.get(ready_url)
                assert partial.status_code == 503
                assert b"not fully received" in partial.content
                client.subscribe(LISTENER)
                await client.wait_for(LISTENER, ["l1"])
                for _ in range(100):  # the ACK follows the response: wait for it to pass
                    if (await http.get(ready_url)).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                assert (await http.get(ready_url)).status_code == 200
                server.push(generator.set(cluster("b", 2)))
                state = await client.wait_for(CLUSTER, ["a", "b"])
                assert state["b"].connect_timeout == timedelta(seconds=2)
                assert client.nacks == 0
                # Pilot sees the proxy's own node: the relay is transparent
                assert [p.proxy_id for p in server.proxies()] == [client.node.id]
    finally:
        await status.close()


async def test_a_nack_is_relayed_and_readiness_says_rejected(
    pilot: tuple[DiscoveryServer, StaticGenerator], xds_proxy: XdsProxy
) -> None:
    server, _ = pilot
    client = client_over(xds_proxy)
    client.validator = lambda url, resources: "no thanks"  # type: ignore[assignment,misc]
    async with client:
        client.subscribe(CLUSTER)
        client.subscribe(LISTENER)
        for _ in range(100):
            types = [p.types for p in server.proxies()]
            if types and types[0].get(CLUSTER, {}).get("nack_reason"):
                break
            await asyncio.sleep(0.05)
    assert server_nack(types) == "no thanks"
    problem = await Readiness([xds_proxy.config_status]).problem()
    assert problem is not None and "rejected" in problem


def server_nack(types: list[dict[str, dict[str, object]]]) -> object:
    return types[0][CLUSTER]["nack_reason"] if types else None


async def test_pilot_restart_is_hidden_from_the_connected_proxy(
    pilot: tuple[DiscoveryServer, StaticGenerator], xds_proxy: XdsProxy
) -> None:
    server, _ = pilot
    port = server.port
    async with client_over(xds_proxy) as client:
        client.subscribe(CLUSTER)
        await client.wait_for(CLUSTER, ["a"])
        await server.stop()
        await asyncio.sleep(0.3)  # the agent retries with backoff while Pilot is down
        replacement = await start_pilot(StaticGenerator([cluster("a"), cluster("c")]), port)
        try:
            state = await client.wait_for(CLUSTER, ["a", "c"])
            assert set(state) == {"a", "c"}
            assert client.reconnects == 0  # the proxy's own stream never broke
            assert xds_proxy.upstream_connects >= 2
            # the new Pilot learnt the proxy's node from the replayed first request
            assert [p.proxy_id for p in replacement.proxies()] == [client.node.id]
        finally:
            await replacement.stop()


async def test_agent_types_are_consumed_by_the_agent_and_acked_upstream(
    tmp_path: pathlib.Path,
) -> None:
    generator = StaticGenerator([cluster("a"), Listener(name="l1"), Secret(name="names")])
    server = await start_pilot(generator)
    seen: list[bytes] = []

    def handle(value: bytes) -> str | None:
        seen.append(value)
        return None if len(seen) == 1 else "second table refused"

    proxy = XdsProxy("127.0.0.1", server.port, handlers={SECRET: handle})
    await proxy.start(path=str(tmp_path / "XDS"))
    try:
        async with client_over(proxy) as client:
            client.subscribe(LISTENER)
            await client.wait_for(LISTENER, ["l1"])
            for _ in range(100):
                secret = server.proxies()[0].types.get(SECRET, {})
                if secret.get("acked_version"):
                    break
                await asyncio.sleep(0.05)
            assert secret["acked_version"] == secret["sent_version"]
            assert Secret.FromString(seen[0]).name == "names"
            server.push(generator.set(Secret(name="other")))
            for _ in range(100):
                secret = server.proxies()[0].types.get(SECRET, {})
                if secret.get("nack_reason"):
                    break
                await asyncio.sleep(0.05)
            assert secret["nack_reason"] == "second table refused", (len(seen), secret)
            assert client.resources(SECRET) == {}  # never forwarded to the proxy
    finally:
        await proxy.close()
        await server.stop()


async def test_delta_streams_are_relayed(xds_proxy: XdsProxy) -> None:
    async with client_over(xds_proxy, "delta") as client:
        client.subscribe(CLUSTER)
        client.subscribe(LISTENER)
        await client.wait_for(CLUSTER, ["a"])
        await client.wait_for(LISTENER, ["l1"])
        for _ in range(100):
            if xds_proxy.config_status.first_config_received:
                break
            await asyncio.sleep(0.05)
        assert xds_proxy.config_status.first_config_received


async def test_a_malformed_request_ends_the_stream_with_invalid_argument(
    xds_proxy: XdsProxy,
) -> None:
    from grpclib.const import Cardinality, Status
    from grpclib.exceptions import GRPCError

    from istio_sdk.pilot._raw import EncodedMessage

    assert xds_proxy.path is not None
    channel = create_channel(path=xds_proxy.path)
    try:
        with pytest.raises(GRPCError) as caught:
            async with channel.request(
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
                Cardinality.STREAM_STREAM,
                EncodedMessage,
                EncodedMessage,
            ) as stream:
                await stream.send_message(EncodedMessage(b"\xff\xff\xff\xff garbage"))
                await asyncio.wait_for(stream.recv_message(), 10)
    finally:
        channel.close()
    assert caught.value.status is Status.INVALID_ARGUMENT


async def test_garbage_from_pilot_is_not_forwarded_and_the_agent_reconnects(
    tmp_path: pathlib.Path,
) -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server

    from istio_sdk._net import bound_port
    from istio_sdk.pilot._raw import EncodedMessage

    streams = 0

    class Garbage:
        def __mapping__(self) -> dict[str, Handler]:
            return {
                SOTW_METHOD: Handler(
                    self.ads, Cardinality.STREAM_STREAM, EncodedMessage, EncodedMessage
                )
            }

        async def ads(self, stream: object) -> None:
            nonlocal streams
            streams += 1
            await stream.recv_message()  # type: ignore[attr-defined]
            await stream.send_message(EncodedMessage(b"\xff\xff\xff"))  # type: ignore[attr-defined]
            await asyncio.sleep(3600)

    server = Server([Garbage()])
    await server.start("127.0.0.1", 0)
    proxy = XdsProxy("127.0.0.1", bound_port(server), backoff_initial=0.05, backoff_max=0.1)
    await proxy.start(path=str(tmp_path / "XDS"))
    try:
        async with client_over(proxy) as client:
            client.subscribe(CLUSTER)
            for _ in range(200):
                if streams >= 3:
                    break
                await asyncio.sleep(0.05)
            assert streams >= 3  # each garbled stream was dropped and dialled again
            assert client.reconnects == 0 and client.resources(CLUSTER) == {}
            assert client.nacks == 0  # nothing garbled reached the proxy
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()
