"""Translation never runs on the event loop that serves the streams.

Each test makes translation block until the test's own coroutine, on the event loop, releases
it. Were translation on the loop, nothing could release it: it would time out, and the test
would see that.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

import pytest

from istio_sdk import DiscoveryServer, Mesh, PilotClient, xds
from istio_sdk.api.envoy.config.cluster.v3 import Cluster
from istio_sdk.config import ConfigStore, load_resources
from istio_sdk.pilot.client import sidecar_node
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.server import StaticGenerator

WAIT = 10.0


class Gate:
    """A point translation blocks at until the event loop opens it."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.results: list[bool] = []

    def block(self) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.results.append(self.opened.wait(WAIT))

    async def open_from_the_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, self.entered.wait, WAIT), "never translated"
        self.opened.set()


class Blocking(StaticGenerator):
    def __init__(self, gate: Gate) -> None:
        super().__init__([Cluster(name="c0")])
        self.gate = gate

    def generate(
        self, proxy: ProxyInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, Cluster]:  # type: ignore[override]
        self.gate.block()
        return super().generate(proxy, type_url, names)  # type: ignore[return-value]


async def test_a_first_subscription_and_a_push_round_translate_off_the_loop() -> None:
    gate = Gate()
    server = DiscoveryServer(Blocking(gate), debounce_after=0.01)
    await server.start()
    try:
        async with PilotClient(f"127.0.0.1:{server.port}") as client:
            gate.armed = True
            client.subscribe(xds.CLUSTER)
            await gate.open_from_the_loop()
            await client.wait_for(xds.CLUSTER, ["c0"], timeout=WAIT)
            gate.armed = True
            generator = server.generator
            assert isinstance(generator, StaticGenerator)
            push = asyncio.create_task(server.push_now(generator.set(Cluster(name="c1"))))
            await gate.open_from_the_loop()
            await push
            await client.wait_for(xds.CLUSTER, ["c0", "c1"], timeout=WAIT)
    finally:
        await server.stop()
    assert gate.results == [True, True]


SERVICE_ENTRY = """\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}]
"""
CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"


async def test_a_store_change_builds_the_push_context_off_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate()
    build = PushContext.build

    def blocking_build(*args: object, **kwargs: object) -> PushContext:
        gate.block()
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PushContext, "build", blocking_build)
    store = ConfigStore()
    async with Mesh(store, xds_port=0, debounce_after=0.01) as mesh:
        node = sidecar_node("10.0.0.5", "app-0", "default")
        async with PilotClient(f"127.0.0.1:{mesh.xds_port}", node=node) as client:
            client.subscribe(xds.CLUSTER)
            await client.wait_for(xds.CLUSTER, timeout=WAIT)
            gate.armed = True
            for resource in load_resources(SERVICE_ENTRY):
                store.apply(resource)
            await gate.open_from_the_loop()
            await client.wait_for(xds.CLUSTER, [CLUSTER], timeout=WAIT)
    assert gate.results == [True]
