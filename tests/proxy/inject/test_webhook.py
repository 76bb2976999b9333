"""The injector webhook over real HTTPS: AdmissionReviews in, JSONPatches that make Istio's
golden Pods, and hostile requests answered without a crash."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from proxy.inject.golden_cases import TESTDATA, load_documents, normalize
from support.https import tls_exchange

from istio_sdk._webhook_tls import WebhookCertificate, self_signed_certificate
from istio_sdk.proxy.inject import InjectSettings
from istio_sdk.proxy.inject.jsonpatch import apply_patch
from istio_sdk.proxy.inject.server import InjectorServer
from istio_sdk.proxy.inject.webhook import MAX_BODY_BYTES

CERT = self_signed_certificate(("localhost", "127.0.0.1"))
SETTINGS = InjectSettings.build(native_sidecars=True)


def _as_pod(obj: dict[str, Any]) -> dict[str, Any]:
    """A workload's Pod as its controller creates it (what Istio's webhook test builds)."""
    template = copy.deepcopy(obj["spec"]["template"])
    meta = template.setdefault("metadata", {})
    kind, name = obj["kind"], obj["metadata"]["name"]
    api = obj["apiVersion"]
    if kind == "Deployment":
        kind, api, name = "ReplicaSet", "apps/v1", name + "-fake"
        meta.setdefault("labels", {})["pod-template-hash"] = "fake"
    meta["generateName"] = name + ("-" if obj["kind"] == "Deployment" else "")
    meta["ownerReferences"] = [{"apiVersion": api, "kind": kind, "name": name, "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", **template}


def _review(pod: Any, uid: str = "uid-1", version: str = "admission.k8s.io/v1") -> dict[str, Any]:
    return {
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "object": pod,
        },
    }


@pytest.fixture
async def server() -> AsyncIterator[InjectorServer]:
    injector = InjectorServer(SETTINGS, CERT, request_timeout=2.0)
    await injector.start("127.0.0.1", 0)
    try:
        yield injector
    finally:
        await injector.close()


def _client(server: InjectorServer, certificate: WebhookCertificate = CERT) -> httpx.AsyncClient:
    context = ssl.create_default_context(cadata=certificate.chain_pem)
    return httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{server.port}", verify=context, timeout=10
    )


async def _post(server: InjectorServer, review: Any, path: str = "/inject") -> dict[str, Any]:
    async with _client(server) as client:
        response = await client.post(path, json=review)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    "name",
    [
        "hello.yaml",
        "hello-probes.yaml",
        "statefulset.yaml",
        "grpc-agent.yaml",
        "gateway.yaml",
        "traffic-annotations-empty-includes.yaml",
    ],
)
async def test_the_patch_makes_istios_golden_pod(server: InjectorServer, name: str) -> None:
    (obj,) = load_documents((TESTDATA / name).read_text())
    (want,) = load_documents((TESTDATA / (name + ".injected")).read_text())
    pod = _as_pod(obj)
    body = await _post(server, _review(pod, uid="abc-123"))
    response = body["response"]
    assert (body["apiVersion"], body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert (response["uid"], response["allowed"], response["patchType"]) == (
        "abc-123",
        True,
        "JSONPatch",
    )
    patched = apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    assert normalize(patched) == normalize(_as_pod(want))


async def test_v1beta1_is_answered_in_v1beta1(server: InjectorServer) -> None:
    (obj,) = load_documents((TESTDATA / "hello.yaml").read_text())
    body = await _post(server, _review(_as_pod(obj), "u-beta", "admission.k8s.io/v1beta1"))
    assert body["apiVersion"] == "admission.k8s.io/v1beta1"
    assert body["response"]["uid"] == "u-beta" and body["response"]["allowed"] is True


async def test_path_parameters_set_cluster_and_network(server: InjectorServer) -> None:
    (obj,) = load_documents((TESTDATA / "hello.yaml").read_text())
    pod = _as_pod(obj)
    body = await _post(server, _review(pod), "/inject/cluster/east--slash--1/net/n1")
    patched = apply_patch(pod, json.loads(base64.b64decode(body["response"]["patch"])))
    proxy = next(c for c in patched["spec"]["initContainers"] if c["name"] == "istio-proxy")
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert (env["ISTIO_META_CLUSTER_ID"], env["ISTIO_META_NETWORK"]) == ("east/1", "n1")
    assert patched["metadata"]["labels"]["topology.istio.io/network"] == "n1"


@pytest.mark.parametrize(
    "change",
    [
        {"spec": {"hostNetwork": True}},
        {"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}},
        {"metadata": {"labels": {"sidecar.istio.io/inject": "false"}}},
    ],
    ids=["hostNetwork", "annotation-false", "label-false"],
)
async def test_pods_that_opt_out_are_allowed_unpatched(
    server: InjectorServer, change: dict[str, Any]
) -> None:
    (obj,) = load_documents((TESTDATA / "hello.yaml").read_text())
    pod = _as_pod(obj)
    for section, values in change.items():
        for key, value in values.items():
            if isinstance(value, dict):
                pod[section].setdefault(key, {}).update(value)
            else:
                pod[section][key] = value
    body = await _post(server, _review(pod, uid="skip"))
    assert body["response"] == {"uid": "skip", "allowed": True}


async def test_an_injected_pod_is_left_as_it_is(server: InjectorServer) -> None:
    (obj,) = load_documents((TESTDATA / "hello.yaml.injected").read_text())
    pod = _as_pod(obj)
    body = await _post(server, _review(pod))
    patch = json.loads(base64.b64decode(body["response"]["patch"]))
    assert patch == []


async def _raw(server: InjectorServer, data: bytes) -> bytes:
    assert server.port is not None
    return await tls_exchange(server.port, CERT.chain_pem, data)


async def test_http_errors_for_what_is_no_admission_review(server: InjectorServer) -> None:
    async with _client(server) as client:
        empty = await client.post(
            "/inject", content=b"", headers={"Content-Type": "application/json"}
        )
        text = await client.post("/inject", content=b"{}", headers={"Content-Type": "text/plain"})
        wrong_path = await client.post("/validate", json={})
        wrong_method = await client.get("/inject")
    assert (empty.status_code, empty.text) == (400, "no body found\n")
    assert text.status_code == 415 and "application/json" in text.text
    assert wrong_path.status_code == 404
    assert wrong_method.status_code == 405
    huge = await _raw(
        server,
        b"POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(),
    )
    assert huge.startswith(b"HTTP/1.1 413 ")
    chunked = await _raw(
        server, b"POST /inject HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert chunked.startswith(b"HTTP/1.1 411 ")
    garbage = await _raw(server, b"\x00\xff garbage\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")


_DEEP = {"a": None}
for _ in range(150):
    _DEEP = {"a": _DEEP}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "could not decode body"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"apiVersion": NaN}', "could not decode body"),
        (json.dumps(_DEEP).encode(), "nested deeper"),
        (b"[1, 2]", "expected an AdmissionReview object"),
        (
            json.dumps({"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview"}).encode(),
            "apiVersion",
        ),
        (
            json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
            "no request",
        ),
        (json.dumps(_review({"spec": {}}, uid="")).encode(), "no uid"),
        (json.dumps(_review("a pod")).encode(), "not a Pod"),
        (json.dumps(_review({"kind": "Service"})).encode(), "not a Pod"),
        (json.dumps(_review({"spec": {"containers": {"name": "x"}}})).encode(), "spec.containers"),
        (
            json.dumps(
                _review(
                    {"spec": {"containers": [{"name": "x", "ports": [{"containerPort": 10**30}]}]}}
                )
            ).encode(),
            "containerPort",
        ),
        (
            json.dumps(
                _review(
                    {
                        "metadata": {"annotations": {"sidecar.istio.io/proxyCPU": "lots"}},
                        "spec": {"containers": [{"name": "x"}]},
                    }
                )
            ).encode(),
            "proxyCPU",
        ),
        (
            json.dumps(
                _review(
                    {
                        "metadata": {"annotations": {"proxy.istio.io/config": "[" * 5000}},
                        "spec": {"containers": [{"name": "x"}]},
                    }
                )
            ).encode(),
            "proxy.istio.io/config",
        ),
    ],
    ids=[
        "garbage",
        "not-utf8",
        "nan",
        "deep",
        "list",
        "version",
        "no-request",
        "no-uid",
        "string-object",
        "service",
        "containers-map",
        "huge-port",
        "bad-quantity",
        "deep-annotation",
    ],
)
async def test_malformed_reviews_are_denied_with_the_reason(
    server: InjectorServer, body: bytes, reason: str
) -> None:
    async with _client(server) as client:
        response = await client.post(
            "/inject", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200
    review = response.json()
    assert review["kind"] == "AdmissionReview"
    assert review["response"]["allowed"] is False
    assert reason in review["response"]["status"]["message"]


async def test_a_megabyte_annotation_is_carried_through(server: InjectorServer) -> None:
    (obj,) = load_documents((TESTDATA / "hello.yaml").read_text())
    pod = _as_pod(obj)
    pod["metadata"]["annotations"] = {"example.com/blob": "x" * (1 << 20)}
    body = await _post(server, _review(pod))
    patched = apply_patch(pod, json.loads(base64.b64decode(body["response"]["patch"])))
    assert patched["metadata"]["annotations"]["example.com/blob"] == "x" * (1 << 20)
    assert any(c["name"] == "istio-proxy" for c in patched["spec"]["initContainers"])


async def test_a_stalled_peer_does_not_stop_the_others(server: InjectorServer) -> None:
    context = ssl.create_default_context(cadata=CERT.chain_pem)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
    writer.write(b"POST /inject HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()
    (obj,) = load_documents((TESTDATA / "hello.yaml").read_text())
    body = await _post(server, _review(_as_pod(obj)))
    assert body["response"]["allowed"] is True
    # the stalled request is dropped once its time is up (request_timeout is 2 s here)
    assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    writer.close()


async def test_keep_alive_serves_many_requests_on_one_connection(server: InjectorServer) -> None:
    (obj,) = load_documents((TESTDATA / "hello.yaml").read_text())
    async with _client(server) as client:
        for uid in ("a", "b", "c"):
            response = await client.post("/inject", json=_review(_as_pod(obj), uid=uid))
            assert response.json()["response"]["uid"] == uid
    assert server.requests[200] == 3
    assert server.connections == 1
