"""The 1.3-era kinds: authentication Policy and MeshPolicy, and the rbac.istio.io kinds.

Istio 1.3's validators returned errors only (there were no warnings then).
"""

from __future__ import annotations

from typing import Any

from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import Report, items, mapping, number, obj, text
from istio_sdk.config.semantic._security import jwks_uri_problem
from istio_sdk.config.semantic._virtualservice import subset_name_problem

DEFAULT = "default"


def check_authentication_policy(report: Report, spec: dict[str, Any]) -> None:
    name = report.context.name
    targets = items(spec, "targets")
    if report.context.kind == "MeshPolicy":  # the cluster-scoped kind
        if name != DEFAULT:
            report.error(
                "metadata.name",
                f"cluster-scoped authentication policy name must be {p.go_quote(DEFAULT)}, found "
                f"{p.go_quote(name)}",
            )
        if targets:
            report.error(
                "spec.targets", "cluster-scoped authentication policy must not have targets"
            )
    else:
        if not targets and name != DEFAULT:
            report.error(
                "metadata.name",
                f"authentication policy with no target rules  must be named {p.go_quote(DEFAULT)}, "
                f"found {p.go_quote(name)}",
            )
        if targets and name == DEFAULT:
            report.error(
                "spec.targets",
                f"authentication policy with name {p.go_quote(name)} must not have any target "
                "rules",
            )
        for i, target in enumerate(targets):
            _target(report, f"spec.targets[{i}]", target)
    issuers: set[str] = set()
    for i, peer in enumerate(items(spec, "peers")):
        jwt = obj(peer, "jwt")
        if jwt is not None:
            _jwt(report, f"spec.peers[{i}].jwt", jwt, issuers)
    for i, origin in enumerate(items(spec, "origins")):
        where = f"spec.origins[{i}]"
        if not isinstance(origin, dict):
            report.error(where, "origin cannot be empty")
            continue
        jwt = obj(origin, "jwt")
        if jwt is None:
            report.error(f"{where}.jwt", "jwt cannot be empty")
            continue
        _jwt(report, f"{where}.jwt", jwt, issuers)


def _target(report: Report, path: str, target: Any) -> None:
    name = text(target, "name")
    if not p.is_label(name):
        report.error(f"{path}.name", f"target name {p.go_quote(name)} must be a valid label")
    for i, port in enumerate(items(target, "ports")):
        where = f"{path}.ports[{i}]"
        port_name, port_number = text(port, "name"), number(port, "number")
        if not port_name and not port_number:
            report.add(where, subset_name_problem(port_name))
            report.add(where, p.port_problem(port_number))
        elif port_number:
            report.add(f"{where}.number", p.port_problem(port_number))
        else:
            report.add(f"{where}.name", subset_name_problem(port_name))


def _jwt(report: Report, path: str, jwt: dict[str, Any], issuers: set[str]) -> None:
    issuer = text(jwt, "issuer")
    if issuer in issuers:
        report.error(f"{path}.issuer", f"jwt with issuer {p.go_quote(issuer)} already defined")
    issuers.add(issuer)
    if not issuer:
        report.error(f"{path}.issuer", "issuer must be set")
    for i, audience in enumerate(items(jwt, "audiences")):
        if audience == "":
            report.error(f"{path}.audiences[{i}]", "audience must be non-empty string")
    if text(jwt, "jwksUri"):
        report.add(f"{path}.jwksUri", jwks_uri_problem(text(jwt, "jwksUri")))
    for i, header in enumerate(items(jwt, "jwtHeaders")):
        if header == "":
            report.error(f"{path}.jwtHeaders[{i}]", "location header must be non-empty string")
    for i, param in enumerate(items(jwt, "jwtParams")):
        if param == "":
            report.error(f"{path}.jwtParams[{i}]", "location query must be non-empty string")


def check_service_role(report: Report, spec: dict[str, Any]) -> None:
    _access_rules(report, "spec.rules", items(spec, "rules"))


