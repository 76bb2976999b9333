"""Galley's validating webhook over real HTTPS: Istio's verdicts on AdmissionReviews v1 and
v1beta1, and the HTTP answers to requests that carry no review."""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.https import tls_exchange

from istio_sdk._admission import MAX_BODY_BYTES
from istio_sdk._webhook_tls import self_signed_certificate
from istio_sdk.config import Problem
from istio_sdk.galley.webhook import ValidationWebhookServer

CERT = self_signed_certificate(("localhost", "127.0.0.1"))
JSON = {"Content-Type": "application/json"}

VALID = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
}
NO_HOST = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {"subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
}


def review(
    obj: Any,
    *,
    uid: str = "uid-1",
    version: str = "admission.k8s.io/v1",
    operation: str = "CREATE",
    **request: Any,
) -> dict[str, Any]:
    kind = obj.get("kind", "") if isinstance(obj, dict) else ""
    return {
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": kind},
            "namespace": "default",
            "operation": operation,
            "object": obj,
            **request,
        },
    }


@pytest.fixture
async def server() -> AsyncIterator[ValidationWebhookServer]:
    webhook = ValidationWebhookServer(CERT, request_timeout=2.0)
    await webhook.start("127.0.0.1", 0)
    try:
        yield webhook
    finally:
        await webhook.close()


def client(server: ValidationWebhookServer) -> httpx.AsyncClient:
    context = ssl.create_default_context(cadata=CERT.chain_pem)
    return httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{server.port}", verify=context, timeout=10
    )


async def post(
    server: ValidationWebhookServer, body: Any, path: str = "/validate"
) -> dict[str, Any]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client(server) as http:
        response = await http.post(path, content=content, headers=JSON)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["kind"] == "AdmissionReview"
    return answer


@pytest.mark.parametrize("version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
async def test_a_valid_resource_is_allowed_in_the_requests_version(
    server: ValidationWebhookServer, version: str
) -> None:
    answer = await post(server, review(VALID, uid="abc-123", version=version))
    assert answer == {
        "apiVersion": version,
        "kind": "AdmissionReview",
        "response": {"uid": "abc-123", "allowed": True},
    }


@pytest.mark.parametrize("path", ["/validate", "/validate/anything", "/admitpilot"])
async def test_an_invalid_resource_is_denied_with_the_validation_message(
    server: ValidationWebhookServer, path: str
) -> None:
    answer = await post(server, review(NO_HOST, version="admission.k8s.io/v1beta1"), path)
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    response = answer["response"]
    assert (response["uid"], response["allowed"]) == ("uid-1", False)
    message = response["status"]["message"]
    assert message.startswith("configuration is invalid: ")
    assert "spec.host: missing required field" in message


async def test_several_errors_are_listed_as_istio_lists_them(
    server: ValidationWebhookServer,
) -> None:
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "ext", "namespace": "default"},
        "spec": {
            "hosts": ["example.com"],
            "ports": [
                {"number": 99999, "name": "http", "protocol": "HTTP"},
                {"number": 70000, "name": "tcp", "protocol": "TCP"},
            ],
        },
    }
    message = (await post(server, review(entry)))["response"]["status"]["message"]
    match = re.fullmatch(
        r"configuration is invalid: (\d+) errors occurred:\n((?:\t\* .*\n)+)\n", message
    )
    assert match is not None, message
    points = match.group(2).splitlines()
    assert int(match.group(1)) == len(points) >= 2
    assert any(p.startswith("\t* spec.ports[0].number: ") for p in points)
    assert any(p.startswith("\t* spec.ports[1].number: ") for p in points)


@pytest.mark.skipif(not hasattr(Problem, "level"), reason="needs Istio's semantic warnings")
async def test_istios_warnings_come_with_an_allowed_answer(server: ValidationWebhookServer) -> None:
    policy = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"selector": {}},
    }
    response = (await post(server, review(policy)))["response"]
    assert response["allowed"] is True
    assert any("workload selector specified without labels" in w for w in response["warnings"])


@pytest.mark.parametrize("path", ["/validate", "/admitpilot", "/admitmixer"])
async def test_delete_is_allowed(server: ValidationWebhookServer, path: str) -> None:
    answer = await post(server, review(None, operation="DELETE", name="reviews"), path)
    assert answer["response"] == {"uid": "uid-1", "allowed": True}


async def test_a_mixer_delete_without_a_name_is_denied(server: ValidationWebhookServer) -> None:
    answer = await post(server, review(None, operation="DELETE"), "/admitmixer")
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"] == (
        "illformed request: name not found on delete request"
    )


