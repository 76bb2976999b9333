"""Mixer cores: CEXL evaluations per second, attribute compression ratio and codec speed.

Expressions are the match clauses and instance fields of Istio 1.3's default configuration
(helm's mixer config.yaml: promhttp, the reporter dimension, response_code, a header fallback, a
glob and a regex). Each is evaluated on a realistic inbound HTTP bag. The reference is a plain
recursive interpreter that walks the syntax tree on every call (what "compile once" avoids);
both give the same results, which the benchmark checks.

Compression: the same bag as ``istio.mixer.v1.Attributes`` (names and strings spelled out) and
as ``CompressedAttributes`` (Check's form), and a Report batch of 100 such bags (URLs, ids and
sizes varying) in INDEPENDENT and DELTA encoding against 100 uncompressed bags.

Run with ``nox -s bench`` or ``python -m benchmarks mixer``; ``--quick`` runs fewer rounds.
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from istio_sdk.api.istio.mixer.v1 import (
    Attributes,
    AttributesAttributeValue,
    AttributesStringMap,
    CompressedAttributes,
    ReportRequest,
)
from istio_sdk.mixer import (
    DEFAULT_MANIFEST,
    AttributeBag,
    ReportEncoding,
    decode_attributes,
    decode_report,
    encode_attributes,
    encode_report,
)
from istio_sdk.mixer.expr import _externs as externs
from istio_sdk.mixer.expr import compile
from istio_sdk.mixer.expr._syntax import Const, Fn, Node, Var, parse

RULES = {
    "promhttp match": '(context.protocol == "http" || context.protocol == "grpc") && '
    '(match((request.useragent | "-"), "kube-probe*") == false) && '
    '(match((request.useragent | "-"), "Prometheus*") == false)',
    "reporter": 'conditional((context.reporter.kind | "inbound") == "outbound", '
    '"source", "destination")',
    "response_code": "response.code | 200",
    "destination_service": 'destination.service.host | request.host | "unknown"',
    "header fallback": 'request.headers["x-request-id"] | "none"',
    "glob + eq": 'match(destination.service.host, "*.svc.cluster.local") && '
    'source.namespace == "default"',
    "regex": '"^/api/v[0-9]+/".matches(request.path)',
}


def inbound_bag(i: int = 0) -> AttributeBag:
    """What an Istio 1.3 sidecar reports for one inbound HTTP request."""
    now = datetime.datetime(2020, 2, 12, 10, 0, i % 60, tzinfo=datetime.UTC)
    return AttributeBag(
        {
            "connection.mtls": True,
            "connection.requested_server_name": "outbound_.9080_._.reviews.default.svc",
            "context.protocol": "http",
            "context.proxy_error_code": "-",
            "context.reporter.kind": "inbound",
            "context.reporter.uid": "kubernetes://reviews-v1-5b8f9d7c4-x2x8k.default",
            "context.time": now,
            "destination.port": 9080,
            "destination.principal": "cluster.local/ns/default/sa/bookinfo-reviews",
            "destination.service.host": "reviews.default.svc.cluster.local",
            "destination.service.name": "reviews",
            "destination.service.namespace": "default",
            "destination.service.uid": "istio://default/services/reviews",
            "destination.uid": "kubernetes://reviews-v1-5b8f9d7c4-x2x8k.default",
            "destination.ip": ipaddress.ip_address("10.44.0.12"),
            "origin.ip": ipaddress.ip_address("10.44.0.9"),
            "request.headers": {
                ":authority": "reviews:9080",
                ":method": "GET",
                ":path": f"/api/v1/reviews/{i}",
                "accept": "*/*",
                "user-agent": "python-requests/2.22.0",
                "x-request-id": f"5e3f2a1c-7b9d-4e8f-a2c1-{i:012d}",
                "x-b3-traceid": f"{i:016x}",
                "x-forwarded-proto": "http",
            },
            "request.host": "reviews:9080",
            "request.id": f"5e3f2a1c-7b9d-4e8f-a2c1-{i:012d}",
            "request.method": "GET",
            "request.path": f"/api/v1/reviews/{i}",
            "request.scheme": "http",
            "request.size": 0,
            "request.time": now,
            "request.total_size": 812,
            "request.url_path": f"/api/v1/reviews/{i}",
            "request.useragent": "python-requests/2.22.0",
            "response.code": 200,
            "response.duration": datetime.timedelta(microseconds=3_512 + i),
            "response.headers": {
                ":status": "200",
                "content-type": "application/json",
                "server": "istio-envoy",
                "x-envoy-upstream-service-time": "3",
            },
            "response.size": 295 + i % 7,
            "response.time": now,
            "response.total_size": 549,
            "source.namespace": "default",
            "source.principal": "cluster.local/ns/default/sa/bookinfo-productpage",
            "source.uid": "kubernetes://productpage-v1-7d6cfb7dfd-5mc96.default",
        }
    )


# --- the reference: walk the tree on every evaluation --------------------------------------

_MISSING = object()


def _walk(node: Node, bag: Mapping[str, Any], maybe: bool = False) -> Any:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Var):
        value = bag.get(node.name, _MISSING)
        if value is _MISSING and not maybe:
            raise LookupError(node.name)
        return value
    assert isinstance(node, Fn)
    args = node.args
    if node.name == "OR":
        left = _walk(args[0], bag, maybe=True)
        return _walk(args[1], bag, maybe) if left is _MISSING else left
    if node.name == "INDEX":
        target = _walk(args[0], bag, maybe)
        if target is _MISSING:
            return _MISSING
        return target.get(_walk(args[1], bag), _MISSING if maybe else "")
    if node.name == "LAND":
        return _walk(args[0], bag) and _walk(args[1], bag)
    if node.name == "LOR":
        return _walk(args[0], bag) or _walk(args[1], bag)
    if node.name == "EQ":
        return _walk(args[0], bag) == _walk(args[1], bag)
    if node.name == "conditional":
        return _walk(args[1], bag) if _walk(args[0], bag) else _walk(args[2], bag)
    if node.name == "match":
        return externs.match(_walk(args[0], bag), _walk(args[1], bag))
    if node.name == "matches":
        assert node.target is not None
        return externs.matches(_walk(node.target, bag), _walk(args[0], bag))
    raise NotImplementedError(node.name)


def _rate(function: Callable[[], object], rounds: int, repeats: int = 5) -> float:
    """Calls per second, the best of ``repeats`` runs (the machine is shared)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds // repeats):
            function()
        best = min(best, time.perf_counter() - started)
    return (rounds // repeats) / best


def bench_expressions(rounds: int) -> None:
    bag = inbound_bag()
    print(f"CEXL on a {len(bag)}-attribute inbound HTTP bag ({rounds} evaluations each)")
    print(f"  {'expression':<20} {'compiled/s':>12} {'tree walk/s':>12} {'speed-up':>9}")
    total_compiled = total_walked = 0.0
    for label, text in RULES.items():
        expression = compile(text, DEFAULT_MANIFEST)
        tree = parse(text)
        plain = dict(bag)  # the walker gets a dict, as fast to read as the bag's own
        assert expression.evaluate(bag) == _walk(tree, plain), label

        def evaluate(e: Any = expression) -> object:
            return e.evaluate(bag)

        def walk(t: Node = tree, attributes: dict[str, Any] = plain) -> object:
            return _walk(t, attributes)

        compiled = _rate(evaluate, rounds)
        walked = _rate(walk, rounds)
        total_compiled += 1 / compiled
        total_walked += 1 / walked
        print(f"  {label:<20} {compiled:>12,.0f} {walked:>12,.0f} {compiled / walked:>8.1f}x")
    n = len(RULES)
    print(
        f"  {'all (mean)':<20} {n / total_compiled:>12,.0f} {n / total_walked:>12,.0f} "
        f"{total_walked / total_compiled:>8.1f}x"
    )
    started = time.perf_counter()
    compiles = max(rounds // 20, 50)
    for _ in range(compiles):
        for text in RULES.values():
            compile(text, DEFAULT_MANIFEST)
    per_compile = (time.perf_counter() - started) / (compiles * n)
    print(f"  compile: {per_compile * 1e6:,.0f} us per expression")


def _uncompressed(bag: AttributeBag) -> Attributes:
    values: dict[str, AttributesAttributeValue] = {}
    for name, value in bag.items():
        if isinstance(value, str):
            values[name] = AttributesAttributeValue(string_value=value)
        elif isinstance(value, bool):
            values[name] = AttributesAttributeValue(bool_value=value)
        elif isinstance(value, int):
            values[name] = AttributesAttributeValue(int64_value=value)
        elif isinstance(value, float):
            values[name] = AttributesAttributeValue(double_value=value)
        elif isinstance(value, datetime.datetime):
            values[name] = AttributesAttributeValue(timestamp_value=value)
        elif isinstance(value, datetime.timedelta):
            values[name] = AttributesAttributeValue(duration_value=value)
        elif isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            values[name] = AttributesAttributeValue(bytes_value=value.packed)
        elif isinstance(value, Mapping):
            entries = AttributesStringMap(entries=dict(value))
            values[name] = AttributesAttributeValue(string_map_value=entries)
    return Attributes(attributes=values)


def bench_compression(rounds: int) -> None:
    bag = inbound_bag()
    plain = len(bytes(_uncompressed(bag)))
    check = len(bytes(encode_attributes(bag)))
    print(f"\nCompression of one {len(bag)}-attribute bag (Check)")
    print(f"  Attributes {plain:,} B, CompressedAttributes {check:,} B: ratio {plain / check:.2f}")
    batch = [inbound_bag(i) for i in range(100)]
    plain_batch = sum(len(bytes(_uncompressed(b))) for b in batch)
    print("Report batch of 100 bags")
    for encoding in ReportEncoding:
        requests = encode_report(batch, encoding=encoding)
        size = sum(len(bytes(r)) for r in requests)
        print(
            f"  {encoding.name:<11} {size:>8,} B in {len(requests)} request(s) vs "
            f"{plain_batch:,} B uncompressed: ratio {plain_batch / size:.2f}"
        )
        decoded = [b for r in requests for b in decode_report(r, manifest=DEFAULT_MANIFEST)]
        assert decoded == batch
    message = encode_attributes(bag)
    wire = bytes(message)
    encode_rate = _rate(lambda: bytes(encode_attributes(bag)), rounds)
    decode_rate = _rate(
        lambda: decode_attributes(CompressedAttributes.parse(wire), manifest=DEFAULT_MANIFEST),
        rounds,
    )
    print(
        f"  Check bags (to bytes and back): encode {encode_rate:,.0f}/s, "
        f"decode {decode_rate:,.0f}/s"
    )
    [request] = encode_report(batch)
    report_wire = bytes(request)
    started = time.perf_counter()
    report_rounds = max(rounds // 100, 5)
    for _ in range(report_rounds):
        decode_report(ReportRequest.parse(report_wire), manifest=DEFAULT_MANIFEST)
    elapsed = time.perf_counter() - started
    attributes = report_rounds * sum(len(b) for b in batch)
    print(f"  Report decode: {attributes / elapsed:,.0f} attributes/s")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    rounds = 2_000 if "--quick" in args else 20_000
    bench_expressions(rounds)
    bench_compression(rounds // 10)


if __name__ == "__main__":
    main()
