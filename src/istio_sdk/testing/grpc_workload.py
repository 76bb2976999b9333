"""Proxyless gRPC workloads on a test's mesh: real grpcio servers and clients, each in its own
process (grpcio reads one xDS bootstrap per process), taking their config from the mesh's Pilot
and their certificates from its CA.

:class:`GrpcWorkloads` (the ``grpc_workload`` fixture of the pytest plugin) starts them:
:meth:`GrpcWorkloads.server` registers a service ``NAME.NAMESPACE.svc.cluster.local`` with one
endpoint (the server, on a loopback port) and starts an xDS-enabled server that answers every
call with the SPIFFE identities it authenticated; :meth:`GrpcWorkloads.client` starts a client
whose :meth:`GrpcClient.call` dials ``xds:///HOST:PORT``. With a STRICT PeerAuthentication and
an ISTIO_MUTUAL DestinationRule in the mesh's config, the traffic is mutual TLS with the
certificates the mesh issued (written in the ``file_watcher`` layout). Needs grpcio.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import socket
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from istio_sdk.citadel.files import file_watcher_provider_config, write_workload_files
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort, service_hostname

if TYPE_CHECKING:
    from istio_sdk.mesh import Mesh

__all__ = ["GrpcCallResult", "GrpcClient", "GrpcServer", "GrpcWorkloads", "grpc_xds_bootstrap"]

SERVER_LISTENER_TEMPLATE = "xds.istio.io/grpc/lds/inbound/%s"
"""Istio's ``server_listener_resource_name_template`` for xDS-enabled gRPC servers."""

# Answers each call with its name, its port and the peer identities grpcio authenticated (none
# over plaintext); exits when stdin closes.
_SERVER = """
import sys
from concurrent import futures
import grpc

me = f"{sys.argv[2]}|{sys.argv[1]}|".encode()

def who(request, context):
    return me + b",".join(context.peer_identities() or [])

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
handler = grpc.method_handlers_generic_handler(
    "istio_sdk.testing.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
)
server.add_generic_rpc_handlers((handler,))
server.add_secure_port(
    f"127.0.0.1:{sys.argv[1]}", grpc.xds_server_credentials(grpc.insecure_server_credentials())
)
server.start()
sys.stdout.write("serving\\n")
sys.stdout.flush()
sys.stdin.read()
server.stop(None)
"""

# One JSON request per line ({"target": ..., "timeout": ...}); one JSON answer per line.
_CLIENT = """
import json, sys
import grpc
import grpc.experimental

credentials = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
channels = {}
for line in sys.stdin:
    request = json.loads(line)
    channel = channels.get(request["target"])
    if channel is None:
        channel = channels[request["target"]] = grpc.secure_channel(request["target"], credentials)
    try:
        answer = channel.unary_unary("/istio_sdk.testing.Echo/Who")(
            b"", timeout=request["timeout"]
        ).decode()
        server, port, peers = answer.split("|", 2)
        reply = {
            "server": server,
            "server_port": int(port),
            "peer_identities": [p for p in peers.split(",") if p],
        }
    except grpc.RpcError as exc:
        reply = {"error": exc.code().name, "details": exc.details() or ""}
    sys.stdout.write(json.dumps(reply) + "\\n")
    sys.stdout.flush()
"""


