"""GalleyClient over real gRPC: mirroring, NACKs that keep the last good state, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from grpclib.const import Cardinality, Handler
from grpclib.server import Stream
from support.mcp import VS, eventually, invalid_virtual_service, virtual_service

from istio_sdk import GalleyClient
from istio_sdk._grpc import EncodedMessage, create_server
from istio_sdk._net import bound_port
from istio_sdk.api.google.protobuf import Any as AnyMessage
from istio_sdk.api.istio.mcp.v1alpha1 import Metadata, RequestResources, Resources
from istio_sdk.api.istio.mcp.v1alpha1 import Resource as McpResource
from istio_sdk.config import ConfigStore
from istio_sdk.galley.mcp import McpSource
from istio_sdk.galley.mcp.source import SOURCE_METHOD
from istio_sdk.xds import type_url_of


def hosts(store: ConfigStore) -> dict[str, list[str]]:
    return {r.name: list(r.spec.hosts) for r in store.list("VirtualService")}


@pytest.fixture
async def galley() -> AsyncIterator[tuple[ConfigStore, McpSource]]:
    store = ConfigStore([virtual_service("reviews")])
    async with McpSource(store) as source:
        yield store, source


async def test_mirrors_collections_and_follows_changes(
    galley: tuple[ConfigStore, McpSource],
) -> None:
    upstream, source = galley
    mirror = ConfigStore()
    async with GalleyClient(mirror, ("127.0.0.1", source.port)) as client:
        async with asyncio.timeout(10):
            await client.wait_synced()
        assert hosts(mirror) == {"reviews": ["reviews"]}
        (reviews,) = mirror.list("VirtualService")
        assert reviews.namespace == "default" and reviews.metadata.labels == {"app": "reviews"}
        upstream.apply(virtual_service("reviews", "reviews-v2"))
        upstream.apply(virtual_service("ratings", "ratings"))
        await eventually(
            lambda: hosts(mirror) == {"reviews": ["reviews-v2"], "ratings": ["ratings"]}
        )
        upstream.delete("VirtualService", "reviews", "default")
        await eventually(lambda: hosts(mirror) == {"ratings": ["ratings"]})


async def test_incremental_mirroring(galley: tuple[ConfigStore, McpSource]) -> None:
    upstream, source = galley
    mirror = ConfigStore()
    client = GalleyClient(mirror, ("127.0.0.1", source.port), incremental=[VS])
    async with client:
        await eventually(lambda: hosts(mirror) == {"reviews": ["reviews"]})
        upstream.apply(virtual_service("ratings", "ratings"))
        upstream.delete("VirtualService", "reviews", "default")
        await eventually(lambda: hosts(mirror) == {"ratings": ["ratings"]})


async def test_invalid_config_is_nacked_and_the_last_good_version_kept(
    galley: tuple[ConfigStore, McpSource],
) -> None:
    upstream, source = galley
    mirror = ConfigStore()
    async with GalleyClient(mirror, ("127.0.0.1", source.port)) as client:
        await eventually(lambda: hosts(mirror) == {"reviews": ["reviews"]})
        upstream.apply(invalid_virtual_service("reviews"))
        await eventually(lambda: source.stats().nacks == 1)
        reason = client.stats().last_nack
        assert "default/reviews" in reason and "destination.host" in reason
        assert hosts(mirror) == {"reviews": ["reviews"]}  # the last good version stays
        upstream.apply(virtual_service("reviews", "fixed"))
        await eventually(lambda: hosts(mirror) == {"reviews": ["fixed"]})


async def test_ten_sinks_follow_a_change(galley: tuple[ConfigStore, McpSource]) -> None:
    upstream, source = galley
    mirrors = [ConfigStore() for _ in range(10)]
    clients = [GalleyClient(m, ("127.0.0.1", source.port)) for m in mirrors]
    for client in clients:
        await client.start()
    try:
        async with asyncio.timeout(10):
            for client in clients:
                await client.wait_synced()
        upstream.apply(virtual_service("reviews", "v2"))
        await eventually(lambda: all(hosts(m) == {"reviews": ["v2"]} for m in mirrors))
        assert source.stats().streams == 10
    finally:
        for client in clients:
            await client.stop()


async def test_a_galley_restart_is_survived() -> None:
    upstream = ConfigStore([virtual_service("reviews")])
    first = McpSource(upstream)
    port = await first.start(port=0)
    mirror = ConfigStore()
    client = GalleyClient(mirror, ("127.0.0.1", port), backoff_initial=0.05, backoff_max=0.2)
    async with client:
        await eventually(lambda: hosts(mirror) == {"reviews": ["reviews"]})
        await first.stop()
        upstream.apply(virtual_service("reviews", "after-restart"))
        assert hosts(mirror) == {"reviews": ["reviews"]}  # Galley is gone: the mirror stays
        second = McpSource(upstream)
        await second.start(port=port)
        try:
            await eventually(lambda: hosts(mirror) == {"reviews": ["after-restart"]})
            assert client.stats().connects >= 2
        finally:
            await second.stop()


async def test_a_source_dialing_out_to_a_listening_sink() -> None:
    upstream = ConfigStore([virtual_service("reviews")])
    mirror = ConfigStore()
    client = GalleyClient(mirror)
    port = await client.listen()
    source = McpSource(upstream)
    await source.start()
    try:
        source.dial("127.0.0.1", port)
        await eventually(lambda: hosts(mirror) == {"reviews": ["reviews"]})
        upstream.apply(virtual_service("reviews", "dialed"))
        await eventually(lambda: hosts(mirror) == {"reviews": ["dialed"]})
        assert client.stats().nacks == 0  # the trigger's NACK is protocol, not a rejection
        # ... and the source ignored it: one stream, never ended
        assert client.stats().connects == 1 and source.stats().rejected_streams == 0
    finally:
        await source.stop()
        await client.stop()


# -- a hostile source ------------------------------------------------------------------------
Reply = Callable[[RequestResources], Resources | bytes | None]


class ScriptedSource:
    """A ResourceSource that answers each request with what ``reply`` returns."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[RequestResources] = []

    def __mapping__(self) -> dict[str, Handler]:
        return {
            SOURCE_METHOD: Handler(
                self._serve, Cardinality.STREAM_STREAM, RequestResources, EncodedMessage
            )
        }

    async def _serve(self, stream: Stream[Any, Any]) -> None:
        async for request in stream:
            self.requests.append(request)
            answer = self.reply(request)
            if answer is not None:
                data = answer if isinstance(answer, bytes) else bytes(answer)
                await stream.send_message(EncodedMessage(data))


