"""istio_sdk.Mesh as a whole: components by name, addresses, clients, identities, workloads,
converged(), and a start and stop that leave nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import pathlib
import socket
import threading

import pytest
from cryptography import x509
from grpclib.client import Channel
from grpclib.const import Cardinality

from istio_sdk import (
    Mesh,
    MeshComponentError,
    MeshListenError,
    MeshNotConvergedError,
    load_resources,
    xds,
)
from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.envoy.service.discovery.v3 import DiscoveryRequest
from istio_sdk.citadel import CertificateBundle, CsrError, Identity, IdentityError
from istio_sdk.mesh import COMPONENTS, DEFAULT_PORTS
from istio_sdk.pilot._raw import EncodedMessage
from istio_sdk.pilot.client import sidecar_node
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort
from istio_sdk.pilot.server import SOTW_METHOD

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
CLUSTER = f"outbound|9080||{REVIEWS}"
ROUTE = "9080"

SERVICE_ENTRY = f"""\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{REVIEWS}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.1.0.1, labels: {{version: v1}}}}]
"""


def virtual_service(prefix: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - match: [{{uri: {{prefix: {prefix}}}}}]
    route: [{{destination: {{host: reviews}}}}]
"""


@pytest.fixture
def config(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "reviews.yaml").write_text(SERVICE_ENTRY)
    return tmp_path


def node(pod: str = "app-0") -> Node:
    return sidecar_node("10.0.0.5", pod, "default")


def prefixes(routes: dict[str, object]) -> set[str]:
    found = set()
    for route in routes.values():
        for vhost in route.virtual_hosts:  # type: ignore[attr-defined]
            for r in vhost.routes:
                found.add(r.match.prefix)
    return found


# -- components and ports -------------------------------------------------------------------
def test_components_default_to_istio_ports() -> None:
    mesh = Mesh(components=COMPONENTS)
    ports = (mesh.xds_port, mesh.ca_port, mesh.galley_port, mesh.mixer_port, mesh.injector_port)
    assert ports == (15010, 15012, 9901, 9091, 15017)
    assert dict(DEFAULT_PORTS) == dict(zip(COMPONENTS, ports, strict=True))


def test_free_ports_and_components_left_out() -> None:
    mesh = Mesh(components=["pilot", "mixer"], free_ports=True)
    assert (mesh.xds_port, mesh.mixer_port) == (0, 0)
    assert mesh.citadel is None and mesh.injector is None and mesh.ca_port is None
    explicit = Mesh(components=["citadel"], ca_port=0)
    assert explicit.xds_port is None  # Pilot off


def test_bad_components_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown mesh components \\['pilott'\\]"):
        Mesh(components=["pilott"])
    with pytest.raises(ValueError, match="ca_port given but 'citadel' is not in components"):
        Mesh(components=["pilot"], ca_port=0)


async def test_every_component_answers_at_its_address(config: pathlib.Path) -> None:
    async with Mesh.from_directory(
        config, components=COMPONENTS, free_ports=True, debounce_after=0.01
    ) as mesh:
        assert set(COMPONENTS) <= set(mesh.addresses)
        for name, (host, port) in mesh.addresses.items():
            assert host == "127.0.0.1" and port > 0, name
        async with mesh.pilot_client(node()) as pilot:
            pilot.subscribe(xds.CLUSTER)
            await pilot.wait_for(xds.CLUSTER, [CLUSTER])
        galley = mesh.galley_client()
        await galley.start()
        async with asyncio.timeout(10):
            await galley.wait_synced()
        assert galley.store.get("ServiceEntry", "reviews", "default") is not None
        result = await mesh.mixer_client().check({"destination.service.host": REVIEWS})
        assert result.ok
        bundle = await mesh.citadel_client().request_certificate(
            mtls=await mesh.issue_identity(("default", "reviews"))
        )
        assert bundle.identity == Identity("default", "reviews")
        host, port = mesh.addresses["injector"]
        with socket.create_connection((host, port), timeout=5):
            pass


