"""AuthorizationPolicy, PeerAuthentication and RequestAuthentication."""

from __future__ import annotations

import json
from typing import Any

from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import Report, has, items, mapping, obj, text

_SOURCE_FIELDS = (
    "principals",
    "requestPrincipals",
    "namespaces",
    "ipBlocks",
    "remoteIpBlocks",
    "notPrincipals",
    "notRequestPrincipals",
    "notNamespaces",
    "notIpBlocks",
    "notRemoteIpBlocks",
    "serviceAccounts",
    "notServiceAccounts",
    "trustDomains",
    "notTrustDomains",
)
_TCP_SOURCE_FIELDS = (
    "notPrincipals",
    "principals",
    "ipBlocks",
    "notIpBlocks",
    "namespaces",
    "notNamespaces",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "serviceAccounts",
    "notServiceAccounts",
)
_OPERATION_FIELDS = (
    "ports",
    "methods",
    "paths",
    "hosts",
    "notPorts",
    "notMethods",
    "notPaths",
    "notHosts",
)
_CUSTOM_FORBIDDEN = (
    ("namespaces", "From.Namespaces"),
    ("notNamespaces", "From.NotNamespaces"),
    ("serviceAccounts", "From.ServiceAccounts"),
    ("notServiceAccounts", "From.NotServiceAccounts"),
    ("trustDomains", "From.TrustDomains"),
    ("notTrustDomains", "From.NotTrustDomains"),
    ("principals", "From.Principals"),
    ("notPrincipals", "From.NotPrincipals"),
    ("requestPrincipals", "From.RequestPrincipals"),
    ("notRequestPrincipals", "From.NotRequestPrincipals"),
)
_NO_RULES = (
    "{} action without `rules` is meaningless as it will never be triggered, add an empty rule "
    "`{{}}` if you want it be triggered for every request"
)


def _strings(value: Any, key: str) -> list[str]:
    return [v for v in items(value, key) if isinstance(v, str)]


def _go_name(field: str) -> str:
    return field[:1].upper() + field[1:]


def check_authorization_policy(report: Report, spec: dict[str, Any]) -> None:
    ctx = report.context
    report.error_prefix = f"invalid policy {ctx.name}.{ctx.namespace}: "
    p.policy_targets(report, spec)
    action = text(spec, "action") or "ALLOW"
    rules = items(spec, "rules")
    if action == "CUSTOM":
        if "rules" not in spec:
            report.error("spec.rules", _NO_RULES.format("CUSTOM"))
        elif not text(obj(spec, "provider"), "name"):
            report.error("spec.provider.name", "`provider.name` must not be empty")
        for i, rule in enumerate(rules):
            for j, source in enumerate(items(rule, "from")):
                src = obj(source, "source")
                for field, name in _CUSTOM_FORBIDDEN:
                    if items(src, field):
                        report.error(
                            f"spec.rules[{i}].from[{j}].source.{field}",
                            f"{name} is currently not supported with CUSTOM action",
                        )
            for j, when in enumerate(items(rule, "when")):
                key = text(when, "key")
                if key in (
                    "source.namespace",
                    "source.serviceAccount",
                    "source.trustDomain",
                    "source.principal",
                ) or key.startswith("request.auth."):
                    report.error(
                        f"spec.rules[{i}].when[{j}].key",
                        f"{p.clip(key)} is currently not supported with CUSTOM action",
                    )
    if has(spec, "provider") and action != "CUSTOM":
        report.error(
            "spec.provider", f"`provider` must not be with non CUSTOM action, found {action}"
        )
    if action == "DENY" and "rules" not in spec:
        report.error("spec.rules", _NO_RULES.format("DENY"))
    for i, rule in enumerate(rules):
        _rule(report, f"spec.rules[{i}]", i, rule, deny=action == "DENY")


