"""A small ``istio.mixer.v1.Mixer`` for client tests: records what arrives, answers as told."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError

from istio_sdk.api.google.rpc import Status as RpcStatus
from istio_sdk.api.istio.mixer.v1 import (
    CheckRequest,
    CheckResponse,
    CheckResponsePreconditionResult,
    CheckResponseQuotaResult,
    MixerBase,
    ReferencedAttributes,
    ReferencedAttributesAttributeMatch,
    ReferencedAttributesCondition,
    ReportRequest,
    ReportResponse,
)
from istio_sdk.mixer import GLOBAL_WORD_INDEX


def referenced(
    exact: Sequence[str | tuple[str, str]] = (),
    absence: Sequence[str | tuple[str, str]] = (),
    regex: Sequence[str] = (),
) -> ReferencedAttributes:
    """ReferencedAttributes as Mixer encodes them: global words by index, others as own words."""
    words: list[str] = []

    def index(word: str) -> int:
        if word in GLOBAL_WORD_INDEX:
            return GLOBAL_WORD_INDEX[word]
        if word not in words:
            words.append(word)
        return -words.index(word) - 1

    matches = []
    for condition, names in (
        (ReferencedAttributesCondition.EXACT, exact),
        (ReferencedAttributesCondition.ABSENCE, absence),
        (ReferencedAttributesCondition.REGEX, regex),
    ):
        for item in names:
            name, key = (item, None) if isinstance(item, str) else item
            match = ReferencedAttributesAttributeMatch(name=index(name), condition=condition)
            if key is not None:
                match.map_key = index(key)
            matches.append(match)
    return ReferencedAttributes(words=words, attribute_matches=matches)


@attrs.define(slots=False)
class FakeMixer(MixerBase):
    """Records every request; answers Check with the configured precondition and quotas."""

    checks: list[CheckRequest] = attrs.Factory(list)
    reports: list[ReportRequest] = attrs.Factory(list)
    code: int = 0
    message: str = ""
    referenced: ReferencedAttributes | None = attrs.Factory(ReferencedAttributes)
    valid_duration: datetime.timedelta | None = datetime.timedelta(minutes=1)
    valid_use_count: int = 10_000
    granted: Callable[[str, int, bool], int] | None = None
    """(quota name, amount, best_effort) -> granted amount; None grants what is asked."""
    quota_referenced: ReferencedAttributes | None = attrs.Factory(ReferencedAttributes)
    quota_valid_duration: datetime.timedelta | None = datetime.timedelta(minutes=1)
    fail_with: list[GRPCError] = attrs.Factory(list)
    """Errors the next Checks raise, first one first."""
    stall: asyncio.Event | None = None
    """While set to an unset event, every call waits for it."""
    arrived: asyncio.Condition = attrs.Factory(asyncio.Condition)

    async def _arrive(self) -> None:
        async with self.arrived:
            self.arrived.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait (bounded) until ``predicate()`` holds after an arrival."""
        async with asyncio.timeout(within):
            async with self.arrived:
                await self.arrived.wait_for(predicate)

    async def check(self, message: CheckRequest) -> CheckResponse:
        self.checks.append(message)
        await self._arrive()
        if self.stall is not None:
            await self.stall.wait()
        if self.fail_with:
            raise self.fail_with.pop(0)
        quotas = {}
        for name, params in message.quotas.items():
            granted = (
                params.amount
                if self.granted is None
                else self.granted(name, params.amount, params.best_effort)
            )
            quotas[name] = CheckResponseQuotaResult(
                valid_duration=self.quota_valid_duration,
                granted_amount=granted,
                referenced_attributes=self.quota_referenced,
            )
        return CheckResponse(
            precondition=CheckResponsePreconditionResult(
                status=RpcStatus(code=self.code, message=self.message),
                valid_duration=self.valid_duration,
                valid_use_count=self.valid_use_count,
                referenced_attributes=self.referenced,
            ),
            quotas=quotas,
        )

    async def report(self, message: ReportRequest) -> ReportResponse:
        self.reports.append(message)
        await self._arrive()
        if self.stall is not None:
            await self.stall.wait()
        return ReportResponse()


@attrs.define
class RunningMixer:
    service: FakeMixer
    port: int


def unavailable(message: str = "no healthy upstream") -> GRPCError:
    return GRPCError(Status.UNAVAILABLE, message)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RawCodec:
    """A grpclib codec that sends bytes as they are (for a peer that answers garbage)."""

    __content_subtype__ = "proto"

    def encode(self, message: object, message_type: object) -> bytes:
        assert isinstance(message, bytes)
        return message

    def decode(self, data: bytes, message_type: object) -> bytes:
        return data


class GarbageMixer:
    """Answers every Check and Report with the bytes it holds."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.calls = 0

    async def _reply(self, stream: Any) -> None:
        await stream.recv_message()
        self.calls += 1
        await stream.send_message(self.answer)

    def __mapping__(self) -> dict[str, Handler]:
        return {
            f"/istio.mixer.v1.Mixer/{name}": Handler(
                self._reply, Cardinality.UNARY_UNARY, bytes, bytes
            )
            for name in ("Check", "Report")
        }