async def test_a_component_turned_off_is_named() -> None:
    async with Mesh(components=["pilot"], free_ports=True) as mesh:
        assert set(mesh.addresses) == {"pilot"}
        with pytest.raises(MeshComponentError, match="mixer is not running in this mesh"):
            mesh.mixer_client()
        with pytest.raises(MeshComponentError, match="citadel is not running"):
            await mesh.issue_identity(("default", "a"))
    with pytest.raises(MeshComponentError, match="pilot has not started yet"):
        Mesh(free_ports=True).pilot_client()


# -- identities -----------------------------------------------------------------------------
async def test_issue_identity_gives_key_chain_and_trust_bundle() -> None:
    async with Mesh(components=["citadel"], free_ports=True) as mesh:
        assert mesh.citadel is not None
        for wanted in (
            ("default", "reviews"),
            "spiffe://cluster.local/ns/default/sa/reviews",
            Identity("default", "reviews"),
        ):
            bundle = await mesh.issue_identity(wanted, ttl=datetime.timedelta(minutes=5))
            assert isinstance(bundle, CertificateBundle)
            assert bundle.identity == Identity("default", "reviews")
            assert bundle.root_cert_pem == mesh.citadel.root_pem
            assert bundle.lifetime == datetime.timedelta(minutes=5)
            leaf = x509.load_pem_x509_certificate(bundle.leaf_pem.encode())
            root = x509.load_pem_x509_certificate(bundle.root_cert_pem.encode())
            leaf.verify_directly_issued_by(root)
        with pytest.raises(IdentityError):
            await mesh.issue_identity("spiffe://cluster.local/not-an-identity")
        with pytest.raises(IdentityError):
            await mesh.issue_identity(("", "x" * 10_000))
        with pytest.raises(CsrError, match="outside this CA's trust domain"):
            await mesh.issue_identity("spiffe://example.org/ns/default/sa/reviews")


async def test_citadel_client_for_an_identity_asks_as_that_workload() -> None:
    async with Mesh(components=["citadel"], free_ports=True) as mesh:
        client = mesh.citadel_client(("shop", "cart"))
        bundle = await client.request_certificate()
        assert bundle.identity == Identity("shop", "cart")
        assert mesh.citadel is not None and mesh.citadel.stats().signed == 1


async def test_a_workload_agent_renews_over_mtls_and_serves_sds(tmp_path: pathlib.Path) -> None:
    from istio_sdk._grpc import create_channel
    from istio_sdk.api.envoy.extensions.transport_sockets.tls.v3 import Secret
    from istio_sdk.api.envoy.service.secret.v3 import SecretDiscoveryServiceStub

    async with Mesh(components=["citadel"], free_ports=True) as mesh:
        assert mesh.citadel is not None
        agent = await mesh.citadel_agent(("shop", "cart"), output_dir=tmp_path, sds_port=0)
        await agent.start()
        bundle = await asyncio.wait_for(agent.wait_ready(), 10)
        # the agent's own request, signed by the mesh's CA over mutual TLS (no token given)
        assert bundle.identity == Identity("shop", "cart")
        assert mesh.citadel.stats().signed == 1
        assert (tmp_path / "cert-chain.pem").read_text() == "".join(bundle.cert_chain_pem)
        channel = create_channel("127.0.0.1", agent.sds_port)
        try:
            stub = SecretDiscoveryServiceStub(channel)
            response = await stub.fetch_secrets(DiscoveryRequest(resource_names=["default"]))
        finally:
            channel.close()
        (served,) = [Secret.parse(r.value) for r in response.resources]
        chain = served.tls_certificate.certificate_chain.inline_bytes.decode()
        assert chain == "".join(bundle.cert_chain_pem)
    # the mesh stopped the agent with itself
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", agent.sds_port), timeout=1).close()


