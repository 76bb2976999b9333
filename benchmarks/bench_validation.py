"""Validation throughput: 5,000 realistic resources through ``istio_sdk.validate``.

The mesh is 1,000 services, each with a VirtualService (a canary split, retries, a timeout, a
header match), a DestinationRule (two subsets, pools, outlier detection, ISTIO_MUTUAL), a
ServiceEntry for its external dependency, an AuthorizationPolicy and a Sidecar: 5,000
documents in one YAML stream, valid in Istio's eyes.

Reported, in resources per second, each the median of a few rounds: loading alone
(``load_resources``, the reference, since every validation loads first), ``validate`` with
everything (schema, the CRDs' CEL rules and Istio's semantic rules), ``validate`` without the
CEL rules (``cel=False``), and Istio's semantic rules alone on resources already loaded. The
"x load" ratios are measured in the same run, so load on a shared machine affects all alike.

Run with ``nox -s bench`` or ``python -m benchmarks validation``; ``--quick`` uses 500.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

SERVICES = 1000


def mesh_yaml(services: int = SERVICES) -> str:
    """Five resources per service, as one multi-document YAML stream."""
    docs = []
    for i in range(services):
        ns = f"team{i % 20}"
        name = f"svc{i}"
        host = f"{name}.{ns}.svc.cluster.local"
        docs.append(f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{host}]
  http:
  - name: canary
    match:
    - headers: {{x-canary: {{exact: "true"}}}}
      uri: {{prefix: /api/}}
    route:
    - destination: {{host: {host}, subset: v2}}
  - name: default
    route:
    - destination: {{host: {host}, subset: v1, port: {{number: 8080}}}}
      weight: 90
    - destination: {{host: {host}, subset: v2, port: {{number: 8080}}}}
      weight: 10
    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset"}}
    timeout: 10s
""")
        docs.append(f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {host}
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 100, connectTimeout: 2s}}
      http: {{http2MaxRequests: 1000, maxRetries: 3}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
    tls: {{mode: ISTIO_MUTUAL}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
""")
        docs.append(f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}-api, namespace: {ns}}}
spec:
  hosts: [api{i}.example.com]
  ports: [{{number: 443, name: https, protocol: TLS}}]
  resolution: DNS
  location: MESH_EXTERNAL
""")
        docs.append(f"""\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/{ns}/sa/frontend]}}}}]
    to: [{{operation: {{methods: [GET, POST], paths: [/api/*]}}}}]
""")
        docs.append(f"""\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: {ns}}}
spec:
  workloadSelector: {{labels: {{app: {name}}}}}
  egress:
  - hosts: [./*, istio-system/*]
""")
    return "---\n".join(docs)


def main() -> None:
    import istio_sdk
    from istio_sdk.config._validate import semantic_findings

    quick = "--quick" in sys.argv
    services = SERVICES // 10 if quick else SERVICES
    rounds = 3 if quick else 5
    text = mesh_yaml(services)
    resources = istio_sdk.load_resources(text)
    count = len(resources)
    problems = istio_sdk.validate(text)
    assert not [p for p in problems if p.is_error], problems[:3]

    runs: dict[str, Callable[[], object]] = {
        "load_resources (reference)": lambda: istio_sdk.load_resources(text),
        "validate: schema + CEL + Istio": lambda: istio_sdk.validate(text),
        "validate: schema + Istio, no CEL": lambda: istio_sdk.validate(text, cel=False),
        "Istio's semantic rules alone": lambda: [semantic_findings(r) for r in resources],
    }
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):  # interleaved, so a busy moment on the machine hits every run
        for label, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[label].append(time.perf_counter() - started)
    reference = seconds["load_resources (reference)"]
    print(f"{count} resources ({services} services x 5 kinds), median of {rounds} rounds")
    for label, times in seconds.items():
        median = statistics.median(times)
        ratio = statistics.median(t / r for t, r in zip(times, reference, strict=True))
        print(
            f"  {label:34s} {count / median:9,.0f} resources/s  "
            f"{median * 1000:8.1f} ms  {ratio:5.2f} x load"
        )


if __name__ == "__main__":
    main()
