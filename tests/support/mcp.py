"""Test helpers for MCP over real gRPC: a hand-driven sink stream, config, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from grpclib.client import Channel, Stream
from grpclib.const import Cardinality

from istio_sdk._grpc import EncodedMessage, create_channel
from istio_sdk.api.google.rpc import Status
from istio_sdk.api.istio.mcp.v1alpha1 import RequestResources, Resources
from istio_sdk.api.istio.networking.v1alpha3 import (
    Destination,
    HttpRoute,
    HttpRouteDestination,
    VirtualService,
)
from istio_sdk.config import Resource
from istio_sdk.galley.mcp.source import SOURCE_METHOD

VS = "istio/networking/v1alpha3/virtualservices"
GW = "istio/networking/v1alpha3/gateways"
TIMEOUT = 10.0


def virtual_service(name: str, host: str = "reviews", namespace: str = "default") -> Resource:
    spec = VirtualService(
        hosts=[host],
        http=[HttpRoute(route=[HttpRouteDestination(destination=Destination(host=host))])],
    )
    return Resource.new(spec, name=name, namespace=namespace, labels={"app": name})


def invalid_virtual_service(name: str) -> Resource:
    """A VirtualService istio_sdk.validate refuses (a destination without a host)."""
    spec = VirtualService(
        hosts=["reviews"], http=[HttpRoute(route=[HttpRouteDestination(destination=Destination())])]
    )
    return Resource.new(spec, name=name, namespace="default")


async def eventually(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds (polling: what it reads has no event), failing after
    ``TIMEOUT`` seconds."""
    async with asyncio.timeout(TIMEOUT):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


class RawSink:
    """One ResourceSource stream driven by hand: send any request, read each push."""

    def __init__(self, port: int, *, request_type: Any = RequestResources) -> None:
        self.channel: Channel = create_channel("127.0.0.1", port)
        self._cm = self.channel.request(
            SOURCE_METHOD, Cardinality.STREAM_STREAM, request_type, Resources
        )
        self.stream: Stream[Any, Resources] | None = None

    async def __aenter__(self) -> RawSink:
        self.stream = await self._cm.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self._cm.__aexit__(None, None, None)
        self.channel.close()

    async def send(self, request: RequestResources | EncodedMessage) -> None:
        assert self.stream is not None
        await self.stream.send_message(request)

    async def end(self) -> None:
        """Half-close: the source's status then reaches grpclib's client before any reset."""
        assert self.stream is not None
        await self.stream.end()

    async def ask(self, collection: str, *, incremental: bool = False, **extra: Any) -> None:
        await self.send(RequestResources(collection=collection, incremental=incremental, **extra))

    async def ack(self, push: Resources, *, incremental: bool = False) -> None:
        await self.ask(push.collection, response_nonce=push.nonce, incremental=incremental)

    async def nack(self, push: Resources, message: str = "rejected") -> None:
        await self.ask(
            push.collection,
            response_nonce=push.nonce,
            error_detail=Status(code=3, message=message),
        )

    async def recv(self) -> Resources:
        assert self.stream is not None
        async with asyncio.timeout(TIMEOUT):
            message = await self.stream.recv_message()
        assert message is not None, "the stream ended"
        return message


def names(push: Resources) -> dict[str, str]:
    """Name -> version of a push's resources."""
    return {r.metadata.name: r.metadata.version for r in push.resources if r.metadata}