def _rule(report: Report, path: str, i: int, rule: Any, *, deny: bool) -> None:
    if not isinstance(rule, dict):
        report.error(path, f"`rule` must not be nil, found at rule {i}")
        return
    tcp_from = tcp_to = from_exists = to_exists = False
    for j, source in enumerate(items(rule, "from")):
        where = f"{path}.from[{j}]"
        src = obj(source, "source")
        if src is None:
            report.error(where, f"`from.source` must not be nil, found at rule {i}")
            continue
        from_exists = True
        where = f"{where}.source"
        count = {field: len(items(src, field)) for field in _SOURCE_FIELDS}
        if (
            count["principals"]
            + count["notPrincipals"]
            + count["namespaces"]
            + count["notNamespaces"]
            and count["serviceAccounts"] + count["notServiceAccounts"]
        ):
            report.error(
                where,
                f"cannot set serviceAccounts with namespaces or principals, found at rule {i}",
            )
        if not any(count.values()):
            report.error(where, f"`from.source` must not be empty, found at rule {i}")
        for field in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
            for problem in _ip_problems(_strings(src, field)):
                report.error(f"{where}.{field}", problem)
        for field in _SOURCE_FIELDS:
            values = _strings(src, field)
            if field in ("serviceAccounts", "notServiceAccounts"):
                report.add(f"{where}.{field}", _service_account_problem(_go_name(field), values))
            elif field in ("trustDomains", "notTrustDomains"):
                report.add(f"{where}.{field}", _trust_domain_problem(_go_name(field), values))
            else:
                report.add(f"{where}.{field}", _empty_problem(_go_name(field), values))
        if any(count[field] for field in _TCP_SOURCE_FIELDS):
            tcp_from = True
    for j, target in enumerate(items(rule, "to")):
        where = f"{path}.to[{j}]"
        operation = obj(target, "operation")
        if operation is None:
            report.error(where, f"`to.operation` must not be nil, found at rule {i}")
            continue
        to_exists = True
        where = f"{where}.operation"
        if not any(items(operation, field) for field in _OPERATION_FIELDS):
            report.error(where, f"`to.operation` must not be empty, found at rule {i}")
        for field in ("ports", "notPorts"):
            for problem in _port_problems(_strings(operation, field)):
                report.error(f"{where}.{field}", problem)
        for field in _OPERATION_FIELDS:
            report.add(
                f"{where}.{field}", _empty_problem(_go_name(field), _strings(operation, field))
            )
        for field in ("paths", "notPaths"):
            report.add(
                f"{where}.{field}",
                _path_template_problem(_go_name(field), _strings(operation, field)),
            )
        if items(operation, "ports") or items(operation, "notPorts"):
            tcp_to = True
    for j, condition in enumerate(items(rule, "when")):
        where = f"{path}.when[{j}]"
        key = text(condition, "key")
        if not key:
            report.error(f"{where}.key", "`key` must not be empty")
            continue
        values, not_values = _strings(condition, "values"), _strings(condition, "notValues")
        if not values and not not_values:
            report.error(
                where, f"at least one of `values` or `notValues` must be set for key {p.clip(key)}"
            )
            continue
        value_problem = _attribute_problem(key, values)
        if value_problem:
            message = f"invalid `value` for `key` {p.clip(key)}: {value_problem}"
            report.error(f"{where}.values", message)
        not_value_problem = _attribute_problem(key, not_values)
        if not_value_problem:
            message = f"invalid `notValue` for `key` {p.clip(key)}: {not_value_problem}"
            report.error(f"{where}.notValues", message)
    if deny and ((from_exists and not to_exists and not tcp_from) or (to_exists and not tcp_to)):
        report.warn(
            path,
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due "
            "to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly "
            "specify the port",
        )


def _empty_problem(key: str, values: list[str]) -> str | None:
    if any(v == "" for v in values):
        return f"empty value not allowed, found in {key}"
    return None


def _wildcard_problem(key: str, values: list[str]) -> str | None:
    problem = _empty_problem(key, values)
    if problem:
        return problem
    for value in values:
        stars = value.count("*")
        if stars > 1:
            return f"at most one wildcard is allowed, found in {key}: {p.go_quote(value)}"
        if stars == 1 and value != "*" and not value.startswith("*") and not value.endswith("*"):
            return (
                f"wildcard is only allowed at the start or end, found in {key}: {p.go_quote(value)}"
            )
    return None


