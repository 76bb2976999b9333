"""EnvoyFilter: the warning every one gets, the selector, and each patch's shape.

Istio also decodes each patch value into the Envoy type its ``applyTo`` names and warns about
deprecated names and frozen v2 types; that part is not reproduced here.
"""

from __future__ import annotations

from typing import Any

from istio_sdk.config import _go as go
from istio_sdk.config.semantic._report import Report, has, items, obj, text
from istio_sdk.config.semantic._serviceentry import alpha_selector

_LISTENER_CLASS = ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER")
_ROUTE_CLASS = ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")
_HCM = ("envoy.filters.network.http_connection_manager", "envoy.http_connection_manager")
# Old filter names Envoy still resolves; Istio warns and names the current one.
_DEPRECATED_NAMES = {
    "envoy.http_connection_manager": "envoy.filters.network.http_connection_manager",
    "envoy.router": "envoy.filters.http.router",
    "envoy.cors": "envoy.filters.http.cors",
    "envoy.fault": "envoy.filters.http.fault",
    "envoy.lua": "envoy.filters.http.lua",
    "envoy.ext_authz": "envoy.filters.http.ext_authz",
    "envoy.rate_limit": "envoy.filters.http.ratelimit",
    "envoy.tcp_proxy": "envoy.filters.network.tcp_proxy",
    "envoy.listener.tls_inspector": "envoy.filters.listener.tls_inspector",
    "envoy.listener.http_inspector": "envoy.filters.listener.http_inspector",
    "envoy.listener.original_dst": "envoy.filters.listener.original_dst",
}
_MAX_PROXY_VERSION = 1024


def check_envoy_filter(report: Report, spec: dict[str, Any]) -> None:
    report.warn(
        "spec",
        "EnvoyFilter exposes internal implementation details that may change at any time. Prefer "
        "other APIs if possible, and exercise extreme caution, especially around upgrades.",
    )
    if not alpha_selector(
        report,
        "spec.workloadSelector",
        obj(spec, "workloadSelector"),
        "Envoy filter: {}, will be applied to all services in namespace",
    ):
        return
    for i, patch in enumerate(items(spec, "configPatches")):
        where = f"spec.configPatches[{i}]"
        if not isinstance(patch, dict):
            report.error(where, "Envoy filter: null config patch")
            continue
        match = obj(patch, "match")
        if text(match, "context") == "WAYPOINT":
            continue
        apply_to = text(patch, "applyTo") or "INVALID"
        if apply_to == "INVALID":
            report.error(f"{where}.applyTo", "Envoy filter: missing applyTo")
            continue
        body = obj(patch, "patch")
        if body is None:
            report.error(f"{where}.patch", "Envoy filter: missing patch")
            continue
        operation = text(body, "operation") or "INVALID"
        if operation == "INVALID":
            report.error(f"{where}.patch.operation", "Envoy filter: missing patch operation")
            continue
        if operation != "REMOVE" and not has(body, "value"):
            report.error(
                f"{where}.patch.value", "Envoy filter: missing patch value for non-remove operation"
            )
            continue
        version = text(obj(match, "proxy"), "proxyVersion")
        if version:
            here = f"{where}.match.proxy.proxyVersion"
            if len(version) > _MAX_PROXY_VERSION:
                report.warn(
                    here,
                    f"Envoy filter: proxyVersion match exceeds {_MAX_PROXY_VERSION} characters and "
                    "will be ignored",
                )
            else:
                try:
                    go.compile_regex(version)
                except go.RegexError as exc:
                    report.error(here, f"Envoy filter: invalid regex for proxy version, [{exc}]")
                    continue
        if match is None or not any(
            has(match, f) for f in ("listener", "routeConfiguration", "cluster")
        ):
            continue
        if apply_to in _LISTENER_CLASS:
            _listener_match(report, where, apply_to, match)
        elif apply_to in _ROUTE_CLASS and obj(match, "routeConfiguration") is None:
            report.error(
                f"{where}.match",
                "Envoy filter: applyTo for http route class objects cannot have non route "
                "configuration match",
            )
        elif apply_to == "CLUSTER" and obj(match, "cluster") is None:
            report.error(
                f"{where}.match",
                "Envoy filter: applyTo for cluster class objects cannot have non cluster match",
            )


def _listener_match(report: Report, where: str, apply_to: str, match: dict[str, Any]) -> None:
    listener = obj(match, "listener")
    if listener is None:
        report.error(
            f"{where}.match",
            "Envoy filter: applyTo for listener class objects cannot have non listener match",
        )
        return
    chain_filter = obj(obj(listener, "filterChain"), "filter")
    if chain_filter is None:
        return
    here = f"{where}.match.listener.filterChain.filter"
    if apply_to in ("LISTENER", "FILTER_CHAIN"):
        report.warn(here, f"Envoy filter: filter match has no effect when used with {apply_to}")
    name = text(chain_filter, "name")
    if not name:
        report.error(f"{here}.name", "Envoy filter: filter match has no name to match on")
        return
    sub = obj(chain_filter, "subFilter")
    if sub is not None:
        if apply_to != "HTTP_FILTER":
            report.error(
                f"{here}.subFilter",
                "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only",
            )
            return
        if name not in _HCM:
            report.error(
                f"{here}.subFilter",
                f"Envoy filter: subfilter match requires filter match with {_HCM[0]}",
            )
            return
        if not text(sub, "name"):
            report.error(
                f"{here}.subFilter.name", "Envoy filter: subfilter match has no name to match on"
            )
            return
    for field, value in ((f"{here}.name", name), (f"{here}.subFilter.name", text(sub, "name"))):
        if value in _DEPRECATED_NAMES:
            report.warn(
                field,
                f'using deprecated filter name "{value}"; use "{_DEPRECATED_NAMES[value]}" instead',
            )
