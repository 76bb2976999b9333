"""The agent: renewal at half lifetime, backoff while the CA is down, SDS and PEM files."""

from __future__ import annotations

import asyncio
import datetime
import json
import pathlib
import stat
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from support.grpc_xds import free_port

from istio_sdk._grpc import create_channel
from istio_sdk.api.envoy.extensions.transport_sockets.tls.v3 import Secret
from istio_sdk.api.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from istio_sdk.api.envoy.service.secret.v3 import SecretDiscoveryServiceStub
from istio_sdk.api.google.rpc import Status as RpcStatus
from istio_sdk.citadel import (
    CertificateAuthority,
    CitadelClient,
    CitadelServer,
    CitadelServerOptions,
    Identity,
    JwtRule,
)
from istio_sdk.citadel.agent import AgentOptions, CitadelAgent
from istio_sdk.citadel.files import file_watcher_provider_config
from istio_sdk.citadel.sds import SECRET_TYPE_URL

WAIT = 10.0  # generous upper bound for waiting on events; never asserted on


class FakeTime:
    """An injectable clock and sleep: sleeps are recorded, and block after ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.now = datetime.datetime.now(datetime.UTC)
        self.delays: list[float] = []
        self.limit = limit
        self.reached = asyncio.Event()

    def clock(self) -> datetime.datetime:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) >= self.limit:
            self.reached.set()
            await asyncio.Future()  # park the loop until the test stops the agent
        await asyncio.sleep(0)


@pytest.fixture
async def ca_server(ca: CertificateAuthority, ec_issuer: Any) -> AsyncIterator[CitadelServer]:
    options = CitadelServerOptions(jwt_rule=JwtRule.from_json(ec_issuer.rule()))
    async with CitadelServer(options, ca=ca) as server:
        yield server


def _options(server: CitadelServer, **kwargs: Any) -> AgentOptions:
    return AgentOptions(
        ca_host="127.0.0.1", ca_port=server.port, ca_root_pem=server.root_pem, **kwargs
    )


async def test_renews_at_half_lifetime(ca_server: CitadelServer, ec_issuer: Any) -> None:
    fake = FakeTime(limit=3)
    options = _options(ca_server, token=ec_issuer.token("prod", "reviews"), ttl_seconds=3600)
    agent = CitadelAgent(options, clock=fake.clock, sleep=fake.sleep)
    async with agent:
        bundle = await asyncio.wait_for(agent.wait_ready(), WAIT)
        await asyncio.wait_for(fake.reached.wait(), WAIT)
        stats = agent.stats()
    assert bundle.identity == Identity("prod", "reviews")
    assert stats.renewals == 3
    assert stats.failures == 0
    assert ca_server.stats().signed == 3
    # Each wait runs to half of a one-hour lifetime, measured on the agent's (frozen) clock.
    for delay in fake.delays:
        assert 1790 <= delay <= 1810


async def test_backs_off_while_ca_is_down_and_serves_nothing(ca: CertificateAuthority) -> None:
    fake = FakeTime(limit=6)
    options = AgentOptions(
        ca_host="127.0.0.1",
        ca_port=free_port(),
        ca_root_pem=ca.root_pem,
        token="some-token",
        backoff_initial=1.0,
        backoff_max=8.0,
        request_timeout=2.0,
    )
    agent = CitadelAgent(options, clock=fake.clock, sleep=fake.sleep, rng=lambda: 1.0)
    async with agent:
        await asyncio.wait_for(fake.reached.wait(), WAIT)
        assert agent.bundle is None
        with pytest.raises(GRPCError) as info:
            await agent.sds.fetch_secrets(DiscoveryRequest(resource_names=["default"]))
        assert info.value.status is Status.UNAVAILABLE
        stats = agent.stats()
    assert fake.delays == [1, 2, 4, 8, 8, 8]
    assert stats.failures == 6
    assert stats.renewals == 0


async def test_never_serves_an_expired_certificate(
    ca: CertificateAuthority, ec_issuer: Any
) -> None:
    fake = FakeTime(limit=2)
    options = CitadelServerOptions(jwt_rule=JwtRule.from_json(ec_issuer.rule()))
    server = CitadelServer(options, ca=ca)
    await server.start()
    options = _options(server, token=ec_issuer.token(), ttl_seconds=600, backoff_initial=120.0)
    client = CitadelClient(options.ca_host, options.ca_port, root_cert_pem=options.ca_root_pem)
    agent = CitadelAgent(
        options, client=client, clock=fake.clock, sleep=fake.sleep, rng=lambda: 1.0
    )
    bundle = await agent.refresh_once()
    # The CA goes down; the agent's open connection to it is closed by the server.
    await server.stop()
    assert agent.bundle == bundle
    # Still valid: the retry is scheduled no later than the expiry (120 s backoff < 600 s).
    fake.now = bundle.not_after - datetime.timedelta(seconds=30)
    async with agent:
        await asyncio.wait_for(fake.reached.wait(), WAIT)
        assert fake.delays[0] == pytest.approx(30.0, abs=1.0)
        fake.now = bundle.not_after + datetime.timedelta(seconds=1)
        assert agent.bundle is None
        with pytest.raises(GRPCError):
            await agent.sds.fetch_secrets(DiscoveryRequest(resource_names=["default"]))
    await client.close()


async def _requests(queue: asyncio.Queue[DiscoveryRequest | None]) -> Any:
    while (item := await queue.get()) is not None:
        yield item


def _secrets(response: DiscoveryResponse) -> dict[str, Secret]:
    assert response.type_url == SECRET_TYPE_URL
    found = {}
    for resource in response.resources:
        assert resource.type_url == SECRET_TYPE_URL
        secret = Secret.parse(resource.value)
        found[secret.name] = secret
    return found


async def test_sds_over_unix_socket_pushes_on_rotation(
    ca_server: CitadelServer, ec_issuer: Any, tmp_path: pathlib.Path
) -> None:
    fake = FakeTime(limit=1)
    sock = tmp_path / "sds.sock"
    agent = CitadelAgent(
        _options(ca_server, token=ec_issuer.token("prod", "web"), sds_socket_path=str(sock)),
        clock=fake.clock,
        sleep=fake.sleep,
    )
    async with agent:
        await asyncio.wait_for(agent.wait_ready(), WAIT)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        channel = create_channel(path=str(sock))
        stub = SecretDiscoveryServiceStub(channel)
        queue: asyncio.Queue[DiscoveryRequest | None] = asyncio.Queue()
        queue.put_nowait(
            DiscoveryRequest(type_url=SECRET_TYPE_URL, resource_names=["default", "ROOTCA"])
        )
        responses = stub.stream_secrets(_requests(queue)).__aiter__()
        first = await asyncio.wait_for(responses.__anext__(), WAIT)
        secrets = _secrets(first)
        assert set(secrets) == {"default", "ROOTCA"}
        tls = secrets["default"].tls_certificate
        chain_pem = tls.certificate_chain.inline_bytes
        key = serialization.load_pem_private_key(tls.private_key.inline_bytes, password=None)
        leaf = x509.load_pem_x509_certificate(chain_pem)
        assert leaf.public_key() == key.public_key()
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            "spiffe://cluster.local/ns/prod/sa/web"
        ]
        root = secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes
        assert root.decode() == ca_server.root_pem
        # ACK, then rotate: the stream gets a new version with a new certificate.
        queue.put_nowait(
            DiscoveryRequest(
                type_url=SECRET_TYPE_URL,
                resource_names=["default", "ROOTCA"],
                version_info=first.version_info,
                response_nonce=first.nonce,
            )
        )
        await agent.refresh_once()
        second = await asyncio.wait_for(responses.__anext__(), WAIT)
        assert second.version_info != first.version_info
        assert second.nonce != first.nonce
        new_chain = _secrets(second)["default"].tls_certificate.certificate_chain.inline_bytes
        assert new_chain != chain_pem
        # NACK the push: counted, nothing resent.
        queue.put_nowait(
            DiscoveryRequest(
                type_url=SECRET_TYPE_URL,
                resource_names=["default", "ROOTCA"],
                version_info=first.version_info,
                response_nonce=second.nonce,
                error_detail=RpcStatus(code=3, message="bad secret"),
            )
        )
        queue.put_nowait(None)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(responses.__anext__(), WAIT)
        channel.close()
        sds = agent.stats().sds
    assert (sds.pushes, sds.acks, sds.nacks) == (2, 1, 1)


async def test_sds_over_tcp_serves_only_requested_names(
    ca_server: CitadelServer, ec_issuer: Any
) -> None:
    fake = FakeTime(limit=1)
    agent = CitadelAgent(
        _options(ca_server, token=ec_issuer.token(), sds_port=0),
        clock=fake.clock,
        sleep=fake.sleep,
    )
    async with agent:
        await asyncio.wait_for(agent.wait_ready(), WAIT)
        channel = create_channel("127.0.0.1", agent.sds_port)
        stub = SecretDiscoveryServiceStub(channel)
        response = await stub.fetch_secrets(DiscoveryRequest(resource_names=["ROOTCA"]))
        assert list(_secrets(response)) == ["ROOTCA"]
        with pytest.raises(GRPCError) as info:
            async for _ in stub.stream_secrets(
                [DiscoveryRequest(type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster")]
            ):
                pass
        assert info.value.status is Status.INVALID_ARGUMENT
        channel.close()


async def test_writes_files_for_grpc_file_watcher(
    ca_server: CitadelServer, ec_issuer: Any, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "certs"
    agent = CitadelAgent(_options(ca_server, token=ec_issuer.token(), output_dir=str(out)))
    bundle = await agent.refresh_once()
    await agent.stop()
    assert sorted(p.name for p in out.iterdir()) == ["cert-chain.pem", "key.pem", "root-cert.pem"]
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    assert (out / "root-cert.pem").read_text() == ca_server.root_pem
    leaf = x509.load_pem_x509_certificate((out / "cert-chain.pem").read_bytes())
    key = serialization.load_pem_private_key((out / "key.pem").read_bytes(), password=None)
    assert leaf.public_key() == key.public_key()
    assert leaf.not_valid_after_utc == bundle.not_after
    assert "PRIVATE KEY" not in repr(bundle)
    config = file_watcher_provider_config(out)
    assert json.loads(json.dumps(config)) == {
        "default": {
            "plugin_name": "file_watcher",
            "config": {
                "certificate_file": str(out.resolve() / "cert-chain.pem"),
                "private_key_file": str(out.resolve() / "key.pem"),
                "ca_certificate_file": str(out.resolve() / "root-cert.pem"),
                "refresh_interval": "900s",
            },
        }
    }


async def test_renews_over_mtls_when_token_file_disappears(
    ca_server: CitadelServer, ec_issuer: Any, tmp_path: pathlib.Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(ec_issuer.token("prod", "db") + "\n")
    agent = CitadelAgent(_options(ca_server, token_file=str(token_file)))
    first = await agent.refresh_once()
    token_file.unlink()
    second = await agent.refresh_once()
    await agent.stop()
    assert first.identity == second.identity == Identity("prod", "db")
    assert ca_server.stats().authenticated_by == {"jwt": 1, "client-certificate": 1}


def test_secrets_stay_out_of_reprs(ca: CertificateAuthority) -> None:
    options = AgentOptions(
        ca_host="127.0.0.1", ca_port=1, ca_root_pem=ca.root_pem, token="s3cr3t-token-value"
    )
    assert "s3cr3t-token-value" not in repr(options)