# -- workloads and convergence ----------------------------------------------------------------
async def test_registered_workloads_reach_proxies_by_converged() -> None:
    async with Mesh(free_ports=True, debounce_after=0.2) as mesh:
        pilot = mesh.pilot_client(node())  # closed with the mesh
        await pilot.start()
        pilot.subscribe(xds.CLUSTER)
        pilot.subscribe(xds.ENDPOINT, [CLUSTER])
        await pilot.wait_for(xds.CLUSTER)
        await mesh.converged()
        mesh.register_service(
            Service(REVIEWS, "default", [ServicePort(9080, "http")]), [Endpoint("10.2.0.1")]
        )
        await mesh.converged()
        # converged() returned: the proxy holds the change, nothing more to wait for.
        assert CLUSTER in pilot.resources(xds.CLUSTER)
        mesh.set_endpoints(REVIEWS, "default", [Endpoint("10.2.0.7")])
        await mesh.converged()
        (group,) = pilot.resources(xds.ENDPOINT)[CLUSTER].endpoints
        (lb,) = group.lb_endpoints
        assert lb.endpoint.address.socket_address.address == "10.2.0.7"


async def test_converged_waits_for_every_proxy_to_ack_a_config_change(
    config: pathlib.Path,
) -> None:
    async with Mesh.from_directory(config, free_ports=True, debounce_after=0.2) as mesh:
        clients = [mesh.pilot_client(node(f"app-{i}")) for i in range(3)]
        for client in clients:
            await client.start()
            client.subscribe(xds.LISTENER)
            client.subscribe(xds.ROUTE, [ROUTE])
        for client in clients:
            await client.wait_for(xds.LISTENER)
        for prefix, old in (("/v1", "/v2"), ("/v2", "/v1")):
            mesh.apply(*load_resources(virtual_service(prefix)))
            await mesh.converged()
            for client in clients:
                held = prefixes(client.resources(xds.ROUTE))
                assert prefix in held and old not in held
            assert mesh.unsynced() == []


async def test_converged_without_proxies_returns_after_the_push_round(
    config: pathlib.Path,
) -> None:
    async with Mesh.from_directory(config, free_ports=True, debounce_after=0.05) as mesh:
        generation = mesh.discovery.generation
        mesh.apply(*load_resources(virtual_service("/v1")))
        await mesh.converged(timeout=5)
        assert mesh.discovery.generation == generation + 1  # the round ran, to no one


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
async def test_a_bad_converged_timeout_is_refused(seconds: float) -> None:
    async with Mesh(free_ports=True) as mesh:
        with pytest.raises(ValueError, match="timeout must be a finite number"):
            await mesh.converged(seconds)


async def test_converged_raises_on_a_nack_with_the_reason(config: pathlib.Path) -> None:
    def refuse_routes(type_url: str, resources: object) -> str | None:
        return "route rejected by the test" if type_url == xds.ROUTE else None

    async with Mesh.from_directory(config, free_ports=True, debounce_after=0.01) as mesh:
        client = mesh.pilot_client(node(), validator=refuse_routes)
        await client.start()
        client.subscribe(xds.LISTENER)
        client.subscribe(xds.ROUTE, [ROUTE])
        await client.wait_for(xds.LISTENER)
        mesh.apply(*load_resources(virtual_service("/v1")))
        with pytest.raises(MeshNotConvergedError, match="route rejected by the test") as info:
            await mesh.converged()
        assert "RDS NACKED" in info.value.pending[0]


async def test_converged_times_out_naming_a_proxy_that_never_acks() -> None:
    async with Mesh(free_ports=True, debounce_after=0.01) as mesh:
        host, port = mesh.addresses["pilot"]
        channel = Channel(host, port)
        request = DiscoveryRequest(node=node("stalled"), type_url=xds.CLUSTER)
        try:
            async with channel.request(
                SOTW_METHOD, Cardinality.STREAM_STREAM, EncodedMessage, EncodedMessage
            ) as stream:
                await stream.send_message(EncodedMessage(bytes(request)))
                await stream.recv_message()  # the clusters, never ACKed
                with pytest.raises(MeshNotConvergedError, match=r"stalled.*CDS SENT") as info:
                    await mesh.converged(timeout=0.5)
                assert len(info.value.pending) == 1
                waiting = asyncio.create_task(mesh.converged(timeout=5))
                await asyncio.sleep(0)  # the wait has started
                await stream.cancel()
                await waiting  # the stalled proxy left: nothing more to wait for
        finally:
            channel.close()


