"""Quotas: the prefetch pool (pure) and quotas through MixerClient.check."""

from __future__ import annotations

import datetime

from grpclib.const import Status
from support.fake_mixer import FakeClock, RunningMixer, referenced

from istio_sdk import MixerClient
from istio_sdk.mixer.client.prefetch import MAX_EXPIRY, QuotaPrefetch, WindowCounter

REQUEST = {"source.name": "productpage", "destination.service.host": "reviews"}

# --- the prefetch pool, no network -------------------------------------------------------------


def test_an_empty_open_pool_credits_its_first_prefetch_before_the_answer() -> None:
    pool = QuotaPrefetch(0.0)
    passed, prefetch = pool.check(1, 0.0)
    assert passed and prefetch is not None
    assert prefetch.amount == 10  # max(amount, desired), desired at least 10
    assert prefetch.slot_id != 0
    assert pool.available(0.0) == 9


def test_a_short_grant_takes_back_the_credit_and_closes_the_pool() -> None:
    pool = QuotaPrefetch(0.0)
    _, prefetch = pool.check(1, 0.0)
    assert prefetch is not None
    pool.on_response(prefetch, 3, 10.0, 0.01)
    assert pool.available(0.01) == 2  # 3 granted, 1 already used
    assert [pool.check(1, 0.02)[0] for _ in range(3)] == [True, True, False]
    # CLOSE mode: no new prefetch within 0.5 s of the last one
    assert pool.check(1, 0.3)[1] is None
    passed, again = pool.check(1, 0.6)
    assert again is not None and not passed
    # and a CLOSE pool does not credit before the answer
    assert again.slot_id == 0 and pool.available(0.6) == 0
    pool.on_response(again, 20, 10.0, 0.7)
    assert pool.available(0.7) == 20


def test_a_full_grant_reopens_the_pool_and_sets_the_slot_expiry() -> None:
    pool = QuotaPrefetch(0.0)
    _, prefetch = pool.check(1, 0.0)
    assert prefetch is not None
    pool.on_response(prefetch, 10, 2.0, 0.0)
    assert pool.available(1.9) == 9
    assert pool.available(2.0) == 0  # granted for valid_duration only
    # open again: an empty pool credits the next prefetch at once
    passed, again = pool.check(1, 2.0)
    assert passed and again is not None and again.slot_id != 0


def test_a_network_failure_counts_as_a_full_grant_for_a_minute() -> None:
    pool = QuotaPrefetch(0.0)
    _, prefetch = pool.check(5, 0.0)
    assert prefetch is not None
    pool.on_response(prefetch, None, 0.0, 1.0)
    assert pool.available(1.0) == 5
    assert pool.available(1.0 + MAX_EXPIRY) == 0


def test_a_prefetch_is_due_below_half_of_the_recent_demand() -> None:
    pool = QuotaPrefetch(0.0)
    _, first = pool.check(1, 0.0)
    assert first is not None
    pool.on_response(first, 10, 60.0, 0.0)
    due = [pool.check(1, 0.01 * i)[1] is not None for i in range(1, 10)]
    # 9 left after the first; the 6th check leaves 4 (< 10 / 2), the 5th still saw 5 left
    assert due == [False, False, False, False, False, True, False, False, False]


def test_an_amount_above_what_is_left_is_refused_whole() -> None:
    pool = QuotaPrefetch(0.0)
    _, prefetch = pool.check(1, 0.0)
    assert prefetch is not None
    pool.on_response(prefetch, 3, 60.0, 0.0)
    assert pool.check(5, 0.1)[0] is False
    assert pool.available(0.1) == 2  # nothing was taken


def test_the_window_counter_forgets_what_is_older_than_its_window() -> None:
    counter = WindowCounter(20, 1.0, 0.0)
    counter.add(3, 0.0)
    counter.add(4, 0.5)
    assert counter.count(0.99) == 7
    assert counter.count(1.02) == 4
    assert counter.count(1.6) == 0
    counter.add(2**62, 100.0)  # huge amounts and long gaps
    assert counter.count(100.0) == 2**62


