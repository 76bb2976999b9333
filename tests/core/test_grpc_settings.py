"""The shared grpclib configuration: stream limit, message size limit, settings validation."""

from __future__ import annotations

import asyncio

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from istio_sdk._grpc import GrpcSettings, create_channel, create_server
from istio_sdk._net import bound_port
from istio_sdk.api.istio.v1.auth import (
    IstioCertificateRequest,
    IstioCertificateResponse,
    IstioCertificateServiceBase,
    IstioCertificateServiceStub,
)


class _Barrier(IstioCertificateServiceBase):
    """Answers only once `needed` calls are in flight at the same time."""

    def __init__(self, needed: int) -> None:
        self.needed = needed
        self.in_flight = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def create_certificate(
        self, message: IstioCertificateRequest
    ) -> IstioCertificateResponse:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.needed:
            self.release.set()
        await self.release.wait()
        self.in_flight -= 1
        return IstioCertificateResponse(cert_chain=[message.csr])


async def test_more_than_100_concurrent_streams_on_one_connection() -> None:
    service = _Barrier(needed=250)
    server = create_server([service])
    await server.start("127.0.0.1", 0)
    port = bound_port(server)
    channel = create_channel("127.0.0.1", port)
    try:
        stub = IstioCertificateServiceStub(channel)
        calls = [
            stub.create_certificate(IstioCertificateRequest(csr=str(i)), timeout=20)
            for i in range(250)
        ]
        results = await asyncio.gather(*calls)
        assert [r.cert_chain[0] for r in results] == [str(i) for i in range(250)]
        assert service.peak == 250
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


class _Echo(IstioCertificateServiceBase):
    async def create_certificate(
        self, message: IstioCertificateRequest
    ) -> IstioCertificateResponse:
        return IstioCertificateResponse(cert_chain=[message.csr])


async def test_oversized_messages_are_refused_with_resource_exhausted() -> None:
    settings = GrpcSettings(max_message_bytes=1024)
    server = create_server([_Echo()], settings)
    await server.start("127.0.0.1", 0)
    port = bound_port(server)
    small_client = create_channel("127.0.0.1", port, settings=settings)
    big_client = create_channel("127.0.0.1", port)  # default limit: sends the big message
    try:
        ok = await IstioCertificateServiceStub(small_client).create_certificate(
            IstioCertificateRequest(csr="x" * 100)
        )
        assert ok.cert_chain == ["x" * 100]
        with pytest.raises(GRPCError) as refused_locally:
            await IstioCertificateServiceStub(small_client).create_certificate(
                IstioCertificateRequest(csr="x" * 5000)
            )
        assert refused_locally.value.status is Status.RESOURCE_EXHAUSTED
        with pytest.raises(GRPCError) as refused_by_server:
            await IstioCertificateServiceStub(big_client).create_certificate(
                IstioCertificateRequest(csr="y" * 5000), timeout=10
            )
        assert refused_by_server.value.status is Status.RESOURCE_EXHAUSTED
        assert "exceeds the limit of 1024" in (refused_by_server.value.message or "")
    finally:
        small_client.close()
        big_client.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "field", ["max_concurrent_streams", "max_message_bytes", "keepalive_timeout"]
)
def test_settings_reject_non_positive_values(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GrpcSettings(**{field: 0})


async def test_a_closed_server_stops_answering_on_open_connections() -> None:
    """grpclib alone keeps serving calls on connections accepted before close()."""
    server = create_server([_Echo()])
    await server.start("127.0.0.1", 0)
    port = bound_port(server)
    channel = create_channel("127.0.0.1", port)
    stub = IstioCertificateServiceStub(channel)
    try:
        before = await stub.create_certificate(IstioCertificateRequest(csr="a"), timeout=10)
        assert before.cert_chain == ["a"]
        server.close()
        await server.wait_closed()
        with pytest.raises((ConnectionError, StreamTerminatedError, GRPCError)) as refused:
            await stub.create_certificate(IstioCertificateRequest(csr="b"), timeout=10)
        if isinstance(refused.value, GRPCError):
            assert refused.value.status is not Status.DEADLINE_EXCEEDED
    finally:
        channel.close()
