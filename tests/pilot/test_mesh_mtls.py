"""Proof of mTLS in the mesh: real grpcio client and server, certificates from our Citadel.

Our CA (:class:`CitadelServer`) issues workload certificates through our agent to two
identities, ``prod/client-sa`` and ``prod/server-sa``, written in the ``file_watcher`` layout.
An xDS-enabled grpcio server and a grpcio xDS client (each a subprocess with its own bootstrap
and certificate provider) take their config from our :class:`DiscoveryServer`, where a
mesh-wide PeerAuthentication says STRICT and a DestinationRule says ISTIO_MUTUAL. The client's
RPC succeeds over mTLS and the server answers with the SPIFFE identity it saw; a plaintext
client and an xDS client without a certificate provider are refused. Everything runs on
127.0.0.1 and waits with deadlines, never on timing.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import pytest_asyncio

grpc = pytest.importorskip("grpc")

from support.grpc_xds import free_port, start_python, stop_process, xds_bootstrap  # noqa: E402

from istio_sdk import xds  # noqa: E402
from istio_sdk.api.istio.networking import v1alpha3 as n  # noqa: E402
from istio_sdk.api.istio.security import v1beta1 as security  # noqa: E402
from istio_sdk.citadel import (  # noqa: E402
    CaOptions,
    CertificateAuthority,
    CitadelServer,
    CitadelServerOptions,
    JwtRule,
    KeyAlgorithm,
    generate_private_key,
)
from istio_sdk.citadel.agent import AgentOptions, CitadelAgent  # noqa: E402
from istio_sdk.citadel.files import file_watcher_provider_config  # noqa: E402
from istio_sdk.citadel.jwt import encode_jwt, public_key_to_jwk  # noqa: E402
from istio_sdk.pilot.config_entry import ConfigEntry  # noqa: E402
from istio_sdk.pilot.push_context import PushContext  # noqa: E402
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort, ServiceRegistry  # noqa: E402
from istio_sdk.pilot.server import DiscoveryServer  # noqa: E402
from istio_sdk.pilot.translate import PushContextGenerator  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "prod"
HOST = f"echo.{NS}.svc.cluster.local"
TARGET = f"xds:///{HOST}:9090"
CLIENT_ID = f"spiffe://cluster.local/ns/{NS}/sa/client-sa"
SERVER_ID = f"spiffe://cluster.local/ns/{NS}/sa/server-sa"
ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "istio-ca"

# Answers each RPC with the peer identities grpcio authenticated (empty when plaintext).
SERVER_SCRIPT = """
import sys
from concurrent import futures
import grpc

def who(request, context):
    return b",".join(context.peer_identities() or [])

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
handler = grpc.method_handlers_generic_handler(
    "istio_sdk.proof.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
)
server.add_generic_rpc_handlers((handler,))
creds = grpc.xds_server_credentials(grpc.insecure_server_credentials())
server.add_secure_port(f"127.0.0.1:{sys.argv[1]}", creds)
server.start()
sys.stdin.read()
server.stop(None)
"""

# One JSON request per line: dial ``target`` (xDS credentials, or plaintext when asked) and
# reply with the answer or the status code.
CLIENT_SCRIPT = """
import json, sys
import grpc
import grpc.experimental

xds_creds = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
channels = {}
for line in sys.stdin:
    request = json.loads(line)
    key = (request["target"], request["plaintext"])
    channel = channels.get(key)
    if channel is None:
        if request["plaintext"]:
            channel = grpc.insecure_channel(request["target"])
        else:
            channel = grpc.secure_channel(request["target"], xds_creds)
        channels[key] = channel
    try:
        answer = channel.unary_unary("/istio_sdk.proof.Echo/Who")(b"", timeout=2.0)
        reply = {"ok": answer.decode()}
    except grpc.RpcError as exc:
        reply = {"error": exc.code().name, "details": exc.details() or ""}
    sys.stdout.write(json.dumps(reply) + "\\n")
    sys.stdout.flush()