# --- quotas through the client ----------------------------------------------------------------


async def test_without_a_cached_verdict_the_quota_rides_on_the_check(
    mixer: RunningMixer,
) -> None:
    mixer.service.granted = lambda name, amount, best_effort: 0
    async with MixerClient("127.0.0.1", mixer.port, check_cache_entries=0) as client:
        result = await client.check(REQUEST, quotas={"requestcount": 3, "bytes": 1})
    assert result.code is Status.RESOURCE_EXHAUSTED
    assert result.message == "Quota is exhausted for: requestcount,bytes"
    [sent] = mixer.service.checks
    assert {n: (q.amount, q.best_effort) for n, q in sent.quotas.items()} == {
        "requestcount": (3, False),
        "bytes": (1, False),
    }


async def test_a_partial_grant_passes_and_a_denied_policy_wins(mixer: RunningMixer) -> None:
    mixer.service.granted = lambda name, amount, best_effort: 1
    async with MixerClient("127.0.0.1", mixer.port, check_cache_entries=0) as client:
        assert (await client.check(REQUEST, quotas={"requestcount": 3})).ok
        mixer.service.code = Status.PERMISSION_DENIED.value
        mixer.service.granted = lambda name, amount, best_effort: 0
        result = await client.check(REQUEST, quotas={"requestcount": 3})
    assert result.code is Status.PERMISSION_DENIED  # not RESOURCE_EXHAUSTED


async def test_a_cached_denial_is_final_and_charges_no_quota(mixer: RunningMixer) -> None:
    mixer.service.code = Status.PERMISSION_DENIED.value
    async with MixerClient("127.0.0.1", mixer.port) as client:
        await client.check(REQUEST)
        result = await client.check(REQUEST, quotas={"requestcount": 1})
        await client.flush()
    assert (result.code, result.check_cache_hit) == (Status.PERMISSION_DENIED, True)
    assert len(mixer.service.checks) == 1


async def test_with_a_cached_verdict_quotas_come_from_prefetched_pools(
    mixer: RunningMixer, clock: FakeClock
) -> None:
    mixer.service.referenced = referenced(exact=["source.name"])
    mixer.service.quota_referenced = referenced(exact=["destination.service.host"])
    async with MixerClient("127.0.0.1", mixer.port, clock=clock) as client:
        await client.check(REQUEST)  # the policy verdict, now cached
        results = []
        for _ in range(30):
            results.append(await client.check(REQUEST, quotas={"requestcount": 1}))
            await client.flush()  # let any background prefetch be answered
            clock.advance(0.01)
    assert all(r.ok and r.check_cache_hit and r.quota_cache_hit for r in results)
    prefetches = mixer.service.checks[1:]
    assert prefetches, "the pool never asked Mixer"
    assert all(
        set(c.quotas) == {"requestcount"} and c.quotas["requestcount"].best_effort
        for c in prefetches
    )
    # pools fetch ahead in amounts of at least 10: far fewer calls than checks
    assert len(prefetches) <= 30 // 5
    assert all(c.quotas["requestcount"].amount >= 10 for c in prefetches)


async def test_an_exhausted_quota_is_refused_from_the_pool(
    mixer: RunningMixer, clock: FakeClock
) -> None:
    mixer.service.referenced = referenced(exact=["source.name"])
    mixer.service.granted = lambda name, amount, best_effort: 2 if best_effort else amount
    async with MixerClient("127.0.0.1", mixer.port, clock=clock) as client:
        await client.check(REQUEST)
        codes = []
        for _ in range(4):
            result = await client.check(REQUEST, quotas={"requestcount": 1})
            await client.flush()
            codes.append(result.code)
    # the first is passed on credit, the answer grants 2: one more passes, then refusals
    assert codes == [Status.OK, Status.OK, Status.RESOURCE_EXHAUSTED, Status.RESOURCE_EXHAUSTED]
    assert all(c.quotas["requestcount"].best_effort for c in mixer.service.checks[1:])


