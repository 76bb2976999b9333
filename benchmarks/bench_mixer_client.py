"""MixerClient: Checks per second and latency on cache hits, against remote Checks in the same run.

A Mixer stand-in on 127.0.0.1 (grpclib, in this process) answers every Check with OK and the
referenced attributes a typical rule set reads (destination service, method, path, one
header key, one ABSENCE). The client then checks the realistic 36-attribute inbound
bag of ``bench_mixer``: first with the cache off (every Check is a remote call: the reference),
then with the cache warm (every Check a hit). Latency is per ``await client.check(...)``,
measured with ``perf_counter_ns``; the goal is a cache hit under 20 us. Report: bags per second
into the batcher (encoding included, sending in the background).

Run with ``nox -s bench`` or ``python -m benchmarks mixer_client``; ``--quick`` runs fewer rounds.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import time

from grpclib.server import Server

from benchmarks.bench_mixer import inbound_bag
from istio_sdk._net import bind_tcp, bound_port
from istio_sdk.api.google.rpc import Status
from istio_sdk.api.istio.mixer.v1 import (
    CheckRequest,
    CheckResponse,
    CheckResponsePreconditionResult,
    MixerBase,
    ReferencedAttributes,
    ReferencedAttributesAttributeMatch,
    ReferencedAttributesCondition,
    ReportRequest,
    ReportResponse,
)
from istio_sdk.mixer import GLOBAL_WORD_INDEX, MixerClient

GOAL_HIT_SECONDS = 20e-6

_EXACT = ReferencedAttributesCondition.EXACT
_ABSENCE = ReferencedAttributesCondition.ABSENCE


def _referenced() -> ReferencedAttributes:
    words: list[str] = []

    def index(word: str) -> int:
        if word in GLOBAL_WORD_INDEX:
            return GLOBAL_WORD_INDEX[word]
        words.append(word)
        return -len(words)

    matches = [
        ReferencedAttributesAttributeMatch(name=index(name), condition=_EXACT)
        for name in ("destination.service.host", "request.method", "request.path")
    ]
    matches.append(
        ReferencedAttributesAttributeMatch(
            name=index("request.headers"), condition=_EXACT, map_key=index("x-request-id")
        )
    )
    matches.append(
        ReferencedAttributesAttributeMatch(name=index("source.user"), condition=_ABSENCE)
    )
    return ReferencedAttributes(words=words, attribute_matches=matches)


class _Allow(MixerBase):  # type: ignore[misc]
    def __init__(self) -> None:
        self.answer = CheckResponse(
            precondition=CheckResponsePreconditionResult(
                status=Status(code=0),
                valid_duration=datetime.timedelta(minutes=10),
                valid_use_count=-1,
                referenced_attributes=_referenced(),
            )
        )

    async def check(self, message: CheckRequest) -> CheckResponse:
        return self.answer

    async def report(self, message: ReportRequest) -> ReportResponse:
        return ReportResponse()


def _percentile(samples: list[int], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] / 1e9


async def _latencies(client: MixerClient, bag: object, rounds: int) -> list[int]:
    clock = time.perf_counter_ns
    check = client.check
    samples = []
    for _ in range(rounds):
        started = clock()
        await check(bag)  # type: ignore[arg-type]
        samples.append(clock() - started)
    return samples


def _line(label: str, samples: list[int]) -> tuple[float, float]:
    total = sum(samples) / 1e9
    p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
    print(
        f"  {label:<22} {len(samples) / total:>12,.0f}/s   p50 {p50 * 1e6:>8.1f} us"
        f"   p99 {p99 * 1e6:>8.1f} us"
    )
    return p50, total / len(samples)


async def _run(rounds: int) -> None:
    service = _Allow()
    server = Server([service])
    listener = bind_tcp("127.0.0.1", 0)
    await server.start(sock=listener)
    port = bound_port(listener)
    bag = inbound_bag()
    try:
        print(f"MixerClient.check on a {len(bag)}-attribute inbound HTTP bag")
        async with MixerClient("127.0.0.1", port, check_cache_entries=0) as uncached:
            await uncached.check(bag)
            remote = await _latencies(uncached, bag, max(rounds // 20, 200))
        remote_p50, remote_mean = _line("remote (cache off)", remote)
        async with MixerClient("127.0.0.1", port) as client:
            await client.check(bag)
            hits = await _latencies(client, bag, rounds)
            assert client.stats.check_cache_hits == rounds, "the bench bag missed the cache"
            plain = dict(bag)
            plain_hits = await _latencies(client, plain, rounds)
        hit_p50, hit_mean = _line("cache hit", hits)
        _line("cache hit (plain dict)", plain_hits)
        verdict = "met" if hit_p50 < GOAL_HIT_SECONDS else "NOT met"
        print(
            f"  a hit is {remote_mean / hit_mean:,.0f}x faster than a remote Check "
            f"(p50 {remote_p50 / hit_p50:,.0f}x); goal p50 < 20 us: {verdict}"
        )
        async with MixerClient("127.0.0.1", port) as reporter:
            started = time.perf_counter()
            for _ in range(rounds):
                reporter.report(bag)
            await reporter.flush()
            elapsed = time.perf_counter() - started
        print(
            f"  report: {rounds / elapsed:,.0f} bags/s batched and sent "
            f"({rounds * len(bag) / elapsed:,.0f} attributes/s)"
        )
    finally:
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    rounds = 5_000 if "--quick" in args else 50_000
    asyncio.run(_run(rounds))


if __name__ == "__main__":
    main()
