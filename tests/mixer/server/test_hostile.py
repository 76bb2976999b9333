"""Hostile input: garbage bytes, unknown words, huge word counts, big bags, a hanging adapter.

After each, the server answers the next proxy as before.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from support.mixer_server import DENY_REVIEWS, Proxy, serve

from istio_sdk.api.istio.mixer.v1 import (
    CheckRequest,
    CheckResponse,
    CompressedAttributes,
    ReportRequest,
    ReportRequestRepeatedAttributesSemantics,
)
from istio_sdk.mixer import GLOBAL_WORD_INDEX
from istio_sdk.mixer.adapters import ADAPTERS, CheckResult, Handler
from istio_sdk.mixer.templates import CheckInstance

REVIEWS = {"destination.service.name": "reviews"}


def code(response: CheckResponse) -> int:
    assert response.precondition is not None and response.precondition.status is not None
    return response.precondition.status.code


async def still_serving(proxy: Proxy) -> None:
    assert code(await proxy.check(REVIEWS)) == Status.PERMISSION_DENIED.value


class _RawCodec(ProtoCodec):
    """Sends ``bytes`` as they are: a client that writes garbage."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        return (
            message if isinstance(message, bytes) else bytes(super().encode(message, message_type))
        )


async def send_raw(port: int, path: str, body: bytes, reply: type[Any]) -> Any:
    channel = Channel("127.0.0.1", port, codec=_RawCodec())
    try:
        async with channel.request(path, Cardinality.UNARY_UNARY, bytes, reply, timeout=10) as call:
            await call.send_message(body, end=True)
            return await call.recv_message()
    finally:
        channel.close()


@pytest.mark.parametrize(
    "body",
    [
        b"\xff" * 64,
        b"\x0a\xff\xff\xff\xff\x0f",
        b"\x12" + b"\x80" * 20,
        b"\x0a\x05\x0a\x03\xc3\x28",
    ],
    ids=["ff", "huge-length", "bad-varint", "bad-utf8"],
)
async def test_garbage_bytes_are_internal_and_the_server_keeps_serving(body: bytes) -> None:
    async with serve(DENY_REVIEWS) as (server, proxy):
        for path, reply in (
            ("/istio.mixer.v1.Mixer/Check", CheckResponse),
            ("/istio.mixer.v1.Mixer/Report", ReportRequest),
        ):
            with pytest.raises(GRPCError) as raised:
                await send_raw(server.port, path, body, reply)
            assert raised.value.status is Status.INTERNAL
            assert str(raised.value.message).startswith("grpc: error unmarshalling request")
        await still_serving(proxy)


async def test_unknown_words_read_as_absent_attributes() -> None:
    async with serve(DENY_REVIEWS) as (_, proxy):
        name = GLOBAL_WORD_INDEX["destination.service.name"]
        for attributes in (
            CompressedAttributes(strings={name: 99999}),  # the value names no word
            CompressedAttributes(strings={name: -7}, words=["reviews"]),  # past the own words
            CompressedAttributes(strings={-3: -1}, words=["reviews"]),  # a name that is no word
            CompressedAttributes(int64s={-2_000_000_000: 5}),
        ):
            request = CheckRequest(attributes=attributes, global_word_count=222)
            response = await proxy.stub.check(request, timeout=10)
            assert code(response) == Status.OK.value  # the deny rule's attribute is absent
        await still_serving(proxy)


@pytest.mark.parametrize("count", [223, 2**32 - 1])
async def test_a_global_word_count_beyond_mixers_is_internal(count: int) -> None:
    async with serve(DENY_REVIEWS) as (_, proxy):
        with pytest.raises(GRPCError) as raised:
            await proxy.check(REVIEWS, global_word_count=count)
        assert raised.value.status is Status.INTERNAL
        assert raised.value.message == (
            f"inconsistent global dictionary versions used: mixer knows 222 words, "
            f"caller knows {count}"
        )
        report = ReportRequest(attributes=[CompressedAttributes()], global_word_count=count)
        with pytest.raises(GRPCError) as raised:
            await proxy.stub.report(report, timeout=10)
        assert raised.value.status is Status.INTERNAL
        # a smaller count (the proxy's fallback, or none) is fine
        assert code(await proxy.check(REVIEWS, global_word_count=111)) == 7
        assert code(await proxy.check(REVIEWS, global_word_count=0)) == 7


