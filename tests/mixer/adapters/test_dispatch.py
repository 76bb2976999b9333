"""Bounded dispatch and denier: failing or hanging adapters become Mixer's statuses."""

from __future__ import annotations

import asyncio
import datetime
import queue
import threading
from collections.abc import Sequence

import pytest
from grpclib.const import Status as Code

from istio_sdk.mixer.adapters import (
    AdapterParamsError,
    CheckResult,
    Handler,
    QuotaArgs,
    UnknownAdapterError,
    build_handler,
    dispatch_check,
    dispatch_check_now,
    dispatch_quota,
    dispatch_report,
)
from istio_sdk.mixer.templates import (
    Authorization,
    CheckNothing,
    ListEntry,
    LogEntry,
    Quota,
    ReportInstance,
)


class Hanging(Handler):
    adapter = "hanging"
    templates = frozenset({"checknothing", "quota", "logentry"})

    async def handle_check(self, instance: object) -> CheckResult:  # type: ignore[override]
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def handle_quota(self, instance: Quota, args: QuotaArgs):  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()

    async def handle_report(self, instances: Sequence[ReportInstance]) -> None:
        await asyncio.Event().wait()


class Failing(Handler):
    adapter = "failing"
    templates = frozenset({"checknothing"})

    async def handle_check(self, instance: object) -> CheckResult:  # type: ignore[override]
        raise RuntimeError("backend exploded")


async def test_a_hanging_adapter_is_bounded_and_gets_deadline_exceeded() -> None:
    handler = Hanging("slow.handler.istio-system")
    # the outer bound only keeps a broken dispatch from hanging the suite
    check = await asyncio.wait_for(
        dispatch_check(handler, CheckNothing("c.instance.ns"), adapter_timeout=0.05), timeout=10
    )
    assert check.status.code is Code.DEADLINE_EXCEEDED
    assert check.status.message == "slow.handler.istio-system: adapter did not answer within 0.05s"
    quota = await dispatch_quota(
        handler, Quota("q.instance.ns"), QuotaArgs(1), adapter_timeout=0.05
    )
    assert (quota.granted_amount, quota.status.code) == (0, Code.DEADLINE_EXCEEDED)
    report = await dispatch_report(handler, [LogEntry("l.instance.ns")], adapter_timeout=0.05)
    assert report.code is Code.DEADLINE_EXCEEDED


async def test_an_adapter_error_becomes_internal_with_the_handler_name() -> None:
    result = await dispatch_check(Failing("boom.handler.ns"), CheckNothing("c.instance.ns"))
    assert result.status.code is Code.INTERNAL
    assert result.status.message == "boom.handler.ns: backend exploded"
    assert result.valid_duration == datetime.timedelta(0)


class FailingNow(Handler):
    adapter = "failingnow"
    templates = frozenset({"checknothing"})
    answers_checks_now = True

    def check_now(self, instance: object) -> CheckResult:  # type: ignore[override]
        raise RuntimeError("exploded in memory")


def test_an_adapter_answering_from_memory_that_raises_becomes_internal_too() -> None:
    result = dispatch_check_now(FailingNow("boom.handler.ns"), CheckNothing("c.instance.ns"))
    assert result.status.code is Code.INTERNAL
    assert result.status.message == "boom.handler.ns: exploded in memory"
    assert result.valid_use_count == 0  # never cached by the proxy


async def test_a_template_the_adapter_does_not_handle_is_internal() -> None:
    denier = await build_handler("denier", "deny.handler.ns")
    result = await dispatch_check(denier, Authorization("a.instance.ns"))
    assert result.status.code is Code.INTERNAL
    assert "does not handle template authorization" in result.status.message
    now = dispatch_check_now(denier, Authorization("a.instance.ns"))
    assert now.status.code is Code.INTERNAL
    assert "does not handle template authorization" in now.status.message
    report = await dispatch_report(denier, [LogEntry("l.instance.ns")])
    assert "does not handle template logentry" in report.message


async def test_denier_defaults_are_istios() -> None:
    denier = await build_handler("denier", "deny.handler.ns", {})
    for instance in (CheckNothing("c.instance.ns"), ListEntry("l.instance.ns", "x")):
        result = await dispatch_check(denier, instance)
        assert result.status.code is Code.FAILED_PRECONDITION
        assert (result.valid_duration, result.valid_use_count) == (
            datetime.timedelta(seconds=5),
            1000,
        )
    quota = await dispatch_quota(denier, Quota("q.instance.ns"), QuotaArgs(10))
    assert quota.granted_amount == 0 and quota.status.ok