async def test_pools_are_per_signature_of_the_quota_answer(
    mixer: RunningMixer, clock: FakeClock
) -> None:
    mixer.service.referenced = referenced()
    mixer.service.quota_referenced = referenced(exact=["source.name"])
    mixer.service.granted = lambda name, amount, best_effort: 1
    async with MixerClient("127.0.0.1", mixer.port, clock=clock) as client:
        await client.check(REQUEST)
        assert (await client.check(REQUEST, quotas={"q": 1})).ok
        await client.flush()
        # the pool of source.name=productpage is spent; another source has its own pool
        assert not (await client.check(REQUEST, quotas={"q": 1})).ok
        await client.flush()
        assert (await client.check({**REQUEST, "source.name": "ratings"}, quotas={"q": 1})).ok


async def test_a_missing_quota_valid_duration_is_a_minute(
    mixer: RunningMixer, clock: FakeClock
) -> None:
    mixer.service.quota_valid_duration = None
    mixer.service.valid_duration = None
    async with MixerClient("127.0.0.1", mixer.port, clock=clock) as client:
        await client.check(REQUEST)
        await client.check(REQUEST, quotas={"q": 1})
        await client.flush()
        sent = len(mixer.service.checks)
        clock.advance(59)
        assert (await client.check(REQUEST, quotas={"q": 1})).ok
        await client.flush()
        assert len(mixer.service.checks) == sent  # served by the pool
        clock.advance(1.5)
        await client.check(REQUEST, quotas={"q": 1})
        await client.flush()
        assert len(mixer.service.checks) == sent + 1  # expired: fetched again


async def test_quotas_fail_open_when_mixer_is_down(free_port: int) -> None:
    async with MixerClient("127.0.0.1", free_port) as client:
        assert (await client.check(REQUEST, quotas={"q": 5})).ok
    async with MixerClient("127.0.0.1", free_port, fail_open=False) as client:
        assert (await client.check(REQUEST, quotas={"q": 5})).code is Status.UNAVAILABLE


async def test_a_quota_answer_with_a_huge_or_negative_grant_does_not_break_the_pool(
    mixer: RunningMixer, clock: FakeClock
) -> None:
    grants = iter([-(2**63), 2**63 - 1])
    mixer.service.granted = lambda name, amount, best_effort: next(grants, 1)
    mixer.service.quota_valid_duration = datetime.timedelta(days=3650)
    async with MixerClient("127.0.0.1", mixer.port, clock=clock) as client:
        await client.check(REQUEST)
        for _ in range(5):
            await client.check(REQUEST, quotas={"q": 1})
            await client.flush()
            clock.advance(1)
        assert (await client.check(REQUEST)).ok


async def test_a_pool_unused_for_quota_cache_idle_is_dropped(
    mixer: RunningMixer, clock: FakeClock
) -> None:
    mixer.service.valid_duration = None
    mixer.service.quota_valid_duration = datetime.timedelta(hours=1)
    async with MixerClient("127.0.0.1", mixer.port, clock=clock, quota_cache_idle=5) as client:
        await client.check(REQUEST)
        await client.check(REQUEST, quotas={"q": 1})
        await client.flush()
        sent = len(mixer.service.checks)
        clock.advance(4)
        await client.check(REQUEST, quotas={"q": 1})
        await client.flush()
        assert len(mixer.service.checks) == sent  # the pool still holds 8 for an hour
        clock.advance(6)
        await client.check(REQUEST, quotas={"q": 1})
        await client.flush()
        assert len(mixer.service.checks) == sent + 1  # idle too long: a fresh pool fetches
