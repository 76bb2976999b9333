"""The mutating webhook's protocol core: an HTTP request in, the HTTP answer out, no sockets.

The kube-apiserver POSTs an ``AdmissionReview`` (``admission.k8s.io/v1`` or ``v1beta1``) to
``/inject`` (or ``/inject/cluster/C/net/N``, path parameters that set ``ISTIO_META_CLUSTER_ID``
and ``ISTIO_META_NETWORK``, ``--slash--`` standing for ``/`` in values, as istiod reads them).
The answer is an AdmissionReview of the same apiVersion carrying the request's ``uid``: allowed
with a base64 ``JSONPatch`` that turns the Pod into the injected Pod, allowed with no patch when
the Pod is not injected, or not allowed with the reason when the Pod cannot be injected.

What is not an AdmissionReview at all gets an HTTP error, as istiod answers it: an empty body
400, a content type other than JSON 415, a body over :data:`MAX_BODY_BYTES` 413 (the server
refuses it before reading it); a body that is JSON but no usable review is a denial naming the
problem. Nothing here raises on bad input.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any

import attrs

from istio_sdk.config import ConfigError
from istio_sdk.config._yaml import describe_json, parse_json
from istio_sdk.proxy.inject._errors import InjectionError
from istio_sdk.proxy.inject.inject import inject_pod
from istio_sdk.proxy.inject.jsonpatch import create_patch
from istio_sdk.proxy.inject.settings import InjectSettings

__all__ = [
    "ADMISSION_VERSIONS",
    "MAX_BODY_BYTES",
    "WebhookAnswer",
    "answer_request",
    "parse_inject_path",
    "review_response",
]

log = logging.getLogger("istio_sdk.proxy.inject.webhook")

MAX_BODY_BYTES = 6 * 1024 * 1024
"""The largest request body read (istiod's limit)."""

ADMISSION_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
_URL_PARAMETERS = {"cluster": "ISTIO_META_CLUSTER_ID", "net": "ISTIO_META_NETWORK"}


@attrs.frozen
class WebhookAnswer:
    """An HTTP answer: status, content type and body."""

    status: int
    content_type: str
    body: bytes

    @classmethod
    def text(cls, status: int, message: str) -> WebhookAnswer:
        return cls(status, "text/plain; charset=utf-8", (message + "\n").encode())


def parse_inject_path(path: str) -> dict[str, str]:
    """The environment a webhook path sets: ``/inject/cluster/c1/net/n1`` ->
    ``{ISTIO_META_CLUSTER_ID: c1, ISTIO_META_NETWORK: n1}``; other keys are upper-cased, a key
    without a value is ignored, and the older ``/inject/:ENV:K=V`` form is read too."""
    parts = path.removesuffix("/").split("/", 2)
    if len(parts) < 3:
        return {}
    rest = parts[2]
    items: list[str] = []
    if rest.startswith(":ENV:"):
        for pair in rest.split(":ENV:")[1:]:
            key, sep, value = pair.partition("=")
            if key and sep:
                items += [key, value]
    else:
        items = rest.split("/")
        items = [v.replace("--slash--", "/") if i % 2 else v for i, v in enumerate(items)]
    env: dict[str, str] = {}
    for index in range(0, len(items) - 1, 2):
        key = items[index]
        name = _URL_PARAMETERS.get(key, key.upper())
        if name:
            env[name] = items[index + 1]
    return env


def _review(api_version: str, response: dict[str, Any]) -> WebhookAnswer:
    body = {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}
    return WebhookAnswer(200, "application/json", json.dumps(body, separators=(",", ":")).encode())


def _denied(api_version: str, uid: object, message: str) -> WebhookAnswer:
    log.warning("injection refused: %s", message)
    response: dict[str, Any] = {"allowed": False, "status": {"message": message}}
    if isinstance(uid, str):
        response = {"uid": uid, **response}
    return _review(api_version, response)


def review_response(
    review: object,
    settings: InjectSettings,
    path: str = "/inject",
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
) -> WebhookAnswer:
    """The answer to a decoded AdmissionReview (any JSON value).

    ``namespaces`` (namespace name -> labels), when given, applies Istio's webhook selectors
    here (for a server that receives every Pod); a namespace not in it has no labels.
    """
    if not isinstance(review, Mapping):
        return _denied(
            ADMISSION_VERSIONS[0],
            None,
            f"expected an AdmissionReview object, got {describe_json(review)}",
        )
    api_version = review.get("apiVersion")
    if api_version not in ADMISSION_VERSIONS or review.get("kind") != "AdmissionReview":
        return _denied(
            ADMISSION_VERSIONS[0],
            None,
            f"expected kind AdmissionReview of apiVersion {' or '.join(ADMISSION_VERSIONS)}, "
            f"got kind {review.get('kind')!r:.60} of apiVersion {api_version!r:.60}",
        )
    assert isinstance(api_version, str)
    request = review.get("request")
    if not isinstance(request, Mapping):
        return _denied(api_version, None, "the AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        return _denied(api_version, None, "the AdmissionReview request has no uid")
    pod = request.get("object")
    if not isinstance(pod, Mapping):
        return _denied(api_version, uid, f"the request's object is not a Pod: {describe_json(pod)}")
    kind = pod.get("kind")
    if kind not in (None, "Pod"):
        return _denied(api_version, uid, f"the request's object is a {kind!r:.60}, not a Pod")
    namespace = request.get("namespace")
    try:
        result = inject_pod(
            pod,
            settings,
            namespace=namespace if isinstance(namespace, str) else "",
            proxy_env=parse_inject_path(path),
            namespace_labels=None
            if namespaces is None
            else namespaces.get(_namespace_of(pod, namespace), {}),
        )
    except InjectionError as exc:
        return _denied(api_version, uid, f"Pod injection failed: {exc}")
    if result.skipped is not None:
        log.info("not injected: %s", result.skipped)
        return _review(api_version, {"uid": uid, "allowed": True})
    patch = create_patch(_without_managed_fields(pod), result.pod)
    encoded = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    return _review(
        api_version, {"uid": uid, "allowed": True, "patch": encoded, "patchType": "JSONPatch"}
    )


def _namespace_of(pod: Mapping[str, Any], namespace: object) -> str:
    meta = pod.get("metadata")
    own = meta.get("namespace") if isinstance(meta, Mapping) else None
    if isinstance(own, str) and own:
        return own
    return namespace if isinstance(namespace, str) else ""


def _without_managed_fields(pod: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(pod)
    meta = out.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json"


def answer_request(
    *,
    method: str,
    path: str,
    content_type: str | None,
    body: bytes,
    settings: InjectSettings,
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
) -> WebhookAnswer:
    """The answer to one HTTP request to the injector (the whole protocol decision)."""
    route = path.split("?", 1)[0]
    if route != "/inject" and not route.startswith("/inject/"):
        return WebhookAnswer.text(404, f"no route {route[:200]!r}; the injector serves /inject")
    if method != "POST":
        return WebhookAnswer.text(405, "the injector accepts POST only")
    if not body:
        return WebhookAnswer.text(400, "no body found")
    if len(body) > MAX_BODY_BYTES:
        return WebhookAnswer.text(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    if not _is_json(content_type):
        return WebhookAnswer.text(415, "invalid Content-Type, want `application/json`")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _denied(
            ADMISSION_VERSIONS[0], None, f"could not decode body: not UTF-8 at byte {exc.start}"
        )
    try:
        (document,) = parse_json(text, "request body")
    except ConfigError as exc:
        return _denied(ADMISSION_VERSIONS[0], None, f"could not decode body: {exc.problem.message}")
    return review_response(document.value, settings, route, namespaces)
