"""MixerServer: Check and Report throughput through gRPC, and the runtime core on its own.

The server runs in a child process with 10 check rules (denials on service, header, port,
namespace, user agent and path, an IP blacklist, a string whitelist and a regex list, all on
Istio 1.3's default vocabulary) and Istio's HTTP metrics (requests_total and
request_duration_seconds with the 20 default labels) for Report. The parent is the proxy:
several connections, many calls in flight, every Check a different bag (request ids, paths,
source IPs and sizes vary: no two calls could share a cache entry, and Mixer 1.3 has no server
cache anyway).

Figures:

- Checks per second (wall clock) and per CPU second of the server process (the "one core"
  figure: the client competes for the same machine), latency p50/p99 as the proxy sees it;
- the same Check through the core alone (decode, plan, dispatch, encode the answer), in process;
- Report attributes per second (batches of 100 bags, INDEPENDENT encoding as 1.3's proxy sends);
- compression: one realistic bag and a 100-bag Report against ``istio.mixer.v1.Attributes``;
- CEXL evaluations per second of the 10 rules' matches on a realistic bag.

Run with ``nox -s bench`` or ``python -m benchmarks mixer_server``; ``--quick`` runs shorter.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from istio_sdk.api.istio.mixer.v1 import CheckRequest, MixerStub
from istio_sdk.mixer import AttributeBag, encode_attributes, encode_report

REPO = pathlib.Path(__file__).resolve().parent.parent

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: denied}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: badips, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params: {entryType: IP_ADDRESSES, blacklist: true, overrides: ["192.0.2.0/24", "198.51.100.7"]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: sourceip, namespace: istio-system}
spec: {compiledTemplate: listentry, params: {value: source.ip | ip("0.0.0.0")}}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: callers, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params: {overrides: [productpage-v1, reviews-v2, reviews-v3, details-v1, ratings-v1]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: workload, namespace: istio-system}
spec: {compiledTemplate: listentry, params: {value: source.workload.name | "unknown"}}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: paths, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params: {entryType: REGEX, overrides: ["^/reviews/[0-9]+$", "^/ratings/", "^/details/"]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: path, namespace: istio-system}
spec: {compiledTemplate: listentry, params: {value: request.url_path | request.path | "/"}}
"""

_DENIALS = [
    'destination.service.name == "forbidden"',
    'request.headers["x-block"] == "1"',
    "destination.port == 9999",
    'source.namespace == "untrusted"',
    'match(request.useragent | "-", "sqlmap*")',
    '"^/admin".matches(request.path | "/")',
    'request.method == "TRACE"',
]
_LISTS = [
    ("badips", "sourceip", 'context.protocol == "http"'),
    ("callers", "workload", 'destination.service.name == "reviews"'),
    ("paths", "path", '(request.host | "") != "" && context.reporter.kind == "inbound"'),
]


def _rule(name: str, match: str, handler: str, instance: str) -> str:
    return (
        "---\napiVersion: config.istio.io/v1alpha2\nkind: rule\n"
        f"metadata: {{name: {name}, namespace: istio-system}}\n"
        f"spec:\n  match: '{match}'\n  actions:\n"
        f"  - handler: {handler}\n    instances: [{instance}]\n"
    )


def _metrics_config() -> str:
    from istio_sdk.mixer.adapters.prometheus import HTTP_LABELS

    labels = ", ".join(HTTP_LABELS)
    dims = "\n".join(f'      {label}: source.workload.name | "unknown"' for label in HTTP_LABELS)
    return f"""---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: prometheus, namespace: istio-system}}
spec:
  compiledAdapter: prometheus
  params:
    metrics:
    - {{name: requests_total, instanceName: requestcount.instance.istio-system, kind: COUNTER,
       labelNames: [{labels}]}}
    - {{name: request_duration_seconds, instanceName: requestduration.instance.istio-system,
       kind: DISTRIBUTION, labelNames: [{labels}],
       buckets: {{explicitBuckets: {{bounds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]}}}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: requestcount, namespace: istio-system}}
spec:
  compiledTemplate: metric
  params:
    value: "1"
    dimensions:
{dims}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: requestduration, namespace: istio-system}}
spec:
  compiledTemplate: metric
  params:
    value: response.duration | "0ms"
    dimensions:
{dims}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: promhttp, namespace: istio-system}}
spec:
  match: context.protocol == "http"
  actions:
  - {{handler: prometheus, instances: [requestcount, requestduration]}}
"""


