"""``memquota``: quotas counted in this process's memory (one Mixer replica only).

Istio 1.3's semantics (``mixer/adapter/memquota``):

- a quota with ``validDuration`` 0 is an *allocation counter*: amounts stay allocated until a
  negative amount frees them;
- a quota with ``validDuration`` > 0 is a *rate limit* over a rolling window of
  ``ceil(seconds) * 10`` slots of 100 ms: an allocation returns to the pool when its slot rolls
  out of the window (there is no fixed-window mode);
- the first override whose every dimension string-equals the instance's wins;
- without ``best_effort`` a request that does not fit gets 0; with it, what is left;
- a deduplication id returns the earlier answer for 1 to 2 ``minDeduplicationDuration``
  intervals (two ping-pong maps, reaped each interval). An empty id never deduplicates (Mixer's
  server always sends one: the request's id plus the quota name).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from istio_sdk import timeutil
from istio_sdk.mixer.adapters import _values
from istio_sdk.mixer.adapters._params import Reader
from istio_sdk.mixer.adapters.base import AdapterError, Handler, QuotaArgs, QuotaResult
from istio_sdk.mixer.templates import Quota, Value

_READ = Reader("memquota")
_ZERO = datetime.timedelta(0)
TICKS_PER_SECOND = 10
_NANOS_PER_TICK = 1_000_000_000 // TICKS_PER_SECOND


@attrs.frozen
class Override:
    dimensions: Mapping[str, str]
    max_amount: int
    valid_duration: datetime.timedelta = _ZERO


@attrs.frozen
class QuotaLimit:
    name: str
    max_amount: int
    valid_duration: datetime.timedelta = _ZERO
    overrides: tuple[Override, ...] = ()

    def limit_for(self, dimensions: Mapping[str, Value]) -> QuotaLimit | Override:
        for override in self.overrides:
            if all(
                _values.string_equals(text, dimensions.get(key))
                for key, text in override.dimensions.items()
            ):
                return override
        return self


def _amount(path: str, value: object) -> int:
    amount = _READ.integer(path, value)
    if amount < 0:
        raise _READ.error(path, f"must not be negative, it is {amount}")
    return amount


def _valid_duration(path: str, value: object) -> datetime.timedelta:
    duration = _READ.duration(path, value)
    if duration < _ZERO:
        raise _READ.error(path, "must not be negative")
    return duration


@attrs.frozen
class MemQuotaParams:
    quotas: tuple[QuotaLimit, ...] = ()
    min_deduplication_duration: datetime.timedelta = datetime.timedelta(seconds=1)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> MemQuotaParams:
        found = _READ.fields(params, "", ["quotas", "min_deduplication_duration"])
        quotas: list[QuotaLimit] = []
        names: set[str] = set()
        for path, item in _READ.items(*found["quotas"]) if "quotas" in found else []:
            q = _READ.fields(item, path, ["name", "max_amount", "valid_duration", "overrides"])
            overrides: list[Override] = []
            for opath, oitem in _READ.items(*q["overrides"]) if "overrides" in q else []:
                o = _READ.fields(oitem, opath, ["dimensions", "max_amount", "valid_duration"])
                overrides.append(
                    Override(
                        _READ.string_map(*o["dimensions"]) if "dimensions" in o else {},
                        _amount(*o["max_amount"]) if "max_amount" in o else 0,
                        _valid_duration(*o["valid_duration"]) if "valid_duration" in o else _ZERO,
                    )
                )
            name = _READ.string(*q["name"]) if "name" in q else ""
            if not name:
                raise _READ.error(f"{path}.name", "a quota needs a name (the instance's name)")
            if name in names:
                raise _READ.error(f"{path}.name", f"quota {name!r} is defined twice")
            names.add(name)
            quotas.append(
                QuotaLimit(
                    name,
                    _amount(*q["max_amount"]) if "max_amount" in q else 0,
                    _valid_duration(*q["valid_duration"]) if "valid_duration" in q else _ZERO,
                    tuple(overrides),
                )
            )
        dedup = datetime.timedelta(seconds=1)
        if "min_deduplication_duration" in found:
            path, value = found["min_deduplication_duration"]
            dedup = _READ.duration(path, value)
            if dedup <= _ZERO:
                raise _READ.error(path, f"deduplication window of {dedup} is invalid, must be > 0")
        return cls(tuple(quotas), dedup)


class RollingWindow:
    """A window of ``ticks`` ticks; what a tick holds returns to the pool when it falls out.

    Only ticks that hold a grant are stored (oldest first), so a long window (10 days is 8.6
    million ticks) costs memory per grant, not per tick.
    """

    __slots__ = ("available", "current_tick", "held", "size")

    def __init__(self, limit: int, ticks: int) -> None:
        self.size = ticks
        self.held: dict[int, int] = {}  # tick -> amount granted in it; ticks only increase
        self.current_tick = 0
        self.available = limit

    def _roll(self, tick: int) -> None:
        self.current_tick = max(tick, self.current_tick)
        oldest = self.current_tick - self.size  # this tick and older have left the window
        held = self.held
        while held:
            first = next(iter(held))
            if first > oldest:
                break
            self.available += held.pop(first)

    def alloc(self, amount: int, tick: int) -> bool:
        self._roll(tick)
        if amount > self.available:
            return False
        if amount:
            now = self.current_tick
            self.held[now] = self.held.get(now, 0) + amount
        self.available -= amount
        return True

    def release(self, amount: int, tick: int) -> int:
        """Give back up to ``amount``, newest ticks first; returns what was released."""
        self._roll(tick)
        total = 0
        held = self.held
        for at in reversed(list(held)):
            grant = held[at]
            if grant > amount:
                held[at] = grant - amount
                total += amount
                break
            del held[at]
            total += grant
            amount -= grant
            if not amount:
                break
        self.available += total
        return total


@attrs.frozen
class _Dedup:
    amount: int
    expires_ns: int | None  # None: the grant does not expire (allocation counters)


class MemQuotaHandler(Handler):
    adapter: ClassVar[str] = "memquota"
    templates: ClassVar[frozenset[str]] = frozenset({"quota"})

    def __init__(
        self,
        name: str,
        params: MemQuotaParams,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(name)
        self.params = params
        self._clock_ns = clock_ns
        self._limits = {quota.name: quota for quota in params.quotas}
        self._cells: dict[bytes, int] = {}
        self._windows: dict[bytes, RollingWindow] = {}
        self._recent: dict[str, _Dedup] = {}
        self._old: dict[str, _Dedup] = {}
        self._reap_interval = timeutil.duration_nanos(params.min_deduplication_duration)
        self._next_reap = clock_ns() + self._reap_interval

    @classmethod
    async def create(
        cls,
        name: str,
        params: Mapping[str, Any] | None,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> MemQuotaHandler:
        return cls(name, MemQuotaParams.from_dict(params), clock_ns=clock_ns)

    def _reap(self, now: int) -> None:
        # Go swaps the two maps on a ticker; here the ticks missed since the last call apply now.
        if now < self._next_reap:
            return
        ticks = (now - self._next_reap) // self._reap_interval + 1
        self._old, self._recent = (self._recent if ticks == 1 else {}), {}
        self._next_reap += ticks * self._reap_interval

    async def handle_quota(self, instance: Quota, args: QuotaArgs) -> QuotaResult:
        return self.allocate(instance, args)

    def allocate(self, instance: Quota, args: QuotaArgs) -> QuotaResult:
        """The synchronous core of :meth:`handle_quota`."""
        quota = self._limits.get(instance.name)
        if quota is None:
            known = ", ".join(sorted(self._limits)) or "none"
            raise AdapterError(f"no quota named {instance.name!r} in memquota params ({known})")
        limit = quota.limit_for(instance.dimensions)
        if args.amount == 0:
            return QuotaResult()
        now = self._clock_ns()
        self._reap(now)
        dedup_id = args.deduplication_id
        if dedup_id:
            earlier = self._recent.get(dedup_id) or self._old.get(dedup_id)
            if earlier is not None:
                left = 0 if earlier.expires_ns is None else max(earlier.expires_ns - now, 0)
                return QuotaResult(earlier.amount, timeutil.Duration.from_nanoseconds(left))
        key = _values.quota_key(instance.name, instance.dimensions)
        if args.amount > 0:
            amount, expires = self._alloc(key, args, limit, now)
        else:
            amount, expires = self._free(key, -args.amount, limit, now), None
        if dedup_id:
            self._recent[dedup_id] = _Dedup(amount, expires)
        valid = _ZERO if expires is None else limit.valid_duration
        return QuotaResult(amount, valid)

    def _alloc(
        self, key: bytes, args: QuotaArgs, limit: QuotaLimit | Override, now: int
    ) -> tuple[int, int | None]:
        wanted = args.amount
        if limit.valid_duration == _ZERO:
            in_use = self._cells.get(key, 0)
            room = max(limit.max_amount - in_use, 0)
            if wanted > room:
                if not args.best_effort:
                    return 0, None
                wanted = room
            self._cells[key] = in_use + wanted
            return wanted, None
        tick = now // _NANOS_PER_TICK
        window = self._windows.get(key)
        if window is None:
            seconds = -(-timeutil.duration_nanos(limit.valid_duration) // 1_000_000_000)
            window = RollingWindow(limit.max_amount, seconds * TICKS_PER_SECOND)
            self._windows[key] = window
        if not window.alloc(wanted, tick):
            if not args.best_effort:
                return 0, None
            wanted = max(window.available, 0)
            window.alloc(wanted, tick)
        return wanted, now + timeutil.duration_nanos(limit.valid_duration)

    def _free(self, key: bytes, amount: int, limit: QuotaLimit | Override, now: int) -> int:
        if limit.valid_duration == _ZERO:
            in_use = self._cells.get(key, 0)
            if amount >= in_use:
                self._cells.pop(key, None)
                return in_use
            self._cells[key] = in_use - amount
            return amount
        window = self._windows.get(key)
        if window is None:
            return 0
        released = window.release(amount, now // _NANOS_PER_TICK)
        if window.available == limit.max_amount:
            del self._windows[key]
        return released
