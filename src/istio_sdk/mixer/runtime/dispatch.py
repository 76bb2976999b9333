"""Check, quota and Report over a routing snapshot, as Istio 1.3's dispatcher does them.

(mixer/pkg/runtime/dispatcher/session.go, routing/table.go.) For each request:

1. the identity namespace is ``destination.namespace``, or ``source.namespace`` when
   ``context.reporter.kind`` is ``"outbound"``; the rules that apply are the default
   namespace's followed by that namespace's (reading those attributes is recorded too);
2. a rule whose match is false, or fails to evaluate (a missing attribute), does not apply;
3. the instances of the applying rules are built from the request's attributes and handed to
   their handlers; Check's go out together, bounded by the adapter timeout.

Check's precondition is OK or the code of the first handler that said no, with every refusal's
message as ``handler:message`` joined by ``", "``; ``valid_duration`` and ``valid_use_count``
are the smallest any handler gave, and when no handler said anything (OK, 0, 0) Mixer's
defaults, 1 minute and 10000 uses. Quotas run only after an OK precondition, per requested
name, against quota instances whose short name equals it ignoring case, with the request's
deduplication id followed by the quota name; a quota no rule configures is granted in full for
1 minute. Referenced attributes are recorded per precondition and per quota (see
:mod:`.referenced`). Report instances are collected per handler over the whole batch and
handed over once. The header operations of the rules that apply are evaluated on the request's
attributes (a value that fails to evaluate, or is empty, is left out) and returned as the
precondition's route directive.

The planning steps (``plan_check``, ``plan_quota``, ``plan_report``) are synchronous and touch
no I/O, so a server can run them off its event loop; ``check`` and ``report`` call the handlers.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from istio_sdk.mixer.adapters.base import (
    DEFAULT_ADAPTER_TIMEOUT,
    OK,
    CheckResult,
    Handler,
    QuotaArgs,
    RpcStatus,
    dispatch_check,
    dispatch_check_now,
    dispatch_quota,
    dispatch_report,
)
from istio_sdk.mixer.errors import DispatchError, EvaluationError
from istio_sdk.mixer.runtime.config import CompiledHeaderOperation, CompiledRule, RoutingConfig
from istio_sdk.mixer.runtime.referenced import RecordingBag, Reference, plain_value
from istio_sdk.mixer.templates import CheckInstance, Quota, ReportInstance, Variety

__all__ = [
    "DEFAULT_VALID_DURATION",
    "DEFAULT_VALID_USE_COUNT",
    "CheckOutcome",
    "CheckPlan",
    "Dispatcher",
    "HeaderOperation",
    "QuotaOutcome",
    "QuotaPlan",
    "QuotaRequest",
    "ReportPlan",
]

DEFAULT_VALID_DURATION = datetime.timedelta(minutes=1)
"""What Mixer answers when no handler set a validity (and for quotas nobody configures)."""
DEFAULT_VALID_USE_COUNT = 10000

_References = Mapping[Reference, Any]
T = TypeVar("T")
_REMOVE = 1  # HeaderOperation.Operation.REMOVE

ANSWER_FROM_MEMORY = frozenset({"denier", "listchecker", "list", "memquota"})
"""Adapters whose checks and quotas never wait on I/O (a list fetch runs in the background):
their calls run one after the other in the request's task. Calls to any other adapter run
concurrently, each bounded by the adapter timeout. (A task per call costs more than these
calls themselves.)"""


@attrs.frozen
class QuotaRequest:
    """One quota a Check asks for (``CheckRequest.quotas``)."""

    amount: int
    best_effort: bool = False


@attrs.frozen
class QuotaOutcome:
    """A quota's answer: what was granted, for how long, and the attributes it depended on."""

    granted_amount: int
    valid_duration: datetime.timedelta
    referenced: _References = attrs.field(factory=dict, repr=False)


@attrs.frozen
class HeaderOperation:
    """A header to set, remove or append to (``operation``: 0 REPLACE, 1 REMOVE, 2 APPEND)."""

    name: str
    value: str
    operation: int


@attrs.frozen
class CheckOutcome:
    """A Check's answer (the precondition and the quotas)."""

    status: RpcStatus
    valid_duration: datetime.timedelta
    valid_use_count: int
    referenced: _References = attrs.field(factory=dict, repr=False)
    quotas: Mapping[str, QuotaOutcome] = attrs.field(factory=dict)
    request_headers: tuple[HeaderOperation, ...] = ()
    response_headers: tuple[HeaderOperation, ...] = ()


@attrs.frozen
class CheckPlan:
    """The check instances one request built, in rule order, what building them read, and the
    header operations of the rules that matched."""

    calls: tuple[tuple[Handler, CheckInstance], ...]
    referenced: _References
    request_headers: tuple[HeaderOperation, ...] = ()
    response_headers: tuple[HeaderOperation, ...] = ()


