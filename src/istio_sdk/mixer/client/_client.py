"""``MixerClient``: Check with Istio 1.3's proxy caches, Report in batches, over grpclib.

The decisions live in the pure cores beside this module (:mod:`.check_cache`,
:mod:`.quota_cache`, :mod:`.prefetch`, :mod:`.report_batch`); this module sends what they ask
for, retries, applies the network fail policy and keeps the report sender bounded.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping

import attrs
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from istio_sdk._backoff import backoff_delay, check_backoff
from istio_sdk._grpc import GrpcSettings, create_channel
from istio_sdk.api.istio.mixer.v1 import (
    CheckRequest,
    CheckResponse,
    MixerStub,
    ReportRequest,
    RouteDirective,
)
from istio_sdk.codec import DecodeError
from istio_sdk.mixer.attributes import INT64_MAX
from istio_sdk.mixer.client.check_cache import CheckCache, Verdict, verdict_of
from istio_sdk.mixer.client.quota_cache import QuotaCache, QuotaState, QuotaTicket
from istio_sdk.mixer.client.report_batch import ReportBatch
from istio_sdk.mixer.dictionary import GLOBAL_DICTIONARY, GLOBAL_DICTIONARY_BASE_SIZE
from istio_sdk.mixer.errors import AttributesError
from istio_sdk.mixer.wire import encode_attributes

__all__ = ["CheckResult", "MixerClient", "MixerClientOptions", "MixerClientStats", "retry_delay"]

_log = logging.getLogger("istio_sdk.mixer.client")

# The messages Envoy gives a failed call; the proxy's mixer client recognises them.
TIMEOUT_MESSAGE = "upstream request timeout"
SEND_ERROR_MESSAGE = "upstream connect error or disconnect/reset before headers"
# Mixer's answer to an unknown word, on which the proxy falls back to the base dictionary.
_INVALID_DICTIONARY_PREFIX = "Request could not be processed due to invalid"
_REPORT_FAILURE_LOG_EVERY = 100


@attrs.frozen
class CheckResult:
    """The outcome of :meth:`MixerClient.check`, as the proxy's filter sees it."""

    code: Status
    """OK to let the request through; otherwise the status a proxy answers with."""
    message: str = ""
    route_directive: RouteDirective | None = None
    check_cache_hit: bool = False
    """The policy verdict came from the cache (the proxy's ``check.cache_hit``)."""
    quota_cache_hit: bool = False
    """Every quota was decided from a prefetch pool (``quota.cache_hit``)."""

    @property
    def ok(self) -> bool:
        return self.code is Status.OK


@attrs.define
class MixerClientStats:
    """What the client did, counted as the proxy counts it."""

    checks: int = 0
    check_cache_hits: int = 0
    check_cache_misses: int = 0
    quota_calls: int = 0
    quota_cache_hits: int = 0
    remote_checks: int = 0
    """Check RPCs that returned an answer or failed (retries not counted)."""
    remote_prefetches: int = 0
    """Of which only a quota prefetch (the verdict came from the caches)."""
    remote_failures: int = 0
    """Check RPCs that failed after their retries."""
    retries: int = 0
    reports: int = 0
    report_requests_sent: int = 0
    report_requests_failed: int = 0
    reports_dropped: int = 0
    """Bags dropped because too many batches were waiting (the server down or stalling)."""


