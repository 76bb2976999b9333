"""Istio's webhook selectors: which Pods, in which namespaces, reach which revision."""

from __future__ import annotations

import base64
import json

import pytest

from istio_sdk.proxy.inject import InjectSettings, inject_pod, webhook_selects
from istio_sdk.proxy.inject.webhook import review_response

ON = {"istio-injection": "enabled"}
OFF = {"istio-injection": "disabled"}
CANARY_NS = {"istio.io/rev": "canary"}
DEFAULT_NS = {"istio.io/rev": "default"}


@pytest.mark.parametrize(
    ("namespace", "pod", "revision", "selected"),
    [
        (ON, {}, "", True),
        (ON, {"sidecar.istio.io/inject": "false"}, "", False),
        (OFF, {}, "", False),
        (OFF, {"sidecar.istio.io/inject": "true"}, "", False),  # the namespace label wins
        ({}, {}, "", False),
        ({}, {"sidecar.istio.io/inject": "true"}, "", True),
        ({}, {"sidecar.istio.io/inject": "true", "istio.io/rev": "canary"}, "", False),
        (DEFAULT_NS, {}, "", True),
        (CANARY_NS, {}, "", False),
        (CANARY_NS, {}, "canary", True),
        ({**CANARY_NS, **ON}, {}, "canary", False),  # istio-injection has precedence
        ({**CANARY_NS, **ON}, {}, "", True),
        ({}, {"istio.io/rev": "canary"}, "canary", True),
        ({}, {"istio.io/rev": "canary", "sidecar.istio.io/inject": "false"}, "canary", False),
        (ON, {}, "canary", False),
        ({}, {"sidecar.istio.io/inject": "true"}, "canary", False),
    ],
)
def test_istios_selectors(
    namespace: dict[str, str], pod: dict[str, str], revision: str, selected: bool
) -> None:
    assert webhook_selects(namespace, pod, revision=revision) is selected


def test_namespaces_by_default_leaves_system_namespaces_out() -> None:
    assert webhook_selects({}, {}, namespaces_by_default=True, namespace="shop")
    assert not webhook_selects({}, {}, namespaces_by_default=True, namespace="kube-system")
    assert not webhook_selects({}, {"istio.io/rev": "x"}, namespaces_by_default=True)


def _pod(namespace: str) -> dict[str, object]:
    return {
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {"containers": [{"name": "app"}]},
    }


def test_inject_pod_applies_the_selectors_given_namespace_labels() -> None:
    settings = InjectSettings()
    assert inject_pod(_pod("a"), settings, namespace_labels=ON).skipped is None
    skipped = inject_pod(_pod("a"), settings, namespace_labels={}).skipped
    assert skipped is not None and "select" in skipped
    canary = InjectSettings(revision="canary")
    assert inject_pod(_pod("a"), canary, namespace_labels=CANARY_NS).skipped is None


def test_a_webhook_told_the_namespaces_selects_by_them() -> None:
    namespaces = {"meshed": ON, "plain": {}}
    for name, patched in (("meshed", True), ("plain", False), ("unknown", False)):
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u", "namespace": name, "object": _pod("")},
        }
        answer = json.loads(review_response(review, InjectSettings(), namespaces=namespaces).body)
        assert answer["response"]["allowed"] is True
        assert ("patch" in answer["response"]) is patched
        if patched:
            assert json.loads(base64.b64decode(answer["response"]["patch"]))
