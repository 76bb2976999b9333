"""memquota: counters, rolling windows, overrides, best effort, deduplication."""

from __future__ import annotations

import datetime
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.mixer.adapters import (
    AdapterParamsError,
    MemQuotaHandler,
    QuotaArgs,
    dispatch_quota,
)
from istio_sdk.mixer.adapters.memquota import MemQuotaParams
from istio_sdk.mixer.templates import Quota

NAME = "requestcount.quota.istio-system"
T0 = 1_764_000_000_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1_000_000_000)


def handler(clock: Clock, **quota: object) -> MemQuotaHandler:
    spec: dict[str, object] = {"name": NAME, "maxAmount": 5}
    spec.update(quota)
    return MemQuotaHandler(
        "mq.handler.istio-system", MemQuotaParams.from_dict({"quotas": [spec]}), clock_ns=clock
    )


def test_allocation_counter_holds_until_freed() -> None:
    clock = Clock()
    mq = handler(clock)
    q = Quota(NAME, {"source": "a"})
    assert mq.allocate(q, QuotaArgs(4)).granted_amount == 4
    assert mq.allocate(q, QuotaArgs(2)).granted_amount == 0
    clock.advance(3600)  # counters do not expire
    best = mq.allocate(q, QuotaArgs(2, best_effort=True))
    assert (best.granted_amount, best.valid_duration) == (1, datetime.timedelta(0))
    assert mq.allocate(q, QuotaArgs(-3)).granted_amount == 3
    assert mq.allocate(q, QuotaArgs(3)).granted_amount == 3
    # other dimensions count apart
    assert mq.allocate(Quota(NAME, {"source": "b"}), QuotaArgs(5)).granted_amount == 5


def test_rolling_window_releases_after_the_window() -> None:
    clock = Clock()
    mq = handler(clock, validDuration="1s")
    q = Quota(NAME, {})
    first = mq.allocate(q, QuotaArgs(3))
    assert (first.granted_amount, first.valid_duration) == (3, datetime.timedelta(seconds=1))
    clock.advance(0.5)
    assert mq.allocate(q, QuotaArgs(2)).granted_amount == 2
    assert mq.allocate(q, QuotaArgs(1)).granted_amount == 0
    clock.advance(0.55)  # the first 3 have left the 10-slot window
    assert mq.allocate(q, QuotaArgs(4, best_effort=True)).granted_amount == 3


def test_first_matching_override_wins_with_typed_dimensions() -> None:
    clock = Clock()
    mq = handler(
        clock,
        overrides=[
            {"dimensions": {"code": "429", "mtls": "true"}, "maxAmount": 1},
            {"dimensions": {"code": "429"}, "maxAmount": 2},
        ],
    )
    both = Quota(NAME, {"code": 429, "mtls": True})
    assert mq.allocate(both, QuotaArgs(5, best_effort=True)).granted_amount == 1
    code_only = Quota(NAME, {"code": 429, "mtls": False})
    assert mq.allocate(code_only, QuotaArgs(5, best_effort=True)).granted_amount == 2
    other = Quota(NAME, {"code": 200})
    assert mq.allocate(other, QuotaArgs(5, best_effort=True)).granted_amount == 5


def test_deduplication_lasts_one_to_two_intervals() -> None:
    clock = Clock()
    mq = handler(clock, validDuration="10s")
    q = Quota(NAME, {})
    assert mq.allocate(q, QuotaArgs(2, deduplication_id="r1")).granted_amount == 2
    clock.advance(1.5)
    again = mq.allocate(q, QuotaArgs(2, deduplication_id="r1"))
    assert again.granted_amount == 2
    assert again.valid_duration == datetime.timedelta(seconds=8.5)
    assert mq.allocate(q, QuotaArgs(5, best_effort=True)).granted_amount == 3  # retry was free
    clock.advance(1.0)  # two reaps since the grant: the id is forgotten
    assert mq.allocate(q, QuotaArgs(2, deduplication_id="r1")).granted_amount == 0


