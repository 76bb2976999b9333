"""gRPC's own xDS client (grpcio, proxyless) gets its config from our Pilot through the agent's
xDS proxy, routes RPCs to a real backend, and the agent calls it ready."""

from __future__ import annotations

import asyncio
import json
import pathlib
from concurrent import futures

import pytest

grpc = pytest.importorskip("grpc")

from support.grpc_xds import start_python, stop_process, xds_bootstrap  # noqa: E402

from istio_sdk.pilot.push_context import PushContext  # noqa: E402
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort, ServiceRegistry  # noqa: E402
from istio_sdk.pilot.server import DiscoveryServer  # noqa: E402
from istio_sdk.pilot.translate import PushContextGenerator  # noqa: E402
from istio_sdk.proxy.agent.readiness import Readiness  # noqa: E402
from istio_sdk.proxy.agent.xds_proxy import XdsProxy  # noqa: E402

HOST = "echo.default.svc.cluster.local"
CLIENT = """
import json, sys, time
import grpc

channel = grpc.insecure_channel(f"xds:///{sys.argv[1]}:7070")
call = channel.unary_unary("/istio_sdk.agent.Echo/Who")
for line in sys.stdin:
    answer = "none"
    for _ in range(100):
        try:
            answer = call(b"", timeout=2.0).decode()
            break
        except grpc.RpcError as exc:
            answer = "error:" + exc.code().name
            time.sleep(0.1)
    sys.stdout.write(json.dumps(answer) + "\\n")
    sys.stdout.flush()
"""


async def test_grpcio_xds_client_through_the_agent(tmp_path: pathlib.Path) -> None:
    backend = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "istio_sdk.agent.Echo", {"Who": grpc.unary_unary_rpc_method_handler(lambda r, c: b"echo")}
    )
    backend.add_generic_rpc_handlers((handler,))
    backend_port = backend.add_insecure_port("127.0.0.1:0")
    backend.start()
    registry = ServiceRegistry()
    registry.register_service(
        Service(HOST, "default", [ServicePort(7070, "grpc")]),
        [Endpoint("127.0.0.1", ports={"grpc": backend_port})],
    )
    pilot = DiscoveryServer(PushContextGenerator(PushContext.build([], registry)))
    await pilot.start("127.0.0.1", 0)
    proxy = XdsProxy("127.0.0.1", pilot.port)
    await proxy.start(host="127.0.0.1", port=0)
    assert proxy.port is not None
    node = "sidecar~127.0.0.1~client.default~default.svc.cluster.local"
    client = await start_python(tmp_path, "client", CLIENT, xds_bootstrap(proxy.port, node), HOST)
    try:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        answer = json.loads(await asyncio.wait_for(client.stdout.readline(), 60))
        assert answer == "echo"
        # grpcio ACKed listeners and clusters through the agent: the agent is ready
        for _ in range(200):
            if await Readiness([proxy.config_status]).problem() is None:
                break
            await asyncio.sleep(0.05)
        assert await Readiness([proxy.config_status]).problem() is None
        assert [p.proxy_id for p in pilot.proxies()] == [node]
    finally:
        await stop_process(client)
        await proxy.close()
        await pilot.stop()
        backend.stop(grace=None)
