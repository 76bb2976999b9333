"""Envoy routes from VirtualService HTTP rules, with Istio's semantics.

* Matches: URI exact/prefix/regex (``ignoreUriCase``), headers exact/prefix/regex and presence
  (an empty ``StringMatch``), ``withoutHeaders`` (inverted), method/authority/scheme as pseudo
  headers, query parameters; ``sourceLabels``, ``sourceNamespace``, ``gateways`` and ``port``
  decide whether a match applies to this proxy and listener at all.
* Actions: one destination becomes ``cluster``; several become ``weighted_clusters`` (zero
  weights dropped, no ``total_weight``); redirects; direct responses; rewrites; mirrors;
  header manipulation.
* Policies: timeouts (Istio disables Envoy's 15 s default with ``0s`` on sidecars), retries
  (Istio's default of 2 attempts when unset), fault injection as per-route ``HTTPFault``
  config, consistent-hash ``hash_policy`` from the destination's DestinationRule.

Proxyless gRPC routes get the same matches and actions but only what gRPC honours: retries on
gRPC status names, ``max_stream_duration`` for timeouts, no ``retry_host_predicate``.
"""

from __future__ import annotations

from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.config.route import v3 as route
from istio_sdk.api.envoy.extensions.filters.common.fault import v3 as common_fault
from istio_sdk.api.envoy.extensions.filters.http.fault import v3 as fault
from istio_sdk.api.envoy.extensions.retry.host.previous_hosts import v3 as previous_hosts
from istio_sdk.api.envoy.type import v3 as envoy_type
from istio_sdk.api.envoy.type.matcher import v3 as matcher
from istio_sdk.api.istio.networking import v1alpha3 as networking
from istio_sdk.pilot.cluster_names import outbound_cluster_name
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.hosts import gateway_ref
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Service
from istio_sdk.pilot.translate._common import FAULT_FILTER, ZERO, pack

