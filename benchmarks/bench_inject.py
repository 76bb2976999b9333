"""Sidecar injector benchmark: one Pod injected, one AdmissionReview answered over HTTPS.

Figures:

* ``inject_pod``: a two-container Pod with probes (Istio's ``hello-probes`` golden input) made
  into the injected Pod, in microseconds, against the reference of one JSON round trip of the
  injected Pod (``json.loads(json.dumps(pod))``: the least any webhook does with it);
* ``review core``: :func:`answer_request` on the AdmissionReview's bytes (decode with limits,
  inject, JSON patch, encode);
* ``webhook``: AdmissionReviews over one keep-alive HTTPS connection (httpx client in the same
  process), median and 99th-percentile latency and requests per second, against the same
  server answering a request it refuses at once (empty body: 400), i.e. the cost of TLS and
  HTTP alone.

Each core time is the best of 5 runs. Run with ``python -m benchmarks inject``; ``--quick``
uses fewer iterations.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import yaml

from istio_sdk._webhook_tls import self_signed_certificate
from istio_sdk.proxy.inject import InjectSettings, inject_pod
from istio_sdk.proxy.inject.server import InjectorServer
from istio_sdk.proxy.inject.webhook import answer_request

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "tests/proxy/inject/testdata"


def _pod() -> dict[str, Any]:
    deployment = yaml.safe_load((GOLDEN / "hello-probes.yaml").read_text())
    return {"apiVersion": "v1", "kind": "Pod", **deployment["spec"]["template"]}


def _best(run: Callable[[], object], loops: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(loops):
            run()
        best = min(best, (time.perf_counter() - started) / loops)
    return best


async def _webhook(body: bytes, requests: int) -> tuple[list[float], list[float]]:
    cert = self_signed_certificate()
    server = InjectorServer(InjectSettings(), cert)
    await server.start()
    context = ssl.create_default_context(cadata=cert.chain_pem)
    headers = {"Content-Type": "application/json"}
    try:
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{server.port}", verify=context
        ) as client:
            await client.post("/inject", content=body, headers=headers)  # connect, warm up
            timings: dict[bytes, list[float]] = {body: [], b"": []}
            for payload in (body, b""):
                for _ in range(requests):
                    started = time.perf_counter()
                    response = await client.post("/inject", content=payload, headers=headers)
                    timings[payload].append(time.perf_counter() - started)
                    assert response.status_code == (200 if payload else 400)
    finally:
        await server.close()
    return timings[body], timings[b""]


def main() -> None:
    quick = "--quick" in sys.argv
    loops = 50 if quick else 300
    settings = InjectSettings()
    pod = _pod()
    injected = inject_pod(pod, settings).pod
    inject = _best(lambda: inject_pod(pod, settings), loops)
    roundtrip = _best(lambda: json.loads(json.dumps(injected)), loops)
    print(
        f"inject_pod: {inject * 1e6:.0f} us per Pod "
        f"({inject / roundtrip:.1f}x one JSON round trip of the injected Pod, "
        f"{roundtrip * 1e6:.0f} us)"
    )
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "namespace": "default", "object": pod},
    }
    body = json.dumps(review).encode()

    def core() -> object:
        return answer_request(
            method="POST",
            path="/inject",
            content_type="application/json",
            body=body,
            settings=settings,
        )

    answered = _best(core, loops)
    print(f"review core: {answered * 1e6:.0f} us per AdmissionReview ({len(body)} bytes in)")
    served, refused = asyncio.run(_webhook(body, 100 if quick else 500))
    p50, p99 = statistics.median(served), statistics.quantiles(served, n=100)[98]
    base = statistics.median(refused)
    print(
        f"webhook over HTTPS: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, "
        f"{1 / statistics.mean(served):.0f} reviews/s on one connection "
        f"(p50 {p50 / base:.1f}x a refused request, {base * 1e3:.2f} ms)"
    )


if __name__ == "__main__":
    main()