async def scripted(reply: Reply) -> tuple[ScriptedSource, Callable[[], Awaitable[None]], int]:
    handler = ScriptedSource(reply)
    server = create_server([handler])
    await server.start("127.0.0.1", 0)

    async def close() -> None:
        server.close()
        await server.wait_closed()

    return handler, close, bound_port(server)


def vs_resource(name: str, body: AnyMessage) -> McpResource:
    return McpResource(metadata=Metadata(name=name, version="1"), body=body)


GOOD_SPEC = virtual_service("reviews", "good-host").spec
GOOD = vs_resource(
    "default/reviews", AnyMessage(type_url=type_url_of(GOOD_SPEC), value=bytes(GOOD_SPEC))
)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            vs_resource(
                "default/garbage",
                AnyMessage(type_url=GOOD.body.type_url, value=b"\xff\xff\xff\xff\xff"),
            ),
            "does not decode",
        ),
        (
            vs_resource(
                "default/wrong-type",
                AnyMessage(type_url="type.googleapis.com/google.protobuf.Struct", value=b""),
            ),
            "expected",
        ),
        (vs_resource("no-namespace", GOOD.body), "namespace/name"),
        (vs_resource("default/" + "a" * 1_000_000, GOOD.body), "metadata.name"),
        (McpResource(metadata=Metadata(name="default/nobody")), "no body"),
    ],
    ids=["garbage-any", "wrong-type", "no-namespace", "huge-name", "no-body"],
)
async def test_hostile_pushes_are_nacked_with_the_reason(bad: McpResource, reason: str) -> None:
    sent: dict[str, int] = {}

    def reply(request: RequestResources) -> Resources | None:
        if request.response_nonce:
            return None
        sent[request.collection] = sent.get(request.collection, 0) + 1
        resources = [GOOD, bad] if request.collection == VS else []
        return Resources(collection=request.collection, nonce="n1", resources=resources)

    handler, close, port = await scripted(reply)
    mirror = ConfigStore()
    try:
        async with GalleyClient(mirror, ("127.0.0.1", port)) as client:
            await eventually(lambda: any(r.error_detail for r in handler.requests))
            (nack,) = [r for r in handler.requests if r.error_detail]
            assert nack.collection == VS and nack.error_detail.code == 3
            assert reason in nack.error_detail.message
            assert len(nack.error_detail.message) <= 1000
            assert mirror.list("VirtualService") == []  # nothing of a NACKed push is applied
            assert client.stats().nacks == 1
    finally:
        await close()