async def test_a_bad_delta_report_is_unknown() -> None:
    async with serve(DENY_REVIEWS) as (_, proxy):
        request = ReportRequest(
            attributes=[
                CompressedAttributes(strings={0: 1}),
                CompressedAttributes(strings={1: 9999}),
            ],
            global_word_count=222,
            repeated_attributes_semantics=ReportRequestRepeatedAttributesSemantics.DELTA_ENCODING,
        )
        with pytest.raises(GRPCError) as raised:
            await proxy.stub.report(request, timeout=10)
        assert raised.value.status is Status.UNKNOWN
        assert str(raised.value.message).startswith(
            "request could not be processed due to invalid attributes"
        )
        await still_serving(proxy)


async def test_a_bag_of_many_big_attributes_is_checked() -> None:
    async with serve(DENY_REVIEWS) as (_, proxy):
        bag: dict[str, object] = {f"x-{n}": "v" * 1000 for n in range(3000)}
        bag["request.headers"] = {f"h-{n}": str(n) for n in range(3000)}
        assert code(await proxy.check(bag | REVIEWS)) == 7
        assert code(await proxy.check(bag)) == Status.OK.value


class _Hang(Handler):
    adapter = "hang"
    templates = frozenset({"checknothing"})
    calls = 0

    @classmethod
    async def create(cls, name: str, params: object) -> _Hang:
        return cls(name)

    async def handle_check(self, instance: CheckInstance) -> CheckResult:
        type(self).calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
def hanging_adapter() -> Iterator[None]:
    registry: Any = ADAPTERS
    registry["hang"] = _Hang
    try:
        yield
    finally:
        del registry["hang"]


HANG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: stuck, namespace: istio-system}
spec:
  compiledAdapter: hang
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: stuck, namespace: istio-system}
spec:
  match: destination.service.name == "ratings"
  actions:
  - handler: stuck
    instances: [nothing]
"""


async def test_a_hanging_adapter_does_not_hang_check(hanging_adapter: None) -> None:
    config = DENY_REVIEWS + "---\n" + HANG  # HANG uses DENY_REVIEWS' instance
    async with serve(config, adapter_timeout=0.3) as (_, proxy):
        # each call carries the proxy's own 10 s deadline: a hang would fail it
        calls: Sequence[CheckResponse] = await asyncio.gather(
            *(proxy.check({"destination.service.name": "ratings"}) for _ in range(3)),
            proxy.check(REVIEWS),
        )
        for response in calls[:3]:
            assert code(response) == Status.DEADLINE_EXCEEDED.value
            assert response.precondition is not None and response.precondition.status is not None
            assert response.precondition.status.message == (
                "stuck.handler.istio-system: adapter did not answer within 0.3s"
            )
            assert response.precondition.valid_use_count == 0  # not to be cached
        assert code(calls[3]) == 7
        assert _Hang.calls >= 3


async def test_map_keys_taken_from_the_request_are_referenced_but_not_kept() -> None:
    config = DENY_REVIEWS.replace(
        'match: destination.service.name == "reviews"',
        'match: request.headers[request.path] == "deny"',
    )
    async with serve(config) as (_, proxy):
        await proxy.check({"request.path": "/warm", "request.headers": {}})
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(20):
                path = f"/{n}/" + "p" * 100_000
                bag = {"request.path": path, "request.headers": {path: "deny"}}
                response = await proxy.check(bag)
                assert code(response) == Status.PERMISSION_DENIED.value
                refs = response.precondition.referenced_attributes  # type: ignore[union-attr]
                assert refs is not None and path in refs.words
            del response, refs, bag, path
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert kept < 1_000_000  # 20 paths of 100 kB went through; the server kept none


async def test_status_messages_are_cut_to_a_kilobyte() -> None:
    long_name = "x" * 20_000
    config = f"""
apiVersion: config.istio.io/v1alpha2
kind: attributemanifest
metadata: {{name: long, namespace: istio-system}}
spec:
  attributes:
    ? {long_name}
    : {{valueType: STRING}}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: list, namespace: istio-system}}
spec: {{compiledAdapter: listchecker, params: {{overrides: [a]}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: value, namespace: istio-system}}
spec: {{compiledTemplate: listentry, params: {{value: {long_name}}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: list, namespace: istio-system}}
spec:
  actions: [{{handler: list, instances: [value]}}]
"""
    async with serve(config) as (_, proxy):
        with pytest.raises(GRPCError) as raised:
            await proxy.check({})
        assert raised.value.status is Status.INTERNAL
        message = str(raised.value.message)
        assert message.startswith("performing check operation failed: instance value.")
        assert len(message) <= 1000 and message.endswith("...")
