"""Istio 1.3's rules for Mixer's own kinds: ``rule`` and ``instance`` (config.istio.io/v1alpha2).

Mixer refused a rule whose ``match`` does not parse or is not a boolean, and an instance whose
template is unknown or whose params do not compile against the template's fields. A single
document is checked against Istio 1.3's default vocabulary (the ``istioproxy`` and
``kubernetes`` manifests); an attribute outside it may come from an ``attributemanifest`` in the
same mesh, so it is a warning, not an error. References between documents (a rule's handler
and instances) are the server's to resolve: :func:`istio_sdk.mixer.runtime.build_routing`.

The expression compiler lives in :mod:`istio_sdk.mixer`, above the config layer; it is imported
when a Mixer document is checked, never when :mod:`istio_sdk.config` is.
"""

from __future__ import annotations

from typing import Any

from istio_sdk.config.semantic._report import Report

_UNKNOWN_ATTRIBUTE = "unknown attribute "


def _expression(report: Report, path: str, text: str, *, want_bool: bool) -> None:
    from istio_sdk.api.istio.policy.v1beta1 import ValueType
    from istio_sdk.mixer import DEFAULT_MANIFEST, ExpressionError, TypeCheckError
    from istio_sdk.mixer.expr import compile as compile_expression

    try:
        compiled = compile_expression(text, DEFAULT_MANIFEST)
    except TypeCheckError as exc:
        if str(exc).startswith(_UNKNOWN_ATTRIBUTE):
            report.warn(
                path,
                f"{exc} (not in Istio 1.3's default vocabulary; declare it in an "
                "attributemanifest)",
            )
        else:
            report.error(path, str(exc))
        return
    except ExpressionError as exc:
        report.error(path, str(exc))
        return
    if want_bool and compiled.result_type != ValueType.BOOL:
        report.error(path, f"expression {text!r} is of type {compiled.result_type.name}, not BOOL")


def check_rule(report: Report, spec: dict[str, Any]) -> None:
    match = spec.get("match")
    if isinstance(match, str) and match.strip() and match.strip() != "true":
        _expression(report, "spec.match", match, want_bool=True)
    for position, action in enumerate(spec.get("actions") or ()):
        if not isinstance(action, dict) or not action.get("handler"):
            report.error(f"spec.actions[{position}].handler", "handler is required")
    for field in ("requestHeaderOperations", "responseHeaderOperations"):
        for position, operation in enumerate(spec.get(field) or ()):
            if not isinstance(operation, dict):
                continue
            if not operation.get("name"):
                report.error(f"spec.{field}[{position}].name", "name is required")
            for index, value in enumerate(operation.get("values") or ()):
                if isinstance(value, str) and value:
                    path = f"spec.{field}[{position}].values[{index}]"
                    _expression(report, path, value, want_bool=False)


def check_instance(report: Report, spec: dict[str, Any]) -> None:
    from istio_sdk.mixer import DEFAULT_MANIFEST, ExpressionError, TypeCheckError
    from istio_sdk.mixer.errors import InstanceParamsError
    from istio_sdk.mixer.runtime.instances import compile_instance
    from istio_sdk.mixer.templates import TEMPLATES

    template = spec.get("compiledTemplate") or spec.get("template")
    if not isinstance(template, str) or not template:
        report.error("spec.compiledTemplate", "template is required")
        return
    if template not in TEMPLATES:
        known = ", ".join(sorted(TEMPLATES))
        report.error("spec.compiledTemplate", f"template {template!r} is not available ({known})")
        return
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        report.error("spec.params", "params must be an object")
        return
    try:
        compile_instance(report.context.name, template, params, DEFAULT_MANIFEST)
    except TypeCheckError as exc:
        if _UNKNOWN_ATTRIBUTE in str(exc):
            report.warn("spec.params", f"{exc} (not in Istio 1.3's default vocabulary)")
        else:
            report.error("spec.params", str(exc))
    except (ExpressionError, InstanceParamsError) as exc:
        report.error("spec.params", str(exc))
