"""VirtualService: hosts, gateways, HTTP/TLS/TCP routes, and the unreachable-rule warnings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import attrs

from istio_sdk.config import _go as go
from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import (
    Report,
    has,
    items,
    join_key,
    mapping,
    number,
    obj,
    real,
    text,
)

_GRPC_STATUS = frozenset(
    [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ]
)
_CORS_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*")
)
_RETRY_ON = frozenset(
    (
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    )
)
# The codes Go's net/http.StatusText names: a retryOn entry may be one of them.
_HTTP_STATUS = frozenset(
    (
        *(100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226),
        *(300, 301, 302, 303, 304, 305, 307, 308),
        *range(400, 419),
        *(421, 422, 423, 424, 425, 426, 428, 429, 431, 451),
        *(500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511),
    )
)
KB = 1024
MB = 1024 * KB


def check_virtual_service(report: Report, spec: dict[str, Any]) -> None:
    hosts = [h for h in items(spec, "hosts") if isinstance(h, str)]
    gateways = [g for g in items(spec, "gateways") if isinstance(g, str)]
    if not hosts:
        if gateways:
            report.error(
                "spec.gateways", "delegate virtual service must have no gateways specified"
            )
        if items(spec, "tls"):
            report.error("spec.tls", "delegate virtual service must have no tls route specified")
        if items(spec, "tcp"):
            report.error("spec.tcp", "delegate virtual service must have no tcp route specified")
    applies_to_gateway = False
    if gateways:
        gateway_names(report, "spec.gateways", gateways)
        applies_to_gateway = "mesh" not in gateways
    applies_to_mesh = not applies_to_gateway
    if not applies_to_gateway:
        _jwt_claim_routes(report, spec, gateways)
    sni = any(
        items(match, "sniHosts") for route in items(spec, "tls") for match in items(route, "match")
    )
    all_valid = True
    for i, host in enumerate(hosts):
        where = f"spec.hosts[{i}]"
        if applies_to_gateway:
            problem = p.gateway_vs_domain_problem(sni, host)
        else:
            problem = p.wildcard_domain_problem(host)
        if problem:
            if not p.is_ip(host):
                report.error(where, problem)
                all_valid = False
        elif applies_to_mesh and host == "*":
            report.error(
                where,
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
            )
            all_valid = False
    if all_valid:
        for i, first in enumerate(hosts):
            for j in range(i + 1, len(hosts)):
                if p.host_matches(first, hosts[j]):
                    report.error(
                        f"spec.hosts[{j}]",
                        f"duplicate hosts in virtual service: {p.clip(first)} & {p.clip(hosts[j])}",
                    )
    if not items(spec, "http") and not items(spec, "tcp") and not items(spec, "tls"):
        report.error("spec", "http, tcp or tls must be provided in virtual service")
    for i, route in enumerate(items(spec, "http")):
        if isinstance(route, dict):
            _http_route(report, f"spec.http[{i}]", route, delegate=not hosts)
    for i, route in enumerate(items(spec, "tls")):
        if isinstance(route, dict):
            _tls_route(report, f"spec.tls[{i}]", route, hosts, applies_to_gateway)
    for i, route in enumerate(items(spec, "tcp")):
        if isinstance(route, dict):
            _tcp_route(report, f"spec.tcp[{i}]", route)
    p.export_to(report, "spec.exportTo", report.context.namespace, items(spec, "exportTo"))
    for found in unreachable_rules(spec):
        report.warn(found.path, found.message)


def gateway_names(report: Report, path: str, names: list[str]) -> None:
    for i, name in enumerate(names):
        where = f"{path}[{i}]"
        namespace, slash, gateway = name.partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                report.warn(
                    where,
                    f"using legacy gatewayName format {p.go_quote(name)}; prefer the "
                    f"<namespace>/<name> format: {p.go_quote(parts[1] + '/' + parts[0])}",
                )
            report.add(where, p.fqdn_problem(name))
            return  # Istio stops at the first name without a namespace
        if not namespace or not gateway:
            report.error(where, "config namespace and gateway name cannot be empty")
        if not p.is_label(namespace):
            report.error(where, f"invalid value for namespace: {p.go_quote(namespace)}")
        if not p.is_label(gateway):
            report.error(where, f"invalid value for gateway name: {p.go_quote(gateway)}")


def _jwt_claim_routes(report: Report, spec: dict[str, Any], gateways: list[str]) -> None:
    shown = "[" + " ".join(gateways) + "]"
    for i, route in enumerate(items(spec, "http")):
        for j, match in enumerate(items(route, "match")):
            for field in ("headers", "withoutHeaders"):
                for key in mapping(match, field):
                    if p.is_routing_claim(key):
                        report.error(
                            join_key(f"spec.http[{i}].match[{j}].{field}", key),
                            f"JWT claim based routing (key: {p.clip(key)}) is only supported for "
                            f"gateway, found no gateways: {shown}",
                        )


def _http_route(report: Report, path: str, route: dict[str, Any], *, delegate: bool) -> None:
    _route_conflicts(report, path, route, delegate=delegate)
    _match_requests(report, path, route)
    _header_operations(report, join_key(path, "headers"), obj(route, "headers"))
    _cors(report, join_key(path, "corsPolicy"), obj(route, "corsPolicy"))
    _fault(report, join_key(path, "fault"), obj(route, "fault"))
    if has(route, "mirrorPercent"):
        percent = number(route, "mirrorPercent")
        if percent > 100:
            report.error(
                join_key(path, "mirrorPercent"),
                f"mirror_percent must have a max value of 100 (it has {percent})",
            )
        report.warn(
            join_key(path, "mirrorPercent"),
            'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
        )
    mirror_percentage = obj(route, "mirrorPercentage")
    if mirror_percentage is not None:
        value = real(mirror_percentage, "value")
        if value > 100:
            report.error(
                join_key(path, "mirrorPercentage"),
                f"mirror_percentage must have a max value of 100 (it has {value:f})",
            )
        if value < 0:
            report.error(
                join_key(path, "mirrorPercentage"),
                f"mirror_percentage must have a min value of 0 (it has {value:f})",
            )
    destination(report, join_key(path, "mirror"), obj(route, "mirror"))
    for i, mirror in enumerate(items(route, "mirrors")):
        where = f"{path}.mirrors[{i}]"
        target = obj(mirror, "destination")
        if target is None:
            report.error(where, "destination is required for mirrors")
            continue
        destination(report, f"{where}.destination", target)
        percentage = obj(mirror, "percentage")
        if percentage is not None:
            value = real(percentage, "value")
            if value > 100:
                report.error(
                    f"{where}.percentage",
                    f"mirror percentage must have a max value of 100 (it has {value:f})",
                )
            if value < 0:
                report.error(
                    f"{where}.percentage",
                    f"mirror percentage must have a min value of 0 (it has {value:f})",
                )
    _redirect(report, join_key(path, "redirect"), obj(route, "redirect"), items(route, "match"))
    _direct_response(report, join_key(path, "directResponse"), obj(route, "directResponse"))
    retry(report, join_key(path, "retries"), obj(route, "retries"))
    _rewrite(report, join_key(path, "rewrite"), obj(route, "rewrite"))
    _authority_rewrite(report, path, obj(route, "rewrite"), obj(route, "headers"))
    route_destinations(report, join_key(path, "route"), items(route, "route"), http=True)
    if has(route, "timeout"):
        report.add(join_key(path, "timeout"), p.duration_problem(route["timeout"]))


def _route_conflicts(report: Report, path: str, route: dict[str, Any], *, delegate: bool) -> None:
    name = text(route, "name")
    redirect, direct = has(route, "redirect"), has(route, "directResponse")
    fault, rewrite = has(route, "fault"), has(route, "rewrite")
    routes = items(route, "route")
    if not delegate and has(route, "delegate"):  # a root route hands its traffic on
        if redirect:
            report.error(f"{path}.redirect", f"root HTTP route {name} must not specify redirect")
        if "route" in route:
            report.error(f"{path}.route", f"root HTTP route {name} must not specify route")
        return
    if delegate and has(route, "delegate"):
        report.error(f"{path}.delegate", "delegate HTTP route cannot contain delegate")
    if redirect:
        if routes:
            report.error(path, "HTTP route cannot contain both route and redirect")
        if fault:
            report.error(path, "HTTP route cannot contain both fault and redirect")
        if rewrite:
            report.error(path, "HTTP route rule cannot contain both rewrite and redirect")
        if direct:
            report.error(path, "HTTP route rule cannot contain both direct_response and redirect")
    elif direct:
        if routes:
            report.error(path, "HTTP route cannot contain both route and direct_response")
        if fault:
            report.error(path, "HTTP route cannot contain both fault and direct_response")
        if rewrite:
            report.error(path, "HTTP route rule cannot contain both rewrite and direct_response")
    elif not routes:
        report.error(path, "HTTP route, redirect or direct_response is required")
    if has(route, "mirror") and items(route, "mirrors"):
        report.error(path, "HTTP route cannot contain both mirror and mirrors")


def _match_requests(report: Report, path: str, route: dict[str, Any]) -> None:
    for i, match in enumerate(items(route, "match")):
        if not isinstance(match, dict):
            continue
        where = f"{path}.match[{i}]"
        for name, header in mapping(match, "headers").items():
            here = join_key(f"{where}.headers", name)
            report.add(here, p.match_header_name_problem(name))
            report.add(
                here,
                p.string_match_problem(header if isinstance(header, dict) else None, "headers"),
            )
        for name, header in mapping(match, "withoutHeaders").items():
            here = join_key(f"{where}.withoutHeaders", name)
            report.add(here, p.match_header_name_problem(name))
            if isinstance(header, dict) and text(header, "regex") != "*":
                report.add(here, p.string_match_problem(header, "withoutHeaders"))
        report.add(f"{where}.uri", p.string_match_regex_problem(obj(match, "uri"), "uri"))
        for field in ("scheme", "method", "authority"):
            report.add(f"{where}.{field}", p.string_match_problem(obj(match, field), field))
        for name, param in mapping(match, "queryParams").items():
            report.add(
                join_key(f"{where}.queryParams", name),
                p.string_match_problem(param if isinstance(param, dict) else None, "queryParams"),
            )
    for i, match in enumerate(items(route, "match")):
        if not isinstance(match, dict):
            continue
        where = f"{path}.match[{i}]"
        if number(match, "port"):
            report.add(f"{where}.port", p.port_problem(number(match, "port")))
        for problem in p.labels_problems(mapping(match, "sourceLabels")):
            report.error(f"{where}.sourceLabels", problem)
        gateway_names(
            report, f"{where}.gateways", [g for g in items(match, "gateways") if isinstance(g, str)]
        )
        namespace = text(match, "sourceNamespace")
        if namespace and not p.is_label(namespace):
            report.error(
                f"{where}.sourceNamespace", f"sourceNamespace match {p.clip(namespace)} is invalid"
            )


def _header_operations(report: Report, path: str, headers: dict[str, Any] | None) -> None:
    if headers is None:
        return
    request, response = obj(headers, "request"), obj(headers, "response")
    for side, value in (("request", request), ("response", response)):
        for op in ("add", "set"):
            for name, item in mapping(value, op).items():
                here = join_key(f"{path}.{side}.{op}", name)
                if side == "request":
                    report.add(here, p.request_header_set_problem(name))
                else:
                    report.add(here, p.header_operation_problem(name))
                if isinstance(item, str):
                    report.add(here, p.header_value_problem(item))
        for i, name in enumerate(items(value, "remove")):
            if isinstance(name, str):
                report.add(f"{path}.{side}.remove[{i}]", p.header_operation_problem(name))


def _cors(report: Report, path: str, policy: dict[str, Any] | None) -> None:
    if policy is None:
        return
    for i, item in enumerate(items(policy, "allowOrigins")):
        here = f"{path}.allowOrigins[{i}]"
        origin = item if isinstance(item, dict) else {}
        value = text(origin, "exact") or text(origin, "prefix") or text(origin, "regex")
        if not value:
            report.error(here, f"'{value}' is not a valid match type for CORS allow origins")
            continue
        report.add(here, p.string_match_regex_problem(origin, "corsPolicy.allowOrigins"))
    for i, method in enumerate(items(policy, "allowMethods")):
        if method not in _CORS_METHODS:
            report.error(
                f"{path}.allowMethods[{i}]",
                f"{p.go_quote(str(method))} is not a supported HTTP method",
            )
    for field in ("allowHeaders", "exposeHeaders"):
        for i, name in enumerate(items(policy, field)):
            if isinstance(name, str):
                report.add(f"{path}.{field}[{i}]", p.cors_header_problem(name))
    if has(policy, "maxAge"):
        report.add(f"{path}.maxAge", p.duration_problem(policy["maxAge"]))
        nanos = p.duration_nanos(policy["maxAge"])
        if nanos is not None and nanos % p.SECOND > 0:
            report.error(f"{path}.maxAge", "max_age duration is accurate only to seconds precision")


def _fault(report: Report, path: str, fault: dict[str, Any] | None) -> None:
    if fault is None:
        return
    abort, delay = obj(fault, "abort"), obj(fault, "delay")
    if abort is None and delay is None:
        report.error(path, "HTTP fault injection must have an abort and/or a delay")
    if abort is not None:
        here = f"{path}.abort"
        report.add(f"{here}.percentage", p.percentage_problem(obj(abort, "percentage")))
        if "grpcStatus" in abort:
            status = text(abort, "grpcStatus")
            if status not in _GRPC_STATUS:
                report.error(
                    f"{here}.grpcStatus",
                    f"gRPC status {p.go_quote(status)} is not supported. See "
                    "https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of "
                    "supported codes, for example 'NOT_FOUND'",
                )
        elif "http2Error" in abort:
            report.error(f"{here}.http2Error", "HTTP/2 abort fault injection not supported yet")
        elif "httpStatus" in abort:
            report.add(f"{here}.httpStatus", _status_problem(number(abort, "httpStatus")))
        else:
            report.warn(here, "abort configured, but error type not set")
    if delay is not None:
        here = f"{path}.delay"
        report.add(f"{here}.percentage", p.percentage_problem(obj(delay, "percentage")))
        if "fixedDelay" in delay:
            report.add(f"{here}.fixedDelay", p.duration_problem(delay["fixedDelay"]))
        elif "exponentialDelay" in delay:
            report.add(f"{here}.exponentialDelay", p.duration_problem(delay["exponentialDelay"]))
            report.error(f"{here}.exponentialDelay", "exponentialDelay not supported yet")


def _status_problem(status: int) -> str | None:
    if 200 <= status <= 600:
        return None
    return f"HTTP status {status} is not in range 200-599"


def destination(report: Report, path: str, target: dict[str, Any] | None) -> None:
    if target is None:
        return
    host = text(target, "host")
    if host == "*":
        report.error(f"{path}.host", f"invalid destination host {host}")
    else:
        report.add(f"{path}.host", p.wildcard_domain_problem(host))
    if "subset" in target:
        report.add(f"{path}.subset", subset_name_problem(text(target, "subset")))
    port = obj(target, "port")
    if port is not None:
        report.add(f"{path}.port.number", p.port_problem(number(port, "number")))


def subset_name_problem(name: str) -> str | None:
    if not name:
        return "subset name cannot be empty"
    if not p.is_label(name):
        return f"subset name is invalid: {p.clip(name)}"
    return None


def route_destinations(report: Report, path: str, routes: list[Any], *, http: bool) -> None:
    total = 0
    for i, item in enumerate(routes):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            report.error(where, "weight may not be nil")
            continue
        if obj(item, "destination") is None:
            report.error(where, "destination is required")
        if http:
            _header_operations(report, f"{where}.headers", obj(item, "headers"))
        destination(report, f"{where}.destination", obj(item, "destination"))
        weight = number(item, "weight")
        if weight < 0:
            report.error(f"{where}.weight", f"weight {weight} < 0")
        total += weight
    if len(routes) > 1 and _int32(total) == 0:
        report.error(path, "total destination weight = 0")


def _int32(value: int) -> int:
    """Go adds the weights in an int32: the total wraps around as it does there."""
    return (value + 2**31) % 2**32 - 2**31


def _redirect(
    report: Report, path: str, redirect: dict[str, Any] | None, matches: list[Any]
) -> None:
    if redirect is None:
        return
    uri, prefix = text(redirect, "uri"), text(redirect, "prefixRewrite")
    if uri and prefix:
        report.error(path, "redirect may only specify one of uri or prefix_rewrite")
        return
    if prefix:
        for match in matches:
            uri_match = obj(match, "uri")
            if uri_match is not None and "prefix" not in uri_match:
                report.error(
                    f"{path}.prefixRewrite",
                    "redirect prefix_rewrite requires all URI matches to use prefix match type",
                )
                return
    if (
        not uri
        and not prefix
        and not text(redirect, "authority")
        and not has(redirect, "port")
        and not has(redirect, "derivePort")
        and not text(redirect, "scheme")
    ):
        report.error(path, "redirect must specify URI, authority, scheme, or port")
        return
    code = number(redirect, "redirectCode")
    if code and not 300 <= code <= 399:
        report.error(f"{path}.redirectCode", f"{code} is not a valid redirect code, must be 3xx")
        return
    scheme = text(redirect, "scheme")
    if scheme and scheme not in ("http", "https"):
        report.error(f"{path}.scheme", 'invalid redirect scheme, must be "http" or "https"')
        return
    port = number(redirect, "port")
    if port > 0:
        report.add(f"{path}.port", p.port_problem(port))


def _direct_response(report: Report, path: str, response: dict[str, Any] | None) -> None:
    if response is None:
        return
    body = obj(response, "body")
    if body is not None:
        if "string" in body:
            size = len(text(body, "string").encode("utf-8", "surrogatepass"))
        else:
            raw = text(body, "bytes")
            size = len(raw) * 3 // 4 - raw.count("=")  # base64 in proto3 JSON
        if size > MB:
            report.error(
                f"{path}.body",
                "large direct_responses may impact control plane performance, must be less "
                "than 1MB",
            )
        elif size > 100 * KB:
            report.warn(
                f"{path}.body", "large direct_responses may impact control plane performance"
            )
    report.add(f"{path}.status", _status_problem(number(response, "status")))


def retry(report: Report, path: str, retries: dict[str, Any] | None) -> None:
    if retries is None:
        return
    attempts = number(retries, "attempts")
    if attempts < 0:
        report.error(f"{path}.attempts", "attempts cannot be negative")
    if attempts == 0 and (
        has(retries, "perTryTimeout")
        or text(retries, "retryOn")
        or has(retries, "retryRemoteLocalities")
    ):
        report.error(path, "http retry policy configured when attempts are set to 0 (disabled)")
    if has(retries, "perTryTimeout"):
        report.add(f"{path}.perTryTimeout", p.duration_problem(retries["perTryTimeout"]))
    retry_on = text(retries, "retryOn")
    if retry_on:
        for policy in retry_on.split(","):
            if _http_status_named(policy) or policy in _RETRY_ON:
                continue
            report.error(f"{path}.retryOn", f"{p.go_quote(policy)} is not a valid retryOn policy")
    if has(retries, "backoff"):
        report.add(f"{path}.backoff", p.duration_problem(retries["backoff"]))


def _http_status_named(policy: str) -> bool:
    try:
        return go.parse_int(policy) in _HTTP_STATUS
    except ValueError:
        return False


def _rewrite(report: Report, path: str, rewrite: dict[str, Any] | None) -> None:
    if rewrite is None:
        return
    regex = obj(rewrite, "uriRegexRewrite")
    if text(rewrite, "uri") and regex is not None:
        report.error(path, "rewrite may only contain one of URI or UriRegexRewrite")
        return
    if not text(rewrite, "uri") and regex is None and not text(rewrite, "authority"):
        report.error(
            path,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one "
            "of URI or UriRegexRewrite may be specified",
        )
        return
    if regex is not None:
        if not text(regex, "match") or not text(regex, "rewrite"):
            report.error(
                f"{path}.uriRegexRewrite",
                "UriRegexRewrite has errors\nUriRegexRewrite requires both Rewrite and Match "
                "fields to be specified",
            )
            return
        problem = p.regex_problem(text(regex, "match"), "HTTPRewrite.UriRegexRewrite.Match")
        if problem:
            report.error(f"{path}.uriRegexRewrite.match", f"UriRegexRewrite has errors\n{problem}")


def _authority_rewrite(
    report: Report, path: str, rewrite: dict[str, Any] | None, headers: dict[str, Any] | None
) -> None:
    current = text(rewrite, "authority")
    request = obj(headers, "request")
    for op in ("set", "add"):
        for name, value in mapping(request, op).items():
            if name.lower() not in (":authority", "host"):
                continue
            if current:
                report.error(
                    join_key(f"{path}.headers.request.{op}", name),
                    f"authority header cannot be set multiple times: have {p.go_quote(current)}, "
                    f"attempting to set {p.go_quote(str(value))}",
                )
                return
            current = str(value)


def _tls_route(
    report: Report, path: str, route: dict[str, Any], hosts: list[str], to_gateway: bool
) -> None:
    matches = items(route, "match")
    if not matches:
        report.error(path, "TLS route must have at least one match condition")
    for i, match in enumerate(matches):
        where = f"{path}.match[{i}]"
        if not isinstance(match, dict):
            report.error(where, "TLS match may not be null")
            continue
        sni_hosts = items(match, "sniHosts")
        if not sni_hosts:
            report.error(where, "TLS match must have at least one SNI host")
        for j, sni in enumerate(sni_hosts):
            if isinstance(sni, str):
                _sni_host(report, f"{where}.sniHosts[{j}]", sni, hosts, to_gateway)
        _l4_match(report, where, match)
    if not items(route, "route"):
        report.error(path, "TLS route is required")
    route_destinations(report, f"{path}.route", items(route, "route"), http=False)


def _sni_host(report: Report, path: str, sni: str, hosts: list[str], to_gateway: bool) -> None:
    if to_gateway:
        problem = p.gateway_vs_domain_problem(True, sni)
    else:
        problem = p.wildcard_domain_problem(sni)
    if problem:
        if p.is_ip(sni):
            report.warn(
                path,
                f"using an IP address ({p.go_quote(sni)}) goes against SNI spec and most clients "
                "do not support this",
            )
        else:
            report.error(path, problem)
        return
    if any(p.host_subset_of(sni, host) for host in hosts):
        return
    report.error(
        path,
        f"SNI host {p.go_quote(sni)} is not a compatible subset of any of the virtual service "
        f"hosts: [{', '.join(hosts)}]",
    )


def _l4_match(report: Report, where: str, match: dict[str, Any]) -> None:
    for j, subnet in enumerate(items(match, "destinationSubnets")):
        if isinstance(subnet, str):
            report.add(f"{where}.destinationSubnets[{j}]", p.subnet_problem(subnet))
    if number(match, "port"):
        report.add(f"{where}.port", p.port_problem(number(match, "port")))
    for problem in p.labels_problems(mapping(match, "sourceLabels")):
        report.error(f"{where}.sourceLabels", problem)
    gateway_names(
        report, f"{where}.gateways", [g for g in items(match, "gateways") if isinstance(g, str)]
    )


def _tcp_route(report: Report, path: str, route: dict[str, Any]) -> None:
    for i, match in enumerate(items(route, "match")):
        if isinstance(match, dict):
            _l4_match(report, f"{path}.match[{i}]", match)
        else:
            report.error(f"{path}.match[{i}]", "tcp match may not be nil")
    if not items(route, "route"):
        report.error(path, "TCP route is required")
    route_destinations(report, f"{path}.route", items(route, "route"), http=False)


# --- unreachable and ineffective rules (warnings; istioctl analyze's IST0130/IST0131) ----------


def _route_name(route: Any, index: int) -> str:
    name = text(route, "name")
    return p.go_quote(name) if name else f"#{index}"


@attrs.frozen
class RuleProblem:
    """A rule that is never used (``IST0130``) or a match that never applies (``IST0131``).

    ``arguments`` are what istioctl's message for the code takes: (rule, reason) for IST0130,
    (rule, match, earlier rule) for IST0131. :attr:`message` is validation's warning text.
    """

    code: str
    arguments: tuple[str, ...]
    path: str

    @property
    def message(self) -> str:
        if self.code == "IST0130":
            rule, reason = self.arguments
            return f"virtualService rule {rule} not used ({reason})"
        rule, match, duplicate = self.arguments
        return (
            f"virtualService rule {rule} match {match} is not used (duplicate/overlapping match "
            f"in rule {duplicate})"
        )


def unreachable_rules(spec: dict[str, Any]) -> Iterator[RuleProblem]:
    """The unused rules and ineffective matches of a VirtualService spec (proto3 JSON form),
    in Istio's order: HTTP, then TCP, then TLS routes."""
    yield from _unreachable_http(items(spec, "http"))
    yield from _unreachable_l4("spec.tcp", items(spec, "tcp"))
    yield from _unreachable_l4("spec.tls", items(spec, "tls"))


