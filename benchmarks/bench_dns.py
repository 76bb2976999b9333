"""The agent's DNS proxy: answers per second and latency, from the name table and forwarded.

The proxy runs in this process on 127.0.0.1; the client runs in a process of its own (plain
blocking UDP sockets, precomputed queries), so the proxy's event loop has a core to itself as
far as two shared cores allow. Throughput keeps ``WINDOW`` queries in flight; latency (p50, p99)
is measured one query at a time. Forwarded queries go to a small dnspython responder in a third
process; the same client asking that responder directly is the reference the forwarded figures
are compared with (so the ratio is what the proxy adds).

Run with ``python -m benchmarks dns`` (``--quick`` for fewer queries).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import dns.message
import dns.rcode
import dns.rrset

from istio_sdk.api.istio.networking.nds.v1 import NameTable, NameTableNameInfo
from istio_sdk.proxy.dns import DnsProxy

WINDOW = 16
NAMES = 500


def _queries(names: list[str]) -> list[bytes]:
    return [dns.message.make_query(n, "A", id=i % 65536).to_wire() for i, n in enumerate(names)]


def _client(address: tuple[str, int], names: list[str], count: int, out: Connection) -> None:
    """Throughput with WINDOW in flight, then latency one by one; sends the figures back."""
    wires = _queries(names)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(address)
    sock.settimeout(5.0)
    lost = 0
    sent = received = 0
    start = time.perf_counter()
    while sent < min(WINDOW, count):
        sock.send(wires[sent % len(wires)])
        sent += 1
    while received < count:
        try:
            sock.recv(65535)
        except TimeoutError:
            lost += 1
        received += 1
        if sent < count:
            sock.send(wires[sent % len(wires)])
            sent += 1
    rate = count / (time.perf_counter() - start)
    latencies = []
    for i in range(max(count // 4, 200)):
        started = time.perf_counter()
        sock.send(wires[i % len(wires)])
        try:
            sock.recv(65535)
        except TimeoutError:
            lost += 1
            continue
        latencies.append(time.perf_counter() - started)
    sock.close()
    out.send((rate, latencies, lost))


def _upstream(ready: Connection) -> None:
    """A blocking dnspython responder: A 192.0.2.53 for any name."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    ready.send(sock.getsockname()[1])
    while True:
        data, addr = sock.recvfrom(65535)
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        name = query.question[0].name
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.53"))
        sock.sendto(response.to_wire(), addr)


def _measure(address: tuple[str, int], names: list[str], count: int) -> tuple[float, float, float]:
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    process = ctx.Process(target=_client, args=(address, names, count, there), daemon=True)
    process.start()
    rate, latencies, lost = here.recv()
    process.join()
    if lost:
        print(f"  ({lost} queries got no answer within 5 s)")
    p50 = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100)[98]
    return rate, p50, p99


async def _proxy_run(upstream_port: int, count: int) -> dict[str, tuple[float, float, float]]:
    table = NameTable(
        table={
            f"svc{i}.bookinfo.svc.cluster.local": NameTableNameInfo(
                ips=[f"10.96.{i // 250}.{i % 250}"],
                registry="Kubernetes",
                shortname=f"svc{i}",
                namespace="bookinfo",
            )
            for i in range(NAMES)
        }
    )
    proxy = DnsProxy(
        namespace="bookinfo",
        domain="bookinfo.svc.cluster.local",
        port=0,
        upstream=[f"127.0.0.1:{upstream_port}"],
        search=["bookinfo.svc.cluster.local", "svc.cluster.local", "cluster.local"],
    )
    results: dict[str, tuple[float, float, float]] = {}
    async with proxy:
        started = time.perf_counter()
        await proxy.load_name_table(table)
        print(f"  lookup table for {NAMES} services built in {time.perf_counter() - started:.3f} s")
        local = [f"svc{i}." for i in range(NAMES)]
        remote = [f"host{i}.example.org." for i in range(NAMES)]
        for label, names in (("table", local), ("forwarded", remote)):
            results[label] = await asyncio.to_thread(_measure, proxy.address, names, count)
        failures = proxy.stats.upstream_failures
        if failures:
            print(f"  {failures} forwarded queries got SERVFAIL")
    return results


def run(count: int) -> None:
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    upstream = ctx.Process(target=_upstream, args=(there,), daemon=True)
    upstream.start()
    port = here.recv()
    try:
        direct = _measure(
            ("127.0.0.1", port), [f"host{i}.example.org." for i in range(NAMES)], count
        )
        results = asyncio.run(_proxy_run(port, count))
    finally:
        upstream.terminate()
        upstream.join()
    rows: list[tuple[str, Any, Any, Any]] = [
        ("from the name table (UDP)", *results["table"]),
        ("forwarded to the upstream (UDP)", *results["forwarded"]),
        ("reference: the upstream asked directly", *direct),
    ]
    print(f"  {count} queries, {WINDOW} in flight for the rate; latency one at a time")
    print(f"  {'path':42} {'answers/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for label, rate, p50, p99 in rows:
        print(f"  {label:42} {rate:10.0f} {p50 * 1e3:8.3f} {p99 * 1e3:8.3f}")
    ratio = results["forwarded"][0] / direct[0]
    print(f"  forwarded rate / direct upstream rate: {ratio:.2f}x")


def main() -> None:
    run(2000 if "--quick" in sys.argv else 20000)


if __name__ == "__main__":
    main()
