"""Istio's semantic validation: the rules ``istioctl validate`` and the admission webhook apply.

The schema (``config._validate``) says whether a document has the right shape; these rules say
whether Istio accepts it: duplicate subset names, a port of 99999, a ``*.*.bad`` host, weights
that are negative or all zero, an HTTPS Gateway server without ``tls``, and the rest of
istio/istio ``pkg/config/validation`` for every current kind, plus Istio 1.3's rules for the
1.3 kinds (authentication Policy and MeshPolicy, rbac ServiceRole, ServiceRoleBinding,
RbacConfig and ClusterRbacConfig). Istio's warnings stay warnings.

:func:`check` takes a spec in its proto3 JSON form and returns every :class:`Finding` (level,
field path, Istio's message), not only the first one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from istio_sdk.config.semantic import (
    _destinationrule,
    _envoyfilter,
    _extensions,
    _gateway,
    _legacy,
    _mixer,
    _proxyconfig,
    _security,
    _serviceentry,
    _sidecar,
    _telemetry,
    _virtualservice,
    _workload,
)
from istio_sdk.config.semantic._report import Context, Finding, Level, Report, join_key
from istio_sdk.config.semantic._virtualservice import RuleProblem, unreachable_rules

Checker = Callable[[Report, dict[str, Any]], None]

_CHECKS: dict[tuple[str, str], Checker] = {
    ("networking.istio.io", "VirtualService"): _virtualservice.check_virtual_service,
    ("networking.istio.io", "DestinationRule"): _destinationrule.check_destination_rule,
    ("networking.istio.io", "Gateway"): _gateway.check_gateway,
    ("networking.istio.io", "ServiceEntry"): _serviceentry.check_service_entry,
    ("networking.istio.io", "Sidecar"): _sidecar.check_sidecar,
    ("networking.istio.io", "WorkloadEntry"): _workload.check_workload_entry,
    ("networking.istio.io", "WorkloadGroup"): _workload.check_workload_group,
    ("networking.istio.io", "EnvoyFilter"): _envoyfilter.check_envoy_filter,
    ("networking.istio.io", "ProxyConfig"): _proxyconfig.check_proxy_config,
    ("security.istio.io", "AuthorizationPolicy"): _security.check_authorization_policy,
    ("security.istio.io", "PeerAuthentication"): _security.check_peer_authentication,
    ("security.istio.io", "RequestAuthentication"): _security.check_request_authentication,
    ("telemetry.istio.io", "Telemetry"): _telemetry.check_telemetry,
    ("extensions.istio.io", "WasmPlugin"): _extensions.check_wasm_plugin,
    ("extensions.istio.io", "TrafficExtension"): _extensions.check_traffic_extension,
    ("authentication.istio.io", "Policy"): _legacy.check_authentication_policy,
    ("authentication.istio.io", "MeshPolicy"): _legacy.check_authentication_policy,
    ("rbac.istio.io", "ServiceRole"): _legacy.check_service_role,
    ("rbac.istio.io", "ServiceRoleBinding"): _legacy.check_service_role_binding,
    ("rbac.istio.io", "RbacConfig"): _legacy.check_rbac_config,
    ("rbac.istio.io", "ClusterRbacConfig"): _legacy.check_rbac_config,
    ("config.istio.io", "rule"): _mixer.check_rule,
    ("config.istio.io", "instance"): _mixer.check_instance,
}

_DRY_RUN = "istio.io/dry-run"
_FORBIDDEN_ANNOTATIONS = (
    ("internal.istio.io/webhook-always-reject", "annotation found, rejecting"),
    ("internal.istio.io/parent-namespace", "annotation found, this may not be set by users"),
    ("internal.istio.io/parents", "annotation found, this may not be set by users"),
)
_GO_BOOLS = frozenset(
    ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")
)


def has_rules(group: str, kind: str) -> bool:
    """Whether Istio has semantic rules for this kind."""
    return (group, kind) in _CHECKS


def check(
    group: str,
    kind: str,
    spec: Any,
    *,
    name: str = "",
    namespace: str = "",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Every error and warning Istio's validation gives a resource (its spec as proto3 JSON)."""
    context = Context(kind, name, namespace, dict(labels or {}), dict(annotations or {}))
    report = Report(context)
    checker = _CHECKS.get((group, kind))
    if checker is None:
        return []
    if not _metadata(report, spec if isinstance(spec, dict) else {}):
        return report.findings  # Istio stops at a metadata problem
    checker(report, spec if isinstance(spec, dict) else {})
    return report.findings


def _metadata(report: Report, spec: dict[str, Any]) -> bool:
    """The checks Istio runs on every kind before its own; False when one fails."""
    ctx = report.context
    path = join_key("metadata.annotations", _DRY_RUN)
    if _DRY_RUN in ctx.annotations:
        value = ctx.annotations[_DRY_RUN]
        if ctx.kind != "AuthorizationPolicy":
            report.error(
                path,
                f"{ctx.namespace}/{ctx.name} has unsupported annotation {_DRY_RUN}, please remove "
                "the annotation",
            )
            return False
        action = spec.get("action") or "ALLOW"
        if action not in ("ALLOW", "DENY"):
            report.error(
                path,
                f"the annotation {_DRY_RUN} currently only supports action ALLOW/DENY, found "
                f"action {action} in {ctx.namespace}/{ctx.name}",
            )
            return False
        if value not in _GO_BOOLS:
            report.error(
                path,
                f"{ctx.namespace}/{ctx.name} has annotation {_DRY_RUN} with invalid value "
                f'({value}): strconv.ParseBool: parsing "{value}": invalid syntax',
            )
            return False
    for annotation, reason in _FORBIDDEN_ANNOTATIONS:
        if annotation in ctx.annotations:
            report.error(join_key("metadata.annotations", annotation), f'"{annotation}" {reason}')
            return False
    return True


__all__ = ["Context", "Finding", "Level", "RuleProblem", "check", "has_rules", "unreachable_rules"]
