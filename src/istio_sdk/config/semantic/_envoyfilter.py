"""EnvoyFilter: the warning every one gets, the selector, each patch's shape and value.

Each patch value is decoded into the Envoy type its ``applyTo`` names, as Istio does: a value
that does not decode is an error, an unknown field only a warning (Istio's lenient decode
accepts it, its strict one does not). A ``typed_config`` whose type this SDK has not generated
cannot be checked and is let through. Istio's warnings about frozen v2 types and filters
named without ``typed_config`` are not reproduced.
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
        if not _match_ok(report, where, apply_to, match):
            continue
        if has(body, "value"):
            _decode_value(report, f"{where}.patch.value", apply_to, body["value"])


def _match_ok(report: Report, where: str, apply_to: str, match: dict[str, Any] | None) -> bool:
    """Check the match against the patch's class; False where Istio stops with this patch."""
    if match is None or not any(
        has(match, f) for f in ("listener", "routeConfiguration", "cluster")
    ):
        return True
    if apply_to in _LISTENER_CLASS:
        return _listener_match(report, where, apply_to, match)
    if apply_to in _ROUTE_CLASS and obj(match, "routeConfiguration") is None:
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
    return True


def _envoy_type(apply_to: str) -> type[Any] | None:
    from istio_sdk.api.envoy.config.bootstrap import v3 as bootstrap
    from istio_sdk.api.envoy.config.cluster import v3 as cluster
    from istio_sdk.api.envoy.config.core import v3 as core
    from istio_sdk.api.envoy.config.listener import v3 as listener
    from istio_sdk.api.envoy.config.route import v3 as route
    from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm

    types: dict[str, type[Any]] = {
        "CLUSTER": cluster.Cluster,
        "LISTENER": listener.Listener,
        "ROUTE_CONFIGURATION": route.RouteConfiguration,
        "FILTER_CHAIN": listener.FilterChain,
        "HTTP_FILTER": hcm.HttpFilter,
        "NETWORK_FILTER": listener.Filter,
        "VIRTUAL_HOST": route.VirtualHost,
        "HTTP_ROUTE": route.Route,
        "EXTENSION_CONFIG": core.TypedExtensionConfig,
        "BOOTSTRAP": bootstrap.Bootstrap,
        "LISTENER_FILTER": listener.ListenerFilter,
    }
    return types.get(apply_to)


def _decode_value(report: Report, path: str, apply_to: str, value: Any) -> None:
    from istio_sdk.protojson import JsonParseError, message_from_json

    cls = _envoy_type(apply_to)
    if cls is None:
        report.error(path, f"Envoy filter: unknown object type for applyTo {apply_to}")
        return
    try:
        message_from_json(cls, value)
    except JsonParseError as exc:
        where = f"{path}.{exc.path}" if exc.path else path
        if exc.problem.startswith("unknown type URL"):
            return  # a type this SDK does not know: Istio may, so no verdict
        if exc.problem.startswith("unknown field"):
            report.warn(where, f"Envoy filter: {exc.problem}")
        else:
            report.error(where, f"Envoy filter: {exc.problem}")
    except RecursionError:
        report.error(path, "Envoy filter: patch value nested too deeply")


def _listener_match(report: Report, where: str, apply_to: str, match: dict[str, Any]) -> bool:
    listener = obj(match, "listener")
    if listener is None:
        report.error(
            f"{where}.match",
            "Envoy filter: applyTo for listener class objects cannot have non listener match",
        )
        return False
    chain_filter = obj(obj(listener, "filterChain"), "filter")
    if chain_filter is None:
        return True
    here = f"{where}.match.listener.filterChain.filter"
    if apply_to in ("LISTENER", "FILTER_CHAIN"):
        report.warn(here, f"Envoy filter: filter match has no effect when used with {apply_to}")
    name = text(chain_filter, "name")
    if not name:
        report.error(f"{here}.name", "Envoy filter: filter match has no name to match on")
        return False
    sub = obj(chain_filter, "subFilter")
    if sub is not None:
        if apply_to != "HTTP_FILTER":
            report.error(
                f"{here}.subFilter",
                "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only",
            )
            return False
        if name not in _HCM:
            report.error(
                f"{here}.subFilter",
                f"Envoy filter: subfilter match requires filter match with {_HCM[0]}",
            )
            return False
        if not text(sub, "name"):
            report.error(
                f"{here}.subFilter.name", "Envoy filter: subfilter match has no name to match on"
            )
            return False
    for field, value in ((f"{here}.name", name), (f"{here}.subFilter.name", text(sub, "name"))):
        if value in _DEPRECATED_NAMES:
            report.warn(
                field,
                f'using deprecated filter name "{value}"; use "{_DEPRECATED_NAMES[value]}" instead',
            )
    return True