@pytest.mark.parametrize(
    ("path", "obj", "message"),
    [
        (
            "/validate",
            {**VALID, "kind": "Foo"},
            "unrecognized type networking.istio.io/v1, Kind=Foo",
        ),
        (
            "/validate",
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
            "unrecognized type /v1, Kind=Service",
        ),
        (
            "/validate",
            {**VALID, "apiVersion": "rbac.istio.io/v1alpha1", "kind": "ServiceRole"},
            "unrecognized type rbac.istio.io/v1alpha1, Kind=ServiceRole",
        ),
        ("/admitpilot", {**VALID, "kind": "Foo"}, "unrecognized type Foo"),
        ("/admitpilot", {**VALID, "kind": "WorkloadEntry"}, "unrecognized type WorkloadEntry"),
    ],
    ids=["istio-group", "kubernetes", "1.3-kind-today", "1.3", "not-in-1.3"],
)
async def test_unknown_kinds_are_denied(
    server: ValidationWebhookServer, path: str, obj: dict[str, Any], message: str
) -> None:
    response = (await post(server, review(obj), path))["response"]
    assert response["allowed"] is False
    assert response["status"]["message"] == message


async def test_mixer_passes_kinds_it_does_not_know(server: ValidationWebhookServer) -> None:
    handler = {
        "apiVersion": "config.istio.io/v1alpha2",
        "kind": "prometheus",
        "metadata": {"name": "h", "namespace": "istio-system"},
        "spec": {"anything": [1, 2]},
    }
    response = (await post(server, review(handler), "/admitmixer"))["response"]
    assert response == {"uid": "uid-1", "allowed": True}


async def test_the_version_is_not_considered(server: ValidationWebhookServer) -> None:
    newer = {**VALID, "apiVersion": "networking.istio.io/v9"}
    assert (await post(server, review(newer)))["response"]["allowed"] is True
    broken = {**NO_HOST, "apiVersion": "networking.istio.io/v9"}
    response = (await post(server, review(broken)))["response"]
    assert "spec.host: missing required field" in response["status"]["message"]


@pytest.mark.parametrize("path", ["/validate", "/admitmixer"])
async def test_an_extra_top_level_field_is_denied(
    server: ValidationWebhookServer, path: str
) -> None:
    obj = {**VALID, "extra": {"x": 1}}
    if path == "/admitmixer":
        obj = {
            "apiVersion": "config.istio.io/v1alpha2",
            "kind": "rule",
            "metadata": {"name": "reviews"},
            "extra": 1,
        }
    response = (await post(server, review(obj), path))["response"]
    assert response["allowed"] is False
    kind = obj["kind"]
    assert response["status"]["message"] == (
        f'unknown field "extra" on {kind} resource default/reviews'
    )


_DEEP: Any = None
for _ in range(150):
    _DEEP = {"a": _DEEP}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "could not decode body: invalid JSON"),
        (b"\x00\x01\x02\x03\x04\x05", "could not decode body"),
        (b"\xff\xfe{}", "could not decode body: not UTF-8"),
        (b'{"apiVersion": NaN}', "could not decode body: NaN"),
        (json.dumps(_DEEP).encode(), "could not decode body: document is nested deeper"),
        (b'{"a": ' + b"9" * 5000 + b"}", "could not decode body"),
        (b"1e999", "could not decode body"),
        (b"[1, 2]", "could not decode body: expected an AdmissionReview object"),
        (b'"AdmissionReview"', "could not decode body: expected an AdmissionReview object"),
        (
            json.dumps({"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview"}).encode(),
            "could not decode body: expected kind AdmissionReview",
        ),
    ],
    ids=[
        "garbage",
        "binary",
        "not-utf8",
        "nan",
        "deep",
        "huge-int",
        "huge-float",
        "list",
        "string",
        "version",
    ],
)
async def test_undecodable_json_is_denied(
    server: ValidationWebhookServer, body: bytes, reason: str
) -> None:
    answer = await post(server, body)
    assert answer["response"]["allowed"] is False
    assert "uid" not in answer["response"]
    assert answer["response"]["status"]["message"].startswith(reason)


async def _raw(server: ValidationWebhookServer, data: bytes) -> bytes:
    assert server.port is not None
    return await tls_exchange(server.port, CERT.chain_pem, data)


async def test_http_errors_for_requests_without_a_review(server: ValidationWebhookServer) -> None:
    async with client(server) as http:
        empty = await http.post("/validate", content=b"", headers=JSON)
        yaml_body = await http.post(
            "/admitpilot", content=b"{}", headers={"Content-Type": "application/yaml"}
        )
        untyped = await http.post("/validate", content=b"{}")
        wrong_path = await http.post("/inject", json={})
        wrong_method = await http.get("/validate")
        ready = await http.get("/ready")
    assert (empty.status_code, empty.text) == (400, "no body found\n")
    assert yaml_body.status_code == 415 and "application/json" in yaml_body.text
    assert untyped.status_code == 415
    assert wrong_path.status_code == 404 and "/validate" in wrong_path.text
    assert wrong_method.status_code == 405
    assert ready.status_code == 200
    huge = await _raw(
        server,
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(),
    )
    assert huge.startswith(b"HTTP/1.1 413 ")