class _TransportError(Exception):
    """A call that got no answer from Mixer: connect failure, reset or timeout."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen
class MixerClientOptions:
    """Settings, with the proxy library's defaults (src/istio/mixerclient/options.h)."""

    fail_open: bool = True
    """What a Check that gets no answer yields: OK (True) or the transport's error. The
    library default is True; Istio 1.3's Pilot sends FAIL_CLOSE unless the mesh sets
    ``policyCheckFailOpen``."""
    max_retries: int = attrs.field(default=0, validator=_non_negative)
    base_retry_wait: float = 0.08
    max_retry_wait: float = 1.0
    timeout: float = attrs.field(default=5.0, validator=_positive)
    """Seconds one Check or Report attempt may take before it counts as a transport failure."""
    check_cache_entries: int = attrs.field(default=10_000, validator=_non_negative)
    """0 turns the Check cache off (``disable_check_cache``)."""
    quota_cache_entries: int = attrs.field(default=10_000, validator=_non_negative)
    quota_cache_idle: float = attrs.field(default=600.0, validator=_positive)
    report_batch_entries: int = attrs.field(default=100, validator=_non_negative)
    """0 means the default, as in the proxy's TransportConfig."""
    report_batch_time: float = attrs.field(default=1.0, validator=_positive)
    max_queued_reports: int = attrs.field(default=16, validator=_at_least_one)
    """Report requests waiting to be sent; beyond it the oldest is dropped (and counted)."""

    def __attrs_post_init__(self) -> None:
        check_backoff(self.base_retry_wait, self.max_retry_wait, 0.0)


def retry_delay(attempt: int, base: float, maximum: float) -> float:
    """The proxy's wait before retry ``attempt`` (0 first): uniform in
    ``[base, min(maximum, base * 2**attempt)]``."""
    ceiling = backoff_delay(attempt, base, maximum, jitter=0.0)
    if ceiling <= base:
        return ceiling
    return backoff_delay(attempt, base, maximum, jitter=1.0 - base / ceiling)


def _check_quotas(quotas: Mapping[str, int]) -> None:
    for name, amount in quotas.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"a quota name must be a non-empty str, got {name!r}")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= INT64_MAX:
            raise ValueError(
                f"quota {name!r}: the amount must be an int in 1..2**63-1, got {amount!r}"
            )


