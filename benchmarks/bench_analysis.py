"""Analysis benchmark: ``istio_sdk.analyze`` over 1,000 services with their config.

The mesh: 1,000 Kubernetes Services in 20 namespaces, each with two Pods (versions v1 and v2,
with proxies), a VirtualService routing 90/10 between its subsets, a DestinationRule defining
them (by app and version) and a Telemetry selecting its pods; per namespace a Namespace
(injection enabled), a Sidecar and an AuthorizationPolicy; one ingress Gateway with its Pod and
Service and a VirtualService bound to it; a few ServiceEntries. That is 6,000+ resources, every
analyzer runs, and the mesh is clean.

Figures: the time of one ``analyze`` (best of 3) with per-analyzer times, and for reference the
time ``istio_sdk.validate`` takes over the same resources (what the schema analyzers call), in
the same run. Run with ``python -m benchmarks analysis``; ``--quick`` uses 100 services.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from istio_sdk.config import Resource
from istio_sdk.galley.analysis import analyze, iter_analyzers
from istio_sdk.galley.analysis._snapshot import Snapshot

NAMESPACES = 20


def mesh_objects(services: int) -> list[dict[str, Any]]:
    """The JSON of a clean mesh of ``services`` services."""
    out: list[dict[str, Any]] = []
    for n in range(NAMESPACES):
        ns = f"ns-{n}"
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}},
            }
        )
        out.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "Sidecar",
                "metadata": {"name": "default", "namespace": ns},
                "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]},
            }
        )
        out.append(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {"name": "allow-mesh", "namespace": ns},
                "spec": {"rules": [{"from": [{"source": {"namespaces": ["ns-*"]}}]}]},
            }
        )
    for s in range(services):
        name, ns = f"svc-{s}", f"ns-{s % NAMESPACES}"
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "selector": {"app": name},
                    "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
                },
            }
        )
        for version in ("v1", "v2"):
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{name}-{version}-0",
                        "namespace": ns,
                        "labels": {"app": name, "version": version},
                    },
                    "spec": {
                        "containers": [
                            {"name": "app", "image": f"example/{name}:{version}"},
                            {"name": "istio-proxy", "image": "istio/proxyv2"},
                        ]
                    },
                }
            )
        out.append(
            {
                "apiVersion": "telemetry.istio.io/v1",
                "kind": "Telemetry",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "selector": {"matchLabels": {"app": name}},
                    "tracing": [{"randomSamplingPercentage": 10}],
                },
            }
        )
        out.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "hosts": [name],
                    "http": [
                        {
                            "match": [{"headers": {"end-user": {"exact": "tester"}}}],
                            "route": [{"destination": {"host": name, "subset": "v2"}}],
                        },
                        {
                            "route": [
                                {"destination": {"host": name, "subset": "v1"}, "weight": 90},
                                {"destination": {"host": name, "subset": "v2"}, "weight": 10},
                            ]
                        },
                    ],
                },
            }
        )
        out.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "host": f"{name}.{ns}.svc.cluster.local",
                    "subsets": [
                        {"name": "v1", "labels": {"app": name, "version": "v1"}},
                        {"name": "v2", "labels": {"app": name, "version": "v2"}},
                    ],
                },
            }
        )
    out += [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "ingress-0",
                "namespace": "istio-system",
                "labels": {"istio": "ingressgateway"},
            },
            "spec": {"containers": [{"name": "istio-proxy", "image": "istio/proxyv2"}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "ports": [{"name": "http2", "port": 80, "targetPort": 8080}],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "public", "namespace": "ns-0"},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "front", "namespace": "ns-0"},
            "spec": {
                "hosts": ["shop.example.com"],
                "gateways": ["public"],
                "http": [{"route": [{"destination": {"host": "svc-0"}}]}],
            },
        },
    ]
    for e in range(10):
        out.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": {"name": f"ext-{e}", "namespace": "ns-0"},
                "spec": {
                    "hosts": [f"api{e}.example.com"],
                    "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
                    "resolution": "DNS",
                },
            }
        )
    return out


def best_of(runs: int, work: Any) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    services = 100 if "--quick" in sys.argv else 1000
    resources = [Resource.from_dict(o) for o in mesh_objects(services)]
    print(f"mesh: {services} services, {len(resources)} resources")
    result = analyze(resources)
    problems = [str(m) for m in result.messages]
    assert not problems, problems[:5]
    assert not result.skipped, result.skipped
    whole = best_of(3, lambda: analyze(resources))
    print(f"analyze: {whole * 1000:.0f} ms ({len(result.executed)} analyzers, 0 messages)")
    snapshot = Snapshot(resources)
    costs = []
    for analyzer in iter_analyzers():
        started = time.perf_counter()
        for _ in analyzer.run(snapshot):
            pass
        costs.append((time.perf_counter() - started, analyzer.name))
    for cost, name in sorted(costs, reverse=True)[:6]:
        print(f"  {name}: {cost * 1000:.0f} ms")
    from istio_sdk import validate

    istio = [r for r in resources if not r.kubernetes]
    checked = best_of(3, lambda: [validate(r) for r in istio])
    print(
        f"reference, validate() over the {len(istio)} Istio resources: {checked * 1000:.0f} ms "
        f"(analyze / validate = {whole / checked:.2f})"
    )


if __name__ == "__main__":
    main()