async def test_an_undecodable_envelope_ends_the_stream_and_the_client_reconnects() -> None:
    calls = 0

    def reply(request: RequestResources) -> Resources | bytes | None:
        nonlocal calls
        if request.collection != VS or request.response_nonce:
            return None
        calls += 1
        if calls == 1:
            # a "resources" entry that is not a Resource message at all
            return b"\x12" + bytes([len(VS)]) + VS.encode() + b"\x1a\x03\xff\xff\xff"
        return Resources(collection=VS, nonce="n2", resources=[GOOD])

    _, close, port = await scripted(reply)
    mirror = ConfigStore()
    try:
        client = GalleyClient(mirror, ("127.0.0.1", port), backoff_initial=0.05)
        async with client:
            await eventually(lambda: hosts(mirror) == {"reviews": ["good-host"]})
            assert client.stats().connects >= 2
    finally:
        await close()


ENVOY_FILTER = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ef, namespace: default}
spec:
  configPatches:
  - applyTo: CLUSTER
    patch: {operation: MERGE, value: {connect_timeout: 1s}}
"""


async def test_a_resource_with_only_istio_warnings_is_mirrored() -> None:
    # Istio warns about every EnvoyFilter; a warning is not a reason to NACK.
    from istio_sdk.config import load_resources

    store = ConfigStore(load_resources(ENVOY_FILTER))
    async with McpSource(store) as source:
        mirror = ConfigStore()
        async with GalleyClient(mirror, ("127.0.0.1", source.port)) as client:
            async with asyncio.timeout(10):
                await client.wait_synced()
            assert mirror.get("EnvoyFilter", "ef", "default") is not None


MEMQUOTA = """\
apiVersion: config.istio.io/v1alpha2
kind: memquota
metadata: {name: handler, namespace: istio-system}
spec:
  quotas:
  - name: requestcount.quota.istio-system
    maxAmount: 500
    validDuration: 1s
"""


async def test_a_mixer_legacy_kind_travels_in_its_legacy_collection() -> None:
    # Galley 1.3 served the adapter and template kinds under istio/config/v1alpha2/legacy/.
    from istio_sdk.config import load_resources

    store = ConfigStore(load_resources(MEMQUOTA))
    async with McpSource(store) as source:
        mirror = ConfigStore()
        legacy = ["istio/config/v1alpha2/legacy/memquotas"]
        async with GalleyClient(mirror, ("127.0.0.1", source.port), collections=legacy) as client:
            async with asyncio.timeout(10):
                await client.wait_synced()
            mirrored = mirror.get("memquota", "handler", "istio-system")
            assert mirrored is not None
            assert mirrored.spec.to_dict()["quotas"][0]["maxAmount"] == 500
