"""Mixer's adapters as cores a Check/Report server calls: one module per adapter.

:func:`build_handler` turns a ``handler`` resource (adapter name, handler name, ``params``)
into a :class:`~istio_sdk.mixer.adapters.base.Handler`; the ``dispatch_*`` functions call it
with a time bound and turn failures into Mixer's statuses.

| adapter | templates | module |
| --- | --- | --- |
| ``denier`` | checknothing, listentry, quota | :mod:`.denier` |
| ``listchecker`` (``list``) | listentry | :mod:`.listchecker` |
| ``memquota`` | quota | :mod:`.memquota` |
| ``redisquota`` | quota | :mod:`.redisquota` |
| ``prometheus`` | metric | :mod:`.prometheus` |
| ``stdio`` | logentry, metric | :mod:`.stdio` |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from istio_sdk.mixer.adapters.base import (
    DEFAULT_ADAPTER_TIMEOUT,
    OK,
    AdapterError,
    AdapterParamsError,
    CheckResult,
    Handler,
    HandlerBuildError,
    QuotaArgs,
    QuotaResult,
    RpcStatus,
    UnknownAdapterError,
    UnsupportedTemplateError,
    dispatch_check,
    dispatch_check_now,
    dispatch_quota,
    dispatch_report,
)
from istio_sdk.mixer.adapters.denier import DenierHandler
from istio_sdk.mixer.adapters.listchecker import ListHandler
from istio_sdk.mixer.adapters.memquota import MemQuotaHandler
from istio_sdk.mixer.adapters.prometheus import PrometheusHandler
from istio_sdk.mixer.adapters.redisquota import RedisQuotaHandler
from istio_sdk.mixer.adapters.stdio import StdioHandler

ADAPTERS: Mapping[str, type[Handler]] = {
    "denier": DenierHandler,
    "listchecker": ListHandler,
    "list": ListHandler,
    "memquota": MemQuotaHandler,
    "redisquota": RedisQuotaHandler,
    "prometheus": PrometheusHandler,
    "stdio": StdioHandler,
}
"""Adapter name (a handler's ``compiledAdapter``, or a legacy adapter kind) -> handler class."""


async def build_handler(
    adapter: str, name: str, params: Mapping[str, Any] | None = None, **options: Any
) -> Handler:
    """Build the handler ``name`` of ``adapter`` from its ``params``.

    ``options`` go to the adapter's ``create`` (e.g. ``clock_ns`` for the quotas, ``http`` for
    listchecker, ``stream`` for stdio). Raises :class:`AdapterParamsError` for bad params,
    :class:`HandlerBuildError` when a backend cannot be reached, :class:`UnknownAdapterError`.
    """
    cls = ADAPTERS.get(adapter)
    if cls is None:
        known = ", ".join(sorted(ADAPTERS))
        raise UnknownAdapterError(f"unknown adapter {adapter!r} (known: {known})")
    create = getattr(cls, "create")  # noqa: B009  (each adapter's own signature)
    handler: Handler = await create(name, params, **options)
    return handler


__all__ = [
    "ADAPTERS",
    "DEFAULT_ADAPTER_TIMEOUT",
    "OK",
    "AdapterError",
    "CheckResult",
    "DenierHandler",
    "Handler",
    "HandlerBuildError",
    "ListHandler",
    "MemQuotaHandler",
    "AdapterParamsError",
    "PrometheusHandler",
    "QuotaArgs",
    "QuotaResult",
    "RedisQuotaHandler",
    "RpcStatus",
    "StdioHandler",
    "UnknownAdapterError",
    "UnsupportedTemplateError",
    "build_handler",
    "dispatch_check",
    "dispatch_check_now",
    "dispatch_quota",
    "dispatch_report",
]