def grpc_xds_bootstrap(
    xds_address: tuple[str, int],
    node_id: str,
    *,
    namespace: str,
    labels: Mapping[str, str] | None = None,
    certificate_providers: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A gRPC xDS bootstrap for a proxyless workload of Pilot at ``xds_address`` (plaintext
    xDS), asking for Pilot's ``grpc`` generator in ``namespace``."""
    host, port = xds_address
    metadata: dict[str, Any] = {"GENERATOR": "grpc", "NAMESPACE": namespace}
    if labels:
        metadata["LABELS"] = dict(labels)
    bootstrap: dict[str, Any] = {
        "xds_servers": [
            {
                "server_uri": f"{host}:{port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": node_id, "metadata": metadata},
        "server_listener_resource_name_template": SERVER_LISTENER_TEMPLATE,
    }
    if certificate_providers:
        bootstrap["certificate_providers"] = dict(certificate_providers)
    return bootstrap


@attrs.frozen
class GrpcCallResult:
    """One call's outcome: the server's name and port (:attr:`GrpcServer.port`: which
    instance answered) and the identities it saw, or the gRPC error."""

    server: str = ""
    server_port: int = 0
    peer_identities: tuple[str, ...] = ()
    error: str = ""
    details: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@attrs.define
class GrpcServer:
    """A running xDS-enabled gRPC server: ``target`` is what clients dial."""

    name: str
    namespace: str
    hostname: str
    port: int
    service_port: int
    process: asyncio.subprocess.Process = attrs.field(repr=False)

    @property
    def target(self) -> str:
        return f"xds:///{self.hostname}:{self.service_port}"


@attrs.define
class GrpcClient:
    """A running grpcio xDS client process."""

    name: str
    namespace: str
    process: asyncio.subprocess.Process = attrs.field(repr=False)
    _lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, repr=False)

    async def call_until(
        self,
        target: str,
        done: Callable[[GrpcCallResult], bool],
        *,
        deadline: float = 10.0,
    ) -> GrpcCallResult:
        """Call ``target`` until ``done(result)``; returns that result, or raises
        ``TimeoutError`` with the last one after ``deadline`` seconds.

        grpcio ACKs an xDS update before its channels use it, so a call right after
        :meth:`~istio_sdk.Mesh.converged` may still take the previous route: this waits for
        the first call that shows the change.
        """
        last: GrpcCallResult | None = None
        try:
            async with asyncio.timeout(deadline):
                while True:
                    last = await self.call(target, timeout=deadline)
                    if done(last):
                        return last
                    await _pause()
        except TimeoutError:
            raise TimeoutError(f"no call to {target} met the condition; last: {last}") from None

    async def call(self, target: str, *, timeout: float = 5.0) -> GrpcCallResult:  # noqa: ASYNC109
        """One unary call to ``target`` (``xds:///HOST:PORT``) through the mesh."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        async with self._lock:
            stdin.write((json.dumps({"target": target, "timeout": timeout}) + "\n").encode())
            await stdin.drain()
            line = await asyncio.wait_for(stdout.readline(), timeout + 30)
        if not line:
            raise RuntimeError(f"the gRPC client process {self.name} exited")
        reply = json.loads(line)
        return GrpcCallResult(
            server=reply.get("server", ""),
            server_port=reply.get("server_port", 0),
            peer_identities=tuple(reply.get("peer_identities", ())),
            error=reply.get("error", ""),
            details=reply.get("details", ""),
        )


async def _pause() -> None:
    await asyncio.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class GrpcWorkloads:
    """Starts proxyless gRPC servers and clients on ``mesh`` (Pilot and Citadel must run),
    keeping their files in ``directory``; :meth:`close` ends every process."""

    def __init__(self, mesh: Mesh, directory: str | os.PathLike[str]) -> None:
        self.mesh = mesh
        self.directory = pathlib.Path(directory)
        self._processes: list[asyncio.subprocess.Process] = []

    async def _start(
        self,
        name: str,
        namespace: str,
        service_account: str,
        labels: Mapping[str, str],
        script: str,
        *args: str,
    ) -> asyncio.subprocess.Process:
        home = self.directory / f"{namespace}-{name}"
        certs = home / "certs"
        write_workload_files(certs, await self.mesh.issue_identity((namespace, service_account)))
        node = f"sidecar~127.0.0.1~{name}.{namespace}~{namespace}.svc.cluster.local"
        bootstrap = grpc_xds_bootstrap(
            self.mesh.addresses["pilot"],
            node,
            namespace=namespace,
            labels=labels,
            certificate_providers=file_watcher_provider_config(certs),
        )
        (home / "bootstrap.json").write_text(json.dumps(bootstrap))
        (home / "main.py").write_text(script)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
        env["GRPC_XDS_BOOTSTRAP"] = str(home / "bootstrap.json")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(home / "main.py"),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=str(home),
        )
        self._processes.append(process)
        return process

    async def server(
        self,
        name: str,
        namespace: str = "default",
        *,
        service_account: str | None = None,
        labels: Mapping[str, str] | None = None,
        service_port: int = 9090,
    ) -> GrpcServer:
        """Register ``NAME.NAMESPACE.svc.cluster.local:service_port`` (GRPC) with this server
        as its endpoint and start it; returns once it serves and the mesh converged on its
        endpoint. Several servers of one name (say, different ``version`` labels) are
        endpoints of the same service."""
        account = service_account or name
        wanted = {"app": name, **(labels or {})}
        port = _free_port()
        process = await self._start(name, namespace, account, wanted, _SERVER, str(port), name)
        assert process.stdout is not None
        if await asyncio.wait_for(process.stdout.readline(), 60) != b"serving\n":
            raise RuntimeError(f"the gRPC server {name} did not start")
        hostname = service_hostname(name, namespace)
        endpoint = Endpoint(
            "127.0.0.1", ports={"grpc": port}, labels=wanted, service_account=account
        )
        snapshot = self.mesh.registry.snapshot()
        current = snapshot.service(hostname, namespace)
        endpoints = [*(snapshot.endpoints_of(current) if current else ()), endpoint]
        self.mesh.register_service(
            Service(hostname, namespace, [ServicePort(service_port, "grpc", "GRPC")]), endpoints
        )
        await self.mesh.converged()
        return GrpcServer(name, namespace, hostname, port, service_port, process)

    async def client(
        self,
        name: str,
        namespace: str = "default",
        *,
        service_account: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> GrpcClient:
        """Start a client process (its identity: ``service_account``, default ``name``)."""
        account = service_account or name
        process = await self._start(
            name, namespace, account, {"app": name, **(labels or {})}, _CLIENT
        )
        return GrpcClient(name, namespace, process)

    async def close(self) -> None:
        """End every process: stdin closed first, killed if it lingers."""
        processes, self._processes = self._processes, []
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