@attrs.frozen
class QuotaPlan:
    """The quota instances one requested quota name built, and what building them read."""

    calls: tuple[tuple[Handler, Quota], ...]
    referenced: _References


@attrs.frozen
class ReportPlan:
    """The report instances of a batch, per handler, in the order they were first seen."""

    calls: tuple[tuple[Handler, tuple[ReportInstance, ...]], ...]

    @property
    def instance_count(self) -> int:
        return sum(len(instances) for _, instances in self.calls)


def _headers(
    operations: Sequence[CompiledHeaderOperation], bag: Mapping[str, Any]
) -> list[HeaderOperation]:
    found = []
    for operation in operations:
        if operation.operation == _REMOVE:
            found.append(HeaderOperation(operation.name, "", operation.operation))
            continue
        for expression in operation.values:
            try:
                value = expression.evaluate(bag)
            except EvaluationError:  # Mixer logs it and leaves the value out
                continue
            text = plain_value(value)
            if text != "" and text is not None:
                found.append(HeaderOperation(operation.name, str(text), operation.operation))
    return found


def _applies(rule: CompiledRule, bag: Mapping[str, Any]) -> bool:
    if rule.match is None:
        return True
    try:
        return rule.match.evaluate(bag) is True
    except EvaluationError:  # Mixer: a match that cannot be evaluated does not match
        return False


async def _together(calls: Sequence[tuple[Handler, Coroutine[Any, Any, T]]]) -> list[T]:
    """The calls' results in order: in-memory adapters awaited in turn, the others at once."""
    if all(handler.adapter in ANSWER_FROM_MEMORY for handler, _ in calls):
        return [await call for _, call in calls]
    return list(await asyncio.gather(*(call for _, call in calls)))


