"""One quota's prefetch pool: grant requests locally from amounts fetched ahead of time.

Istio 1.3's proxy (src/istio/prefetch/quota_prefetch.cc), without I/O or a clock of its own:

- the pool is a FIFO of slots (amount left, expiry); a check takes from the oldest live slots;
- a counter over the last ``predict_window`` (1 s, 20 sub-slots) says how much was asked for
  lately; *desired* is that, at least ``min_prefetch`` (10);
- a prefetch of ``max(amount, desired)`` is asked for when what is available is below half of
  desired with nothing in flight, or below the amount asked now;
- in OPEN mode (the last prefetch was granted in full) an empty pool credits the prefetch at
  once, before the answer, for at most 60 s; the answer then takes back what was not granted
  and sets the slot's real expiry;
- a short grant switches to CLOSE mode: no prefetch while one is in flight or within
  ``close_wait`` (0.5 s) of the last one;
- a network failure counts as a full grant for 60 s (fail open).

:meth:`QuotaPrefetch.check` returns whether the amount passes and, when one is due, the
:class:`PrefetchRequest` the caller must send (``best_effort=True``) and answer with
:meth:`QuotaPrefetch.on_response`.
"""

from __future__ import annotations

import collections
import math

import attrs

__all__ = ["PrefetchRequest", "QuotaPrefetch", "WindowCounter"]

PREDICT_WINDOW = 1.0
MIN_PREFETCH = 10
CLOSE_WAIT = 0.5
COUNTER_SLOTS = 20
MAX_EXPIRY = 60.0
"""Seconds an amount credited before its answer (or after a network failure) stays usable."""


class WindowCounter:
    """Sum of the amounts counted in the last ``window`` seconds, in ``slots`` sub-windows."""

    __slots__ = ("_counts", "_slot_seconds", "_tick", "_total")

    def __init__(self, slots: int, window: float, now: float) -> None:
        self._counts = [0] * slots
        self._slot_seconds = window / slots
        self._tick = math.floor(now / self._slot_seconds)
        self._total = 0

    def _roll(self, now: float) -> None:
        tick = math.floor(now / self._slot_seconds)
        elapsed = tick - self._tick
        if elapsed <= 0:
            return
        counts = self._counts
        if elapsed >= len(counts):
            counts[:] = [0] * len(counts)
            self._total = 0
        else:
            for step in range(1, elapsed + 1):
                slot = (self._tick + step) % len(counts)
                self._total -= counts[slot]
                counts[slot] = 0
        self._tick = tick

    def add(self, amount: int, now: float) -> None:
        self._roll(now)
        self._counts[self._tick % len(self._counts)] += amount
        self._total += amount

    def count(self, now: float) -> int:
        self._roll(now)
        return self._total


@attrs.frozen
class PrefetchRequest:
    """A prefetch to send: ``amount`` with ``best_effort=True``."""

    amount: int
    slot_id: int
    """The slot credited before the answer, 0 when nothing was credited."""


@attrs.define
class _Slot:
    available: int
    expires_at: float
    slot_id: int


class QuotaPrefetch:
    """The prefetch pool of one quota key; see the module docstring."""

    def __init__(
        self,
        now: float,
        *,
        predict_window: float = PREDICT_WINDOW,
        min_prefetch: int = MIN_PREFETCH,
        close_wait: float = CLOSE_WAIT,
    ) -> None:
        self._slots: collections.deque[_Slot] = collections.deque()
        self._counter = WindowCounter(COUNTER_SLOTS, predict_window, now)
        self._min_prefetch = min_prefetch
        self._close_wait = close_wait
        self._open = True
        self._inflight = 0
        self._last_prefetch = -math.inf
        self._next_id = 0

    @property
    def inflight(self) -> int:
        return self._inflight

    def available(self, now: float) -> int:
        return sum(s.available for s in self._slots if now < s.expires_at)

    def check(self, amount: int, now: float) -> tuple[bool, PrefetchRequest | None]:
        """Whether ``amount`` passes now, and the prefetch to send (if one is due)."""
        prefetch = self._attempt_prefetch(amount, now)
        self._counter.add(amount, now)
        if amount == 1:
            passed = self._take(1, now) == 0
        else:
            passed = self.available(now) >= amount
            if passed:
                self._take(amount, now)
        return passed, prefetch

    def _attempt_prefetch(self, amount: int, now: float) -> PrefetchRequest | None:
        if not self._open and (self._inflight > 0 or now - self._last_prefetch < self._close_wait):
            return None
        available = self.available(now)
        desired = max(self._counter.count(now), self._min_prefetch)
        if (available < desired / 2 and self._inflight == 0) or available < amount:
            wanted = max(amount, desired)
            slot_id = 0
            if available == 0 and self._open:
                # credit the prefetch now: the answer takes back what was not granted
                slot_id = self._add(wanted, now + MAX_EXPIRY)
            self._last_prefetch = now
            self._inflight += 1
            return PrefetchRequest(wanted, slot_id)
        return None

    def _add(self, amount: int, expires_at: float) -> int:
        self._next_id += 1
        self._slots.append(_Slot(amount, expires_at, self._next_id))
        return self._next_id

    def _take(self, amount: int, now: float) -> int:
        """Take ``amount`` from the oldest live slots; what could not be taken."""
        slots = self._slots
        while slots and amount > 0:
            head = slots[0]
            if now < head.expires_at:
                if head.available > 0:
                    taken = min(head.available, amount)
                    head.available -= taken
                    amount -= taken
                if head.available > 0:
                    return 0
            slots.popleft()
        return amount

    def on_response(
        self, request: PrefetchRequest, granted: int | None, valid_duration: float, now: float
    ) -> None:
        """The answer to ``request``: ``granted`` (None: the network failed) for
        ``valid_duration`` seconds."""
        self._inflight = max(self._inflight - 1, 0)
        if granted is None:
            granted, valid_duration = request.amount, MAX_EXPIRY
        if request.slot_id:
            slot = next((s for s in self._slots if s.slot_id == request.slot_id), None)
            if granted < request.amount:
                missing = request.amount - granted
                if slot is not None:
                    taken = min(slot.available, missing)
                    slot.available -= taken
                    missing -= taken
                if missing > 0:
                    self._take(missing, now)
            if slot is not None and slot.available > 0:
                slot.expires_at = now + valid_duration
        elif granted > 0:
            self._add(granted, now + valid_duration)
        self._open = granted == request.amount
