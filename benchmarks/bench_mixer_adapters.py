"""Quota adapters: allocations per second through memquota and through redisquota.

memquota is measured on its synchronous core (``allocate``) for a rolling window and an
allocation counter, with a fresh dimension set every 64 calls (so keys are built and windows
created as in real traffic). redisquota runs one EVALSHA per call against a ``redis-server``
this benchmark starts on 127.0.0.1 (skipped when the binary is missing): sequential calls give
the per-call latency, 32 concurrent callers the throughput of one handler's pool.

Run with ``python -m benchmarks mixer_adapters`` (``--quick`` for fewer calls).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import time

from istio_sdk.mixer.adapters import MemQuotaHandler, QuotaArgs, RedisQuotaHandler
from istio_sdk.mixer.adapters.memquota import MemQuotaParams
from istio_sdk.mixer.templates import Quota

NAME = "requestcount.quota.istio-system"


def _instances(count: int) -> list[Quota]:
    return [
        Quota(NAME, {"destination": f"svc{i % 50}", "source": "productpage", "code": 200})
        for i in range(count)
    ]


def bench_memquota(calls: int, valid_duration: str) -> float:
    params = MemQuotaParams.from_dict(
        {"quotas": [{"name": NAME, "maxAmount": 10**9, "validDuration": valid_duration}]}
    )
    handler = MemQuotaHandler("mq.handler.istio-system", params)
    instances = _instances(64)
    start = time.perf_counter()
    for i in range(calls):
        handler.allocate(instances[i % 64], QuotaArgs(1, deduplication_id=f"r{i}"))
    return calls / (time.perf_counter() - start)


def _start_redis() -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.terminate()
    return None


async def bench_redisquota(port: int, calls: int, algorithm: str) -> tuple[float, float, float]:
    quota: dict[str, object] = {
        "name": NAME,
        "maxAmount": 10**9,
        "validDuration": "10s",
        "rateLimitAlgorithm": algorithm,
    }
    if algorithm == "ROLLING_WINDOW":
        quota["bucketDuration"] = "100ms"
    handler = await RedisQuotaHandler.create(
        "rq.handler.istio-system",
        {"redisServerUrl": f"127.0.0.1:{port}", "connectionPoolSize": 32, "quotas": [quota]},
    )
    instances = _instances(64)
    latencies = []
    for i in range(calls // 4):
        start = time.perf_counter()
        await handler.handle_quota(instances[i % 64], QuotaArgs(1, deduplication_id=f"s{i}"))
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    p50 = statistics.median(latencies) * 1e6
    p99 = latencies[int(len(latencies) * 0.99)] * 1e6

    async def caller(worker: int) -> None:
        for i in range(calls // 32):
            args = QuotaArgs(1, deduplication_id=f"c{worker}-{i}")
            await handler.handle_quota(instances[(worker + i) % 64], args)

    start = time.perf_counter()
    await asyncio.gather(*(caller(w) for w in range(32)))
    rate = (calls // 32 * 32) / (time.perf_counter() - start)
    await handler.close()
    return rate, p50, p99


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    calls = 5_000 if "--quick" in args else 50_000
    print(f"memquota rolling window: {bench_memquota(calls, '1s'):,.0f} allocations/s")
    print(f"memquota counter:        {bench_memquota(calls, '0s'):,.0f} allocations/s")
    started = _start_redis()
    if started is None:
        print("redisquota: skipped (redis-server is not installed)")
        return
    process, port = started
    try:
        redis_calls = calls // 10
        for algorithm in ("FIXED_WINDOW", "ROLLING_WINDOW"):
            rate, p50, p99 = asyncio.run(bench_redisquota(port, redis_calls, algorithm))
            print(
                f"redisquota {algorithm}: {rate:,.0f} allocations/s with 32 callers; "
                f"one caller p50 {p50:.0f} us, p99 {p99:.0f} us"
            )
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