class Dispatcher:
    """Routes requests through ``routing`` to ``handlers`` (handler name -> built handler).

    Actions whose handler is missing from ``handlers`` (it failed to build) are skipped.
    """

    def __init__(
        self,
        routing: RoutingConfig,
        handlers: Mapping[str, Handler],
        *,
        adapter_timeout: float = DEFAULT_ADAPTER_TIMEOUT,
    ) -> None:
        self.routing = routing
        self.handlers = handlers
        self.adapter_timeout = adapter_timeout

    # -- planning (synchronous, pure) ------------------------------------------------------
    def _rules(self, bag: Mapping[str, Any]) -> Iterator[CompiledRule]:
        if bag.get("context.reporter.kind") == "outbound":
            namespace = bag.get("source.namespace")
        else:
            namespace = bag.get("destination.namespace")
        chosen = namespace if isinstance(namespace, str) else None
        for rule in self.routing.rules_for(chosen):
            if _applies(rule, bag):
                yield rule

    def plan_check(self, bag: Mapping[str, Any]) -> CheckPlan:
        """The check instances of the rules that apply to ``bag``; :class:`DispatchError`
        when one cannot be built."""
        recording = RecordingBag(bag)
        calls: list[tuple[Handler, CheckInstance]] = []
        request_headers: list[HeaderOperation] = []
        response_headers: list[HeaderOperation] = []
        for rule in self._rules(recording):
            for action in rule.actions:
                handler = self.handlers.get(action.handler)
                for builder in action.instances:
                    if builder.variety is Variety.CHECK and handler is not None:
                        instance = builder.build(recording)
                        calls.append((handler, instance))  # type: ignore[arg-type]
            if rule.request_headers:
                request_headers += _headers(rule.request_headers, recording)
            if rule.response_headers:
                response_headers += _headers(rule.response_headers, recording)
        return CheckPlan(
            tuple(calls), recording.record, tuple(request_headers), tuple(response_headers)
        )

    def plan_quota(self, bag: Mapping[str, Any], quota: str) -> QuotaPlan:
        """The quota instances named ``quota`` (short name, any case) that apply to ``bag``."""
        wanted = quota.lower()
        recording = RecordingBag(bag)
        calls: list[tuple[Handler, Quota]] = []
        for rule in self._rules(recording):
            for action in rule.actions:
                handler = self.handlers.get(action.handler)
                for builder in action.instances:
                    if (
                        builder.variety is Variety.QUOTA
                        and handler is not None
                        and builder.short_name.lower() == wanted
                    ):
                        instance = builder.build(recording)
                        assert isinstance(instance, Quota)
                        calls.append((handler, instance))
        return QuotaPlan(tuple(calls), recording.record)

    def plan_report(self, bags: Sequence[Mapping[str, Any]]) -> ReportPlan:
        """The report instances of every bag, grouped per handler."""
        grouped: dict[str, tuple[Handler, list[ReportInstance]]] = {}
        for bag in bags:
            for rule in self._rules(bag):
                for action in rule.actions:
                    handler = self.handlers.get(action.handler)
                    if handler is None:
                        continue
                    for builder in action.instances:
                        if builder.variety is Variety.REPORT:
                            instance = builder.build(bag)
                            entry = grouped.setdefault(action.handler, (handler, []))
                            entry[1].append(instance)  # type: ignore[arg-type]
        return ReportPlan(tuple((h, tuple(found)) for h, found in grouped.values()))

    # -- calling the handlers ----------------------------------------------------------------
    async def run_check(self, plan: CheckPlan) -> CheckOutcome:
        """Call the plan's handlers together and combine their answers as Mixer does."""
        if all(handler.answers_checks_now for handler, _ in plan.calls):
            # from memory: a direct call each (a coroutine and a timer apiece cost more)
            results = [dispatch_check_now(handler, instance) for handler, instance in plan.calls]
        else:
            results = await _together(
                [
                    (
                        handler,
                        dispatch_check(handler, instance, adapter_timeout=self.adapter_timeout),
                    )
                    for handler, instance in plan.calls
                ]
            )
        code = OK.code
        messages: list[str] = []
        combined: CheckResult | None = None
        for (handler, _), result in zip(plan.calls, results, strict=True):
            status = result.status
            if not status.ok:
                if code is OK.code:
                    code = status.code
                text = status.message
                # dispatch failures already name the handler
                if not text.startswith(handler.name + ":"):
                    text = f"{handler.name}:{text}"
                messages.append(text)
            if combined is None or combined.is_default():
                combined = result
            else:
                combined = CheckResult(
                    combined.status,
                    min(combined.valid_duration, result.valid_duration),
                    min(combined.valid_use_count, result.valid_use_count),
                )
        status = RpcStatus(code, ", ".join(messages)) if messages else OK
        duration = combined.valid_duration if combined is not None else datetime.timedelta(0)
        uses = combined.valid_use_count if combined is not None else 0
        if status.ok and duration == datetime.timedelta(0) and uses == 0:
            duration, uses = DEFAULT_VALID_DURATION, DEFAULT_VALID_USE_COUNT
        return CheckOutcome(
            status,
            duration,
            uses,
            plan.referenced,
            request_headers=plan.request_headers,
            response_headers=plan.response_headers,
        )

    async def run_quota(
        self, plan: QuotaPlan, request: QuotaRequest, deduplication_id: str
    ) -> QuotaOutcome:
        """Ask the plan's handlers for ``request``; the first answer is the quota's."""
        if not plan.calls:
            return QuotaOutcome(request.amount, DEFAULT_VALID_DURATION, plan.referenced)
        args = QuotaArgs(request.amount, request.best_effort, deduplication_id)
        results = await _together(
            [
                (
                    handler,
                    dispatch_quota(handler, instance, args, adapter_timeout=self.adapter_timeout),
                )
                for handler, instance in plan.calls
            ]
        )
        first = results[0]
        return QuotaOutcome(first.granted_amount, first.valid_duration, plan.referenced)

    async def check(
        self,
        bag: Mapping[str, Any],
        quotas: Mapping[str, QuotaRequest] | None = None,
        deduplication_id: str = "",
    ) -> CheckOutcome:
        """Plan and run a whole Check (precondition, then quotas when it is OK)."""
        outcome = await self.run_check(self.plan_check(bag))
        if not outcome.status.ok or not quotas:
            return outcome
        plans = self.plan_quotas(bag, list(quotas))
        return await self.run_quotas(outcome, plans, quotas, deduplication_id)

    def plan_quotas(self, bag: Mapping[str, Any], names: Sequence[str]) -> dict[str, QuotaPlan]:
        """:meth:`plan_quota` for each name."""
        return {name: self.plan_quota(bag, name) for name in names}

    async def run_quotas(
        self,
        outcome: CheckOutcome,
        plans: Mapping[str, QuotaPlan],
        quotas: Mapping[str, QuotaRequest],
        deduplication_id: str,
    ) -> CheckOutcome:
        """``outcome`` with the answers to ``quotas`` (each named quota in turn)."""
        answers: dict[str, QuotaOutcome] = {}
        for name, request in quotas.items():
            answers[name] = await self.run_quota(plans[name], request, deduplication_id + name)
        return attrs.evolve(outcome, quotas=answers)

    async def run_report(self, plan: ReportPlan) -> None:
        """Hand each handler its instances; :class:`DispatchError` naming every failure."""
        statuses = await asyncio.gather(
            *(
                dispatch_report(handler, instances, adapter_timeout=self.adapter_timeout)
                for handler, instances in plan.calls
            )
        )
        failed = [str(status) for status in statuses if not status.ok]
        if failed:
            raise DispatchError("; ".join(failed))

    async def report(self, bags: Sequence[Mapping[str, Any]]) -> None:
        """Plan and run a Report of ``bags``."""
        await self.run_report(self.plan_report(bags))