def _unused(path: str, rule: str, reason: str) -> RuleProblem:
    return RuleProblem("IST0130", (rule, reason), path)


def _ineffective(path: str, rule: str, match: str, duplicate: str) -> RuleProblem:
    return RuleProblem("IST0131", (rule, match, duplicate), path)


def _match_key(match: Any, *, http: bool) -> str:
    if http and isinstance(match, dict):
        match = {k: v for k, v in match.items() if k != "name"}
    return json.dumps(match, sort_keys=True)


def _unreachable_http(routes: list[Any]) -> Iterator[RuleProblem]:
    seen: dict[str, int] = {}
    empty_at = -1
    prefixes: list[tuple[str, str, str, dict[str, Any], str]] = []
    for n, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        path = f"spec.http[{n}]"
        name = _route_name(route, n)
        matches = items(route, "match")
        if not matches:
            if empty_at >= 0:
                yield _unused(path, name, "only the last rule can have no matches")
            empty_at = n
            continue
        duplicates = 0
        for m, match in enumerate(matches):
            if empty_at >= 0:
                yield _unused(path, name, "route without matches defined before")
                continue
            key = _match_key(match, http=True)
            match_name = p.go_quote(text(match, "name")) if text(match, "name") else f"#{m}"
            if key in seen:
                first = seen[key]
                yield _ineffective(
                    f"{path}.match[{m}]",
                    name,
                    match_name,
                    _route_name(routes[first], first),
                )
                duplicates += 1
                continue
            seen[key] = n
            prefix = text(obj(match, "uri"), "prefix")
            if prefix:
                prefixes.append((name, match_name, prefix, match, f"{path}.match[{m}]"))
        if duplicates == len(matches):
            yield _unused(path, name, "all matches used by prior rules")
    for i, earlier in enumerate(prefixes):
        for later in prefixes[i + 1 :]:
            if later[2] == earlier[2]:
                continue
            if _covered(earlier, later):
                yield _ineffective(
                    later[4],
                    later[0],
                    f"{later[1]} of prefix {later[2]}",
                    f"{earlier[1]} of prefix {earlier[2]} on {earlier[0]}",
                )


