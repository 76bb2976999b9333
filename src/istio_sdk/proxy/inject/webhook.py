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
problem (both shared with Galley's validation webhook: :mod:`istio_sdk._admission`). Nothing
here raises on bad input.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any

from istio_sdk._admission import (
    ADMISSION_VERSIONS,
    MAX_BODY_BYTES,
    AdmissionRequest,
    WebhookAnswer,
    check_http,
    decode_review,
    read_review,
)
from istio_sdk.config._yaml import describe_json
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

_URL_PARAMETERS = {"cluster": "ISTIO_META_CLUSTER_ID", "net": "ISTIO_META_NETWORK"}


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


def _denied(request: AdmissionRequest, message: str) -> WebhookAnswer:
    log.warning("injection refused: %s", message)
    return WebhookAnswer.review(request.deny(message))


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
    request = read_review(review)
    if isinstance(request, dict):
        return WebhookAnswer.review(request)
    return _inject(request, settings, path, namespaces)


def _inject(
    request: AdmissionRequest,
    settings: InjectSettings,
    path: str,
    namespaces: Mapping[str, Mapping[str, str]] | None,
) -> WebhookAnswer:
    pod = request.request.get("object")
    if not isinstance(pod, Mapping):
        return _denied(request, f"the request's object is not a Pod: {describe_json(pod)}")
    kind = pod.get("kind")
    if kind not in (None, "Pod"):
        return _denied(request, f"the request's object is a {kind!r:.60}, not a Pod")
    namespace = request.request.get("namespace")
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
        return _denied(request, f"Pod injection failed: {exc}")
    if result.skipped is not None:
        log.info("not injected: %s", result.skipped)
        return WebhookAnswer.review(request.allow())
    patch = create_patch(_without_managed_fields(pod), result.pod)
    encoded = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    return WebhookAnswer.review(request.allow(patch=encoded, patchType="JSONPatch"))


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
    refused = check_http(method=method, content_type=content_type, body=body, what="injector")
    if refused is not None:
        return refused
    request = decode_review(body)
    if isinstance(request, dict):
        return WebhookAnswer.review(request)
    return _inject(request, settings, route, namespaces)
