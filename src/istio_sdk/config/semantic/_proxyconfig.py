"""ProxyConfig: its selector and a non-negative concurrency."""

from __future__ import annotations

from typing import Any

from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import Report, has, number, obj


def check_proxy_config(report: Report, spec: dict[str, Any]) -> None:
    p.workload_selector(report, "spec.selector", obj(spec, "selector"))
    if has(spec, "concurrency") and number(spec, "concurrency") < 0:
        report.error("spec.concurrency", "concurrency must be greater than or equal to 0")