async def test_denier_params() -> None:
    denier = await build_handler(
        "denier",
        "deny.handler.ns",
        {
            "status": {"code": 7, "message": "not allowed"},
            "validDuration": "1m",
            "valid_use_count": 3,
        },
    )
    result = await dispatch_check(denier, CheckNothing("c.instance.ns"))
    assert (result.status.code, result.status.message) == (Code.PERMISSION_DENIED, "not allowed")
    assert (result.valid_duration, result.valid_use_count) == (datetime.timedelta(minutes=1), 3)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": {"code": 99}}, "status.code: unknown value 99"),
        ({"status": "denied"}, "status: expected an object, got the string 'denied'"),
        ({"validUseCount": 2**31}, "validUseCount: 2147483648 is out of the int32 range"),
        ({"validUseCount": True}, "expected an integer, got a boolean"),
        ({"validDuration": "-1s"}, "must not be negative"),
        ({"denyAll": True}, "denyAll: unknown field"),
        ([1, 2], "expected an object, got a list"),
    ],
)
async def test_denier_bad_params(params: object, message: str) -> None:
    with pytest.raises(AdapterParamsError) as caught:
        await build_handler("denier", "deny.handler.ns", params)  # type: ignore[arg-type]
    assert message in str(caught.value)


async def test_unknown_adapter() -> None:
    with pytest.raises(UnknownAdapterError, match="unknown adapter 'fluentd'"):
        await build_handler("fluentd", "f.handler.ns")


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"status": value}
    return value


@pytest.mark.parametrize(
    ("adapter", "params", "message"),
    [
        ("denier", _nested(10_000), "status.status: unknown field"),
        ("denier", {"validDuration": "9" * 1_000_000 + "s"}, "invalid duration"),
        ("denier", {"validDuration": "1e308s"}, "invalid duration"),
        ("denier", {"validUseCount": 10**400}, "out of the int32 range"),
        ("denier", {"validUseCount": float("inf")}, "expected an integer"),
        (
            "memquota",
            {"quotas": [{"name": "q", "maxAmount": "9" * 1_000_000}]},
            "expected an integer",
        ),
        ("listchecker", {"entryType": "REGEX", "overrides": ["(" * 100_000]}, "overrides[0]"),
        (
            "prometheus",
            {"metrics": [{"instanceName": "a", "kind": 1, "labelNames": ["x" * 10**6 + "-"]}]},
            None,
        ),
        ("stdio", {"severityLevels": {"\x00": 99}}, "unknown value 99"),
        (
            "redisquota",
            {"quotas": [{"name": "q", "validDuration": "1s"}], "redisServerUrl": "\x00:1"},
            None,
        ),
    ],
)
async def test_hostile_params_give_a_typed_error(
    adapter: str, params: object, message: str | None
) -> None:
    from istio_sdk.mixer.adapters import AdapterError

    try:
        handler = await build_handler(adapter, "h.handler.ns", params)  # type: ignore[arg-type]
    except AdapterError as exc:
        assert message is None or message in str(exc)
        assert len(str(exc)) < 2_000  # user data is cut short in messages
    else:
        assert message is None  # accepted: then it must at least build and close cleanly
        await handler.close()


def test_many_entries_are_checked_in_linear_time() -> None:
    # 50,000 label names / quotas: duplicate checks must not be quadratic (this would hang)
    labels = [f"l{i}" for i in range(50_000)] + ["l7"]
    # the build runs in a daemon thread, so the bound holds (and fails) while it computes
    prometheus = {"metrics": [{"instanceName": "a", "kind": 1, "labelNames": labels}]}
    error = _build_error("prometheus", prometheus, timeout=30)
    assert "labelNames[50000]: label 'l7' is given twice" in str(error)
    quotas = [{"name": f"q{i}"} for i in range(50_000)] + [{"name": "q7"}]
    error = _build_error("memquota", {"quotas": quotas}, timeout=30)
    assert "quotas[50000].name: quota 'q7' is defined twice" in str(error)


def _build_error(adapter: str, params: dict[str, object], *, timeout: float) -> Exception:
    outcome: queue.Queue[Exception | None] = queue.Queue()

    def build() -> None:
        try:
            asyncio.run(build_handler(adapter, "h.handler.ns", params))
        except AdapterParamsError as exc:
            outcome.put(exc)
        else:
            outcome.put(None)

    threading.Thread(target=build, daemon=True).start()
    try:
        error = outcome.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"building {adapter} took longer than {timeout} s")
    assert isinstance(error, AdapterParamsError)
    return error
