"""Pilot fan-out benchmark: one config change, N proxies, time until every proxy ACKed.

The discovery server runs in this process over a static set of M services (one EDS cluster and
one ClusterLoadAssignment with 3 endpoints each). N simulated proxies run in ANOTHER process: N
asyncio ADS clients (``PilotClient(decode=False)``, one HTTP/2 connection each), every one
subscribed to all clusters (CDS wildcard) and all M endpoint sets (EDS by name), ACKing every
response. After the initial sync, two changes are pushed, each without debouncing (the 100 ms
quiet period would add 0.1 s to every figure):

* ``eds``: one service's endpoints change; every proxy gets one ClusterLoadAssignment;
* ``cds``: one cluster changes; every proxy gets the full CDS state of the world (M clusters).

For each: p50 / p99 / max of the time from the change to each proxy's ACK (as the server
sees it), the server's CPU seconds for the push divided by N, and how many resources were
serialized (one, whatever N: responses are spliced from cached bytes). Memory per proxy is the
growth of the server's resident set from before the clients connect to after the initial sync,
divided by N. The client process shares the 2 cores with the server, so ACK latencies include
the clients' own work.

Run with ``nox -s bench`` or ``python -m benchmarks pilot``; ``--quick`` runs only small sizes,
``--delta`` makes the proxies use delta xDS (their ACKs then carry no resource names, where a
SotW ACK repeats all M subscribed names).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

from istio_sdk.pilot.cluster_names import outbound_cluster_name

ENDPOINTS_PER_SERVICE = 3
SIZES = [(100, 100), (100, 1000), (500, 100), (500, 1000), (1000, 100), (1000, 1000)]
QUICK_SIZES = [(50, 50), (100, 100)]


def _cluster_name(i: int) -> str:
    return outbound_cluster_name(8080, "", f"svc-{i}.bench.svc.cluster.local")


def _resources(m: int) -> list[Any]:
    out: list[Any] = []
    for i in range(m):
        out.append(_cluster(i, 10))
        out.append(_assignment(i, 0))
    return out


def _cluster(i: int, timeout_s: int) -> Any:
    from istio_sdk.api.envoy.config.cluster.v3 import (
        Cluster,
        ClusterDiscoveryType,
        ClusterEdsClusterConfig,
    )
    from istio_sdk.api.envoy.config.core.v3 import AggregatedConfigSource, ConfigSource

    name = _cluster_name(i)
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.EDS,
        connect_timeout=timedelta(seconds=timeout_s),
        eds_cluster_config=ClusterEdsClusterConfig(
            eds_config=ConfigSource(ads=AggregatedConfigSource()), service_name=name
        ),
    )


def _assignment(i: int, generation: int) -> Any:
    from istio_sdk.api.envoy.config.core.v3 import Address, SocketAddress
    from istio_sdk.api.envoy.config.endpoint.v3 import (
        ClusterLoadAssignment,
        Endpoint,
        LbEndpoint,
        LocalityLbEndpoints,
    )

    hosts = [
        LbEndpoint(
            endpoint=Endpoint(
                address=Address(
                    socket_address=SocketAddress(
                        address=f"10.{i // 250}.{i % 250}.{k + 1 + generation}", port_value=8080
                    )
                )
            ),
            load_balancing_weight=1,
        )
        for k in range(ENDPOINTS_PER_SERVICE)
    ]
    return ClusterLoadAssignment(
        cluster_name=_cluster_name(i),
        endpoints=[LocalityLbEndpoints(lb_endpoints=hosts, load_balancing_weight=1)],
    )


def _proxies(port: int, n: int, m: int, mode: str, conn: Any) -> None:
    """Child process: N ADS clients subscribed to everything until told to stop."""
    from istio_sdk import xds
    from istio_sdk.pilot.client import PilotClient, sidecar_node

    async def run() -> None:
        names = [_cluster_name(i) for i in range(m)]
        clients = []
        for k in range(n):
            node = sidecar_node(f"10.200.{k // 250}.{k % 250}", f"proxy-{k}", "bench")
            client = PilotClient(
                ("127.0.0.1", port),
                node=node,
                decode=False,
                backoff_initial=0.5,
                mode="delta" if mode == "delta" else "sotw",
            )
            client.subscribe(xds.CLUSTER)
            client.subscribe(xds.ENDPOINT, names)
            clients.append(client)
        for client in clients:
            await client.start()
        conn.send("started")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)
        await asyncio.gather(*(c.close() for c in clients))

    # Simulated proxies hold millions of small objects and free few: cycle collection would
    # only make this process (not the server under test) slower.
    gc.disable()
    asyncio.run(run())


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(n: int, m: int, mode: str = "sotw") -> dict[str, float]:
    from istio_sdk import xds
    from istio_sdk.pilot.server import DiscoveryServer, ProxyEvent, StaticGenerator

    generator = StaticGenerator(_resources(m))
    server = DiscoveryServer(generator)
    acks: dict[tuple[str, str], list[float]] = {}
    started = [0.0]

    def on_event(event: ProxyEvent) -> None:
        if event.kind == "ack":
            acks.setdefault((event.type_url, event.version), []).append(
                time.perf_counter() - started[0]
            )

    server.add_listener(on_event)
    port = await server.start("127.0.0.1", 0)
    gc.freeze()  # the generated resources live for the whole run
    gc.collect()
    rss_before = _rss_bytes()
    parent, child = multiprocessing.get_context("spawn").Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=_proxies, args=(port, n, m, mode, child), daemon=True
    )
    t_sync = time.perf_counter()
    proc.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, parent.recv)

    def synced() -> bool:
        if server.connection_count() < n:
            return False
        for status in server.proxies():
            for url in (xds.CLUSTER, xds.ENDPOINT):
                t = status.types.get(url)
                if t is None or not t["acked_version"]:
                    return False
        return True

    while not synced():  # noqa: ASYNC110 - polling the server's view, no event to wait on
        await asyncio.sleep(0.25)
    sync_seconds = time.perf_counter() - t_sync
    gc.collect()
    rss_per_proxy = (_rss_bytes() - rss_before) / n

    results: dict[str, float] = {"sync_s": sync_seconds, "rss_kib": rss_per_proxy / 1024}
    for label in ("eds", "cds"):
        serialized = server.cache.serializations
        g = server.generation + 1
        changed = _assignment(0, g) if label == "eds" else _cluster(0, 10 + g)
        request = generator.set(changed)
        version = str(server.generation + 1)
        url = xds.ENDPOINT if label == "eds" else xds.CLUSTER
        cpu0 = time.process_time()
        started[0] = time.perf_counter()
        await server.push_now(request)
        cpu_push = time.process_time() - cpu0
        while len(acks.get((url, version), [])) < n:  # noqa: ASYNC110 - see above
            await asyncio.sleep(0.005)
        latencies = acks[(url, version)]
        results[f"{label}_p50_ms"] = _quantile(latencies, 0.5) * 1000
        results[f"{label}_p99_ms"] = _quantile(latencies, 0.99) * 1000
        results[f"{label}_all_ms"] = max(latencies) * 1000
        results[f"{label}_cpu_us_per_proxy"] = cpu_push / n * 1e6
        results[f"{label}_serialized"] = server.cache.serializations - serialized
    parent.send("stop")
    await loop.run_in_executor(None, proc.join, 30)
    if proc.is_alive():
        proc.kill()
    await server.stop()
    return results


def _measure_in_process(n: int, m: int, mode: str, conn: Any) -> None:
    conn.send(asyncio.run(_measure(n, m, mode)))


def main() -> None:
    quick = "--quick" in sys.argv
    mode = "delta" if "--delta" in sys.argv else "sotw"
    sizes = QUICK_SIZES if quick else SIZES
    print(f"ADS mode: {mode}")
    print(
        f"{'N':>5} {'M':>5} | {'sync s':>7} | {'EDS p50':>8} {'p99':>7} {'all':>7} "
        f"{'cpu/px':>7} {'ser':>3} | {'CDS p50':>8} {'p99':>7} {'all':>7} {'cpu/px':>7} "
        f"{'ser':>3} | {'KiB/px':>6}"
    )
    print(
        f"{'':>11} | {'':>7} | {'ms':>8} {'ms':>7} {'ms':>7} {'us':>7} {'':>3} | "
        f"{'ms':>8} {'ms':>7} {'ms':>7} {'us':>7} {'':>3} |"
    )
    rows = []
    ctx = multiprocessing.get_context("spawn")
    for n, m in sizes:
        # Each size in a fresh server process, so memory figures do not inherit earlier runs.
        parent, child = ctx.Pipe()
        runner = ctx.Process(target=_measure_in_process, args=(n, m, mode, child))
        runner.start()
        r = parent.recv()
        runner.join()
        rows.append((n, m, r))
        print(
            f"{n:>5} {m:>5} | {r['sync_s']:>7.1f} | {r['eds_p50_ms']:>8.1f} "
            f"{r['eds_p99_ms']:>7.1f} {r['eds_all_ms']:>7.1f} {r['eds_cpu_us_per_proxy']:>7.0f} "
            f"{r['eds_serialized']:>3.0f} | {r['cds_p50_ms']:>8.1f} {r['cds_p99_ms']:>7.1f} "
            f"{r['cds_all_ms']:>7.1f} {r['cds_cpu_us_per_proxy']:>7.0f} "
            f"{r['cds_serialized']:>3.0f} | {r['rss_kib']:>6.1f}",
            flush=True,
        )
    print(
        "EDS/CDS: one endpoint set / one cluster changed, pushed without debounce; p50/p99/all:"
        " change -> ACK as the server sees it; cpu/px: server CPU for the push / N;"
        " ser: resources serialized for the push; KiB/px: server RSS growth per proxy."
    )
    if statistics.mean(r["eds_serialized"] for _, _, r in rows) > 1:
        print("warning: serialization grew with N", file=sys.stderr)


if __name__ == "__main__":
    main()