async def test_a_body_just_under_the_limit_is_read_and_answered(
    server: ValidationWebhookServer,
) -> None:
    obj = {**VALID, "metadata": {**VALID["metadata"], "annotations": {"blob": "x" * (5 << 20)}}}
    answer = await post(server, review(obj))
    assert answer["response"] == {"uid": "uid-1", "allowed": True}


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("a resource", "cannot decode configuration: expected an object"),
        ([VALID], "cannot decode configuration: expected an object"),
        (None, "cannot decode configuration: the request has no object"),
        ({**VALID, "kind": 7}, "cannot decode configuration: kind is"),
        ({**VALID, "metadata": "reviews"}, "cannot decode configuration: metadata is"),
        (
            {**VALID, "metadata": {"name": "x" * (1 << 20), "namespace": "default"}},
            "configuration is invalid: metadata.name: invalid name",
        ),
        ({**VALID, "spec": {"hosts": "reviews"}}, "configuration is invalid: spec.hosts"),
        ({**VALID, "kind": "K" * (1 << 20)}, "unrecognized type networking.istio.io/v1, Kind=KKK"),
        ({**VALID, "x" * (1 << 20): 1}, 'unknown field "xxx'),
        (
            {**VALID, "spec": {"hosts": ["r"], "http": [{"timeout": "1" * 400 + "s"}]}},
            "configuration is invalid",
        ),
        (
            {
                **VALID,
                "kind": "ServiceEntry",
                "spec": {"hosts": ["a.com"], "ports": [{"number": 10**300, "name": "p"}]},
            },
            "configuration is invalid",
        ),
    ],
    ids=[
        "string",
        "list",
        "missing",
        "kind-number",
        "metadata-string",
        "megabyte-name",
        "hosts-string",
        "megabyte-kind",
        "megabyte-field",
        "huge-duration",
        "huge-port",
    ],
)
async def test_hostile_objects_are_denied_with_the_reason(
    server: ValidationWebhookServer, obj: Any, reason: str
) -> None:
    response = (await post(server, review(obj)))["response"]
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith(reason), message[:300]
    assert len(message) < 10_000  # a megabyte value is not echoed back whole


async def test_the_server_keeps_serving_after_hostile_requests(
    server: ValidationWebhookServer,
) -> None:
    async with client(server) as http:
        for body in (b"\x00" * 1000, json.dumps(_DEEP).encode(), b"[" * 100_000):
            response = await http.post("/validate", content=body, headers=JSON)
            assert response.status_code == 200
        last = await http.post("/validate", json=review(VALID, uid="after"))
    assert last.json()["response"] == {"uid": "after", "allowed": True}
    assert server.requests == {200: 4}
    assert server.connections == 1


SERVICE_ROLE = {
    "apiVersion": "rbac.istio.io/v1alpha1",
    "kind": "ServiceRole",
    "metadata": {"name": "reader", "namespace": "default"},
    "spec": {"rules": [{"services": ["*"], "methods": ["GET"]}]},
}
RULE = {
    "apiVersion": "config.istio.io/v1alpha2",
    "kind": "rule",
    "metadata": {"name": "r", "namespace": "istio-system"},
    "spec": {"match": "true", "actions": [{"handler": "h", "instances": ["i"]}]},
}


@pytest.mark.parametrize(
    ("path", "obj", "broken", "reason"),
    [
        ("/admitpilot", SERVICE_ROLE, {"rules": "all"}, "spec.rules: expected an array"),
        ("/admitmixer", RULE, {"match": 5}, "spec.match: expected a string"),
    ],
    ids=["pilot-1.3-rbac", "mixer-rule"],
)
async def test_the_1_3_paths_validate_their_kinds(
    server: ValidationWebhookServer,
    path: str,
    obj: dict[str, Any],
    broken: dict[str, Any],
    reason: str,
) -> None:
    version = "admission.k8s.io/v1beta1"  # what Galley 1.3's webhooks were registered for
    good = await post(server, review(obj, version=version), path)
    assert good == {
        "apiVersion": version,
        "kind": "AdmissionReview",
        "response": {"uid": "uid-1", "allowed": True},
    }
    bad = (await post(server, review({**obj, "spec": broken}, version=version), path))["response"]
    assert bad["allowed"] is False
    assert bad["status"]["message"].startswith(f"configuration is invalid: {reason}")
