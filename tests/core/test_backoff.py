"""Exponential backoff with jitter (istio_sdk._backoff) and the retry loops built on it."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.grpc_xds import free_port

from istio_sdk import PilotClient
from istio_sdk._backoff import backoff_delay

_seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
_draws = st.one_of(st.floats(0.0, 1.0, exclude_max=True), st.sampled_from([1.0, -1.0, 2.0]))


@given(
    attempt=st.integers(0, 10**6),
    initial=_seconds,
    maximum=_seconds,
    jitter=st.floats(0.0, 1.0),
    draw=_draws,
)
def test_any_attempt_gives_a_finite_delay_within_the_cap(
    attempt: int, initial: float, maximum: float, jitter: float, draw: float
) -> None:
    delay = backoff_delay(attempt, initial, maximum, jitter=jitter, rng=lambda: draw)
    assert math.isfinite(delay)
    assert 0.0 <= delay <= maximum


def test_doubles_per_attempt_up_to_the_cap() -> None:
    no_jitter = [backoff_delay(n, 1.0, 8.0, jitter=0.0) for n in range(6)]
    assert no_jitter == [1, 2, 4, 8, 8, 8]
    assert backoff_delay(2**40, 0.5, 30.0, jitter=0.0) == 30.0


def test_equal_and_full_jitter_span_the_documented_ranges() -> None:
    # Equal jitter: [d/2, d]; full jitter: [0, d].
    assert [backoff_delay(n, 1.0, 8.0, rng=lambda: 0.0) for n in range(5)] == [0.5, 1, 2, 4, 4]
    assert [backoff_delay(n, 1.0, 8.0, rng=lambda: 1.0) for n in range(5)] == [1, 2, 4, 8, 8]
    assert backoff_delay(10_000, 1.0, 60.0, rng=lambda: 0.5) == 45.0
    assert backoff_delay(3, 1.0, 60.0, jitter=1.0, rng=lambda: 0.0) == 0.0
    assert backoff_delay(3, 1.0, 60.0, jitter=1.0, rng=lambda: 0.25) == 2.0


def test_a_nan_draw_does_not_leak_into_the_delay() -> None:
    assert backoff_delay(3, 1.0, 60.0, rng=lambda: math.nan) == 4.0


@pytest.mark.parametrize(
    ("initial", "maximum", "jitter"),
    [(-1.0, 1.0, 0.5), (1.0, math.inf, 0.5), (math.nan, 1.0, 0.5), (1.0, 2.0, 1.5)],
)
def test_bad_parameters_are_refused_when_the_client_is_made(
    initial: float, maximum: float, jitter: float
) -> None:
    with pytest.raises(ValueError, match="backoff"):
        PilotClient(
            "127.0.0.1:1", backoff_initial=initial, backoff_max=maximum, backoff_jitter=jitter
        )


async def test_the_pilot_client_keeps_reconnecting_past_1100_failed_attempts() -> None:
    """Before the shared function, attempt 1,024 overflowed and killed the reconnect task."""
    wanted = 1_200
    delays: list[float] = []
    enough = asyncio.Event()

    async def no_wait(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= wanted:
            enough.set()
        await asyncio.sleep(0)

    # Nothing listens on the port: every attempt fails at once with a refused connection.
    client = PilotClient(
        f"127.0.0.1:{free_port()}", backoff_initial=0.2, backoff_max=30.0, sleep=no_wait
    )
    await client.start()
    try:
        task = client._task
        assert task is not None
        waiter = asyncio.ensure_future(enough.wait())
        await asyncio.wait({waiter, task}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        assert not task.done(), f"the reconnect loop died: {task.exception()!r}"
        assert len(delays) >= wanted
        assert "ConnectionRefusedError" in client.last_error
        assert client.reconnects >= wanted - 1
        assert all(0.0 <= d <= 30.0 for d in delays)
        assert delays[-1] >= 30.0 * (1 - 0.2)  # long since at the cap
    finally:
        await client.close()
