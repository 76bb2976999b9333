"""MixerClient.check: the referenced-attribute cache, expiry, the fail policy and retries."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from support.fake_mixer import (
    FakeClock,
    GarbageMixer,
    RawCodec,
    RunningMixer,
    referenced,
    unavailable,
)

from istio_sdk import MixerClient
from istio_sdk._net import bound_port
from istio_sdk.api.istio.mixer.v1 import CheckResponse
from istio_sdk.mixer import AttributesError, decode_attributes
from istio_sdk.mixer.client import retry_delay

REQUEST = {
    "source.name": "productpage",
    "destination.service.host": "reviews.default.svc.cluster.local",
    "request.headers": {"x-user": "jason", ":path": "/reviews"},
    "request.size": 10,
}


def client_for(mixer: RunningMixer, **options: object) -> MixerClient:
    return MixerClient("127.0.0.1", mixer.port, **options)


async def test_a_verdict_is_reused_for_requests_with_the_same_referenced_values(
    mixer: RunningMixer,
) -> None:
    mixer.service.referenced = referenced(exact=["source.name", ("request.headers", "x-user")])
    async with client_for(mixer) as client:
        first = await client.check(REQUEST)
        # request.size and :path were not referenced: changing them still hits
        second = await client.check(
            {**REQUEST, "request.size": 99, "request.headers": {"x-user": "jason"}}
        )
        assert first.ok and not first.check_cache_hit
        assert second.ok and second.check_cache_hit
        assert len(mixer.service.checks) == 1
        # a different value of a referenced attribute or map key misses
        await client.check({**REQUEST, "source.name": "ratings"})
        await client.check({**REQUEST, "request.headers": {"x-user": "mary"}})
        # and so does a request that lacks an EXACT attribute
        await client.check({k: v for k, v in REQUEST.items() if k != "source.name"})
        assert len(mixer.service.checks) == 4


async def test_an_absence_condition_misses_when_the_attribute_is_there(
    mixer: RunningMixer,
) -> None:
    mixer.service.referenced = referenced(
        exact=["source.name"], absence=["source.user", ("request.headers", "x-debug")]
    )
    async with client_for(mixer) as client:
        await client.check(REQUEST)
        assert (await client.check(REQUEST)).check_cache_hit
        assert not (await client.check({**REQUEST, "source.user": "admin"})).check_cache_hit
        with_key = {**REQUEST, "request.headers": {"x-user": "jason", "x-debug": "1"}}
        assert not (await client.check(with_key)).check_cache_hit
        assert len(mixer.service.checks) == 3


async def test_denials_are_cached_and_returned_with_their_status(mixer: RunningMixer) -> None:
    mixer.service.code = Status.PERMISSION_DENIED.value
    mixer.service.message = "denier.handler.istio-system:productpage is blacklisted"
    mixer.service.referenced = referenced(exact=["source.name"])
    async with client_for(mixer) as client:
        first = await client.check(REQUEST)
        second = await client.check(REQUEST)
    assert (first.code, first.message) == (Status.PERMISSION_DENIED, mixer.service.message)
    assert (second.code, second.message, second.check_cache_hit) == (
        Status.PERMISSION_DENIED,
        mixer.service.message,
        True,
    )
    assert len(mixer.service.checks) == 1


async def test_an_entry_expires_after_its_valid_duration(
    mixer: RunningMixer, clock: FakeClock
) -> None:
    mixer.service.valid_duration = datetime.timedelta(seconds=5)
    async with client_for(mixer, clock=clock) as client:
        await client.check(REQUEST)
        clock.advance(4.9)
        assert (await client.check(REQUEST)).check_cache_hit
        clock.advance(0.1)
        assert not (await client.check(REQUEST)).check_cache_hit
    assert len(mixer.service.checks) == 2


async def test_an_answer_without_a_valid_duration_never_expires(
    mixer: RunningMixer, clock: FakeClock
) -> None:
    mixer.service.valid_duration = None
    async with client_for(mixer, clock=clock) as client:
        await client.check(REQUEST)
        clock.advance(10 * 365 * 86400)
        assert (await client.check(REQUEST)).check_cache_hit


async def test_an_entry_serves_valid_use_count_hits(mixer: RunningMixer) -> None:
    mixer.service.valid_use_count = 2
    async with client_for(mixer) as client:
        hits = [(await client.check(REQUEST)).check_cache_hit for _ in range(4)]
    # remote, two hits, then the spent entry misses and a new answer arrives
    assert hits == [False, True, True, False]
    assert len(mixer.service.checks) == 2


async def test_a_use_count_of_zero_is_never_used_and_a_negative_one_is_unlimited(
    mixer: RunningMixer,
) -> None:
    mixer.service.valid_use_count = 0
    async with client_for(mixer) as client:
        assert not any([(await client.check(REQUEST)).check_cache_hit for _ in range(3)])
        assert len(mixer.service.checks) == 3
    mixer.service.valid_use_count = -1
    async with client_for(mixer) as client:
        hits = [(await client.check(REQUEST)).check_cache_hit for _ in range(50)]
    assert hits == [False] + [True] * 49


async def test_a_regex_condition_is_not_cached(mixer: RunningMixer) -> None:
    mixer.service.referenced = referenced(exact=["source.name"], regex=["request.path"])
    async with client_for(mixer) as client:
        await client.check(REQUEST)
        assert not (await client.check(REQUEST)).check_cache_hit
    assert len(mixer.service.checks) == 2


async def test_referenced_words_that_name_nothing_are_not_cached(mixer: RunningMixer) -> None:
    bogus = referenced(exact=["source.name"])
    bogus.attribute_matches[0].name = -50  # no such own word
    mixer.service.referenced = bogus
    async with client_for(mixer) as client:
        assert (await client.check(REQUEST)).ok
        assert not (await client.check(REQUEST)).check_cache_hit


async def test_the_cache_can_be_turned_off(mixer: RunningMixer) -> None:
    async with client_for(mixer, check_cache_entries=0) as client:
        for _ in range(3):
            await client.check(REQUEST)
    assert len(mixer.service.checks) == 3


async def test_check_sends_the_proxy_wire_form(mixer: RunningMixer) -> None:
    mixer.service.referenced = referenced(exact=["source.name"])
    async with client_for(mixer) as client:
        await client.check(REQUEST)
        await client.check({**REQUEST, "source.name": "other"})
    first, second = mixer.service.checks
    assert first.global_word_count == 222
    assert decode_attributes(first.attributes) == REQUEST
    assert first.attributes.words  # the strings not in the global dictionary
    # one base, a counter after it
    assert first.deduplication_id != second.deduplication_id
    assert first.deduplication_id[:36] == second.deduplication_id[:36]


async def test_a_bag_that_cannot_be_sent_is_an_attributes_error(mixer: RunningMixer) -> None:
    async with client_for(mixer) as client:
        with pytest.raises(AttributesError):
            await client.check({"request.size": 2**64})
        with pytest.raises(AttributesError):
            await client.check({"source.name": ["not", "a", "value"]})
        with pytest.raises(AttributesError):
            await client.check({"source.name": "\ud800"})
        assert (await client.check(REQUEST)).ok  # the client still works


# --- the network fail policy and retries ------------------------------------------------------


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_server_that_is_down_fails_open_or_closed(free_port: int, fail_open: bool) -> None:
    async with MixerClient("127.0.0.1", free_port, fail_open=fail_open) as client:
        result = await client.check(REQUEST)
    if fail_open:
        assert result.ok
    else:
        assert result.code is Status.UNAVAILABLE
        assert result.message == "upstream connect error or disconnect/reset before headers"
    assert client.stats.remote_failures == 1


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_stalling_server_fails_open_or_closed(mixer: RunningMixer, fail_open: bool) -> None:
    mixer.service.stall = asyncio.Event()
    async with client_for(mixer, fail_open=fail_open, timeout=1.0) as client:
        result = await client.check(REQUEST)
    assert (
        result.ok
        if fail_open
        else (result.code, result.message)
        == (
            Status.UNAVAILABLE,
            "upstream request timeout",
        )
    )
    assert len(mixer.service.checks) == 1


async def test_a_transport_failure_is_retried_max_retries_times(mixer: RunningMixer) -> None:
    mixer.service.fail_with = [unavailable() for _ in range(4)]
    mixer.service.code = Status.PERMISSION_DENIED.value
    async with client_for(
        mixer, max_retries=2, base_retry_wait=0.001, max_retry_wait=0.002
    ) as client:
        result = await client.check(REQUEST)
        # three attempts, all failed: fail open
        assert result.ok and client.stats.retries == 2
        assert len(mixer.service.checks) == 3
        # the next one succeeds on its second attempt and gives the server's verdict
        result = await client.check(REQUEST)
        assert result.code is Status.PERMISSION_DENIED
        assert len(mixer.service.checks) == 5 and client.stats.retries == 3


async def test_a_server_down_is_retried_too(free_port: int) -> None:
    async with MixerClient(
        "127.0.0.1", free_port, max_retries=3, base_retry_wait=0.001, max_retry_wait=0.001
    ) as client:
        await client.check(REQUEST)
    assert client.stats.retries == 3


async def test_an_error_answer_is_not_retried_and_follows_the_fail_policy(
    mixer: RunningMixer,
) -> None:
    mixer.service.fail_with = [GRPCError(Status.INTERNAL, "dispatch failed")] * 2
    async with client_for(mixer, max_retries=3, base_retry_wait=0.001) as client:
        assert (await client.check(REQUEST)).ok
    async with client_for(mixer, max_retries=3, base_retry_wait=0.001, fail_open=False) as client:
        result = await client.check(REQUEST)
    assert (result.code, result.message) == (Status.INTERNAL, "dispatch failed")
    assert len(mixer.service.checks) == 2


async def test_a_precondition_of_internal_is_ok_when_failing_open(mixer: RunningMixer) -> None:
    mixer.service.code = Status.INTERNAL.value
    async with client_for(mixer) as client:
        assert (await client.check(REQUEST)).ok
    async with client_for(mixer, fail_open=False) as client:
        assert (await client.check(REQUEST)).code is Status.INTERNAL


async def test_the_dictionary_shrinks_when_mixer_refuses_a_word(mixer: RunningMixer) -> None:
    mixer.service.fail_with = [
        GRPCError(Status.INVALID_ARGUMENT, "Request could not be processed due to invalid words")
    ]
    async with client_for(mixer) as client:
        await client.check(REQUEST)
        await client.check(REQUEST)
    assert [c.global_word_count for c in mixer.service.checks] == [222, 111]
    # destination.service.host is global word 193: above 111 it travels as an own word
    assert "destination.service.host" in mixer.service.checks[1].attributes.words


def test_the_retry_delay_is_uniform_between_base_and_the_doubled_cap() -> None:
    for attempt, ceiling in ((0, 0.08), (1, 0.16), (2, 0.32), (3, 0.64), (4, 1.0), (40, 1.0)):
        delays = [retry_delay(attempt, 0.08, 1.0) for _ in range(300)]
        assert all(0.08 <= d <= ceiling for d in delays)
        if ceiling > 0.08:
            assert max(delays) - min(delays) > (ceiling - 0.08) / 2  # spread, not a constant


@pytest.mark.parametrize(
    "answer",
    [b"\xff\xff\xff\xff", b"\x12\x05\x0a\x03\x08\x07", b"\x0a" + b"\x80" * 20],
    ids=["garbage", "truncated", "bad-varint"],
)
async def test_an_undecodable_answer_follows_the_fail_policy(answer: bytes) -> None:
    garbage = GarbageMixer(answer)
    server = Server([garbage], codec=RawCodec())  # type: ignore[arg-type]
    await server.start("127.0.0.1", 0)
    try:
        port = bound_port(server)
        async with MixerClient("127.0.0.1", port) as client:
            assert (await client.check(REQUEST)).ok
        async with MixerClient("127.0.0.1", port, fail_open=False, max_retries=2) as client:
            result = await client.check(REQUEST)
        assert result.code is Status.INTERNAL and "undecodable" in result.message
        assert garbage.calls == 2  # an answer that came is not retried
    finally:
        server.close()
        await server.wait_closed()


async def test_an_answer_without_a_precondition_is_invalid_argument(
    mixer: RunningMixer,
) -> None:
    async def no_precondition(message: object) -> CheckResponse:
        return CheckResponse()

    mixer.service.check = no_precondition  # type: ignore[method-assign]
    async with client_for(mixer) as client:
        result = await client.check(REQUEST)
        again = await client.check(REQUEST)
    assert (result.code, result.message) == (
        Status.INVALID_ARGUMENT,
        "CheckResponse doesn't have PreconditionResult",
    )
    assert not again.check_cache_hit


@pytest.mark.parametrize("amount", [0, -1, 2**63, 1.5, True, "3"])
async def test_a_bad_quota_amount_is_a_value_error(mixer: RunningMixer, amount: object) -> None:
    async with client_for(mixer) as client:
        with pytest.raises(ValueError, match="amount must be an int"):
            await client.check(REQUEST, quotas={"q": amount})  # type: ignore[dict-item]
    assert mixer.service.checks == []