def config_text() -> str:
    """The benchmark's configuration: 10 check rules and the HTTP metrics."""
    rules = [_rule(f"deny{n}", match, "deny", "nothing") for n, match in enumerate(_DENIALS)]
    rules += [_rule(f"list{h}", match, h, i) for h, i, match in _LISTS]
    return CONFIG + "".join(rules) + _metrics_config()


def bag(i: int) -> AttributeBag:
    """A realistic inbound HTTP bag; ids, paths, addresses and sizes vary with ``i``."""
    from benchmarks.bench_mixer import inbound_bag

    return inbound_bag(i).updated(
        {
            "source.ip": ipaddress.ip_address(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"),
            "request.url_path": f"/reviews/{i}",
            "source.workload.name": "productpage-v1",
            "context.reporter.kind": "inbound",
        }
    )


# -- the server process -------------------------------------------------------------------------
def _serve_child(empty: bool = False) -> None:
    from istio_sdk.config import ConfigStore, load_resources
    from istio_sdk.mixer import MixerServer

    async def run() -> None:
        store = ConfigStore()
        for resource in [] if empty else load_resources(config_text()):
            store.apply(resource)
        server = MixerServer(store)
        port = await server.start("127.0.0.1", 0)
        assert not server.problems, server.problems
        print(port, flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.strip() == b"cpu":
                print(f"{time.process_time():.6f}", flush=True)
        await server.stop()

    asyncio.run(run())


class _Child:
    def __init__(self, *, empty: bool = False) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from benchmarks.bench_mixer_server import _serve_child; "
                f"_serve_child(empty={empty})",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def cpu(self) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"cpu\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# -- measurements -------------------------------------------------------------------------------
async def _checks(port: int, seconds: float, connections: int, in_flight: int) -> dict[str, Any]:
    from istio_sdk._grpc import create_channel

    requests = [
        CheckRequest(
            attributes=encode_attributes(bag(i)), global_word_count=222, deduplication_id=f"b-{i}"
        )
        for i in range(2000)
    ]
    channels = [create_channel("127.0.0.1", port) for _ in range(connections)]
    latencies: list[float] = []
    denied = 0
    stop_at = time.perf_counter() + seconds

    async def caller(n: int) -> None:
        nonlocal denied
        stub = MixerStub(channels[n % connections])
        i = n
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            response = await stub.check(requests[i % len(requests)])
            latencies.append(time.perf_counter() - started)
            assert response.precondition is not None and response.precondition.status is not None
            denied += response.precondition.status.code != 0
            i += in_flight

    started = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(connections * in_flight)))
    elapsed = time.perf_counter() - started
    for channel in channels:
        channel.close()
    latencies.sort()
    return {
        "calls": len(latencies),
        "rate": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
        "denied": denied,
    }


async def _reports(port: int, batches: int) -> tuple[float, int]:
    from istio_sdk._grpc import create_channel

    sets = [
        encode_report([bag(b * 100 + i) for i in range(100)])[0] for b in range(min(batches, 20))
    ]
    attributes = sum(len(bag(0)) for _ in range(100))
    channel = create_channel("127.0.0.1", port)
    stub = MixerStub(channel)
    started = time.perf_counter()
    for b in range(batches):
        await stub.report(sets[b % len(sets)])
    elapsed = time.perf_counter() - started
    channel.close()
    return batches * attributes / elapsed, attributes