def _access_rules(report: Report, path: str, rules: list[Any]) -> None:
    if not rules:
        report.error(path, "at least 1 rule must be specified")
    same_kind = "cannot have both regular and *not* attributes for the same kind ({}) for rule {}"
    for i, rule in enumerate(rules):
        where = f"{path}[{i}]"
        if items(rule, "methods") and items(rule, "notMethods"):
            report.error(where, same_kind.format("i.e. methods and not_methods", i))
        ports, not_ports = items(rule, "ports"), items(rule, "notPorts")
        if ports and not_ports:
            report.error(where, same_kind.format("i.e. ports and not_ports", i))
        if any(not isinstance(x, int) or p.port_problem(x) for x in ports + not_ports):
            report.error(f"{where}.ports", "at least one port is not in the range of [0, 65535]")
        for j, constraint in enumerate(items(rule, "constraints")):
            here = f"{where}.constraints[{j}]"
            key = text(constraint, "key")
            if not key:
                report.error(f"{here}.key", f"key cannot be empty for constraint {j} in rule {i}")
            if not items(constraint, "values"):
                report.error(
                    f"{here}.values",
                    f"at least 1 value must be specified for constraint {j} in rule {i}",
                )
            if key == "destination.port" and (ports or not_ports):
                report.error(
                    f"{here}.key",
                    f"cannot define {key} for rule {i} because a similar first-class field has "
                    "been defined",
                )


_SUBJECT_FIELDS = (
    "user",
    "group",
    "properties",
    "namespaces",
    "notNamespaces",
    "groups",
    "notGroups",
    "ips",
    "notIps",
    "names",
    "notNames",
)
_FIRST_CLASS = {
    "source.principal": "names",
    "request.auth.claims[groups]": "groups",
    "source.namespace": "namespaces",
    "source.ip": "ips",
}


def check_service_role_binding(report: Report, spec: dict[str, Any]) -> None:
    subjects = items(spec, "subjects")
    if not subjects:
        report.error("spec.subjects", "at least 1 subject must be specified")
    for i, subject in enumerate(subjects):
        where = f"spec.subjects[{i}]"
        if not any(subject.get(f) for f in _SUBJECT_FIELDS) if isinstance(subject, dict) else True:
            report.error(
                where, f"empty subjects are not allowed. Found an empty subject at index {i}"
            )
        for key in mapping(subject, "properties"):
            field = _FIRST_CLASS.get(key)
            if field and items(subject, field):
                report.error(
                    f"{where}.properties",
                    f"cannot define {key} for binding {i} because a similar first-class field has "
                    "been defined",
                )
        if "*" in items(subject, "names") or "*" in items(subject, "notNames"):
            report.error(where, f"do not use * for names or not_names (in rule {i})")
    role_ref, actions, role = obj(spec, "roleRef"), items(spec, "actions"), text(spec, "role")
    if sum((role_ref is not None, bool(actions), bool(role))) != 1:
        report.error("spec", "exactly one of `roleRef`, `role`, or `actions` must be specified")
    if role_ref is not None:
        kind = text(role_ref, "kind")
        if kind != "ServiceRole":
            report.error(
                "spec.roleRef.kind",
                f"kind set to {p.go_quote(kind)}, currently the only supported value is "
                '"ServiceRole"',
            )
        if not text(role_ref, "name"):
            report.error("spec.roleRef.name", "`name` in `roleRef` cannot be empty")
    if actions:
        _access_rules(report, "spec.actions", actions)
    if role == "/":
        report.error("spec.role", "`role` cannot have an empty ServiceRole name")


def check_rbac_config(report: Report, spec: dict[str, Any]) -> None:
    kind, name = report.context.kind, report.context.name
    if name != DEFAULT:
        report.error(
            "metadata.name", f'{kind} has invalid name({p.clip(name)}), name must be "default"'
        )
        return
    mode = text(spec, "mode")
    if mode == "ON_WITH_INCLUSION" and obj(spec, "inclusion") is None:
        report.error("spec.inclusion", "inclusion cannot be null (use 'inclusion: {}' for none)")
    elif mode == "ON_WITH_EXCLUSION" and obj(spec, "exclusion") is None:
        report.error("spec.exclusion", "exclusion cannot be null (use 'exclusion: {}' for none)")