# -- nothing left behind ----------------------------------------------------------------------
def open_fds() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            found.add(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
    return found


class Leftovers:
    def __init__(self) -> None:
        self.tasks = asyncio.all_tasks()
        self.fds = open_fds()
        self.threads = set(threading.enumerate())

    async def assert_none(self) -> None:
        # Threads a pool was told to end exit when their current job does: wait for that.
        for thread in set(threading.enumerate()) - self.threads - _default_executor_threads():
            await asyncio.to_thread(thread.join, 10)
        assert asyncio.all_tasks() - self.tasks == set()
        left = open_fds() - self.fds
        # Sockets and files are closed when the mesh stops. The folder watch's inotify backend
        # (watchfiles, Rust) ends its own epoll thread after the watch is dropped, unseen from
        # Python: its epoll and eventfd descriptors get a bounded wait.
        assert {fd for fd in left if "anon_inode" not in fd} == set()
        async with asyncio.timeout(5):
            while open_fds() - self.fds:  # noqa: ASYNC110 - nothing to wait on but /proc
                await asyncio.sleep(0.02)
        assert set(threading.enumerate()) - self.threads - _default_executor_threads() == set()


def _default_executor_threads() -> set[threading.Thread]:
    # The loop's pools are the loop's, not the mesh's: asyncio's default one (to_thread: the
    # folder scans, the join above) lives as long as the loop, AnyIO's (the folder watch's
    # inotify reads) ends its idle threads after 10 s.
    return {
        t
        for t in threading.enumerate()
        if t.name.startswith("asyncio_") or t.name == "AnyIO worker thread"
    }


async def test_start_and_stop_leave_no_task_socket_file_or_thread(config: pathlib.Path) -> None:
    await asyncio.sleep(0)
    before = Leftovers()
    async with Mesh.from_directory(
        config, components=COMPONENTS, free_ports=True, debounce_after=0.01, debug_port=0
    ) as mesh:
        pilot = mesh.pilot_client(node())
        await pilot.start()
        pilot.subscribe(xds.CLUSTER)
        await pilot.wait_for(xds.CLUSTER, [CLUSTER])
        mesh.apply(*load_resources(virtual_service("/v1")))
        await mesh.converged()
        await mesh.mixer_client().check({"destination.service.host": REVIEWS})
        await mesh.citadel_client(("default", "a")).request_certificate()
        galley = mesh.galley_client()
        await galley.start()
        async with asyncio.timeout(10):
            await galley.wait_synced()
        # clients left open on purpose: the mesh closes what it handed out
    await before.assert_none()


async def test_a_failed_start_leaves_nothing_behind(config: pathlib.Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        before = Leftovers()
        mesh = Mesh.from_directory(
            config,
            components=COMPONENTS,
            free_ports=True,
            injector_port=taken.getsockname()[1],  # the last server to start
        )
        with pytest.raises(MeshListenError, match="for the sidecar injector"):
            async with mesh:
                pytest.fail("the mesh started on a port already taken")
        assert mesh.addresses == {}
        await before.assert_none()
    finally:
        taken.close()


async def test_a_stop_ends_a_converged_wait_with_the_reason(config: pathlib.Path) -> None:
    mesh = Mesh.from_directory(config, free_ports=True, debounce_after=30, debounce_max=30)
    await mesh.start()
    mesh.registry.register_service(Service(RATINGS, "default", [ServicePort(9080, "http")]))
    mesh.rebuild()  # built at once; its push waits out 30 s
    waiting = asyncio.create_task(mesh.converged(timeout=10))
    await asyncio.sleep(0)  # the wait has started
    await mesh.stop()
    with pytest.raises(MeshNotConvergedError, match="the mesh stopped") as info:
        await waiting
    assert info.value.pending == ("a push is queued",)
