"""MCP benchmark: from a file change to 10 sinks ACKing it, 1,000 resources in the collection.

One process, over real gRPC on 127.0.0.1: a :class:`~istio_sdk.config.DirectorySource` follows
a folder of 1,000 VirtualService files, an :class:`~istio_sdk.galley.mcp.McpSource` serves the
store, and 10 :class:`~istio_sdk.GalleyClient` sinks mirror the VirtualService collection
(full-state, as Pilot 1.3 asked for it). Figures, each the median of several changes:

* ``initial sync``: 10 sinks connecting until each holds the 1,000 resources;
* ``file -> store``: one file rewritten until the source's store holds the change (inotify and
  the directory scan: the reference, measured in the same run);
* ``file -> 10 sinks ACKed``: the same change until the source has counted 10 more ACKs of the
  collection (every sink decoded, validated and stored the 1,000 resources and answered);
* ``store -> 1 sink ACKed`` and ``store -> 10 sinks ACKed``: a change applied to the store
  directly, so MCP alone is measured, for one sink and for ten.

Run with ``python -m benchmarks mcp``; ``--quick`` uses 100 resources and 3 changes.
"""

from __future__ import annotations

import asyncio
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from istio_sdk import ConfigStore, DirectorySource, GalleyClient, McpSource, load_resources

VS = "istio/networking/v1alpha3/virtualservices"
SINKS = 10


def vs_yaml(index: int, host_suffix: str = "") -> str:
    return f"""\
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs-{index}
  namespace: ns-{index % 20}
  labels: {{app: app-{index}}}
spec:
  hosts: [svc-{index}.ns-{index % 20}.svc.cluster.local{host_suffix}]
  http:
  - match:
    - uri: {{prefix: /api/v{index % 3}}}
    route:
    - destination: {{host: svc-{index}.ns-{index % 20}.svc.cluster.local, subset: v1}}
      weight: 90
    - destination: {{host: svc-{index}.ns-{index % 20}.svc.cluster.local, subset: v2}}
      weight: 10
    timeout: 5s
"""


async def until(check: Callable[[], bool]) -> float:
    """Poll ``check`` every millisecond; the time (perf_counter) it first held."""
    async with asyncio.timeout(120):
        while not check():  # noqa: ASYNC110 - counters and stores have no event to wait on
            await asyncio.sleep(0.001)
    return time.perf_counter()


def acked_by(source: McpSource, count: int) -> Callable[[], bool]:
    """Whether ``count`` more ACKs than now have reached ``source``."""
    target = source.stats().acks + count
    return lambda: source.stats().acks >= target


def holds_suffix(store: ConfigStore, suffix: str) -> Callable[[], bool]:
    """Whether ``store``'s vs-7 has the host written with ``suffix``."""

    def check() -> bool:
        stored = store.get("VirtualService", "vs-7", "ns-7")
        hosts: list[str] = [] if stored is None else stored.spec.hosts  # type: ignore[union-attr]
        return bool(hosts) and hosts[0].endswith(suffix)

    return check


async def run(resources: int, changes: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {
        "initial sync": [],
        "file -> store": [],
        "file -> 10 sinks ACKed": [],
        "store -> 1 sink ACKed": [],
        "store -> 10 sinks ACKed": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        root = pathlib.Path(folder)
        for i in range(resources):
            (root / f"vs-{i}.yaml").write_text(vs_yaml(i))
        store = ConfigStore()
        directory = DirectorySource(store, root, interval=0.05)
        await directory.start()
        async with McpSource(store) as source:
            address = ("127.0.0.1", source.port)
            started = time.perf_counter()
            mirrors = [ConfigStore() for _ in range(SINKS)]
            sinks = [GalleyClient(m, address, collections=[VS]) for m in mirrors]
            for sink in sinks:
                await sink.start()
            done = await until(lambda: all(len(m) == resources for m in mirrors))
            figures["initial sync"].append(done - started)
            for n in range(changes):
                suffix = f".c{n}"
                all_acked = acked_by(source, SINKS)
                started = time.perf_counter()
                (root / "vs-7.yaml").write_text(vs_yaml(7, suffix))
                stored = await until(holds_suffix(store, suffix))
                acked = await until(all_acked)
                figures["file -> store"].append(stored - started)
                figures["file -> 10 sinks ACKed"].append(acked - started)
            for count, label in ((SINKS, "store -> 10 sinks ACKed"), (1, "store -> 1 sink ACKed")):
                for sink in sinks[count:]:
                    await sink.stop()
                await until(lambda c=count: source.stats().streams == c)  # type: ignore[misc]
                await asyncio.sleep(0.2)  # let the stopped streams' server side wind down
                for n in range(changes):
                    (resource,) = load_resources(vs_yaml(7, f".s{count}-{n}"))
                    all_acked = acked_by(source, count)
                    started = time.perf_counter()
                    store.apply(resource)
                    figures[label].append(await until(all_acked) - started)
            for sink in sinks:
                await sink.stop()
        await directory.stop()
    return figures


def main() -> None:
    quick = "--quick" in sys.argv
    resources, changes = (100, 3) if quick else (1000, 7)
    figures = asyncio.run(run(resources, changes))
    print(f"MCP, {resources} VirtualServices in the collection, {SINKS} sinks (median)")
    medians = {k: statistics.median(v) for k, v in figures.items()}
    for label, value in medians.items():
        print(f"  {label:<26} {value * 1000:9.1f} ms")
    mcp = medians["file -> 10 sinks ACKed"] - medians["file -> store"]
    print(
        f"  MCP share of file -> 10 sinks: {mcp * 1000:.1f} ms "
        f"({medians['file -> 10 sinks ACKed'] / medians['file -> store']:.1f}x the file -> store "
        f"reference); 10 sinks vs 1: "
        f"{medians['store -> 10 sinks ACKed'] / medians['store -> 1 sink ACKed']:.1f}x"
    )


if __name__ == "__main__":
    main()
