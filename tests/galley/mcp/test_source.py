"""McpSource over real gRPC, driven by a hand-written sink stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from support.mcp import GW, VS, RawSink, eventually, names, virtual_service

from istio_sdk._grpc import EncodedMessage
from istio_sdk.api.istio.mcp.v1alpha1 import RequestResources, Resources
from istio_sdk.api.istio.networking.v1alpha3 import VirtualService
from istio_sdk.config import ConfigStore, Resource
from istio_sdk.galley.mcp import DEFAULT_COLLECTIONS, McpSource
from istio_sdk.galley.mcp.collections import MESH_CONFIG
from istio_sdk.galley.mcp.source import SOURCE_METHOD
from istio_sdk.xds import unpack


@pytest.fixture
async def store() -> ConfigStore:
    return ConfigStore([virtual_service("reviews"), virtual_service("ratings", "ratings")])


@pytest.fixture
async def source(store: ConfigStore) -> AsyncIterator[McpSource]:
    async with McpSource(store) as running:
        yield running


async def test_full_state_push_of_a_collection(source: McpSource) -> None:
    async with RawSink(source.port) as sink:
        await sink.ask(VS)
        push = await sink.recv()
        assert push.collection == VS and push.nonce == "1" and not push.incremental
        assert set(names(push)) == {"default/reviews", "default/ratings"}
        (reviews,) = [r for r in push.resources if r.metadata.name == "default/reviews"]
        assert reviews.metadata.labels == {"app": "reviews"}
        assert reviews.metadata.version  # the store's resourceVersion
        body = unpack(reviews.body)
        assert isinstance(body, VirtualService) and body.hosts == ["reviews"]
        await sink.ask(GW)  # an empty collection is still answered
        empty = await sink.recv()
        assert empty.collection == GW and empty.resources == [] and empty.nonce == "2"
        await sink.ask(MESH_CONFIG)
        mesh = await sink.recv()
        assert list(names(mesh)) == ["istio-system/meshconfig"]


async def test_serves_galley_13s_default_collections(source: McpSource) -> None:
    assert len(DEFAULT_COLLECTIONS) == 56
    async with RawSink(source.port) as sink:
        for name in DEFAULT_COLLECTIONS:
            await sink.ask(name)
        got = {(await sink.recv()).collection for _ in DEFAULT_COLLECTIONS}
    assert got == set(DEFAULT_COLLECTIONS)


async def test_incremental_pushes_only_what_changed(source: McpSource, store: ConfigStore) -> None:
    async with RawSink(source.port) as sink:
        await sink.ask(VS, incremental=True)
        first = await sink.recv()
        assert first.incremental and set(names(first)) == {"default/reviews", "default/ratings"}
        await sink.ack(first, incremental=True)
        store.apply(virtual_service("reviews", "reviews-v2"))
        change = await sink.recv()
        assert change.incremental and list(names(change)) == ["default/reviews"]
        assert change.removed_resources == []
        await sink.ack(change, incremental=True)
        store.delete("VirtualService", "ratings", "default")
        removal = await sink.recv()
        assert removal.resources == [] and removal.removed_resources == ["default/ratings"]


async def test_full_state_push_after_a_change(source: McpSource, store: ConfigStore) -> None:
    async with RawSink(source.port) as sink:
        await sink.ask(VS)
        await sink.ack(await sink.recv())
        store.delete("VirtualService", "ratings", "default")
        push = await sink.recv()
        assert not push.incremental and list(names(push)) == ["default/reviews"]


async def test_a_nacked_version_is_not_resent(source: McpSource) -> None:
    async with RawSink(source.port) as sink:
        await sink.ask(VS)
        await sink.nack(await sink.recv(), "bad VirtualService")
        # Requests are handled in order: the gateway answer comes after the NACK was handled,
        # so a re-sent VirtualService push would arrive first.
        await sink.ask(GW)
        assert (await sink.recv()).collection == GW
    assert source.stats().nacks == 1


async def test_stale_nonce_is_ignored_and_the_newest_state_wins(
    source: McpSource, store: ConfigStore
) -> None:
    async with RawSink(source.port) as sink:
        await sink.ask(VS)
        push = await sink.recv()
        await sink.ask(VS, response_nonce="12345")  # answers nothing this stream sent
        before = source.snapshot.generation
        store.apply(virtual_service("reviews", "v2"))
        store.apply(virtual_service("reviews", "v3"))
        # The new snapshot reaches the stream before the gateway request does: had the stale
        # ACK counted, the VirtualService push would come first.
        await eventually(lambda: source.snapshot.generation > before)
        await sink.ask(GW)
        # The first push is still outstanding (the stale ACK did not count): nothing for VS.
        assert (await sink.recv()).collection == GW
        await sink.ack(push)
        newest = await sink.recv()
        assert newest.collection == VS
        (reviews,) = [r for r in newest.resources if r.metadata.name == "default/reviews"]
        assert unpack(reviews.body).hosts == ["v3"]  # type: ignore[attr-defined]
    assert source.stats().stale == 1


async def test_unknown_collection_ends_the_stream_with_invalid_argument(source: McpSource) -> None:
    async with RawSink(source.port) as sink:
        await sink.ask("istio/networking/v1alpha3/nothing")
        await sink.end()
        with pytest.raises(GRPCError) as caught:
            await sink.recv()
    assert caught.value.status is Status.INVALID_ARGUMENT
    assert caught.value.message == 'unsupported collection "istio/networking/v1alpha3/nothing"'


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x12\x7f" + b"x" * 10],
    ids=["bad-varint", "truncated-field"],
)
async def test_garbage_request_is_invalid_argument_and_other_streams_go_on(
    source: McpSource, store: ConfigStore, payload: bytes
) -> None:
    async with RawSink(source.port) as good:
        await good.ask(VS)
        await good.ack(await good.recv())
        async with RawSink(source.port, request_type=EncodedMessage) as bad:
            await bad.send(EncodedMessage(payload))
            await bad.end()
            with pytest.raises(GRPCError) as caught:
                await bad.recv()
        assert caught.value.status is Status.INVALID_ARGUMENT
        store.apply(virtual_service("extra"))
        assert "default/extra" in names(await good.recv())


async def test_huge_collection_name_is_refused_with_a_short_message(source: McpSource) -> None:
    async with RawSink(source.port) as sink:
        await sink.ask("x" * 1_000_000)
        await sink.end()
        with pytest.raises(GRPCError) as caught:
            await sink.recv()
    assert caught.value.status is Status.INVALID_ARGUMENT
    assert caught.value.message is not None and len(caught.value.message) < 400


async def test_a_nack_on_one_stream_does_not_disturb_another(
    source: McpSource, store: ConfigStore
) -> None:
    async with RawSink(source.port) as nacking, RawSink(source.port) as acking:
        await nacking.ask(VS)
        await acking.ask(VS)
        await nacking.nack(await nacking.recv())
        await acking.ack(await acking.recv())
        store.apply(virtual_service("added"))
        assert "default/added" in names(await acking.recv())
        # the NACKing stream still gets the newer state: only the NACKed version is withheld
        assert "default/added" in names(await nacking.recv())


async def test_untyped_mixer_kinds_go_out_as_struct(store: ConfigStore) -> None:
    from istio_sdk.api.google.protobuf import Struct
    from istio_sdk.api.istio.mixer.adapter.model.v1beta1 import Info

    store.apply(Resource.new(Info(name="denier", description="d"), name="denier", namespace="ns"))
    async with McpSource(store) as source, RawSink(source.port) as sink:
        await sink.ask("istio/config/v1alpha2/adapters")
        push = await sink.recv()
        (adapter,) = push.resources
        body = unpack(adapter.body)
        assert isinstance(body, Struct)
        assert body.fields["name"].string_value == "denier"


async def test_a_huge_nack_reason_is_logged_short(
    source: McpSource, caplog: pytest.LogCaptureFixture
) -> None:
    async with RawSink(source.port) as sink:
        await sink.ask(VS)
        await sink.nack(await sink.recv(), "line one\nforged line " + "x" * 1_000_000)
        await sink.ask(GW)  # handled after the NACK
        await sink.recv()
    (line,) = [r.getMessage() for r in caplog.records if "NACK" in r.getMessage()]
    assert len(line) < 1000 and "\n" not in line and "truncated" in line


async def grpcio_stream(port: int) -> tuple[Any, Any]:
    """A ResourceSource stream opened by grpcio (C core: how gRPC-Go-style clients see it)."""
    import grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = channel.stream_stream(
        SOURCE_METHOD, request_serializer=bytes, response_deserializer=Resources.parse
    )()
    return channel, call


async def test_stopping_the_source_ends_streams_with_unavailable(store: ConfigStore) -> None:
    import grpc

    source = McpSource(store)
    await source.start(port=0)
    channel, call = await grpcio_stream(source.port)
    try:
        await call.write(RequestResources(collection=VS))
        push = await call.read()
        assert push.collection == VS
        await source.stop()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async with asyncio.timeout(10):
                await call.read()
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == "server canceled watch"
    finally:
        await channel.close()


async def test_grpcio_sees_invalid_argument_for_an_unknown_collection(source: McpSource) -> None:
    import grpc

    channel, call = await grpcio_stream(source.port)
    try:
        await call.write(RequestResources(collection="nope"))  # the stream stays open
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async with asyncio.timeout(10):
                await call.read()
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == 'unsupported collection "nope"'
    finally:
        await channel.close()
