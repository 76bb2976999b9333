"""Kubernetes registry benchmark: 1,000 Services with 10 endpoints each.

The input is what a cluster of that size holds: 1,000 Services (one HTTP port), one
EndpointSlice each with 10 endpoints whose ``targetRef`` names a Pod, the 10,000 Pods (labels,
service account, node, IP) and 10 Nodes with topology labels. Figures:

* ``load``: the objects' JSON into ``Resource`` values (typed lightkube bodies, schema checks);
* ``registry``: :func:`build_kube_registry` (Services, slices joined with Pods and Nodes);
* ``push context``: ``PushContext.build`` over the same resources (the registry plus indices);
* memory: ``tracemalloc``'s peak while building the registry, and what the built registry keeps.

Each time is the best of 3 runs.

``EndpointSlice -> all ACKed``: the test Kubernetes API server (:mod:`istio_sdk.testing.kube_api`)
runs in a child process holding a cluster of 100 Services (10 endpoints each, with their Pods
and Nodes); this process runs a Mesh fed by a :class:`~istio_sdk.config.KubernetesSource` from
it, without debouncing; N=100 ADS clients (``PilotClient``, another child process) subscribe to
every cluster and endpoint set. One endpoint of one EndpointSlice flips its ``ready`` condition
by a PUT to the API server; the figure is the time from the PUT to the moment the server has
seen the last of the N proxies ACK the new endpoints (median and max of the rounds). The
reference, in the same run, is the same change applied straight to the store (no API server,
no watch): the ratio is what the list/watch path costs on top.

Run with ``python -m benchmarks kube``; ``--quick`` uses 100 Services for the registry figures
and fewer rounds.
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


PROXIES = 100
WATCHED_SERVICES = 100


def _api_server(conn: Any) -> None:
    """Child process: the test API server holding the cluster, until told to stop."""
    import asyncio

    from istio_sdk.testing.kube_api import KubeApiServer

    async def serve() -> None:
        async with KubeApiServer() as api:
            for obj in cluster_objects(WATCHED_SERVICES):
                api.create(obj)
            conn.send(api.port)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    asyncio.run(serve())


def _cluster_names() -> list[str]:
    from istio_sdk.pilot.cluster_names import outbound_cluster_name

    return [
        outbound_cluster_name(8080, "", f"svc-{s}.ns-{s % 20}.svc.cluster.local")
        for s in range(WATCHED_SERVICES)
    ]


def _proxies(port: int, conn: Any) -> None:
    """Child process: N ADS clients subscribed to every cluster and endpoint set."""
    import asyncio

    from istio_sdk import xds
    from istio_sdk.pilot.client import PilotClient, sidecar_node

    async def run() -> None:
        clients = []
        for k in range(PROXIES):
            node = sidecar_node(f"10.200.{k // 250}.{k % 250}", f"proxy-{k}", "ns-0")
            client = PilotClient(("127.0.0.1", port), node=node, decode=False)
            client.subscribe(xds.CLUSTER)
            client.subscribe(xds.ENDPOINT, _cluster_names())
            clients.append(client)
        for client in clients:
            await client.start()
        conn.send("started")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await asyncio.gather(*(c.close() for c in clients))

    gc.disable()
    asyncio.run(run())


def _slice(ready: bool, name: str = "svc-0-abcde") -> dict[str, Any]:
    """``svc-0``'s EndpointSlice (named ``name``) with its first endpoint's ``ready`` set."""
    (found,) = (
        o
        for o in cluster_objects(1)
        if o["kind"] == "EndpointSlice" and o["metadata"]["name"] == "svc-0-abcde"
    )
    if name != "svc-0-abcde":  # a slice of its own: other addresses, no Pods
        found["metadata"]["name"] = name
        for k, endpoint in enumerate(found["endpoints"]):
            endpoint["addresses"] = [f"10.250.0.{k + 1}"]
            del endpoint["targetRef"]
    found["endpoints"][0]["conditions"]["ready"] = ready
    return found


async def _fan_out(rounds: int) -> tuple[list[float], list[float]]:
    import asyncio
    import multiprocessing

    import httpx

    from istio_sdk import xds
    from istio_sdk.config import ConfigStore, KubernetesSource, kind_for
    from istio_sdk.mesh import Mesh
    from istio_sdk.pilot.server import ProxyEvent

    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    api_end, api_child = ctx.Pipe()
    api_proc = ctx.Process(target=_api_server, args=(api_child,), daemon=True)
    api_proc.start()
    api_port = await loop.run_in_executor(None, api_end.recv)
    url = f"http://127.0.0.1:{api_port}"
    store = ConfigStore()
    kinds = [kind_for(k) for k in ("Service", "EndpointSlice", "Pod", "Node")]
    source = KubernetesSource(store, client=httpx.AsyncClient(base_url=url), kinds=kinds)
    mesh = Mesh(store, xds_port=0, debounce_after=0.0)
    mesh.add_kubernetes(source)
    acked: dict[str, str] = {}  # proxy -> the EDS version it last ACKed
    changed = asyncio.Event()

    def on_event(event: ProxyEvent) -> None:
        if event.kind == "ack" and event.type_url == xds.ENDPOINT:
            acked[event.proxy_id] = event.version
            changed.set()

    mesh.discovery.add_listener(on_event)
    await mesh.start()
    px_end, px_child = ctx.Pipe()
    px_proc = ctx.Process(target=_proxies, args=(mesh.xds_port, px_child), daemon=True)
    px_proc.start()
    await loop.run_in_executor(None, px_end.recv)

    def synced() -> bool:
        statuses = mesh.discovery.proxies()
        return len(statuses) == PROXIES and all(
            (s.types.get(xds.ENDPOINT) or {}).get("acked_version") for s in statuses
        )

    while not synced():  # noqa: ASYNC110 - polling the server's view, no event to wait on
        await asyncio.sleep(0.1)

    async def all_acked(before: dict[str, str]) -> None:
        """Until every proxy has ACKed an EDS version other than the one it had ``before``."""
        while not (len(acked) == PROXIES and all(acked[p] != v for p, v in before.items())):
            changed.clear()
            await changed.wait()

    from istio_sdk.config import Resource

    api_times: list[float] = []
    store_times: list[float] = []
    ready = True
    async with httpx.AsyncClient(base_url=url) as http:
        path = "/apis/discovery.k8s.io/v1/namespaces/ns-0/endpointslices/svc-0-abcde"
        for _ in range(rounds):
            ready = not ready
            before = dict(acked)
            started = time.perf_counter()
            response = await http.put(path, json=_slice(ready))
            assert response.status_code == 200, response.text
            await all_acked(before)
            api_times.append(time.perf_counter() - started)
            # the reference: the same change to a slice only the store holds (the source
            # owns the API's slice and would refuse a direct write to it)
            before = dict(acked)
            started = time.perf_counter()
            store.apply(Resource.from_dict(_slice(ready, "svc-0-reference")))
            await all_acked(before)
            store_times.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
    px_end.send("stop")
    await loop.run_in_executor(None, px_proc.join, 30)
    await mesh.stop()
    await source.aclose()
    api_end.send("stop")
    await loop.run_in_executor(None, api_proc.join, 30)
    for proc in (px_proc, api_proc):
        if proc.is_alive():
            proc.kill()
    return api_times, store_times


def fan_out(rounds: int) -> None:
    import asyncio
    import statistics

    api_times, store_times = asyncio.run(_fan_out(rounds))
    api_ms = statistics.median(api_times) * 1000
    store_ms = statistics.median(store_times) * 1000
    print(
        f"EndpointSlice change -> all {PROXIES} proxies ACKed ({WATCHED_SERVICES} services, "
        f"{rounds} rounds): through the API server median {api_ms:.1f} ms "
        f"(max {max(api_times) * 1000:.1f}); straight into the store (reference) median "
        f"{store_ms:.1f} ms (max {max(store_times) * 1000:.1f}); ratio {api_ms / store_ms:.2f}",
        flush=True,
    )


def main() -> None:
    quick = "--quick" in sys.argv
    run(100 if quick else 1000)
    fan_out(5 if quick else 20)


if __name__ == "__main__":
    main()