def _trust_domain_problem(key: str, values: list[str]) -> str | None:
    problem = _wildcard_problem(key, values)
    if problem:
        return problem
    for value in values:
        if "/" in value:
            return f"trust domain must not contain '/', found in {key}: {p.go_quote(value)}"
    return None


def _service_account_problem(key: str, values: list[str]) -> str | None:
    if len(values) > 16:
        return "may not have more than 16 values"
    expected = "expected format 'serviceAccount' or 'namespace/serviceAccount'"
    for value in values:
        if value == "":
            return f"empty value not allowed, found in {key}"
        if "*" in value:
            return f"wildcard not allowed, found in {key}"
        if value.count("/") not in (0, 1):
            return f"{expected}, found {p.go_quote(value)} in {key}"
        if len(value) > 320:
            return f"value cannot exceed 320 characters, found {p.go_quote(value)} in {key}"
        namespace, slash, account = value.partition("/")
        if slash and not namespace:
            return f"{expected}, found empty namespace {p.go_quote(value)} in {key}"
        if slash and not account:
            return f"{expected}, found empty serviceAccount {p.go_quote(value)} in {key}"
    return None


_LITERAL = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()+,;:@="
)


def _path_template_problem(key: str, paths: list[str]) -> str | None:
    for path in paths:
        templated = "{*}" in path or "{**}" in path
        any_seen = False
        trimmed = path.strip("/")
        for glob in trimmed.split("/"):
            if glob == "{*}" and not any_seen:
                continue
            if glob == "{**}" and not any_seen:
                any_seen = True
                continue
            if glob in ("{*}", "{**}"):
                return (
                    f"invalid or unsupported path {trimmed}, found in {key}. "
                    "{**} is not the last operator"
                )
            if "{" in glob or "}" in glob:
                return (
                    f"invalid or unsupported path {trimmed}, found in {key}. Contains '{{' or '}}' "
                    "beyond a supported path template"
                )
            if templated and (not glob or not set(glob) <= _LITERAL):
                return (
                    f"invalid or unsupported path {trimmed}, found in {key}. Contains segment "
                    f"{glob} with invalid string literal"
                )
    return None


def _ip_problems(values: list[str]) -> list[str]:
    problems = []
    for value in values:
        if "/" in value:
            if not p.is_cidr(value):
                problems.append(
                    f"bad CIDR range ({p.clip(value)}): "
                    f"netip.ParsePrefix({p.go_quote(value)}): invalid"
                )
        elif not p.is_ip(value):
            problems.append(f"bad IP address ({p.clip(value)})")
    return problems


def _port_problems(values: list[str]) -> list[str]:
    problems = []
    for value in values:
        if not value.isascii() or not value.isdigit():
            problems.append(
                f"bad port ({p.clip(value)}): strconv.ParseUint: "
                f"parsing {p.go_quote(value)}: invalid syntax"
            )
        elif len(value) > 10 or int(value) > 65535:
            problems.append(f"bad port ({p.clip(value)}): <nil>")
    return problems


def _map_key_problem(key: str) -> str | None:
    open_at = key.find("[")
    if key.endswith("]") and 0 < open_at < len(key) - 2:
        return None
    return f"bad key ({p.clip(key)}): should have format a[b]"


