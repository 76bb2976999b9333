"""Telemetry: selector or targets, providers, tracing, metric overrides, access log filters."""

from __future__ import annotations

from typing import Any

from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import Report, has, items, mapping, obj, real, text


def check_telemetry(report: Report, spec: dict[str, Any]) -> None:
    p.policy_targets(report, spec)
    _metrics(report, items(spec, "metrics"))
    _tracing(report, items(spec, "tracing"))
    for i, logging in enumerate(items(spec, "accessLogging")):
        where = f"spec.accessLogging[{i}]"
        log_filter = obj(logging, "filter")
        if log_filter is not None:
            _filter(report, f"{where}.filter.expression", text(log_filter, "expression"))
        _providers(report, where, logging)


def _providers(report: Report, path: str, value: Any) -> None:
    for i, provider in enumerate(items(value, "providers")):
        if not text(provider, "name"):
            report.error(f"{path}.providers[{i}].name", "providers.name may not be empty")
            return


def _filter(report: Report, path: str, expression: str) -> None:
    """Istio parses (never type-checks) an access log filter as CEL."""
    from istio_sdk.config import _cel as cel

    try:
        cel.parse(expression)
    except cel.CelError as exc:
        report.error(path, f"must be a valid CEL expression: {exc}")


def _tracing(report: Report, tracing: list[Any]) -> None:
    if len(tracing) > 1:
        report.warn("spec.tracing", "multiple tracing is not currently supported")
    for i, entry in enumerate(tracing):
        where = f"spec.tracing[{i}]"
        if not isinstance(entry, dict):
            continue
        if len(items(entry, "providers")) > 1:
            report.warn(f"{where}.providers", "multiple providers is not currently supported")
        _providers(report, where, entry)
        if has(entry, "randomSamplingPercentage"):
            value = real(entry, "randomSamplingPercentage")
            if value < 0 or value > 100:
                report.error(
                    f"{where}.randomSamplingPercentage",
                    "randomSamplingPercentage must be in range [0.0, 100.0]",
                )
        for name, tag in mapping(entry, "customTags").items():
            here = f"{where}.customTags"
            if name == "":
                report.error(here, "tag name may not be empty")
            if not isinstance(tag, dict):
                report.error(here, f"tag '{p.clip(name)}' may not have a nil value")
                continue
            if "literal" in tag and not text(obj(tag, "literal"), "value"):
                report.error(here, "literal tag value may not be empty")
            elif "header" in tag and not text(obj(tag, "header"), "name"):
                report.error(here, "header tag name may not be empty")
            elif "environment" in tag and not text(obj(tag, "environment"), "name"):
                report.error(here, "environment tag name may not be empty")


def _metrics(report: Report, metrics: list[Any]) -> None:
    for i, entry in enumerate(metrics):
        where = f"spec.metrics[{i}]"
        if not isinstance(entry, dict):
            continue
        _providers(report, where, entry)
        for j, override in enumerate(items(entry, "overrides")):
            here = f"{where}.overrides[{j}]"
            if not isinstance(override, dict):
                report.error(here, "tagOverrides may not be null")
                continue
            for name, tag in mapping(override, "tagOverrides").items():
                if name == "":
                    report.warn(f"{here}.tagOverrides", "tagOverrides.name may not be empty")
                if not isinstance(tag, dict):
                    report.error(f"{here}.tagOverrides", "tagOverrides may not be null")
                    continue
                operation = text(tag, "operation") or "UPSERT"
                if operation == "UPSERT" and not text(tag, "value"):
                    report.error(
                        f"{here}.tagOverrides",
                        "tagOverrides.value must be set when operation is UPSERT",
                    )
                elif operation == "REMOVE" and text(tag, "value"):
                    report.error(
                        f"{here}.tagOverrides",
                        "tagOverrides.value may only be set when operation is UPSERT",
                    )
            match = obj(override, "match")
            if match is not None and "customMetric" in match and not text(match, "customMetric"):
                report.error(f"{here}.match.customMetric", "customMetric may not be empty")
