"""Proof with a real client: grpcio's own xDS client routes by our Pilot as Istio would.

The test starts three real grpcio backends on loopback (each answers with its version name),
registers them as ``reviews`` v1/v2/v3, serves translation output through the project's
:class:`~istio_sdk.pilot.server.DiscoveryServer` with :class:`PushContextGenerator`, and runs
grpcio's xDS client in a subprocess (``GRPC_XDS_BOOTSTRAP`` pointing at our server, dialling
``xds:///reviews.default.svc.cluster.local:9080``). It then checks that RPCs follow a weighted
split, header matches and fault injection (abort and delay), that live config and
endpoint-only changes take effect, that an xDS-enabled grpcio server serves once it gets its
listener, and that consistent hashing (ring hash) pins a user to one backend. Everything
waits with deadlines and retries; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import pathlib
import time
from collections.abc import AsyncIterator, Callable
from concurrent import futures

import attrs
import pytest
import pytest_asyncio

grpc = pytest.importorskip("grpc")

from support.grpc_xds import free_port, start_python, stop_process, xds_bootstrap  # noqa: E402

from istio_sdk import xds  # noqa: E402
from istio_sdk.api.istio.networking import v1alpha3 as n  # noqa: E402
from istio_sdk.pilot.config_entry import ConfigEntry  # noqa: E402
from istio_sdk.pilot.push_context import PushContext  # noqa: E402
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort, ServiceRegistry  # noqa: E402
from istio_sdk.pilot.server import DiscoveryServer  # noqa: E402
from istio_sdk.pilot.translate import PushContextGenerator  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOST = "reviews.default.svc.cluster.local"
TARGET = f"xds:///{HOST}:9080"
SERVICE = "istio_sdk.proof.Backend"
CLIENT_SCRIPT = """
import json, sys
import grpc

channels = {}
for line in sys.stdin:
    request = json.loads(line)
    channel = channels.get(request["target"])
    if channel is None:
        channel = channels[request["target"]] = grpc.insecure_channel(request["target"])
    call = channel.unary_unary("/istio_sdk.proof.Backend/Who")
    metadata = tuple(request.get("metadata", {}).items())
    counts = {}
    for _ in range(request["calls"]):
        try:
            key = call(b"", timeout=2.0, metadata=metadata).decode()
        except grpc.RpcError as exc:
            key = "error:" + exc.code().name
        counts[key] = counts.get(key, 0) + 1
    sys.stdout.write(json.dumps(counts) + "\\n")
    sys.stdout.flush()
