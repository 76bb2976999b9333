"""redisquota against a real redis-server: shared limits, Istio's keys, Redis going away."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest
import redis.asyncio as aioredis
from grpclib.const import Status as Code
from hypothesis import given, settings
from hypothesis import strategies as st

from istio_sdk.mixer.adapters import (
    AdapterParamsError,
    HandlerBuildError,
    QuotaArgs,
    RedisQuotaHandler,
    build_handler,
    dispatch_quota,
)
from istio_sdk.mixer.adapters._values import fnv32a
from istio_sdk.mixer.templates import Quota

NAME = "requestcount.instance.istio-system"
T0 = 1_764_000_000_000_000_000  # a fixed "now" in unix nanoseconds


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000_000)


def params(url: str, **quota: object) -> dict[str, object]:
    spec: dict[str, object] = {"name": NAME, "maxAmount": 5, "validDuration": "10s"}
    spec.update(quota)
    return {"redisServerUrl": url, "quotas": [spec]}


@pytest.fixture
async def flushed(redis_server):  # type: ignore[no-untyped-def]
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    await client.flushall()
    yield client
    await client.aclose()


async def replicas(url: str, clock: Clock, **quota: object) -> list[RedisQuotaHandler]:
    return [
        await RedisQuotaHandler.create(
            f"rq{i}.handler.istio-system", params(url, **quota), clock_ns=clock
        )
        for i in range(2)
    ]


async def test_two_replicas_share_one_fixed_window(redis_server, flushed) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    a, b = await replicas(redis_server.url, clock)
    instance = Quota(NAME, {"destination": "reviews"})
    granted = []
    for i in range(8):
        handler = (a, b)[i % 2]
        result = await handler.handle_quota(instance, QuotaArgs(1, deduplication_id=f"id{i}"))
        granted.append(result.granted_amount)
    assert granted == [1, 1, 1, 1, 1, 0, 0, 0]
    denied = await b.handle_quota(instance, QuotaArgs(1, deduplication_id="late"))
    assert denied.status.code is Code.RESOURCE_EXHAUSTED
    assert denied.status.message == "redisquota: Resource exhausted"
    # the window is fixed: it starts with the first request and ends 10 s later
    clock.advance(10)
    fresh = await a.handle_quota(instance, QuotaArgs(3, deduplication_id="next"))
    assert (fresh.granted_amount, fresh.valid_duration) == (3, datetime.timedelta(seconds=10))
    for handler in (a, b):
        await handler.close()


async def test_keys_and_fields_are_istios(redis_server, flushed) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    quota = {
        "overrides": [{"dimensions": {"destination": "ratings"}, "maxAmount": 2}],
    }
    (a, b) = await replicas(redis_server.url, clock, **quota)
    await a.handle_quota(
        Quota(NAME, {"destination": "ratings"}), QuotaArgs(1, deduplication_id="d1")
    )
    await a.handle_quota(Quota(NAME, {"destination": "reviews", "port": 9080}), QuotaArgs(1))
    keys = sorted(await flushed.keys("*"))
    suffix = str(fnv32a(b"destination\tratings\n")).encode()
    override_key = NAME.encode() + b";destination=ratings-" + suffix
    plain_key = NAME.encode() + b";destination=reviews;port=" + b"\x00" * 32 + b"2378"
    assert keys == sorted(
        [b"d1-" + override_key + b".meta", override_key + b".meta", plain_key + b".meta"]
    )
    meta = await flushed.hgetall(override_key + b".meta")
    assert int(meta[b"token"]) == 1
    assert float(meta[b"expire"]) == pytest.approx(T0 + 10_000_000_000, rel=1e-15)
    # the override's limit (2) applies to both replicas
    second = await b.handle_quota(
        Quota(NAME, {"destination": "ratings"}), QuotaArgs(5, best_effort=True)
    )
    assert second.granted_amount == 1
    for handler in (a, b):
        await handler.close()


def test_fnv32a_matches_the_reference_vectors() -> None:
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C
    assert fnv32a(b"foobar") == 0xBF9CF968


async def test_deduplication_id_returns_the_earlier_grant(redis_server, flushed) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    a, b = await replicas(redis_server.url, clock)
    instance = Quota(NAME, {})
    first = await a.handle_quota(instance, QuotaArgs(4, deduplication_id="same"))
    clock.advance(1)
    again = await b.handle_quota(instance, QuotaArgs(4, deduplication_id="same"))
    assert (first.granted_amount, again.granted_amount) == (4, 4)
    assert again.valid_duration == datetime.timedelta(seconds=9)
    # the retry consumed nothing: one unit is still left
    rest = await a.handle_quota(instance, QuotaArgs(5, best_effort=True, deduplication_id="other"))
    assert rest.granted_amount == 1
    for handler in (a, b):
        await handler.close()


async def test_best_effort_gets_the_remainder_without_it_nothing(redis_server, flushed) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    (a, _b) = await replicas(redis_server.url, clock)
    instance = Quota(NAME, {})
    assert (await a.handle_quota(instance, QuotaArgs(3))).granted_amount == 3
    assert (await a.handle_quota(instance, QuotaArgs(3))).granted_amount == 0
    assert (await a.handle_quota(instance, QuotaArgs(3, best_effort=True))).granted_amount == 2
    assert (await a.handle_quota(instance, QuotaArgs(1, best_effort=True))).granted_amount == 0
    await a.close()
    await _b.close()


async def test_rolling_window_returns_tokens_as_buckets_age(redis_server, flushed) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    a, b = await replicas(
        redis_server.url,
        clock,
        maxAmount=4,
        validDuration="1s",
        bucketDuration="100ms",
        rateLimitAlgorithm="ROLLING_WINDOW",
    )
    instance = Quota(NAME, {})
    assert (await a.handle_quota(instance, QuotaArgs(2))).granted_amount == 2
    clock.advance(0.5)
    assert (await b.handle_quota(instance, QuotaArgs(2))).granted_amount == 2
    clock.advance(0.2)
    assert (await a.handle_quota(instance, QuotaArgs(1))).granted_amount == 0
    # 1.05 s after the first grant its bucket has left the window: 2 tokens are back
    clock.advance(0.35)
    result = await b.handle_quota(instance, QuotaArgs(3, best_effort=True))
    assert (result.granted_amount, result.valid_duration) == (2, datetime.timedelta(seconds=1))
    for handler in (a, b):
        await handler.close()


async def test_redis_going_away_gives_unavailable_and_no_grant(fresh_redis) -> None:  # type: ignore[no-untyped-def]
    handler = await build_handler("redisquota", "rq.handler.istio-system", params(fresh_redis.url))
    instance = Quota(NAME, {})
    assert (await dispatch_quota(handler, instance, QuotaArgs(1))).granted_amount == 1
    fresh_redis.stop()
    result = await dispatch_quota(handler, instance, QuotaArgs(1), adapter_timeout=10)
    assert result.granted_amount == 0
    assert result.status.code is Code.UNAVAILABLE
    assert f"redis at {fresh_redis.url}" in result.status.message
    # Redis comes back (empty): the same handler reconnects and grants again
    fresh_redis.restart()
    back = await dispatch_quota(handler, instance, QuotaArgs(1), adapter_timeout=10)
    assert (back.granted_amount, back.status.ok) == (1, True)
    await handler.close()


async def test_unreachable_redis_fails_the_build(fresh_redis) -> None:  # type: ignore[no-untyped-def]
    fresh_redis.stop()
    with pytest.raises(HandlerBuildError, match="could not create a connection to redis server"):
        await build_handler("redisquota", "rq.handler.istio-system", params(fresh_redis.url))


@pytest.mark.parametrize(
    ("quota", "top", "message"),
    [
        ({"validDuration": "0s"}, {}, "validDuration: must be > 0"),
        ({"rateLimitAlgorithm": "ROLLING_WINDOW"}, {}, "bucketDuration: must be > 0"),
        (
            {"rateLimitAlgorithm": "ROLLING_WINDOW", "bucketDuration": "10s"},
            {},
            "should be longer than bucketDuration",
        ),
        ({"overrides": [{"dimensions": {}, "maxAmount": 1}]}, {}, "dimensions is empty"),
        ({"overrides": [{"dimensions": {"a": "b"}}]}, {}, "max_amount must be > 0"),
        ({"maxAmount": "lots"}, {}, "quotas[0].maxAmount: expected an integer"),
        ({"rateLimitAlgorithm": "LEAKY"}, {}, "unknown value 'LEAKY'"),
        ({}, {"connectionPoolSize": -1}, "must be > 0"),
        ({}, {"redisServerUrl": "http://x:1"}, "invalid redis address"),
        ({}, {"poolSize": 3}, "poolSize: unknown field"),
    ],
)
def test_bad_params_are_refused_with_the_field(quota, top, message) -> None:  # type: ignore[no-untyped-def]
    from istio_sdk.mixer.adapters.redisquota import RedisQuotaParams

    spec = params("127.0.0.1:1", **quota)
    spec.update(top)
    with pytest.raises(AdapterParamsError) as caught:
        RedisQuotaParams.from_dict(spec)
    assert message in str(caught.value)


def test_empty_quotas_are_refused() -> None:
    from istio_sdk.mixer.adapters.redisquota import RedisQuotaParams

    with pytest.raises(AdapterParamsError, match="quota should not be empty"):
        RedisQuotaParams.from_dict({"redisServerUrl": "127.0.0.1:1"})


async def test_a_redis_that_never_answers_fails_the_build_in_bounded_time() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(HandlerBuildError, match="Timeout"):
            await asyncio.wait_for(
                RedisQuotaHandler.create(
                    "rq.handler.istio-system", params(f"127.0.0.1:{port}"), socket_timeout=0.2
                ),
                timeout=10,
            )
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


fixed_window_ops = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=1),  # which replica
        st.integers(min_value=1, max_value=4),  # amount
        st.booleans(),  # best effort
        st.integers(min_value=0, max_value=700),  # milliseconds before the call
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=15)
@given(ops=fixed_window_ops, limit=st.integers(min_value=0, max_value=6))
def test_replicas_grant_exactly_what_one_fixed_window_allows(redis_server, ops, limit) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        clock = Clock()
        a, b = await replicas(redis_server.url, clock, maxAmount=limit, validDuration="1s")
        instance = Quota(NAME, {"run": uuid.uuid4().hex})  # a key of this example's own
        used, expire = 0, None
        try:
            for replica, amount, best_effort, delay in ops:
                clock.advance(delay / 1000)
                result = await (a, b)[replica].handle_quota(
                    instance, QuotaArgs(amount, best_effort=best_effort)
                )
                if expire is None or clock.now >= expire:  # Istio's fixed window, as a model
                    used, expire = 0, clock.now + 1_000_000_000
                room = limit - used
                want = amount if amount <= room else (room if best_effort and room > 0 else 0)
                used += want
                assert result.granted_amount == want
                assert used <= limit
        finally:
            for handler in (a, b):
                await handler.close()

    asyncio.run(run())