async def _core_checks(count: int) -> float:
    from istio_sdk.config import ConfigStore, load_resources
    from istio_sdk.mixer import MixerServer

    store = ConfigStore()
    for resource in load_resources(config_text()):
        store.apply(resource)
    server = MixerServer(store)
    await server.reload()
    requests = [
        CheckRequest(attributes=encode_attributes(bag(i)), global_word_count=222)
        for i in range(500)
    ]
    for request in requests[:50]:
        await server.check(request)
    started = time.process_time()  # CPU time: the machine may be shared
    for i in range(count):
        bytes(await server.check(requests[i % len(requests)]))
    elapsed = time.process_time() - started
    await server.stop()
    return count / elapsed


def _expressions(rounds: int) -> float:
    from istio_sdk.mixer.expr import compile

    matches = [compile(text) for text in _DENIALS + [m for _, _, m in _LISTS]]
    values = bag(7)._values
    assert all(isinstance(m.evaluate(values), bool) for m in matches)  # all resolve on the bag
    started = time.process_time()
    for _ in range(rounds):
        for expression in matches:
            expression.evaluate(values)
    return rounds * len(matches) / (time.process_time() - started)


def _compression() -> tuple[int, int, int, int]:
    from benchmarks.bench_mixer import _uncompressed

    one = bag(1)
    plain = len(bytes(_uncompressed(one)))
    compressed = len(bytes(encode_attributes(one)))
    batch = [bag(i) for i in range(100)]
    plain_batch = sum(len(bytes(_uncompressed(b))) for b in batch)
    report = len(bytes(encode_report(batch)[0]))
    return plain, compressed, plain_batch, report


def _grpc_checks(seconds: float, *, empty: bool) -> tuple[dict[str, Any], float]:
    child = _Child(empty=empty)
    try:
        asyncio.run(_checks(child.port, 0.5, 2, 8))  # warm up both sides
        cpu_before = child.cpu()
        checks = asyncio.run(_checks(child.port, seconds, 4, 16))
        cpu = child.cpu() - cpu_before
    finally:
        child.close()
    return checks, checks["calls"] / cpu


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    quick = "--quick" in args
    seconds = 2.0 if quick else 6.0
    floor, floor_rate = _grpc_checks(seconds, empty=True)
    checks, rate = _grpc_checks(seconds, empty=False)
    print(
        f"Check through gRPC (10 rules, every bag different, 64 in flight over 4 connections): "
        f"{rate:,.0f} checks per server CPU second ({checks['rate']:,.0f}/s wall); "
        f"p50 {checks['p50'] * 1e3:.2f} ms, p99 {checks['p99'] * 1e3:.2f} ms "
        f"({checks['calls']} calls)"
    )
    print(
        f"  reference in the same run, no rules at all (grpclib, decoding, encoding): "
        f"{floor_rate:,.0f} per server CPU second ({floor['rate']:,.0f}/s wall); "
        f"with 10 rules / with none: {rate / floor_rate:.2f}"
    )
    core = asyncio.run(_core_checks(2000 if quick else 8000))
    print(
        f"Check through the core alone (decode, plan, adapters, encode; no gRPC): "
        f"{core:,.0f} checks per CPU second"
    )
    child = _Child()
    try:
        cpu_before = child.cpu()
        report_rate, per_batch = asyncio.run(_reports(child.port, 20 if quick else 60))
        report_cpu = child.cpu() - cpu_before
    finally:
        child.close()
    batches = 20 if quick else 60
    print(
        f"Report (batches of 100 bags, {per_batch} attributes a batch, 2 metrics per bag): "
        f"{batches * per_batch / report_cpu:,.0f} attributes per server CPU second "
        f"({report_rate:,.0f}/s wall)"
    )
    plain, compressed, plain_batch, report = _compression()
    print(
        f"compression: one bag {plain} B -> {compressed} B ({plain / compressed:.2f}x); "
        f"100-bag Report {plain_batch} B -> {report} B ({plain_batch / report:.2f}x)"
    )
    rate = _expressions(5000 if quick else 20000)
    print(f"CEXL: the 10 rules' matches, {rate:,.0f} evaluations per CPU second")


if __name__ == "__main__":
    main()
