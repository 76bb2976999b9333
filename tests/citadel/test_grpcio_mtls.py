"""Certificates from the agent's files work for mutual TLS with a grpcio server.

This is the Citadel half of the mesh mTLS proof: the files the ``file_watcher`` certificate
provider reads (here loaded into grpcio credentials directly) carry the SPIFFE identity the
server sees, and a client without a certificate is refused.
"""

from __future__ import annotations

import pathlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, StreamTerminatedError

from istio_sdk.citadel import CertificateAuthority, CitadelServer, CitadelServerOptions, JwtRule
from istio_sdk.citadel.agent import AgentOptions, CitadelAgent
from istio_sdk.citadel.files import file_watcher_provider_config

METHOD = "/istio_sdk.test.Identity/Who"


@pytest.fixture
async def workload_dirs(
    ca: CertificateAuthority, ec_issuer: Any, tmp_path: pathlib.Path
) -> AsyncIterator[dict[str, dict[str, str]]]:
    options = CitadelServerOptions(jwt_rule=JwtRule.from_json(ec_issuer.rule()))
    found = {}
    async with CitadelServer(options, ca=ca) as server:
        for name, (namespace, account) in {
            "server": ("prod", "reviews"),
            "client": ("prod", "productpage"),
        }.items():
            agent = CitadelAgent(
                AgentOptions(
                    ca_host="127.0.0.1",
                    ca_port=server.port,
                    ca_root_pem=server.root_pem,
                    token=ec_issuer.token(namespace, account),
                    output_dir=str(tmp_path / name),
                )
            )
            await agent.refresh_once()
            await agent.stop()
            found[name] = file_watcher_provider_config(tmp_path / name)["default"]["config"]
    yield found


class _RawCodec(CodecBase):
    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


def _client_context(files: dict[str, str], *, with_certificate: bool) -> ssl.SSLContext:
    # Workload certificates name a SPIFFE URI, not a host: like Istio's SAN matching, the
    # client verifies the chain and then checks the server's URI SAN itself.
    context = ssl.create_default_context(cafile=files["ca_certificate_file"])
    context.check_hostname = False
    context.set_alpn_protocols(["h2"])
    if with_certificate:
        context.load_cert_chain(files["certificate_file"], files["private_key_file"])
    return context


async def _call(port: int, context: ssl.SSLContext) -> tuple[bytes, list[str]]:
    channel = Channel("127.0.0.1", port, ssl=context, codec=_RawCodec())
    try:
        async with channel.request(METHOD, Cardinality.UNARY_UNARY, bytes, bytes) as stream:
            await stream.send_message(b"", end=True)
            answer = await stream.recv_message()
            peer = stream.peer.cert() if stream.peer is not None else None
        uris = [v for k, v in (peer or {}).get("subjectAltName", ()) if k == "URI"]
        return answer or b"", uris
    finally:
        channel.close()


def _read(path: str) -> bytes:
    return pathlib.Path(path).read_bytes()


async def test_grpcio_mtls_with_agent_certificates(
    workload_dirs: dict[str, dict[str, str]],
) -> None:
    server_files = workload_dirs["server"]
    seen: list[list[bytes]] = []

    async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        identities = context.peer_identities() or []
        seen.append(list(identities))
        return b",".join(identities)

    handler = grpc.method_handlers_generic_handler(
        "istio_sdk.test.Identity",
        {
            "Who": grpc.unary_unary_rpc_method_handler(
                who, request_deserializer=bytes, response_serializer=bytes
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(_read(server_files["private_key_file"]), _read(server_files["certificate_file"]))],
        root_certificates=_read(server_files["ca_certificate_file"]),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        client_files = workload_dirs["client"]
        good = _client_context(client_files, with_certificate=True)
        answer, server_identity = await _call(port, good)
        assert answer.split(b",") == [b"spiffe://cluster.local/ns/prod/sa/productpage"]
        assert server_identity == ["spiffe://cluster.local/ns/prod/sa/reviews"]

        anonymous = _client_context(client_files, with_certificate=False)
        with pytest.raises((GRPCError, OSError, StreamTerminatedError)):
            await _call(port, anonymous)
        assert len(seen) == 1
    finally:
        await server.stop(None)