def _attribute_problem(key: str, values: list[str]) -> str | None:
    problem = _empty_problem(key, values)
    if problem:
        return problem
    if key.startswith("request.headers"):
        return _map_key_problem(key)
    if key in ("source.ip", "remote.ip", "destination.ip"):
        problems = _ip_problems(values)
        return "; ".join(problems) if problems else None
    if key == "source.serviceAccount":
        return _service_account_problem(key, values)
    if key == "source.trustDomain":
        return _wildcard_problem(key, values)
    if key.startswith("request.auth.claims") or key.startswith("experimental.envoy.filters."):
        return _map_key_problem(key)
    if key == "destination.port":
        problems = _port_problems(values)
        return "; ".join(problems) if problems else None
    if key in (
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "connection.sni",
    ):
        return None
    if key == "destination.namespace":
        return f"attribute {key} is replaced by the metadata.namespace"
    if key.startswith("destination.labels"):
        return f"attribute {p.clip(key)} is replaced by the workload selector"
    if key in ("destination.name", "destination.user"):
        return f"deprecated attribute {key}: only supported in v1alpha1"
    return f"unknown attribute: {p.clip(key)}"


def check_peer_authentication(report: Report, spec: dict[str, Any]) -> None:
    selector = obj(spec, "selector")
    ports = mapping(spec, "portLevelMtls")
    if not mapping(selector, "matchLabels") and ports:
        report.error(
            "spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS"
        )
    for port in ports:
        try:
            number = int(port)
        except ValueError:
            number = 0
        if not 0 < number <= 65535:
            report.error(
                f"spec.portLevelMtls[{json.dumps(port)}]", "port must be in range 1..65535"
            )
    p.workload_selector(report, "spec.selector", selector)


def check_request_authentication(report: Report, spec: dict[str, Any]) -> None:
    p.policy_targets(report, spec)
    for i, rule in enumerate(items(spec, "jwtRules")):
        if isinstance(rule, dict):
            _jwt_rule(report, f"spec.jwtRules[{i}]", rule)


def _jwt_rule(report: Report, path: str, rule: dict[str, Any]) -> None:
    from istio_sdk.config.semantic import _jwks

    for i, audience in enumerate(items(rule, "audiences")):
        if audience == "":
            report.error(f"{path}.audiences[{i}]", "audience must be non-empty string")
    issuer, jwks_uri = text(rule, "issuer"), text(rule, "jwksUri")
    if not issuer and not jwks_uri:
        report.error(path, "issuer or jwksUri must be non-empty string")
    if jwks_uri:
        report.add(f"{path}.jwksUri", jwks_uri_problem(jwks_uri))
    jwks = text(rule, "jwks")
    if jwks:
        keys, problem = _jwks.parse(jwks)
        if problem:
            report.error(f"{path}.jwks", f"jwks parse error: {problem}")
        for index in _jwks.private_key_indexes(keys):
            report.warn(
                f"{path}.jwks",
                f"jwks key at index {index} contains private key material; only public keys are "
                "used for verification",
            )
    for i, location in enumerate(items(rule, "fromHeaders")):
        if not text(location, "name"):
            report.error(
                f"{path}.fromHeaders[{i}].name", "location header name must be non-empty string"
            )
    for i, location in enumerate(items(rule, "fromParams")):
        if location == "":
            report.error(f"{path}.fromParams[{i}]", "location query must be non-empty string")
    for i, location in enumerate(items(rule, "fromCookies")):
        if location == "":
            report.error(f"{path}.fromCookies[{i}]", "cookie name must be non-empty string")
    for i, output in enumerate(items(rule, "outputClaimToHeaders")):
        where = f"{path}.outputClaimToHeaders[{i}]"
        if not text(output, "claim") or not text(output, "header"):
            report.error(
                where, "outputClaimToHeaders header and claim value must be non-empty string"
            )
            continue
        report.add(f"{where}.header", p.strict_header_problem(text(output, "header")))
    if has(rule, "timeout"):
        report.add(f"{path}.timeout", p.duration_problem(rule["timeout"]))


def jwks_uri_problem(uri: str) -> str | None:
    """Istio's ``ParseJwksURI``: Go's ``url.Parse``, then an http or https scheme."""
    from istio_sdk.config import _go as go

    try:
        scheme = go.parse_url(uri)
    except ValueError as exc:
        return f"parse {p.go_quote(uri)}: {exc}"
    if scheme not in ("http", "https"):
        return f"URI scheme {p.go_quote(scheme)} is not supported"
    return None
