"""The adapter interface: results, errors, the handler base class and bounded dispatch.

Istio's Mixer calls a *handler* (an adapter configured by a ``handler`` resource) once per
matching instance: check templates get a :class:`CheckResult` (a status plus how long and how
many times the proxy may reuse it), quota templates a :class:`QuotaResult` (the granted amount
and how long it stays valid), report templates nothing. These are the shapes of Istio 1.3's
``mixer/pkg/adapter`` ``CheckResult``, ``QuotaArgs`` and ``QuotaResult``.

A handler that raises or does not answer must not take the server down: :func:`dispatch_check`,
:func:`dispatch_quota` and :func:`dispatch_report` bound every call by a timeout and turn
failures into Mixer's statuses (``INTERNAL`` with ``handler: reason`` for an adapter error, as
Mixer's ``status.WithError``; ``DEADLINE_EXCEEDED`` for an adapter that hangs).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from typing import ClassVar

import attrs
from grpclib.const import Status as Code

from istio_sdk.mixer.errors import MixerError
from istio_sdk.mixer.templates import CheckInstance, Quota, ReportInstance

DEFAULT_ADAPTER_TIMEOUT = 5.0
"""Seconds a dispatch waits for a handler (Mixer 1.3 has no per-adapter bound; the proxy's
own call deadline was the only one)."""

_ZERO = datetime.timedelta(0)


@attrs.frozen
class RpcStatus:
    """A ``google.rpc.Status``: a gRPC code and a message."""

    code: Code = Code.OK
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.OK

    def __str__(self) -> str:
        return self.code.name if not self.message else f"{self.code.name}: {self.message}"


OK = RpcStatus()


@attrs.frozen
class CheckResult:
    """What a check handler decides: the status, and how long / how often it may be reused."""

    status: RpcStatus = OK
    valid_duration: datetime.timedelta = _ZERO
    valid_use_count: int = 0

    def is_default(self) -> bool:
        """True for the empty result (OK, 0, 0): Mixer then answers with its own defaults."""
        return self.status.ok and self.valid_duration == _ZERO and self.valid_use_count == 0


@attrs.frozen
class QuotaArgs:
    """One quota request: the amount (negative frees, where the adapter supports it), whether a
    partial grant is acceptable, and the id that makes a retried request idempotent."""

    amount: int
    best_effort: bool = False
    deduplication_id: str = ""


@attrs.frozen
class QuotaResult:
    """What a quota handler grants, and for how long the grant is valid."""

    granted_amount: int = 0
    valid_duration: datetime.timedelta = _ZERO
    status: RpcStatus = OK


MAX_MESSAGE = 1000
"""Messages quote user data (params, values); beyond this many characters they are cut."""


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, marked with ``...`` when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AdapterError(MixerError):
    """Base of every error an adapter raises."""


class AdapterParamsError(AdapterError, ValueError):
    """A handler's ``params`` are not what the adapter's config proto allows."""

    def __init__(self, adapter: str, path: str, problem: str) -> None:
        self.adapter = adapter
        self.path = path
        self.problem = problem
        where = f"{shorten(path, 200)}: " if path else ""
        super().__init__(f"{adapter} params: {where}{shorten(problem)}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.adapter, self.path, self.problem))


class UnknownAdapterError(AdapterError, LookupError):
    """No adapter of that name."""


class UnsupportedTemplateError(AdapterError):
    """The handler's adapter does not implement the instance's template."""


class HandlerBuildError(AdapterError):
    """The handler could not be built (e.g. its backend cannot be reached)."""


class Handler:
    """A configured adapter. Subclasses override the ``handle_*`` methods of their templates."""

    adapter: ClassVar[str] = ""
    templates: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str) -> None:
        self.name = name  # the handler's fully qualified name, e.g. denyall.handler.istio-system

    def _unsupported(self, template: str) -> UnsupportedTemplateError:
        return UnsupportedTemplateError(
            f"adapter {self.adapter} does not handle template {template} "
            f"(it handles {', '.join(sorted(self.templates))})"
        )

    answers_checks_now: ClassVar[bool] = False
    """True when :meth:`check_now` answers a check from memory, without waiting: the server
    then calls it directly (no task, no timer: nothing could time out)."""

    def check_now(self, instance: CheckInstance) -> CheckResult:
        """The synchronous answer of adapters that set :attr:`answers_checks_now`."""
        raise self._unsupported(instance.template)

    async def handle_check(self, instance: CheckInstance) -> CheckResult:
        raise self._unsupported(instance.template)

    async def handle_quota(self, instance: Quota, args: QuotaArgs) -> QuotaResult:
        raise self._unsupported(instance.template)

    async def handle_report(self, instances: Sequence[ReportInstance]) -> None:
        templates = sorted({instance.template for instance in instances}) or ["report"]
        raise self._unsupported(", ".join(templates))

    async def close(self) -> None:
        """Release what the handler holds (tasks, connections). Safe to call twice."""


def _failure(handler: Handler, exc: BaseException, timeout: float) -> RpcStatus:
    if isinstance(exc, TimeoutError):
        return RpcStatus(
            Code.DEADLINE_EXCEEDED, f"{handler.name}: adapter did not answer within {timeout:g}s"
        )
    reason = str(exc) or type(exc).__name__
    return RpcStatus(Code.INTERNAL, shorten(f"{handler.name}: {reason}"))


async def dispatch_check(
    handler: Handler, instance: CheckInstance, *, adapter_timeout: float = DEFAULT_ADAPTER_TIMEOUT
) -> CheckResult:
    """``handler.handle_check(instance)``, bounded; a failure becomes a non-OK status."""
    try:
        async with asyncio.timeout(adapter_timeout):
            return await handler.handle_check(instance)
    except Exception as exc:  # any adapter bug becomes a status, never a dead server
        return CheckResult(status=_failure(handler, exc, adapter_timeout))


def dispatch_check_now(handler: Handler, instance: CheckInstance) -> CheckResult:
    """``handler.check_now(instance)`` for a handler that answers from memory; a failure
    becomes a non-OK status, as in :func:`dispatch_check`."""
    try:
        return handler.check_now(instance)
    except Exception as exc:  # any adapter bug becomes a status, never a dead server
        return CheckResult(status=_failure(handler, exc, 0.0))


async def dispatch_quota(
    handler: Handler,
    instance: Quota,
    args: QuotaArgs,
    *,
    adapter_timeout: float = DEFAULT_ADAPTER_TIMEOUT,
) -> QuotaResult:
    """``handler.handle_quota(instance, args)``, bounded; a failure grants nothing."""
    try:
        async with asyncio.timeout(adapter_timeout):
            return await handler.handle_quota(instance, args)
    except Exception as exc:
        return QuotaResult(status=_failure(handler, exc, adapter_timeout))


async def dispatch_report(
    handler: Handler,
    instances: Sequence[ReportInstance],
    *,
    adapter_timeout: float = DEFAULT_ADAPTER_TIMEOUT,
) -> RpcStatus:
    """``handler.handle_report(instances)``, bounded; OK, or the failure as a status."""
    try:
        async with asyncio.timeout(adapter_timeout):
            await handler.handle_report(instances)
    except Exception as exc:
        return _failure(handler, exc, adapter_timeout)
    return OK
