"""PilotAgent as a library: the seam where more components (the DNS proxy) plug in, readiness on
the readiness port without Envoy, and /quitquitquit ending run()."""

from __future__ import annotations

import asyncio

import httpx
from proxy.agent.test_xds_proxy import cluster

from istio_sdk._grpc import create_channel
from istio_sdk.api.envoy.config.listener.v3 import Listener
from istio_sdk.api.envoy.extensions.transport_sockets.tls.v3 import Secret
from istio_sdk.pilot.client import PilotClient
from istio_sdk.pilot.server import DiscoveryServer, StaticGenerator
from istio_sdk.proxy.agent.agent import PilotAgent, PilotAgentOptions
from istio_sdk.xds.types import CLUSTER, LISTENER, SECRET


class Recorder:
    """A component standing in for the DNS proxy: it records its lifecycle and name tables."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.tables: list[str] = []

    async def start(self) -> None:
        self.log.append("start")

    async def stop(self) -> None:
        self.log.append("stop")

    def on_table(self, value: bytes) -> str | None:
        self.tables.append(Secret.FromString(value).name)
        return None


async def test_components_and_their_xds_types_plug_into_the_agent() -> None:
    pilot = DiscoveryServer(StaticGenerator([cluster("a"), Listener(name="l1"), Secret(name="t")]))
    await pilot.start("127.0.0.1", 0)
    log: list[str] = []
    dns = Recorder(log)
    options = PilotAgentOptions(
        host="127.0.0.1",
        status_port=0,
        readiness_port=0,
        pilot_address=("127.0.0.1", pilot.port),
        xds_port=0,
    )
    agent = PilotAgent(options, components=[dns], xds_handlers={SECRET: dns.on_table})
    try:
        await agent.start()
        assert log == ["start"]
        assert agent.readiness_server is not None and agent.xds_proxy is not None
        ready_url = f"http://127.0.0.1:{agent.readiness_server.port}/healthz/ready"
        async with httpx.AsyncClient(trust_env=False) as http:
            assert (await http.get(ready_url)).status_code == 503
            channel = create_channel("127.0.0.1", agent.xds_proxy.port)
            async with PilotClient("127.0.0.1:1", channel=channel) as client:
                client.subscribe(CLUSTER)
                client.subscribe(LISTENER)
                await client.wait_for(LISTENER, ["l1"])
                for _ in range(200):
                    if dns.tables and (await http.get(ready_url)).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                assert dns.tables == ["t"]
                assert (await http.get(ready_url)).status_code == 200
            channel.close()
            runner = asyncio.get_running_loop().create_task(agent.run())
            status_url = f"http://127.0.0.1:{agent.status.port}/quitquitquit"
            assert (await http.post(status_url)).status_code == 200
            assert await asyncio.wait_for(runner, 10) == 0
        assert log == ["start", "stop"]
    finally:
        await agent.stop()
        await pilot.stop()
