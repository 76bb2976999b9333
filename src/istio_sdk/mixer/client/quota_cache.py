"""The client's quota cache: a prefetch pool per quota and referenced-attribute signature.

Istio 1.3's proxy (src/istio/mixerclient/quota_cache.cc), without I/O:

- the cache is used only when the Check's policy verdict came from the cache (a fresh remote
  Check might deny, and an amount taken from a pool could not be given back). Otherwise the
  quota rides on the remote Check with ``best_effort=False`` and passes when there is no
  answer (fail open), the answer's status is UNAVAILABLE, or it grants more than 0;
- with the cache, each quota name has shapes learned from its answers' referenced attributes;
  the signature of the request under a shape (plus the quota name) picks a
  :class:`~istio_sdk.mixer.client.prefetch.QuotaPrefetch` pool. A request no pool fits goes to
  the quota's *pending* pool, which the first answer files under its signature;
- a pool's prefetches ride on a Check with ``best_effort=True``; a missing answer counts as a
  network failure, an answer without ``valid_duration`` is valid for a minute;
- pools are an LRU of ``max_entries`` (10,000) dropped after ``idle_expiry`` (600 s) unused.

:meth:`QuotaCache.check` gives a :class:`QuotaTicket` per quota; the caller sends the tickets'
:attr:`QuotaTicket.request` on a Check and hands each one its answer with
:meth:`QuotaCache.answer`.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Mapping

import attrs
from grpclib.const import Status

from istio_sdk.api.istio.mixer.v1 import CheckRequestQuotaParams, CheckResponseQuotaResult
from istio_sdk.mixer.client.check_cache import status_of
from istio_sdk.mixer.client.prefetch import PrefetchRequest, QuotaPrefetch
from istio_sdk.mixer.client.referenced import Referenced, Signature

__all__ = ["QuotaCache", "QuotaState", "QuotaTicket"]

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_IDLE_EXPIRY = 600.0
DEFAULT_VALID_DURATION = 60.0
MAX_SHAPES_PER_QUOTA = 1_000


class QuotaState(enum.Enum):
    PASSED = "passed"
    REJECTED = "rejected"
    PENDING = "pending"
    """Decided by the remote answer."""


@attrs.define
class _PerQuota:
    shapes: dict[Referenced, None] = attrs.Factory(dict)
    pending: QuotaPrefetch | None = None


@attrs.define
class _Pool:
    prefetch: QuotaPrefetch
    last_used: float


@attrs.define
class QuotaTicket:
    """One quota of one Check: its local state and what (if anything) to ask Mixer for."""

    name: str
    amount: int
    state: QuotaState
    request: CheckRequestQuotaParams | None = None
    """The ``CheckRequest.quotas[name]`` entry to send, None when nothing needs sending."""
    _prefetch: PrefetchRequest | None = None
    _pool: QuotaPrefetch | None = None
    _pending_pool: bool = False


class QuotaCache:
    """Prefetch pools by quota name and signature; see the module docstring."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, idle_expiry: float = DEFAULT_IDLE_EXPIRY
    ) -> None:
        if max_entries < 0 or not idle_expiry > 0:
            raise ValueError("max_entries must be >= 0 and idle_expiry > 0")
        self.max_entries = max_entries
        self.idle_expiry = idle_expiry
        self._quotas: dict[str, _PerQuota] = {}
        self._pools: collections.OrderedDict[Signature, _Pool] = collections.OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def check(
        self,
        request: Mapping[str, object],
        name: str,
        amount: int,
        now: float,
        *,
        use_cache: bool,
    ) -> QuotaTicket:
        """The ticket for quota ``name`` (``amount``) of ``request``."""
        if not self.max_entries or not use_cache:
            return QuotaTicket(
                name,
                amount,
                QuotaState.PENDING,
                CheckRequestQuotaParams(amount=amount, best_effort=False),
            )
        per_quota = self._quotas.setdefault(name, _PerQuota())
        for shape in per_quota.shapes:
            signature = shape.signature(request, name)
            if signature is None:
                continue
            try:
                pool = self._pools.get(signature)
            except TypeError:  # an unhashable value: never cached
                break
            if pool is None:
                continue
            if now - pool.last_used > self.idle_expiry:
                del self._pools[signature]
                continue
            pool.last_used = now
            self._pools.move_to_end(signature)
            return self._ticket(name, amount, pool.prefetch, now, pending_pool=False)
        if per_quota.pending is None:
            per_quota.pending = QuotaPrefetch(now)
        return self._ticket(name, amount, per_quota.pending, now, pending_pool=True)

    @staticmethod
    def _ticket(
        name: str, amount: int, pool: QuotaPrefetch, now: float, *, pending_pool: bool
    ) -> QuotaTicket:
        passed, prefetch = pool.check(amount, now)
        ticket = QuotaTicket(name, amount, QuotaState.PASSED if passed else QuotaState.REJECTED)
        if prefetch is not None:
            ticket.request = CheckRequestQuotaParams(amount=prefetch.amount, best_effort=True)
            ticket._prefetch = prefetch
            ticket._pool = pool
            ticket._pending_pool = pending_pool
        return ticket

    def answer(
        self,
        ticket: QuotaTicket,
        request: Mapping[str, object],
        result: CheckResponseQuotaResult | None,
        now: float,
    ) -> bool:
        """Apply Mixer's ``result`` for ``ticket`` (None: no answer); whether the quota passes.

        For a cached ticket the verdict was already given; this only feeds the pool.
        """
        if ticket._prefetch is None or ticket._pool is None:
            if result is None:
                return True
            status = result.status
            if status is not None and status_of(status.code) is Status.UNAVAILABLE:
                return True
            return bool(result.granted_amount > 0)
        pool = ticket._pool
        if result is None:
            pool.on_response(ticket._prefetch, None, 0.0, now)
            return True
        duration = result.valid_duration
        seconds = DEFAULT_VALID_DURATION if duration is None else duration.total_seconds()
        if ticket._pending_pool:
            self._file_pending(ticket.name, pool, request, result, now)
        pool.on_response(ticket._prefetch, result.granted_amount, seconds, now)
        return True

    def _file_pending(
        self,
        name: str,
        pool: QuotaPrefetch,
        request: Mapping[str, object],
        result: CheckResponseQuotaResult,
        now: float,
    ) -> None:
        per_quota = self._quotas.get(name)
        if per_quota is None or per_quota.pending is not pool:
            return  # already filed by an earlier answer
        shape = Referenced.from_response(request, result.referenced_attributes)
        if shape is None:
            return
        signature = shape.signature(request, name)
        if signature is None:
            return
        try:
            if signature in self._pools:
                return  # never replace a pool in use
        except TypeError:
            return
        if shape not in per_quota.shapes:
            if len(per_quota.shapes) >= MAX_SHAPES_PER_QUOTA:
                del per_quota.shapes[next(iter(per_quota.shapes))]
            per_quota.shapes[shape] = None
        self._pools[signature] = _Pool(pool, now)
        per_quota.pending = None
        while len(self._pools) > self.max_entries:
            self._pools.popitem(last=False)