def test_unknown_quota_is_an_internal_status() -> None:
    import asyncio

    mq = handler(Clock())
    result = asyncio.run(dispatch_quota(mq, Quota("other.quota.ns", {}), QuotaArgs(1)))
    assert result.granted_amount == 0
    assert result.status.code.name == "INTERNAL"
    assert "no quota named 'other.quota.ns'" in result.status.message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"quotas": [{"name": NAME, "maxAmount": -1}]},
            "quotas[0].maxAmount: must not be negative",
        ),
        ({"quotas": [{"maxAmount": 1}]}, "quotas[0].name: a quota needs a name"),
        ({"quotas": [{"name": NAME}, {"name": NAME}]}, "defined twice"),
        (
            {"quotas": [{"name": NAME, "validDuration": 5}]},
            'expected a duration string like "1.5s"',
        ),
        ({"quotas": [{"name": NAME, "validDuration": "5 parsecs"}]}, "invalid duration"),
        (
            {"quotas": [{"name": NAME, "overrides": [{"dimensions": {"a": 1}}]}]},
            "expected a string",
        ),
        ({"minDeduplicationDuration": "0s"}, "must be > 0"),
        ({"quotas": {"name": NAME}}, "quotas: expected a list"),
        ({"quota": []}, "quota: unknown field"),
        ({"quotas": [{"name": NAME, "max_amount": 1, "maxAmount": 2}]}, "given twice"),
        ({"quotas": [{"name": NAME, "maxAmount": 2**63}]}, "out of the int64 range"),
        ({"quotas": [{"name": NAME, "maxAmount": float("nan")}]}, "expected an integer"),
    ],
)
def test_bad_params_name_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(AdapterParamsError) as caught:
        MemQuotaParams.from_dict(spec)
    assert message in str(caught.value)
    assert str(caught.value).startswith("memquota params: ")


operations = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=400),  # milliseconds since the previous call
        st.integers(min_value=-3, max_value=6),  # amount (negative frees)
        st.booleans(),  # best effort
    ),
    max_size=60,
)


@given(operations, st.integers(min_value=0, max_value=8))
def test_rolling_window_never_grants_more_than_max_in_a_window(ops, max_amount) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    mq = handler(clock, maxAmount=max_amount, validDuration="1s")
    q = Quota(NAME, {})
    grants: list[tuple[int, int]] = []  # (tick, amount)
    for delay, amount, best_effort in ops:
        clock.advance(delay / 1000)
        result = mq.allocate(q, QuotaArgs(amount, best_effort=best_effort))
        assert result.granted_amount >= 0
        tick = clock.now // 100_000_000
        if amount > 0:
            assert result.granted_amount <= amount
            if not best_effort:
                assert result.granted_amount in (0, amount)
            grants.append((tick, result.granted_amount))
        else:
            freed = result.granted_amount
            # frees give back the newest grants first (what is still in the window)
            for index in range(len(grants) - 1, -1, -1):
                if freed == 0:
                    break
                t, g = grants[index]
                if t <= tick - 10:
                    break
                taken = min(g, freed)
                grants[index] = (t, g - taken)
                freed -= taken
        in_window = sum(g for t, g in grants if t > tick - 10)
        assert in_window <= max_amount


@given(operations, st.integers(min_value=0, max_value=8))
def test_counter_never_holds_more_than_max(ops, max_amount) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    mq = handler(clock, maxAmount=max_amount)
    q = Quota(NAME, {})
    held = 0
    for delay, amount, best_effort in ops:
        clock.advance(delay / 1000)
        granted = mq.allocate(q, QuotaArgs(amount, best_effort=best_effort)).granted_amount
        assert 0 <= granted <= abs(amount)
        held += granted if amount > 0 else -granted
        assert 0 <= held <= max_amount


def test_a_long_window_costs_memory_per_grant_not_per_tick() -> None:
    # a 10-day window is 8.6 million 100 ms ticks: a dense ring per key was 69 MB, so a few
    # thousand distinct dimension values (source IPs) were enough to exhaust the server
    clock = Clock()
    mq = handler(clock, validDuration="240h", maxAmount=3)
    tracemalloc.start()
    try:
        for source in range(3):
            granted = mq.allocate(Quota(NAME, {"source": str(source)}), QuotaArgs(2))
            assert granted.granted_amount == 2
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    q = Quota(NAME, {"source": "0"})
    assert mq.allocate(q, QuotaArgs(2)).granted_amount == 0
    clock.advance(239 * 3600)
    assert mq.allocate(q, QuotaArgs(1)).granted_amount == 1
    assert mq.allocate(q, QuotaArgs(-3)).granted_amount == 3  # the newest grants go back first
    clock.advance(3600)
    assert mq.allocate(q, QuotaArgs(3)).granted_amount == 3
