"""Galley's validating webhook as a pure function: an AdmissionReview in, the answer out.

Three paths, as Istio served them:

- ``/validate`` (and below it): istiod's webhook. Kinds are looked up by group and kind, the
  version ignored (a newer version than ours is validated as the kind we know); a kind Istio's
  webhook does not know is denied ``unrecognized type group/version, Kind=kind``. Only CREATE
  and UPDATE are checked: DELETE, CONNECT (or no operation) are allowed. An invalid object is
  denied ``configuration is invalid: ...`` with every error (Go's multierror layout when there
  are several, each prefixed by its field path: a project addition); an allowed object carries
  Istio's warnings. A top-level field other than apiVersion, kind, metadata, spec and status is
  denied ``unknown field "x" on Kind resource ns/name`` (after validation, as istiod does).
- ``/admitpilot``: Galley 1.3's Pilot webhook. Kinds are looked up by kind alone, among the
  kinds Pilot 1.3 had (``unrecognized type Kind`` otherwise).
- ``/admitmixer``: Galley 1.3's Mixer webhook. The kind is the request's ``kind.kind``; a kind
  Mixer's validator did not know passes (Mixer left it to others), a DELETE without a name is
  denied, extra top-level fields are denied before validation.

Every answer is an AdmissionReview in the request's apiVersion with its ``uid``
(:mod:`istio_sdk._admission`; Galley 1.3 left apiVersion and kind out, which today's
kube-apiserver refuses). Validation is :func:`istio_sdk.validate`'s (schema, CRD rules and
Istio's semantic rules). Deviations: an unknown field inside ``spec`` is an error here (istiod
ignores it, though the kube-apiserver prunes it before any webhook sees it), and kinds the SDK
does not model (Gateway API TCPRoute, TLSRoute, BackendTLSPolicy, ListenerSet; 1.3's HTTPAPISpec,
QuotaSpec and their bindings; Mixer's adapter-specific kinds) are allowed unchecked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from istio_sdk._admission import (
    AdmissionRequest,
    WebhookAnswer,
    check_http,
    decode_review,
    read_review,
)
from istio_sdk.config import KindInfo, Problem, find_kind, validate
from istio_sdk.config._yaml import describe_json

__all__ = [
    "MIXER_KINDS_1_3",
    "PATHS",
    "PILOT_KINDS",
    "PILOT_KINDS_1_3",
    "answer_request",
    "review",
]

log = logging.getLogger("istio_sdk.galley.webhook")

PATHS = ("/validate", "/admitpilot", "/admitmixer")
"""The paths served (``/validate/...`` too, as istiod's mux routes it)."""

PILOT_KINDS = frozenset(
    [
        ("networking.istio.io", kind)
        for kind in (
            "DestinationRule",
            "EnvoyFilter",
            "Gateway",
            "ProxyConfig",
            "ServiceEntry",
            "Sidecar",
            "VirtualService",
            "WorkloadEntry",
            "WorkloadGroup",
        )
    ]
    + [
        ("security.istio.io", kind)
        for kind in ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication")
    ]
    + [("telemetry.istio.io", "Telemetry")]
    + [("extensions.istio.io", kind) for kind in ("TrafficExtension", "WasmPlugin")]
    + [
        ("gateway.networking.k8s.io", kind)
        for kind in (
            "BackendTLSPolicy",
            "GRPCRoute",
            "Gateway",
            "GatewayClass",
            "HTTPRoute",
            "ListenerSet",
            "ReferenceGrant",
            "TCPRoute",
            "TLSRoute",
        )
    ]
)
"""``(group, kind)`` istiod's webhook validates (its stable Pilot and Gateway API schemas)."""

PILOT_KINDS_1_3 = {
    "VirtualService": "networking.istio.io",
    "Gateway": "networking.istio.io",
    "ServiceEntry": "networking.istio.io",
    "DestinationRule": "networking.istio.io",
    "EnvoyFilter": "networking.istio.io",
    "Sidecar": "networking.istio.io",
    "HTTPAPISpec": "config.istio.io",
    "HTTPAPISpecBinding": "config.istio.io",
    "QuotaSpec": "config.istio.io",
    "QuotaSpecBinding": "config.istio.io",
    "Policy": "authentication.istio.io",
    "MeshPolicy": "authentication.istio.io",
    "ServiceRole": "rbac.istio.io",
    "ServiceRoleBinding": "rbac.istio.io",
    "RbacConfig": "rbac.istio.io",
    "ClusterRbacConfig": "rbac.istio.io",
}
"""Pilot 1.3's kinds (``model.IstioConfigTypes``), looked up by kind alone, and their group."""

MIXER_KINDS_1_3 = frozenset(
    ["adapter", "attributemanifest", "handler", "instance", "rule", "template"]
)
"""The ``config.istio.io`` kinds ``/admitmixer`` checks; Mixer passed the kinds it did not know."""

_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")
_MAX_LISTED = 100
_MAX_MESSAGE = 2000


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _short(text: str) -> str:
    """``text`` as a message quotes it: a hostile megabyte is not echoed back."""
    return text if len(text) <= 200 else text[:200] + "..."


def _dry_run(request: AdmissionRequest) -> str:
    return " (dry run)" if request.request.get("dryRun") is True else ""


def _object(request: AdmissionRequest) -> Mapping[str, Any] | str:
    """The request's object, or why it cannot be read as one."""
    obj = request.request.get("object")
    if obj is None:
        return "cannot decode configuration: the request has no object"
    if not isinstance(obj, Mapping):
        return f"cannot decode configuration: expected an object, got {describe_json(obj)}"
    for field, want in (("apiVersion", str), ("kind", str), ("metadata", Mapping)):
        value = obj.get(field)
        if value is not None and not isinstance(value, want):
            return f"cannot decode configuration: {field} is {describe_json(value)}"
    return obj


def _line(problem: Problem) -> str:
    line = f"{problem.path}: {problem.message}" if problem.path else problem.message
    return line if len(line) <= _MAX_MESSAGE else line[:_MAX_MESSAGE] + "..."


def _errors_message(lines: list[str]) -> str:
    """Istio's wording: one error as it is, several as Go's multierror lists them."""
    if len(lines) == 1:
        return f"configuration is invalid: {lines[0]}"
    shown = lines[:_MAX_LISTED]
    if len(lines) > len(shown):
        shown.append(f"... and {len(lines) - len(shown)} more")
    points = "\n\t".join(f"* {line}" for line in shown)
    return f"configuration is invalid: {len(lines)} errors occurred:\n\t{points}\n\n"


def _check(obj: Mapping[str, Any], info: KindInfo) -> tuple[list[str], list[str]]:
    """Errors and warnings for ``obj`` validated as ``info`` (its version kept when served)."""
    doc = {field: obj[field] for field in _TOP_LEVEL if field in obj}
    api_version = _text(obj.get("apiVersion"))
    doc["apiVersion"] = api_version if api_version in info.api_versions else info.api_version
    doc["kind"] = info.kind
    problems = validate(json.dumps(doc).encode())
    errors = [_line(p) for p in problems if p.is_error]
    warnings = [_line(p) for p in problems if not p.is_error]
    return errors, warnings


def _unknown_field(
    request: AdmissionRequest, obj: Mapping[str, Any], kind: str, name: str
) -> str | None:
    for key in obj:
        if key not in _TOP_LEVEL:
            namespace = _text(request.request.get("namespace"))
            return (
                f"unknown field {_short(json.dumps(key))} on {_short(kind)} resource "
                f"{_short(namespace)}/{_short(name)}"
            )
    return None


def _request_kind(request: AdmissionRequest) -> str:
    gvk = request.request.get("kind")
    return _text(gvk.get("kind")) if isinstance(gvk, Mapping) else ""


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return _text(meta.get("name")) if isinstance(meta, Mapping) else ""


def _denied(request: AdmissionRequest, message: str) -> dict[str, Any]:
    log.info("validation denied%s: %.300s", _dry_run(request), message)
    return request.deny(message)


def _verdict(
    request: AdmissionRequest, obj: Mapping[str, Any], info: KindInfo | None, *, fields_last: bool
) -> dict[str, Any]:
    """Validate (``info`` None: a kind we do not model passes) and check the top-level fields
    after (istiod) or before (Galley 1.3's Mixer path) it."""
    unknown = _unknown_field(request, obj, _request_kind(request), _name(obj))
    if unknown is not None and not fields_last:
        return _denied(request, unknown)
    errors, warnings = _check(obj, info) if info is not None else ([], [])
    if errors:
        return _denied(request, _errors_message(errors))
    if unknown is not None:
        return _denied(request, unknown)
    return request.allow(warnings=warnings) if warnings else request.allow()


def _validate(request: AdmissionRequest) -> dict[str, Any]:
    """``/validate``: istiod's webhook."""
    if request.request.get("operation") not in ("CREATE", "UPDATE"):
        return request.allow()
    obj = _object(request)
    if isinstance(obj, str):
        return _denied(request, obj)
    api_version, kind = _text(obj.get("apiVersion")), _text(obj.get("kind"))
    group, _, version = api_version.rpartition("/")
    if (group, kind) not in PILOT_KINDS:
        return _denied(
            request, f"unrecognized type {_short(group)}/{_short(version)}, Kind={_short(kind)}"
        )
    return _verdict(request, obj, find_kind(api_version, kind), fields_last=True)


def _admit_pilot(request: AdmissionRequest) -> dict[str, Any]:
    """``/admitpilot``: Galley 1.3's Pilot webhook."""
    if request.request.get("operation") not in ("CREATE", "UPDATE"):
        return request.allow()
    obj = _object(request)
    if isinstance(obj, str):
        return _denied(request, obj)
    kind = _text(obj.get("kind"))
    group = PILOT_KINDS_1_3.get(kind)
    if group is None:
        return _denied(request, f"unrecognized type {_short(kind)}")
    info = find_kind(f"{group}/v1", kind)
    return _verdict(request, obj, info, fields_last=True)


def _admit_mixer(request: AdmissionRequest) -> dict[str, Any]:
    """``/admitmixer``: Galley 1.3's Mixer webhook."""
    operation = request.request.get("operation")
    if operation == "DELETE":
        if not _text(request.request.get("name")):
            return _denied(request, "illformed request: name not found on delete request")
        return request.allow()
    if operation not in ("CREATE", "UPDATE"):
        return request.allow()
    obj = _object(request)
    if isinstance(obj, str):
        return _denied(request, obj)
    if not _text(obj.get("kind")):
        return _denied(request, "cannot decode configuration: Object 'Kind' is missing")
    kind = _request_kind(request) or _text(obj.get("kind"))
    info = find_kind("config.istio.io/v1alpha2", kind) if kind in MIXER_KINDS_1_3 else None
    return _verdict(request, obj, info, fields_last=False)


_WEBHOOKS: dict[str, Callable[[AdmissionRequest], dict[str, Any]]] = {
    "/validate": _validate,
    "/admitpilot": _admit_pilot,
    "/admitmixer": _admit_mixer,
}


def _webhook(path: str) -> str | None:
    route = path.split("?", 1)[0]
    if route.startswith("/validate/"):
        return "/validate"
    return route if route in _WEBHOOKS else None


def review(admission_review: object, *, path: str = "/validate") -> dict[str, Any]:
    """The AdmissionReview answering ``admission_review`` at ``path`` (one of :data:`PATHS`).

    ``admission_review`` is the decoded JSON, or the request body (``bytes``/``str``) to decode
    within the config layer's limits. Never raises on bad input: what cannot be read is denied
    with the reason. An unknown ``path`` is a ``ValueError``.
    """
    webhook = _webhook(path)
    if webhook is None:
        raise ValueError(f"no validating webhook at {path[:200]!r}; paths: {', '.join(PATHS)}")
    if isinstance(admission_review, bytes | str):
        request = decode_review(admission_review)
    else:
        request = read_review(admission_review)
    if isinstance(request, dict):
        return request
    return _WEBHOOKS[webhook](request)


def answer_request(
    *, method: str, path: str, content_type: str | None, body: bytes
) -> WebhookAnswer:
    """The answer to one HTTP request to the validating webhook (the whole protocol decision):
    404 off its paths, ``GET /ready`` 200 (Galley 1.3's readiness probe), the shared HTTP
    refusals (:func:`istio_sdk._admission.check_http`), then :func:`review`."""
    route = path.split("?", 1)[0]
    if route == "/ready" and method == "GET":
        return WebhookAnswer.text(200, "ok")
    if _webhook(route) is None:
        return WebhookAnswer.text(
            404, f"no route {route[:200]!r}; the validating webhook serves {', '.join(PATHS)}"
        )
    refused = check_http(
        method=method, content_type=content_type, body=body, what="validating webhook"
    )
    if refused is not None:
        return refused
    return WebhookAnswer.review(review(body, path=route))
