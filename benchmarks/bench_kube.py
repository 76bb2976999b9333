"""Kubernetes registry benchmark: 1,000 Services with 10 endpoints each.

The input is what a cluster of that size holds: 1,000 Services (one HTTP port), one
EndpointSlice each with 10 endpoints whose ``targetRef`` names a Pod, the 10,000 Pods (labels,
service account, node, IP) and 10 Nodes with topology labels. Figures:

* ``load``: the objects' JSON into ``Resource`` values (typed lightkube bodies, schema checks);
* ``registry``: :func:`build_kube_registry` (Services, slices joined with Pods and Nodes);
* ``push context``: ``PushContext.build`` over the same resources (the registry plus indices);
* memory: ``tracemalloc``'s peak while building the registry, and what the built registry keeps.

Each time is the best of 3 runs. Run with ``python -m benchmarks kube``; ``--quick`` uses 100
Services.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from istio_sdk.config import Resource
from istio_sdk.pilot.kube_registry import KubeRegistry, build_kube_registry
from istio_sdk.pilot.push_context import PushContext

ENDPOINTS_PER_SERVICE = 10
NODES = 10


def cluster_objects(services: int) -> list[dict[str, Any]]:
    """The JSON of ``services`` Services with their slices, Pods and the Nodes."""
    out: list[dict[str, Any]] = []
    for n in range(NODES):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"node-{n}",
                    "labels": {
                        "topology.kubernetes.io/region": "us-east1",
                        "topology.kubernetes.io/zone": f"us-east1-{'abc'[n % 3]}",
                    },
                },
            }
        )
    for s in range(services):
        name, ns = f"svc-{s}", f"ns-{s % 20}"
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "clusterIP": f"10.96.{s // 250}.{s % 250 + 1}",
                    "selector": {"app": name},
                    "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
                },
            }
        )
        endpoints = []
        for e in range(ENDPOINTS_PER_SERVICE):
            index = s * ENDPOINTS_PER_SERVICE + e
            ip = f"10.{1 + index // 65536}.{index // 256 % 256}.{index % 256}"
            pod = f"{name}-{e}"
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod,
                        "namespace": ns,
                        "labels": {"app": name, "version": f"v{e % 3}"},
                    },
                    "spec": {
                        "serviceAccountName": name,
                        "nodeName": f"node-{index % NODES}",
                        "containers": [{"name": "app", "image": "app:1"}],
                    },
                    "status": {
                        "phase": "Running",
                        "podIP": ip,
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                }
            )
            endpoints.append(
                {
                    "addresses": [ip],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": pod},
                }
            )
        out.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": endpoints,
            }
        )
    return out


def best_of(runs: int, work: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def run(services: int) -> None:
    documents = cluster_objects(services)
    load_s, loaded = best_of(3, lambda: [Resource.from_dict(d) for d in documents])
    resources: list[Resource] = loaded  # type: ignore[assignment]
    registry_s, registry = best_of(3, lambda: build_kube_registry(resources))
    assert isinstance(registry, KubeRegistry)
    context_s, _ = best_of(3, lambda: PushContext.build(resources))
    endpoints = sum(len(e) for e in registry.endpoints.values())

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build_kube_registry(resources)
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(kept.services) == services
    print(
        f"{services} services, {endpoints} endpoints, {len(resources)} objects: "
        f"load {load_s * 1000:.0f} ms, registry {registry_s * 1000:.0f} ms, "
        f"push context {context_s * 1000:.0f} ms; registry memory peak "
        f"{(peak - before) / 2**20:.1f} MiB, kept {(after - before) / 2**20:.1f} MiB",
        flush=True,
    )


def main() -> None:
    run(100 if "--quick" in sys.argv else 1000)


if __name__ == "__main__":
    main()
