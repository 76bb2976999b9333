"""``denier``: answers every check with one configured status; grants no quota.

Params (``adapter.denier.config.Params``): ``status`` (a ``google.rpc.Status``: ``code``,
``message``; default FAILED_PRECONDITION), ``validDuration`` (default 5 s) and
``validUseCount`` (default 1000), Istio 1.3's defaults.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
from grpclib.const import Status as Code

from istio_sdk.mixer.adapters._params import Reader
from istio_sdk.mixer.adapters.base import (
    CheckResult,
    Handler,
    QuotaArgs,
    QuotaResult,
    RpcStatus,
)
from istio_sdk.mixer.templates import CheckInstance, Quota

_READ = Reader("denier")


_DEFAULT_STATUS = RpcStatus(Code.FAILED_PRECONDITION)


@attrs.frozen
class DenierParams:
    status: RpcStatus = _DEFAULT_STATUS
    valid_duration: datetime.timedelta = datetime.timedelta(seconds=5)
    valid_use_count: int = 1000

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> DenierParams:
        found = _READ.fields(params, "", ["status", "valid_duration", "valid_use_count"])
        result = cls()
        if "status" in found:
            path, value = found["status"]
            parts = _READ.fields(value, path, ["code", "message", "details"])
            code = Code.OK
            if "code" in parts:
                code = _READ.enum(parts["code"][0], parts["code"][1], Code)
            message = _READ.string(*parts["message"]) if "message" in parts else ""
            if "details" in parts:
                _READ.items(*parts["details"])  # accepted, as in google.rpc.Status; unused
            result = attrs.evolve(result, status=RpcStatus(code, message))
        if "valid_duration" in found:
            duration = _READ.duration(*found["valid_duration"])
            if duration < datetime.timedelta(0):
                raise _READ.error(found["valid_duration"][0], "must not be negative")
            result = attrs.evolve(result, valid_duration=duration)
        if "valid_use_count" in found:
            count = _READ.integer(*found["valid_use_count"], bits=32)
            result = attrs.evolve(result, valid_use_count=count)
        return result


class DenierHandler(Handler):
    adapter: ClassVar[str] = "denier"
    templates: ClassVar[frozenset[str]] = frozenset({"checknothing", "listentry", "quota"})

    def __init__(self, name: str, params: DenierParams) -> None:
        super().__init__(name)
        self.params = params
        self._result = CheckResult(params.status, params.valid_duration, params.valid_use_count)

    @classmethod
    async def create(cls, name: str, params: Mapping[str, Any] | None) -> DenierHandler:
        return cls(name, DenierParams.from_dict(params))

    answers_checks_now: ClassVar[bool] = True

    def check_now(self, instance: CheckInstance) -> CheckResult:
        if instance.template not in self.templates:
            raise self._unsupported(instance.template)
        return self._result

    async def handle_check(self, instance: CheckInstance) -> CheckResult:
        return self.check_now(instance)

    async def handle_quota(self, instance: Quota, args: QuotaArgs) -> QuotaResult:
        return QuotaResult()  # nothing granted