"""


def _token(key: Any, namespace: str, account: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": [AUDIENCE],
        "iat": now,
        "exp": now + 600,
        "sub": f"system:serviceaccount:{namespace}:{account}",
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": account}},
    }
    return encode_jwt(claims, key, kid="proof")


async def _issue_certificates(tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    """Run our CA and, per identity, our agent once: certificate files in file_watcher layout."""
    signer = generate_private_key(KeyAlgorithm.ECDSA_P256)
    jwks = {"keys": [public_key_to_jwk(signer.public_key(), "proof")]}
    rule = JwtRule.from_json({"issuer": ISSUER, "jwks": json.dumps(jwks), "audiences": [AUDIENCE]})
    ca = CertificateAuthority.create_self_signed(CaOptions(key_algorithm=KeyAlgorithm.ECDSA_P256))
    dirs = {}
    async with CitadelServer(CitadelServerOptions(jwt_rule=rule), ca=ca) as citadel:
        for account in ("client-sa", "server-sa"):
            agent = CitadelAgent(
                AgentOptions(
                    ca_host="127.0.0.1",
                    ca_port=citadel.port,
                    ca_root_pem=citadel.root_pem,
                    token=_token(signer, NS, account),
                    output_dir=str(tmp / account),
                )
            )
            await agent.refresh_once()
            await agent.stop()
            dirs[account] = tmp / account
    return dirs


def _configs(client_tls: n.ClientTlsSettingsTlSmode) -> list[ConfigEntry]:
    strict = security.PeerAuthentication(
        mtls=security.PeerAuthenticationMutualTls(
            mode=security.PeerAuthenticationMutualTlsMode.STRICT
        )
    )
    rule = n.DestinationRule(
        host=HOST, traffic_policy=n.TrafficPolicy(tls=n.ClientTlsSettings(mode=client_tls))
    )
    return [
        ConfigEntry("PeerAuthentication", "default", "istio-system", strict),
        ConfigEntry("DestinationRule", "echo", NS, rule),
    ]


@attrs.define
class Client:
    """A grpcio client process answering one JSON line per request."""

    process: asyncio.subprocess.Process

    async def call(self, target: str = TARGET, *, plaintext: bool = False) -> dict[str, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        line = json.dumps({"target": target, "plaintext": plaintext}) + "\n"
        self.process.stdin.write(line.encode())
        await self.process.stdin.drain()
        answer = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
        assert answer, "the grpcio client process exited"
        reply: dict[str, str] = json.loads(answer)
        return reply

    async def until(
        self, done: Callable[[dict[str, str]], bool], deadline: float = 20.0, **kwargs: Any
    ) -> dict[str, str]:
        end = time.monotonic() + deadline
        reply: dict[str, str] = {}
        while time.monotonic() < end:
            reply = await self.call(**kwargs)
            if done(reply):
                return reply
            await asyncio.sleep(0.1)
        pytest.fail(f"no convergence within {deadline}s; last reply: {reply}")


@attrs.define
class Mesh:
    server: DiscoveryServer
    generator: PushContextGenerator
    registry: ServiceRegistry
    server_port: int
    server_node: str
    tmp: pathlib.Path
    certs: dict[str, pathlib.Path]
    processes: list[asyncio.subprocess.Process] = attrs.field(factory=list)

    async def client(self, name: str, *, with_certificate: bool) -> Client:
        providers = file_watcher_provider_config(self.certs["client-sa"])
        bootstrap = xds_bootstrap(
            self.server.port,
            f"sidecar~127.0.0.1~{name}.{NS}~{NS}.svc.cluster.local",
            namespace=NS,
            labels={"app": name},
            certificate_providers=providers if with_certificate else None,
        )
        process = await start_python(self.tmp, name, CLIENT_SCRIPT, bootstrap)
        self.processes.append(process)
        return Client(process)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    if sys.platform == "win32":  # pragma: no cover - grpcio xDS servers need a POSIX host
        pytest.skip("POSIX only")
    tmp = tmp_path_factory.mktemp("mesh-mtls")
    certs = await _issue_certificates(tmp)
    server_port = free_port()
    registry = ServiceRegistry()
    registry.register_service(
        Service(HOST, NS, [ServicePort(9090, "grpc")]),
        [Endpoint("127.0.0.1", ports={"grpc": server_port}, service_account="server-sa")],
    )
    generator = PushContextGenerator(
        PushContext.build(_configs(n.ClientTlsSettingsTlSmode.ISTIO_MUTUAL), registry)
    )
    discovery = DiscoveryServer(generator, debounce_after=0.01, debounce_max=1.0)
    await discovery.start("127.0.0.1", 0)
    node = f"sidecar~127.0.0.1~echo.{NS}~{NS}.svc.cluster.local"
    bootstrap = xds_bootstrap(
        discovery.port,
        node,
        namespace=NS,
        labels={"app": "echo"},
        certificate_providers=file_watcher_provider_config(certs["server-sa"]),
    )
    server = await start_python(tmp, "echo-server", SERVER_SCRIPT, bootstrap, str(server_port))
    found = Mesh(discovery, generator, registry, server_port, node, tmp, certs, [server])
    try:
        yield found
    finally:
        for process in found.processes:
            await stop_process(process)
        await discovery.stop()


async def test_mtls_call_carries_the_client_identity(mesh: Mesh) -> None:
    client = await mesh.client("good-client", with_certificate=True)
    reply = await client.until(lambda r: "ok" in r)
    assert reply == {"ok": CLIENT_ID}
    # The server's listener (with its TLS context) was accepted, not NACKed.
    views = {v["proxy_id"]: v for v in mesh.server.syncz()}
    lds = views[mesh.server_node]["types"][xds.LISTENER]
    assert lds["state"] == "ACKED" and not lds["nack_reason"]


async def test_plaintext_client_is_refused(mesh: Mesh) -> None:
    """The server side enforces STRICT: a client dialling it directly in plaintext fails."""
    client = await mesh.client("plain-client", with_certificate=True)
    # Wait until the server serves (an mTLS call passes), then dial it without TLS.
    await client.until(lambda r: "ok" in r)
    reply = await client.call(f"127.0.0.1:{mesh.server_port}", plaintext=True)
    assert "error" in reply, reply
    assert reply["error"] == "UNAVAILABLE", reply


async def test_client_without_certificate_is_refused(mesh: Mesh) -> None:
    """An xDS client whose bootstrap declares no certificate provider cannot take part."""
    good = await mesh.client("witness-client", with_certificate=True)
    await good.until(lambda r: "ok" in r)
    anonymous = await mesh.client("anonymous-client", with_certificate=False)
    # Several attempts: none of them may ever succeed.
    for _ in range(3):
        reply = await anonymous.call()
        assert "error" in reply, reply
    # It never got that far: without a provider named "default" grpcio NACKs the TLS cluster.
    assert "certificate provider" in reply["details"], reply
    views = [v for v in mesh.server.syncz() if "anonymous-client" in v["proxy_id"]]
    cds = views[0]["types"]["type.googleapis.com/envoy.config.cluster.v3.Cluster"]
    assert cds["state"] == "NACKED" and "certificate provider" in cds["nack_reason"], cds


async def test_wrong_server_identity_is_refused(mesh: Mesh) -> None:
    """SAN matching: a DestinationRule naming another identity makes the client refuse."""
    rule = n.DestinationRule(
        host=HOST,
        traffic_policy=n.TrafficPolicy(
            tls=n.ClientTlsSettings(
                mode=n.ClientTlsSettingsTlSmode.ISTIO_MUTUAL,
                subject_alt_names=[f"spiffe://cluster.local/ns/{NS}/sa/impostor"],
            )
        ),
    )
    configs = [*_configs(n.ClientTlsSettingsTlSmode.ISTIO_MUTUAL)[:1]]
    configs.append(ConfigEntry("DestinationRule", "echo", NS, rule))
    request = mesh.generator.apply(PushContext.build(configs, mesh.registry))
    assert request is not None
    mesh.server.push(request)
    try:
        client = await mesh.client("picky-client", with_certificate=True)
        reply = await client.until(lambda r: "error" in r)
        assert reply["error"] == "UNAVAILABLE", reply
    finally:
        back = PushContext.build(_configs(n.ClientTlsSettingsTlSmode.ISTIO_MUTUAL), mesh.registry)
        request = mesh.generator.apply(back)
        if request is not None:
            mesh.server.push(request)
