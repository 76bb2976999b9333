"""PilotClient over an injected grpclib channel (how tests and custom transports plug in)."""

from __future__ import annotations

from grpclib.client import Channel

from istio_sdk import DiscoveryServer, PilotClient, StaticGenerator
from istio_sdk.api.envoy.config.cluster.v3 import Cluster

NAME = "outbound|80||web.default.svc.cluster.local"


async def test_the_injected_channel_is_used_and_left_open() -> None:
    async with DiscoveryServer(StaticGenerator([Cluster(name=NAME)])) as server:
        channel = Channel("127.0.0.1", server.port)
        try:
            # The target names a port nobody listens on: only the channel can reach the server.
            async with PilotClient("127.0.0.1:1", channel=channel) as client:
                client.subscribe("clusters")
                assert sorted(await client.wait_for("clusters", timeout=30)) == [NAME]
            # The channel outlives the client: the next one reuses it.
            async with PilotClient("127.0.0.1:1", channel=channel) as again:
                again.subscribe("clusters")
                assert sorted(await again.wait_for("clusters", timeout=30)) == [NAME]
        finally:
            channel.close()