__all__ = [
    "GRPC_STATUS_CODES",
    "build_routes",
    "default_route",
    "destination_cluster",
    "has_http_rules",
    "match_applies",
]

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
GRPC_RETRY_ON = frozenset(
    {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
)

GRPC_STATUS_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

_REDIRECT_CODES = {
    301: route.RedirectActionRedirectResponseCode.MOVED_PERMANENTLY,
    302: route.RedirectActionRedirectResponseCode.FOUND,
    303: route.RedirectActionRedirectResponseCode.SEE_OTHER,
    307: route.RedirectActionRedirectResponseCode.TEMPORARY_REDIRECT,
    308: route.RedirectActionRedirectResponseCode.PERMANENT_REDIRECT,
}


def _string_matcher(m: networking.StringMatch) -> matcher.StringMatcher | None:
    if m.exact is not None:
        return matcher.StringMatcher(exact=m.exact)
    if m.prefix is not None:
        return matcher.StringMatcher(prefix=m.prefix)
    if m.regex is not None:
        return matcher.StringMatcher(safe_regex=matcher.RegexMatcher(regex=m.regex))
    return None


def _header_matcher(name: str, m: networking.StringMatch, invert: bool) -> route.HeaderMatcher:
    sm = _string_matcher(m)
    if sm is None:
        return route.HeaderMatcher(name=name, present_match=True, invert_match=invert)
    return route.HeaderMatcher(name=name, string_match=sm, invert_match=invert)


def _route_match(m: networking.HttpMatchRequest | None) -> route.RouteMatch:
    out = route.RouteMatch()
    uri = m.uri if m is not None else None
    if uri is not None and uri.exact is not None:
        out.path = uri.exact
    elif uri is not None and uri.regex is not None:
        out.safe_regex = matcher.RegexMatcher(regex=uri.regex)
    elif uri is not None and uri.prefix is not None:
        out.prefix = uri.prefix
    else:
        out.prefix = "/"
    if m is None:
        return out
    if m.ignore_uri_case:
        out.case_sensitive = False
    for name in sorted(m.headers):
        out.headers.append(_header_matcher(name.lower(), m.headers[name], invert=False))
    for name in sorted(m.without_headers):
        out.headers.append(_header_matcher(name.lower(), m.without_headers[name], invert=True))
    for pseudo, value in (
        (":method", m.method),
        (":authority", m.authority),
        (":scheme", m.scheme),
    ):
        if value is not None:
            out.headers.append(_header_matcher(pseudo, value, invert=False))
    for name in sorted(m.query_params):
        sm = _string_matcher(m.query_params[name])
        if sm is None:
            out.query_parameters.append(route.QueryParameterMatcher(name=name, present_match=True))
        else:
            out.query_parameters.append(route.QueryParameterMatcher(name=name, string_match=sm))
    return out


def _is_catch_all(m: networking.HttpMatchRequest | None) -> bool:
    if m is None:
        return True
    uri = m.uri
    uri_all = uri is None or (uri.prefix == "/" and uri.exact is None and uri.regex is None)
    return (
        uri_all
        and not m.headers
        and not m.without_headers
        and not m.query_params
        and m.method is None
        and m.authority is None
        and m.scheme is None
    )


def _applies(
    m: networking.HttpMatchRequest | None,
    proxy: ProxyInfo,
    port: int,
    gateway: str,
    vs_namespace: str,
) -> bool:
    return m is None or match_applies(m, proxy, port, gateway, vs_namespace)


def match_applies(
    match: networking.HttpMatchRequest
    | networking.L4MatchAttributes
    | networking.TlsMatchAttributes,
    proxy: ProxyInfo,
    port: int,
    gateway: str,
    namespace: str,
) -> bool:
    """Whether a VirtualService match's port, source and gateway conditions hold.

    The conditions HTTP, TCP and TLS matches share: the listener ``port``, the proxy's labels
    and namespace, and ``gateway`` (``mesh`` for sidecars; short gateway names are in the
    VirtualService's ``namespace``).
    """
    if match.port and match.port != port:
        return False
    if match.source_labels and not proxy.selected_by(match.source_labels):
        return False
    if match.source_namespace and match.source_namespace != proxy.namespace:
        return False
    if match.gateways:
        refs = {gateway_ref(g, namespace) for g in match.gateways}
        if gateway not in refs:
            return False
    return True


def destination_cluster(
    context: PushContext,
    proxy: ProxyInfo,
    destination: networking.Destination,
    namespace: str,
    listener_port: int,
) -> tuple[str, Service | None]:
    """The cluster a VirtualService destination sends to, and its service if known.

    Without an explicit port, a single-port service's port is used; otherwise the port of the
    listener the request arrived on (Istio's rule).
    """
    host = context.fqdn(destination.host, namespace)
    service = context.service_for_host(host, proxy)
    port = destination.port.number if destination.port is not None else 0
    if not port:
        if service is not None and len(service.ports) == 1:
            port = service.ports[0].number
        else:
            port = listener_port
    return outbound_cluster_name(port, destination.subset, host), service


def _percent(value: float) -> envoy_type.FractionalPercent:
    return envoy_type.FractionalPercent(
        numerator=max(0, min(1_000_000, round(value * 10_000))),
        denominator=envoy_type.FractionalPercentDenominatorType.MILLION,
    )


def _fault(spec: networking.HttpFaultInjection, grpc: bool) -> fault.HttpFault | None:
    out = fault.HttpFault()
    used = False
    delay = spec.delay
    if delay is not None and delay.fixed_delay is not None:
        pct = (
            delay.percentage.value if delay.percentage is not None else float(delay.percent or 100)
        )
        out.delay = common_fault.FaultDelay(fixed_delay=delay.fixed_delay, percentage=_percent(pct))
        used = True
    abort = spec.abort
    if abort is not None:
        pct = abort.percentage.value if abort.percentage is not None else 100.0
        if abort.grpc_status is not None:
            code = GRPC_STATUS_CODES.get(abort.grpc_status.upper())
            if code is None and abort.grpc_status.isdigit():
                code = int(abort.grpc_status)
            if code is not None:
                out.abort = fault.FaultAbort(grpc_status=code, percentage=_percent(pct))
                used = True
        elif abort.http_status is not None and 200 <= abort.http_status < 600:
            out.abort = fault.FaultAbort(http_status=abort.http_status, percentage=_percent(pct))
            used = True
    return out if used else None


def _retry_policy(retries: networking.HttpRetry | None, grpc: bool) -> route.RetryPolicy | None:
    if grpc:
        if retries is None or retries.attempts <= 0:
            return None
        wanted = [r.strip() for r in retries.retry_on.split(",") if r.strip()] or ["unavailable"]
        grpc_codes = [r for r in wanted if r in GRPC_RETRY_ON]
        if not grpc_codes:
            return None
        return route.RetryPolicy(retry_on=",".join(grpc_codes), num_retries=retries.attempts)
    if retries is not None and retries.attempts <= 0:
        return None
    policy = route.RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries=2,
        retry_host_predicate=[
            route.RetryPolicyRetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(previous_hosts.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=5,
    )
    if retries is not None:
        policy.num_retries = retries.attempts
        if retries.retry_on:
            codes: list[int] = []
            names: list[str] = []
            for raw in retries.retry_on.split(","):
                item = raw.strip()
                if item.isdigit():
                    codes.append(int(item))
                elif item:
                    names.append(item)
            if codes and "retriable-status-codes" not in names:
                names.append("retriable-status-codes")
            policy.retry_on = ",".join(names)
            policy.retriable_status_codes = codes
        if retries.per_try_timeout is not None and retries.per_try_timeout > ZERO:
            policy.per_try_timeout = retries.per_try_timeout
        if retries.backoff is not None and retries.backoff > ZERO:
            policy.retry_back_off = route.RetryPolicyRetryBackOff(base_interval=retries.backoff)
        if retries.retry_ignore_previous_hosts is False:
            policy.retry_host_predicate = []
    return policy


def _hash_policy(
    context: PushContext, proxy: ProxyInfo, host: str, subset: str, port: int
) -> list[route.RouteActionHashPolicy]:
    from istio_sdk.pilot.translate._clusters import effective_policy

    policy = effective_policy(context.destination_rule(host, proxy), port, subset)
    lb = policy.load_balancer
    if lb is None or lb.consistent_hash is None:
        return []
    ch = lb.consistent_hash
    if ch.http_header_name is not None:
        return [
            route.RouteActionHashPolicy(
                header=route.RouteActionHashPolicyHeader(header_name=ch.http_header_name)
            )
        ]
    if ch.http_cookie is not None:
        return [
            route.RouteActionHashPolicy(
                cookie=route.RouteActionHashPolicyCookie(
                    name=ch.http_cookie.name, path=ch.http_cookie.path, ttl=ch.http_cookie.ttl
                )
            )
        ]
    if ch.use_source_ip:
        return [
            route.RouteActionHashPolicy(
                connection_properties=route.RouteActionHashPolicyConnectionProperties(
                    source_ip=True
                )
            )
        ]
    if ch.http_query_parameter_name is not None:
        return [
            route.RouteActionHashPolicy(
                query_parameter=route.RouteActionHashPolicyQueryParameter(
                    name=ch.http_query_parameter_name
                )
            )
        ]
    return []


def _header_ops(
    ops: networking.HeadersHeaderOperations | None,
) -> tuple[list[core.HeaderValueOption], list[str]]:
    if ops is None:
        return [], []
    add: list[core.HeaderValueOption] = []
    for key in sorted(ops.set):
        add.append(
            core.HeaderValueOption(
                header=core.HeaderValue(key=key, value=ops.set[key]),
                append_action=core.HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        )
    for key in sorted(ops.add):
        add.append(
            core.HeaderValueOption(
                header=core.HeaderValue(key=key, value=ops.add[key]),
                append_action=core.HeaderValueOptionHeaderAppendAction.APPEND_IF_EXISTS_OR_ADD,
            )
        )
    return add, list(ops.remove)


def _apply_headers(target: route.Route, headers: networking.Headers | None) -> None:
    if headers is None:
        return
    req_add, req_remove = _header_ops(headers.request)
    resp_add, resp_remove = _header_ops(headers.response)
    target.request_headers_to_add.extend(req_add)
    target.request_headers_to_remove.extend(req_remove)
    target.response_headers_to_add.extend(resp_add)
    target.response_headers_to_remove.extend(resp_remove)


def default_route(
    cluster_name: str, *, grpc: bool, hash_policy: list[route.RouteActionHashPolicy] | None = None
) -> route.Route:
    """The route Istio sends when no VirtualService applies: everything to one cluster."""
    action = route.RouteAction(cluster=cluster_name, hash_policy=list(hash_policy or []))
    if not grpc:
        action.timeout = ZERO
        action.retry_policy = _retry_policy(None, grpc=False)
        action.max_stream_duration = route.RouteActionMaxStreamDuration(
            max_stream_duration=ZERO, grpc_timeout_header_max=ZERO
        )
    return route.Route(name="default", match=route.RouteMatch(prefix="/"), route=action)


def _route_action(
    context: PushContext,
    proxy: ProxyInfo,
    *,
    http: networking.HttpRoute,
    namespace: str,
    listener_port: int,
    grpc: bool,
) -> route.RouteAction | None:
    dests = []
    for rd in http.route:
        if rd.destination is None:
            continue
        name, _svc = destination_cluster(context, proxy, rd.destination, namespace, listener_port)
        dests.append((name, rd))
    if not dests:
        return None
    action = route.RouteAction()
    if len(dests) == 1:
        action.cluster = dests[0][0]
    else:
        weighted = [
            route.WeightedClusterClusterWeight(name=name, weight=rd.weight)
            for name, rd in dests
            if rd.weight > 0
        ]
        if not weighted:
            return None
        for cw, (_name, rd) in zip(weighted, [d for d in dests if d[1].weight > 0], strict=True):
            if rd.headers is not None and not grpc:
                req_add, req_remove = _header_ops(rd.headers.request)
                resp_add, resp_remove = _header_ops(rd.headers.response)
                cw.request_headers_to_add = req_add
                cw.request_headers_to_remove = req_remove
                cw.response_headers_to_add = resp_add
                cw.response_headers_to_remove = resp_remove
        if len(weighted) == 1:
            action.cluster = weighted[0].name
        else:
            action.weighted_clusters = route.WeightedCluster(clusters=weighted)
    first = dests[0][1].destination
    assert first is not None
    host = context.fqdn(first.host, namespace)
    first_port = int(dests[0][0].split("|")[1])
    action.hash_policy = _hash_policy(context, proxy, host, first.subset, first_port)
    timeout = http.timeout
    if grpc:
        if timeout is not None and timeout > ZERO:
            action.max_stream_duration = route.RouteActionMaxStreamDuration(
                max_stream_duration=timeout, grpc_timeout_header_max=timeout
            )
    else:
        action.timeout = timeout if timeout is not None else ZERO
        action.max_stream_duration = route.RouteActionMaxStreamDuration(
            max_stream_duration=action.timeout, grpc_timeout_header_max=action.timeout
        )
    action.retry_policy = _retry_policy(http.retries, grpc)
    if http.rewrite is not None:
        if http.rewrite.uri:
            action.prefix_rewrite = http.rewrite.uri
        if http.rewrite.uri_regex_rewrite is not None:
            action.regex_rewrite = matcher.RegexMatchAndSubstitute(
                pattern=matcher.RegexMatcher(regex=http.rewrite.uri_regex_rewrite.match),
                substitution=http.rewrite.uri_regex_rewrite.rewrite,
            )
        if http.rewrite.authority:
            action.host_rewrite_literal = http.rewrite.authority
    mirrors = list(http.mirrors)
    if http.mirror is not None:
        mirrors.insert(
            0,
            networking.HttpMirrorPolicy(destination=http.mirror, percentage=http.mirror_percentage),
        )
    if not grpc:
        for mirror in mirrors:
            if mirror.destination is None:
                continue
            name, _ = destination_cluster(
                context, proxy, mirror.destination, namespace, listener_port
            )
            pct = mirror.percentage.value if mirror.percentage is not None else 100.0
            action.request_mirror_policies.append(
                route.RouteActionRequestMirrorPolicy(
                    cluster=name,
                    runtime_fraction=core.RuntimeFractionalPercent(default_value=_percent(pct)),
                )
            )
    return action


def has_http_rules(virtual_service: ConfigEntry) -> bool:
    """Whether a VirtualService routes HTTP at all (one with only ``tcp``/``tls`` rules
    leaves HTTP traffic to its host on the default route)."""
    spec = virtual_service.spec
    return isinstance(spec, networking.VirtualService) and bool(spec.http)


def build_routes(
    context: PushContext,
    proxy: ProxyInfo,
    virtual_service: ConfigEntry,
    listener_port: int,
    *,
    grpc: bool = False,
    gateway: str = "mesh",
) -> list[route.Route]:
    """Translate a VirtualService's ``http`` rules into Envoy routes, in order.

    Rules after a catch-all match are unreachable and dropped, as Envoy would never use them.
    """
    spec = virtual_service.spec
    assert isinstance(spec, networking.VirtualService)
    ns = virtual_service.namespace
    out: list[route.Route] = []
    for http in spec.http:
        matches: list[networking.HttpMatchRequest | None] = list(http.match) or [None]
        for m in matches:
            if not _applies(m, proxy, listener_port, gateway, ns):
                continue
            name = http.name
            if m is not None and m.name:
                name = f"{name}.{m.name}" if name else m.name
            r = route.Route(name=name, match=_route_match(m))
            if http.redirect is not None:
                red = http.redirect
                action = route.RedirectAction(
                    host_redirect=red.authority,
                    response_code=_REDIRECT_CODES.get(
                        red.redirect_code,
                        route.RedirectActionRedirectResponseCode.MOVED_PERMANENTLY,
                    ),
                )
                if red.uri:
                    action.path_redirect = red.uri
                elif red.prefix_rewrite:
                    action.prefix_rewrite = red.prefix_rewrite
                if red.scheme:
                    action.scheme_redirect = red.scheme
                if red.port:
                    action.port_redirect = red.port
                r.redirect = action
            elif http.direct_response is not None:
                dr = http.direct_response
                body = None
                if dr.body is not None:
                    if dr.body.string is not None:
                        body = core.DataSource(inline_string=dr.body.string)
                    elif dr.body.bytes is not None:
                        body = core.DataSource(inline_bytes=dr.body.bytes)
                r.direct_response = route.DirectResponseAction(status=dr.status, body=body)
            else:
                action_or_none = _route_action(
                    context, proxy, http=http, namespace=ns, listener_port=listener_port, grpc=grpc
                )
                if action_or_none is None:
                    continue
                r.route = action_or_none
            if http.fault is not None:
                f = _fault(http.fault, grpc)
                if f is not None:
                    r.typed_per_filter_config = {FAULT_FILTER: pack(f)}
            if not grpc:
                _apply_headers(r, http.headers)
            out.append(r)
            if _is_catch_all(m):
                return out
    return out
