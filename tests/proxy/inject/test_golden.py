"""The injector against Istio's golden injected outputs (see ``golden_cases.py``)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from proxy.inject.golden_cases import TESTDATA, Case, all_cases, load_documents, normalize

from istio_sdk.proxy.inject import InjectionError, apply_patch, inject_object
from istio_sdk.proxy.inject.webhook import review_response

CASES = all_cases()


def _inject(case: Case) -> list[object]:
    settings = case.settings()
    return [
        inject_object(doc, settings)[0]
        for doc in load_documents((TESTDATA / case.input).read_text())
    ]


@pytest.mark.parametrize("case", [c for c in CASES if c.error is None], ids=lambda c: c.golden)
def test_matches_istio_golden(case: Case) -> None:
    want = load_documents((TESTDATA / case.golden).read_text())
    assert normalize(_inject(case)) == normalize(want)


@pytest.mark.parametrize("case", [c for c in CASES if c.error], ids=lambda c: c.input)
def test_refuses_bad_traffic_annotations(case: Case) -> None:
    with pytest.raises(InjectionError) as caught:
        _inject(case)
    assert case.error is not None and case.error in str(caught.value).lower()


def test_every_golden_file_is_used_or_explained() -> None:
    from proxy.inject.golden_cases import NOT_COVERED

    used = {c.golden for c in CASES} | set(NOT_COVERED)
    present = {p.name for p in TESTDATA.glob("*.injected")}
    assert present - used == set()
    assert len([c for c in CASES if c.error is None]) >= 100


@pytest.mark.parametrize(
    "name",
    [
        "hello.yaml.injected",
        "hello-probes.yaml.injected",
        "hello-old-version.yaml.injected",
        "gateway.yaml.injected",
        "grpc-agent.yaml.injected",
    ],
)
def test_injecting_an_injected_object_changes_nothing(name: str) -> None:
    case = next(c for c in CASES if c.golden == name)
    settings = case.settings()
    for doc in load_documents((TESTDATA / name).read_text()):
        again, _ = inject_object(copy.deepcopy(doc), settings)
        assert normalize(again) == normalize(doc)


_WEBHOOK_SKIP = {"cronjob.yaml.injected", "cronjob-old-version.yaml.injected"}  # as Istio's test


def _pods(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc.get("kind") == "List":
        return [pod for item in doc.get("items") or [] for pod in _pods(item)]
    if doc.get("kind") == "Pod":
        return [doc]
    if "template" not in (doc.get("spec") or {}):
        return []
    template = copy.deepcopy(doc["spec"]["template"])
    meta = template.setdefault("metadata", {})
    kind, api, name = doc["kind"], doc["apiVersion"], doc["metadata"]["name"]
    if kind == "Deployment":
        kind, api, name = "ReplicaSet", "apps/v1", name + "-fake"
        meta.setdefault("labels", {})["pod-template-hash"] = "fake"
        meta["generateName"] = name + "-"
    else:
        meta["generateName"] = name
    meta["ownerReferences"] = [{"apiVersion": api, "kind": kind, "name": name, "controller": True}]
    return [{"apiVersion": "v1", "kind": "Pod", **template}]


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.error is None and c.golden not in _WEBHOOK_SKIP],
    ids=lambda c: c.golden,
)
def test_the_webhooks_patch_makes_the_golden_pod(case: Case) -> None:
    settings = case.settings()
    documents = load_documents((TESTDATA / case.input).read_text())
    # a controller creates its Pods in its own namespace
    namespace = (documents[0].get("metadata") or {}).get("namespace") or "default"
    inputs = [p for d in documents for p in _pods(d)]
    wanted = [p for d in load_documents((TESTDATA / case.golden).read_text()) for p in _pods(d)]
    assert len(inputs) == len(wanted)
    for pod, want in zip(inputs, wanted, strict=True):
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u", "namespace": namespace, "object": pod},
        }
        response = json.loads(review_response(review, settings).body)["response"]
        assert response["allowed"] is True, response
        patch = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
        assert normalize(apply_patch(pod, patch)) == normalize(want)
