"""Validating webhook benchmark: AdmissionReviews per second, in the core and over HTTPS.

Figures:

* ``review core``: :func:`istio_sdk.galley.webhook.answer_request` on a VirtualService
  AdmissionReview's bytes (decode with limits, validate, encode), reviews per second;
* ``webhook over HTTPS``: the same reviews over keep-alive HTTPS connections (httpx clients in
  the same process; 1 connection, then 4 at once), against the same HTTPS loop answering with
  the request body as it came (an echo: TLS, HTTP and the worker-thread hop, no review).

Core times are the best of 5 runs. Run with ``python -m benchmarks webhook``; ``--quick``
uses fewer iterations.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from benchmarks.bench_kube import best_of
from istio_sdk._admission import AdmissionServer, WebhookAnswer
from istio_sdk._webhook_tls import WebhookCertificate, self_signed_certificate
from istio_sdk.galley.webhook import ValidationWebhookServer, answer_request

VIRTUAL_SERVICE: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {
        "name": "reviews",
        "namespace": "bookinfo",
        "uid": "6b2a0f4e-0d1c-4a57-9d7e-3f6c2f0b8d11",
        "resourceVersion": "123456",
        "generation": 3,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"app": "reviews"},
    },
    "spec": {
        "hosts": ["reviews", "reviews.bookinfo.svc.cluster.local"],
        "gateways": ["mesh", "bookinfo/gateway"],
        "http": [
            {
                "name": "jason",
                "match": [{"headers": {"end-user": {"exact": "jason"}}, "uri": {"prefix": "/"}}],
                "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                "timeout": "5s",
                "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
            },
            {
                "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 75},
                    {"destination": {"host": "reviews", "subset": "v3"}, "weight": 25},
                ]
            },
        ],
    },
}


def _review_body() -> bytes:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
            "resource": {
                "group": "networking.istio.io",
                "version": "v1",
                "resource": "virtualservices",
            },
            "name": "reviews",
            "namespace": "bookinfo",
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": VIRTUAL_SERVICE,
            "oldObject": None,
            "dryRun": False,
        },
    }
    return json.dumps(review).encode()


def _per_call(run: Callable[[], object], loops: int) -> float:
    """Seconds per call of ``run``, the best of 5 runs of ``loops`` calls."""
    seconds, _ = best_of(5, lambda: [run() for _ in range(loops)])
    return seconds / loops


def _echo(method: str, path: str, content_type: str | None, body: bytes) -> WebhookAnswer:
    return WebhookAnswer(200, "application/json", body)


async def _rate(
    server: AdmissionServer, cert: WebhookCertificate, body: bytes, requests: int, clients: int
) -> tuple[float, list[float]]:
    """Requests per second over ``clients`` keep-alive connections, and each latency."""
    context = ssl.create_default_context(cadata=cert.chain_pem)
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []

    async def one_client(client: httpx.AsyncClient, count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            response = await client.post("/validate", content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200

    http = [
        httpx.AsyncClient(base_url=f"https://127.0.0.1:{server.port}", verify=context)
        for _ in range(clients)
    ]
    try:
        for client in http:  # connect and warm up
            await client.post("/validate", content=body, headers=headers)
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c, requests // clients) for c in http))
        elapsed = time.perf_counter() - started
    finally:
        for client in http:
            await client.aclose()
    return len(latencies) / elapsed, latencies


async def _over_https(body: bytes, requests: int) -> None:
    cert = self_signed_certificate()
    webhook = ValidationWebhookServer(cert)
    echo = AdmissionServer(_echo, cert, name="echo")
    async with webhook, echo:
        for clients in (1, 4):
            served, latencies = await _rate(webhook, cert, body, requests, clients)
            echoed, _ = await _rate(echo, cert, body, requests, clients)
            p50 = statistics.median(latencies)
            p99 = statistics.quantiles(latencies, n=100)[98]
            print(
                f"webhook over HTTPS, {clients} connection(s): {served:.0f} reviews/s "
                f"(p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms); "
                f"plain HTTPS echo of the same body {echoed:.0f}/s ({served / echoed:.2f}x)"
            )


def main() -> None:
    quick = "--quick" in sys.argv
    loops = 50 if quick else 300
    body = _review_body()

    def core() -> WebhookAnswer:
        return answer_request(
            method="POST", path="/validate", content_type="application/json", body=body
        )

    answer = json.loads(core().body)
    assert answer["response"]["allowed"] is True, answer
    per_review = _per_call(core, loops)
    decode_only = _per_call(lambda: json.loads(body), loops)
    print(
        f"review core: {per_review * 1e6:.0f} us per AdmissionReview ({len(body)} bytes), "
        f"{1 / per_review:.0f} reviews/s ({per_review / decode_only:.0f}x one json.loads "
        f"of the body, {decode_only * 1e6:.0f} us)"
    )
    asyncio.run(_over_https(body, 200 if quick else 1000))


if __name__ == "__main__":
    main()