"""


SERVER_SCRIPT = """
import sys
from concurrent import futures
import grpc

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
handler = grpc.method_handlers_generic_handler(
    "istio_sdk.proof.Backend",
    {"Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"xds-server")},
)
server.add_generic_rpc_handlers((handler,))
creds = grpc.xds_server_credentials(grpc.insecure_server_credentials())
# An xDS server binds only once its listener arrives, so the port must be known up front.
server.add_secure_port(f"127.0.0.1:{sys.argv[1]}", creds)
server.start()
sys.stdin.read()
server.stop(None)
"""


def _backend(name: str) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx: name.encode())}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _route(subset: str, weight: int = 0) -> n.HttpRouteDestination:
    return n.HttpRouteDestination(
        destination=n.Destination(host=HOST, subset=subset), weight=weight
    )


def _configs(
    default_routes: list[n.HttpRouteDestination], policy: n.TrafficPolicy | None = None
) -> list[ConfigEntry]:
    vs = n.VirtualService(
        hosts=[HOST],
        http=[
            n.HttpRoute(
                name="jason",
                match=[n.HttpMatchRequest(headers={"end-user": n.StringMatch(exact="jason")})],
                route=[_route("v3")],
            ),
            n.HttpRoute(
                name="faulty",
                match=[n.HttpMatchRequest(headers={"x-fault": n.StringMatch()})],
                route=[_route("v1")],
                fault=n.HttpFaultInjection(
                    abort=n.HttpFaultInjectionAbort(
                        grpc_status="UNAVAILABLE", percentage=n.Percent(value=100)
                    )
                ),
            ),
            n.HttpRoute(
                name="slow",
                match=[n.HttpMatchRequest(headers={"x-delay": n.StringMatch(exact="yes")})],
                route=[_route("v1")],
                fault=n.HttpFaultInjection(
                    delay=n.HttpFaultInjectionDelay(
                        fixed_delay=datetime.timedelta(seconds=30), percentage=n.Percent(value=100)
                    )
                ),
            ),
            n.HttpRoute(name="split", route=default_routes),
        ],
    )
    dr = n.DestinationRule(
        host=HOST,
        traffic_policy=policy,
        subsets=[n.Subset(name=v, labels={"version": v}) for v in ("v1", "v2", "v3")],
    )
    return [
        ConfigEntry("VirtualService", "reviews", "default", vs),
        ConfigEntry("DestinationRule", "reviews", "default", dr),
    ]


@attrs.define
class Proof:
    """The running pieces: backends, registry, generator, server and the client process."""

    ports: dict[str, int]
    registry: ServiceRegistry
    generator: PushContextGenerator
    server: DiscoveryServer
    client: asyncio.subprocess.Process
    tmp: pathlib.Path

    async def calls(
        self, count: int, metadata: dict[str, str] | None = None, target: str = TARGET
    ) -> dict[str, int]:
        """Make ``count`` RPCs through the xDS client; replies counted by backend/status."""
        assert self.client.stdin is not None and self.client.stdout is not None
        line = {"target": target, "calls": count, "metadata": metadata or {}}
        self.client.stdin.write((json.dumps(line) + "\n").encode())
        await self.client.stdin.drain()
        answer = await asyncio.wait_for(self.client.stdout.readline(), timeout=60)
        assert answer, "the grpcio client process exited"
        counts: dict[str, int] = json.loads(answer)
        return counts

    async def until(
        self,
        done: Callable[[dict[str, int]], bool],
        count: int = 10,
        metadata: dict[str, str] | None = None,
        deadline: float = 20.0,
        target: str = TARGET,
    ) -> dict[str, int]:
        """Repeat a batch of calls until ``done(counts)``; fail with the last counts."""
        end = time.monotonic() + deadline
        counts: dict[str, int] = {}
        while time.monotonic() < end:
            counts = await self.calls(count, metadata, target)
            if done(counts):
                return counts
            await asyncio.sleep(0.05)
        pytest.fail(f"no convergence within {deadline}s; last replies: {counts}")

    def rebuild(
        self, default_routes: list[n.HttpRouteDestination], policy: n.TrafficPolicy | None = None
    ) -> None:
        """Apply new config and push what it changes."""
        configs = _configs(default_routes, policy)
        request = self.generator.apply(PushContext.build(configs, self.registry))
        assert request is not None
        self.server.push(request)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def proof(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Proof]:
    backends = {v: _backend(v) for v in ("v1", "v2", "v3")}
    ports = {v: port for v, (_, port) in backends.items()}
    registry = ServiceRegistry()
    registry.register_service(
        Service(HOST, "default", [ServicePort(9080, "grpc")]),
        [
            Endpoint("127.0.0.1", ports={"grpc": port}, labels={"version": v})
            for v, port in ports.items()
        ],
    )
    generator = PushContextGenerator(
        PushContext.build(_configs([_route("v1", 80), _route("v2", 20)]), registry)
    )
    server = DiscoveryServer(generator, debounce_after=0.01, debounce_max=1.0)
    xds_port = await server.start("127.0.0.1", 0)
    tmp = tmp_path_factory.mktemp("grpc-proof")
    node = "sidecar~127.0.0.1~proof-client.default~default.svc.cluster.local"
    client = await start_python(tmp, "client", CLIENT_SCRIPT, xds_bootstrap(xds_port, node))
    try:
        yield Proof(ports, registry, generator, server, client, tmp)
    finally:
        await stop_process(client)
        await server.stop()
        for backend, _ in backends.values():
            backend.stop(grace=None)


async def test_config_arrives_and_rpcs_succeed(proof: Proof) -> None:
    counts = await proof.until(lambda c: not any(k.startswith("error") for k in c))
    assert set(counts) <= {"v1", "v2"}
    # The client ACKed all four types (a NACK would name its reason here).
    end = time.monotonic() + 10
    states: dict[str, str] = {}
    while time.monotonic() < end:
        (view,) = proof.server.syncz()
        states = {url.rsplit(".", 1)[1]: t["state"] for url, t in view["types"].items()}
        reasons = [t["nack_reason"] for t in view["types"].values() if t["nack_reason"]]
        assert not reasons, reasons
        if len(states) == 4 and set(states.values()) == {"ACKED"}:
            break
        await asyncio.sleep(0.05)
    assert states == dict.fromkeys(
        ["Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"], "ACKED"
    )


async def test_weighted_split_follows_weights(proof: Proof) -> None:
    await proof.until(lambda c: not any(k.startswith("error") for k in c))
    counts = await proof.calls(200)
    assert set(counts) <= {"v1", "v2"}, counts
    share = counts.get("v1", 0) / 200
    # 80/20 split; bounds are wide (binomial sd ~2.8 points) so this never flakes.
    assert 0.62 <= share <= 0.95, counts


async def test_header_match_routes_to_v3(proof: Proof) -> None:
    counts = await proof.until(lambda c: c == {"v3": 10}, metadata={"end-user": "jason"})
    assert counts == {"v3": 10}
    other = await proof.calls(20, {"end-user": "bob"})
    assert "v3" not in other and sum(other.values()) == 20


async def test_fault_injection_aborts_with_grpc_status(proof: Proof) -> None:
    counts = await proof.until(
        lambda c: c == {"error:UNAVAILABLE": 10}, metadata={"x-fault": "yes"}
    )
    assert counts == {"error:UNAVAILABLE": 10}


async def test_fault_injection_delays(proof: Proof) -> None:
    # A 30 s injected delay against the client's 2 s deadline: every call times out.
    counts = await proof.until(
        lambda c: c == {"error:DEADLINE_EXCEEDED": 1}, count=1, metadata={"x-delay": "yes"}
    )
    assert counts == {"error:DEADLINE_EXCEEDED": 1}
    undelayed = await proof.calls(5, {"x-delay": "no"})
    assert not any(k.startswith("error") for k in undelayed), undelayed


async def test_live_config_change(proof: Proof) -> None:
    proof.rebuild([_route("v2")])
    counts = await proof.until(lambda c: c == {"v2": 20}, count=20)
    assert counts == {"v2": 20}


async def test_endpoint_only_change_pushes_eds_and_reroutes(proof: Proof) -> None:
    # Point the v2 subset at the v3 backend: only endpoints change, so only EDS is pushed.
    registry = proof.registry
    registry.set_endpoints(
        HOST,
        "default",
        [
            Endpoint("127.0.0.1", ports={"grpc": proof.ports["v1"]}, labels={"version": "v1"}),
            Endpoint("127.0.0.1", ports={"grpc": proof.ports["v3"]}, labels={"version": "v2"}),
        ],
    )
    change = proof.generator.update(PushContext.build(_configs([_route("v2")]), registry))
    assert change.endpoints_only
    request = proof.generator.push_request(change)
    assert request.types == frozenset({xds.ENDPOINT})
    proof.server.push(request)
    counts = await proof.until(lambda c: c == {"v3": 20}, count=20)
    assert counts == {"v3": 20}


async def test_xds_enabled_grpc_server_gets_its_listener(proof: Proof) -> None:
    """An xDS-enabled grpcio server only serves once our server listener arrives."""
    node = "sidecar~127.0.0.1~xds-server.default~default.svc.cluster.local"
    port = free_port()
    process = await start_python(
        proof.tmp, "server", SERVER_SCRIPT, xds_bootstrap(proof.server.port, node), str(port)
    )
    try:
        host = "xds-server.default.svc.cluster.local"
        proof.registry.register_service(
            Service(host, "default", [ServicePort(9090, "grpc")]),
            [Endpoint("127.0.0.1", ports={"grpc": port})],
        )
        proof.rebuild([_route("v2")])
        counts = await proof.until(
            lambda c: c == {"xds-server": 5}, count=5, target=f"xds:///{host}:9090"
        )
        assert counts == {"xds-server": 5}
        views = {v["proxy_id"]: v for v in proof.server.syncz()}
        lds = views[node]["types"]["type.googleapis.com/envoy.config.listener.v3.Listener"]
        assert lds["state"] == "ACKED" and not lds["nack_reason"]
    finally:
        await stop_process(process)


async def test_consistent_hash_pins_users_to_backends(proof: Proof) -> None:
    """Ring hash on a header: one user always lands on one backend; users spread out."""
    proof.registry.set_endpoints(
        HOST,
        "default",
        [
            Endpoint("127.0.0.1", ports={"grpc": port}, labels={"version": v})
            for v, port in proof.ports.items()
        ],
    )
    policy = n.TrafficPolicy(
        load_balancer=n.LoadBalancerSettings(
            consistent_hash=n.LoadBalancerSettingsConsistentHashLb(http_header_name="x-user")
        )
    )
    proof.rebuild([n.HttpRouteDestination(destination=n.Destination(host=HOST))], policy)
    # Converged once requests reach the whole service again (the previous config sent
    # everything to one backend; without the header, ring hash picks a random hash).
    await proof.until(lambda c: len(c) >= 2 and not any(k.startswith("error") for k in c), count=30)
    seen: set[str] = set()
    for i in range(12):
        counts = await proof.calls(10, {"x-user": f"user-{i}"})
        assert len(counts) == 1, counts  # every call of one user hits the same backend
        seen.update(counts)
    # 12 users all hashing to one of 3 backends would happen with p ~ 1e-5.
    assert len(seen) >= 2 and seen <= {"v1", "v2", "v3"}, seen