def _exact_or_prefix(match: Any) -> str:
    if text(match, "exact"):
        return "exact:" + text(match, "exact")
    if text(match, "prefix"):
        return "prefix:" + text(match, "prefix")
    return ""


def _covered(
    a: tuple[str, str, str, dict[str, Any], str], b: tuple[str, str, str, dict[str, Any], str]
) -> bool:
    """Whether every request ``b``'s prefix match takes is taken by the earlier ``a``."""
    if not b[2].startswith(a[2]):
        return False
    ma, mb = a[3], b[3]
    if number(ma, "port") != number(mb, "port"):
        return False
    method_a = _exact_or_prefix(obj(ma, "method")) or "exact:GET"
    method_b = _exact_or_prefix(obj(mb, "method")) or "exact:GET"
    if method_a != method_b and not method_a.startswith(method_b):
        return False
    auth_a, auth_b = _exact_or_prefix(obj(ma, "authority")), _exact_or_prefix(obj(mb, "authority"))
    if auth_a != auth_b and not auth_a.startswith(auth_b):
        return False
    for field in ("headers", "queryParams", "withoutHeaders"):
        va = {k: _exact_or_prefix(v) for k, v in mapping(ma, field).items()}
        vb = {k: _exact_or_prefix(v) for k, v in mapping(mb, field).items()}
        if len(va) != len(vb):
            return False
        for key, value in va.items():
            if key not in vb:
                return False
            if value != vb[key] and not value.startswith(vb[key]):
                return False
    return True


def _unreachable_l4(base: str, routes: list[Any]) -> Iterator[RuleProblem]:
    seen: dict[str, int] = {}
    empty_at = -1
    for n, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        path = f"{base}[{n}]"
        matches = items(route, "match")
        if not matches:
            if empty_at >= 0:
                yield _unused(path, f"#{n}", "only the last rule can have no matches")
            empty_at = n
            continue
        duplicates = 0
        for m, match in enumerate(matches):
            if empty_at >= 0:
                yield _unused(path, f"#{n}", "route without matches defined before")
                continue
            key = _match_key(match, http=False)
            if key in seen:
                yield _ineffective(f"{path}.match[{m}]", f"#{n}", f"#{m}", f"#{seen[key]}")
                duplicates += 1
            else:
                seen[key] = n
        if duplicates == len(matches):
            yield _unused(path, f"#{n}", "all matches used by prior rules")