class MixerClient:
    """A client of ``istio.mixer.v1.Mixer``, with the caches and batching of Istio 1.3's proxy.

    Connect with ``host`` and ``port`` or pass a grpclib ``channel`` (left open by
    :meth:`close`). Keyword settings are :class:`MixerClientOptions`'s. Use it inside a running
    event loop, ideally as ``async with``; :meth:`close` sends what is batched.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        channel: Channel | None = None,
        settings: GrpcSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        **options: object,
    ) -> None:
        if channel is None and (host is None or port is None):
            raise TypeError("MixerClient needs host and port, or a channel")
        self.options = MixerClientOptions(**options)  # type: ignore[arg-type]
        self._injected = channel
        self._channel = channel or create_channel(host, port, settings=settings)
        self._stub = MixerStub(self._channel)
        self._clock = clock
        self._check_cache = CheckCache(self.options.check_cache_entries)
        self._quota_cache = QuotaCache(
            self.options.quota_cache_entries, self.options.quota_cache_idle
        )
        self._batch = ReportBatch(
            self.options.report_batch_entries or 100, self.options.report_batch_time
        )
        self._global_word_count = len(GLOBAL_DICTIONARY)
        self._dedup_base = str(uuid.uuid4())
        self._dedup_counter = itertools.count()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._reports: collections.deque[ReportRequest] = collections.deque()
        self._report_sender: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._closed = False
        self.stats = MixerClientStats()

    @property
    def global_word_count(self) -> int:
        """The global words this client sends as indexes (222, or 111 after Mixer refused)."""
        return self._global_word_count

    # --- Check ------------------------------------------------------------------------------

    async def check(
        self, attributes: Mapping[str, object], *, quotas: Mapping[str, int] | None = None
    ) -> CheckResult:
        """Check ``attributes`` (and charge ``quotas``, name -> amount), from the caches when
        they can answer.

        Raises :class:`~istio_sdk.mixer.AttributesError` for a bag that cannot be sent and
        ``ValueError`` for a quota amount outside 1..2**63-1; every network outcome is a
        :class:`CheckResult` (the fail policy decides).
        """
        if self._closed:
            raise RuntimeError("the MixerClient is closed")
        if quotas:
            _check_quotas(quotas)
        stats = self.stats
        stats.checks += 1
        now = self._clock()
        cache = self._check_cache
        cached = cache.lookup(attributes, now) if cache.max_entries else None
        if cached is not None:
            stats.check_cache_hits += 1
            if not cached.ok or not quotas:
                return CheckResult(cached.code, cached.message, cached.route_directive, True)
        else:
            stats.check_cache_misses += 1
        tickets: list[QuotaTicket] = []
        if quotas:
            stats.quota_calls += 1
            use_cache = cached is not None
            for name, amount in quotas.items():
                tickets.append(
                    self._quota_cache.check(attributes, name, amount, now, use_cache=use_cache)
                )
            # the pools answer only when every ticket is decided; with the quota cache off a
            # ticket is pending and the call waits for Mixer (the proxy's "not a cache hit")
            if cached is not None and all(t.state is not QuotaState.PENDING for t in tickets):
                stats.quota_cache_hits += 1
                rejected = [t.name for t in tickets if t.state is QuotaState.REJECTED]
                if any(t.request is not None for t in tickets):
                    stats.remote_prefetches += 1
                    self._spawn(self._prefetch(attributes, cached, tickets))
                if rejected:
                    return CheckResult(
                        Status.RESOURCE_EXHAUSTED,
                        "Quota is exhausted for: " + ",".join(rejected),
                        cached.route_directive,
                        True,
                        True,
                    )
                return CheckResult(cached.code, cached.message, cached.route_directive, True, True)
        return await self._remote(attributes, cached, tickets)

    async def _remote(
        self,
        attributes: Mapping[str, object],
        cached: Verdict | None,
        tickets: list[QuotaTicket],
    ) -> CheckResult:
        request = CheckRequest(
            attributes=encode_attributes(attributes, global_word_count=self._global_word_count),
            global_word_count=self._global_word_count,
            deduplication_id=f"{self._dedup_base}{next(self._dedup_counter)}",
            quotas={t.name: t.request for t in tickets if t.request is not None},
        )
        self.stats.remote_checks += 1
        fail_open = self.options.fail_open
        try:
            response = await self._call_check(request)
        except _TransportError as exc:
            failure = Verdict(Status.UNAVAILABLE, exc.message)
            return self._failed(attributes, tickets, failure)
        except GRPCError as exc:
            if (
                exc.status is Status.INVALID_ARGUMENT
                and (exc.message or "").startswith(_INVALID_DICTIONARY_PREFIX)
                and self._global_word_count > GLOBAL_DICTIONARY_BASE_SIZE
            ):
                self._global_word_count = GLOBAL_DICTIONARY_BASE_SIZE
            failure = Verdict(exc.status, exc.message or "")
            return self._failed(attributes, tickets, failure)
        now = self._clock()
        policy = cached
        if policy is None:
            policy = verdict_of(response.precondition, fail_open=fail_open)
            if response.precondition is not None:
                self._check_cache.store(attributes, response.precondition, policy, now)
        quota_rejected: list[str] = []
        for ticket in tickets:
            result = response.quotas.get(ticket.name)
            if not self._quota_cache.answer(ticket, attributes, result, now):
                quota_rejected.append(ticket.name)
        if not policy.ok or not tickets:
            return CheckResult(policy.code, policy.message, policy.route_directive)
        if quota_rejected:
            return CheckResult(
                Status.RESOURCE_EXHAUSTED,
                "Quota is exhausted for: " + ",".join(quota_rejected),
                policy.route_directive,
            )
        return CheckResult(policy.code, policy.message, policy.route_directive)

    async def _prefetch(
        self, attributes: Mapping[str, object], cached: Verdict, tickets: list[QuotaTicket]
    ) -> None:
        try:
            await self._remote(attributes, cached, tickets)
        except AttributesError as exc:  # the verdict was given; only the pools go without
            _log.warning("Mixer quota prefetch not sent: %s", exc)

    def _failed(
        self, attributes: Mapping[str, object], tickets: list[QuotaTicket], failure: Verdict
    ) -> CheckResult:
        # no answer: the pools count it as a full grant, the fail policy decides the verdict
        self.stats.remote_failures += 1
        now = self._clock()
        for ticket in tickets:
            self._quota_cache.answer(ticket, attributes, None, now)
        if self.options.fail_open:
            return CheckResult(Status.OK)
        return CheckResult(failure.code, failure.message)

    async def _call_check(self, request: CheckRequest) -> CheckResponse:
        options = self.options
        attempt = 0
        while True:
            try:
                return await self._attempt_check(request)
            except _TransportError:
                if attempt >= options.max_retries or self._closed:
                    raise
            await asyncio.sleep(
                retry_delay(attempt, options.base_retry_wait, options.max_retry_wait)
            )
            attempt += 1
            self.stats.retries += 1

    async def _attempt_check(self, request: CheckRequest) -> CheckResponse:
        try:
            return await self._stub.check(request, timeout=self.options.timeout)
        except TimeoutError:
            raise _TransportError(TIMEOUT_MESSAGE) from None
        except (OSError, StreamTerminatedError):
            raise _TransportError(SEND_ERROR_MESSAGE) from None
        except DecodeError as exc:  # an answer came, but not a CheckResponse: not retried
            raise GRPCError(Status.INTERNAL, f"undecodable Mixer response: {exc}") from None
        except GRPCError as exc:
            if exc.status is Status.UNAVAILABLE:
                raise _TransportError(exc.message or SEND_ERROR_MESSAGE) from None
            if exc.status is Status.DEADLINE_EXCEEDED:
                raise _TransportError(TIMEOUT_MESSAGE) from None
            raise

    def _spawn(self, coroutine: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- Report -----------------------------------------------------------------------------

    def report(self, attributes: Mapping[str, object]) -> None:
        """Queue one bag for the next Report batch (sent at 100 bags or 1 s after the first).

        Raises :class:`~istio_sdk.mixer.AttributesError` for a bag with a bad value. Call it
        from the event loop the client runs on.
        """
        if self._closed:
            raise RuntimeError("the MixerClient is closed")
        loop = asyncio.get_running_loop()
        self.stats.reports += 1
        full = self._batch.add(attributes, self._clock())
        if full:
            self._take_batch()
        elif self._flush_timer is None:
            self._flush_timer = loop.call_later(self._batch.max_time, self._take_batch)

    def _take_batch(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        request = self._batch.take(self._global_word_count)
        if request is None:
            return
        reports = self._reports
        if len(reports) >= self.options.max_queued_reports:
            dropped = reports.popleft()
            self.stats.reports_dropped += len(dropped.attributes)
        reports.append(request)
        if self._report_sender is None or self._report_sender.done():
            self._report_sender = asyncio.get_running_loop().create_task(self._send_reports())

    async def _send_reports(self) -> None:
        # one Report in flight at a time; batches wait (bounded) behind a slow server
        while self._reports:
            request = self._reports.popleft()
            try:
                await self._stub.report(request, timeout=self.options.timeout)
            except (GRPCError, TimeoutError, OSError, StreamTerminatedError, DecodeError) as exc:
                self.stats.report_requests_failed += 1
                if self.stats.report_requests_failed % _REPORT_FAILURE_LOG_EVERY == 1:
                    _log.warning(
                        "Mixer Report of %d bags failed: %s: %s",
                        len(request.attributes),
                        type(exc).__name__,
                        exc,
                    )
            else:
                self.stats.report_requests_sent += 1

    async def flush(self) -> None:
        """Send the current batch now; wait until every queued Report was tried and every
        background quota prefetch was answered."""
        self._take_batch()
        waiting = [*self._background, self._report_sender]
        for task in waiting:
            if task is not None and not task.done():
                await asyncio.shield(task)

    # --- lifecycle --------------------------------------------------------------------------

    async def close(self) -> None:
        """Send what is batched (waiting at most the call ``timeout``), stop background
        prefetches, close the channel (unless it was injected)."""
        if self._closed:
            return
        try:
            await asyncio.wait_for(self.flush(), self.options.timeout)
        except TimeoutError:
            _log.warning("Mixer Reports still unsent at close: dropped")
        self._closed = True
        for task in [*self._background, self._report_sender]:
            if task is not None and not task.done():
                task.cancel()
        pending = [t for t in [*self._background, self._report_sender] if t is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._injected is None:
            self._channel.close()

    async def __aenter__(self) -> MixerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
