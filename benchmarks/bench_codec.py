"""Codec benchmark: encode and decode per message, ours against upb and plain betterproto2.

The payload is what a control plane pushes: 2,000 Envoy Clusters with 10 endpoints each (in
``load_assignment``) and one RouteConfiguration of 500 virtual hosts. It is built with Google's
upb runtime (``xds-protos`` classes), serialized once, and then every codec encodes and decodes
the same messages. "betterproto2" is the library's own generic implementation, reached through
``istio_sdk.codec.reference_codec()``. Also measured: the cold import time of ``istio_sdk`` and
of the cluster + route + discovery modules (fresh interpreters, median of several runs).

Run with ``nox -s bench`` or ``python -m benchmarks codec``; ``--quick`` uses a tenth of the
payload.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import betterproto2

CLUSTERS = 2000
ENDPOINTS = 10
VIRTUAL_HOSTS = 500


def build_clusters(count: int = CLUSTERS, endpoints: int = ENDPOINTS) -> list[Any]:
    """Istio-style outbound clusters with a static load assignment (upb messages)."""
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.core.v3 import base_pb2, health_check_pb2  # noqa: F401
    from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
    from google.protobuf import any_pb2, struct_pb2

    clusters = []
    for i in range(count):
        host = f"svc{i}.ns{i % 20}.svc.cluster.local"
        name = f"outbound|{8000 + i % 100}||{host}"
        cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STRICT_DNS)
        cluster.connect_timeout.FromMilliseconds(10_000)
        cluster.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        cluster.per_connection_buffer_limit_bytes.value = 32768
        threshold = cluster.circuit_breakers.thresholds.add()
        threshold.max_connections.value = 4294967295
        threshold.max_pending_requests.value = 4294967295
        threshold.max_requests.value = 4294967295
        threshold.max_retries.value = 4294967295
        threshold.track_remaining = True
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
        cluster.common_lb_config.healthy_panic_threshold.value = 0.0
        istio = struct_pb2.Struct()
        istio.fields[
            "config"
        ].string_value = (
            f"/apis/networking.istio.io/v1alpha3/namespaces/ns{i % 20}/destination-rule/dr{i}"
        )
        istio.fields["services"].list_value.values.add().struct_value.update(
            {"host": host, "name": f"svc{i}", "namespace": f"ns{i % 20}"}
        )
        cluster.metadata.filter_metadata["istio"].CopyFrom(istio)
        tls = tls_pb2.UpstreamTlsContext(sni=f"outbound_.{8000 + i % 100}_._.{host}")
        tls.common_tls_context.alpn_protocols.extend(["istio-peer-exchange", "istio"])
        sds = tls.common_tls_context.tls_certificate_sds_secret_configs.add(name="default")
        sds.sds_config.api_config_source.api_type = 2  # GRPC
        sds.sds_config.api_config_source.transport_api_version = 2  # V3
        sds.sds_config.api_config_source.grpc_services.add().envoy_grpc.cluster_name = "sds-grpc"
        sds.sds_config.resource_api_version = 2
        packed = any_pb2.Any()
        packed.Pack(tls)
        cluster.transport_socket.name = "envoy.transport_sockets.tls"
        cluster.transport_socket.typed_config.CopyFrom(packed)
        assignment = cluster.load_assignment
        assignment.cluster_name = name
        locality = assignment.endpoints.add()
        locality.locality.region = "us-central1"
        locality.locality.zone = f"us-central1-{'abc'[i % 3]}"
        locality.load_balancing_weight.value = endpoints
        for j in range(endpoints):
            lb_endpoint = locality.lb_endpoints.add()
            address = lb_endpoint.endpoint.address.socket_address
            address.address = f"10.{i // 250}.{i % 250}.{j + 1}"
            address.port_value = 8000 + i % 100
            lb_endpoint.health_status = 1  # HEALTHY
            lb_endpoint.load_balancing_weight.value = 1
        clusters.append(cluster)
    return clusters


def build_route_configuration(hosts: int = VIRTUAL_HOSTS) -> Any:
    """An outbound RouteConfiguration for port 8080 with one virtual host per service."""
    from envoy.config.route.v3 import route_pb2

    config = route_pb2.RouteConfiguration(name="8080")
    config.validate_clusters.value = False
    config.ignore_port_in_host_matching = True
    for i in range(hosts):
        host = f"svc{i}.ns{i % 20}.svc.cluster.local"
        vhost = config.virtual_hosts.add(name=f"{host}:8080")
        vhost.domains.extend(
            [host, f"{host}:8080", f"svc{i}.ns{i % 20}", f"10.96.{i // 250}.{i % 250}"]
        )
        vhost.include_request_attempt_count = True
        for subset, prefix in (("v2", "/api/v2"), ("", "/")):
            route = vhost.routes.add(name=subset if subset else "default")
            route.match.prefix = prefix
            action = route.route
            action.cluster = f"outbound|8080|{subset}|{host}"
            action.timeout.FromSeconds(0)
            action.max_stream_duration.grpc_timeout_header_max.FromSeconds(0)
            retry = action.retry_policy
            retry.retry_on = (
                "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
            )
            retry.num_retries.value = 2
            retry.retry_host_predicate.add(name="envoy.retry_host_predicates.previous_hosts")
            retry.host_selection_retry_max_attempts = 5
            retry.retriable_status_codes.append(503)
            route.decorator.operation = f"{host}:8080/*"
    return config


def _per_call(func: Callable[[], object], items: int, seconds: float = 1.0) -> float:
    """CPU microseconds per item: best of a few timed passes over the whole payload.

    Process CPU time rather than wall time, so that other work on a shared machine does not
    count; the garbage collector's share of the work does.
    """
    func()  # warm up
    best = float("inf")
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 3 or time.perf_counter() < deadline:
        started = time.process_time()
        func()
        best = min(best, time.process_time() - started)
        rounds += 1
        if rounds >= 20:
            break
    return best / items * 1e6


def _interleaved(
    funcs: tuple[Callable[[], object], ...], items: int, rounds: int = 7
) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """Best CPU microseconds per item for each codec, and the median of per-round ratios.

    upb and ours run alternately in every round, so load from other work on a shared machine
    hits both sides of a ratio alike; the median ratio is the figure to quote.
    """
    for func in funcs:  # upb encode, our encode, upb decode, our decode
        func()  # warm up
    samples: list[list[float]] = [[] for _ in funcs]
    for _ in range(rounds):
        for index, func in enumerate(funcs):
            started = time.process_time()
            func()
            samples[index].append((time.process_time() - started) / items * 1e6)
    best = [min(values) for values in samples]
    enc_ratio = statistics.median(o / u for o, u in zip(samples[1], samples[0], strict=True))
    dec_ratio = statistics.median(o / u for o, u in zip(samples[3], samples[2], strict=True))
    return (best[0], best[2]), (best[1], best[3]), (enc_ratio, dec_ratio)


def measure(
    name: str,
    upb_messages: list[Any],
    ours_cls: type[betterproto2.Message],
    rows: list[tuple[Any, ...]],
) -> None:
    from istio_sdk.codec import reference_codec

    upb_cls = type(upb_messages[0])
    data = [m.SerializeToString(deterministic=True) for m in upb_messages]
    ours = [ours_cls.parse(d) for d in data]
    mismatched = sum(1 for m, d in zip(ours, data, strict=True) if bytes(m) != d)
    n = len(data)

    def upb_encode() -> None:
        for m in upb_messages:
            m.SerializeToString(deterministic=True)

    def upb_decode() -> None:
        for d in data:
            upb_cls.FromString(d)

    def our_encode() -> None:
        for m in ours:
            bytes(m)

    def our_decode() -> None:
        for d in data:
            ours_cls.parse(d)

    upb, fast, ratios = _interleaved((upb_encode, our_encode, upb_decode, our_decode), n)
    slow_n = max(1, n // 20)  # the generic path is slow: time a slice of the payload
    with reference_codec():
        slow = (
            _per_call(lambda: [bytes(m) for m in ours[:slow_n]], slow_n, 0.5),
            _per_call(lambda: [ours_cls.parse(d) for d in data[:slow_n]], slow_n, 0.5),
        )
    size = sum(len(d) for d in data) / n
    rows.append((name, n, size, upb, slow, fast, ratios, mismatched))


def import_time(statement: str, runs: int = 5) -> float:
    """Median milliseconds to run ``statement`` in a fresh interpreter (bytecode cached)."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    # Let the first run write bytecode caches, as an installed package has them.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    samples = []
    for _ in range(runs + 1):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        samples.append(float(out.stdout.strip()) * 1000)
    return statistics.median(samples[1:])  # the first run may compile bytecode


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    scale = 10 if "--quick" in args else 1
    from istio_sdk.api.envoy.config.cluster.v3 import Cluster
    from istio_sdk.api.envoy.config.route.v3 import RouteConfiguration

    clusters = build_clusters(CLUSTERS // scale)
    routes = build_route_configuration(VIRTUAL_HOSTS // scale)
    rows: list[tuple[Any, ...]] = []
    gc.collect()
    measure(f"Cluster ({ENDPOINTS} endpoints)", clusters, Cluster, rows)
    measure(
        f"RouteConfiguration ({VIRTUAL_HOSTS // scale} vhosts)", [routes], RouteConfiguration, rows
    )

    print(
        f"{'message':32} {'n':>5} {'bytes':>7} | {'upb enc':>8} {'upb dec':>8} | "
        f"{'bp2 enc':>9} {'bp2 dec':>9} | {'ours enc':>8} {'ours dec':>8} | "
        f"{'x upb enc':>9} {'x upb dec':>9}"
    )
    for name, n, size, upb, slow, fast, ratios, mismatched in rows:
        print(
            f"{name:32} {n:>5} {size:>7.0f} | {upb[0]:>8.1f} {upb[1]:>8.1f} | "
            f"{slow[0]:>9.1f} {slow[1]:>9.1f} | {fast[0]:>8.1f} {fast[1]:>8.1f} | "
            f"{ratios[0]:>9.1f} {ratios[1]:>9.1f}"
        )
        print(
            f"{'':32} betterproto2 x upb: encode {slow[0] / upb[0]:.0f}, decode "
            f"{slow[1] / upb[1]:.0f}; ours faster than betterproto2: encode "
            f"{slow[0] / fast[0]:.0f}x, decode {slow[1] / fast[1]:.0f}x; bytes equal to upb "
            f"deterministic: {n - mismatched}/{n}"
        )
    print(
        "(best CPU microseconds per message; x upb = median of per-round ratios, upb and ours\n"
        " run alternately; bp2 = plain betterproto2 0.10, timed on 1/20 of the payload)"
    )
    print(f"import istio_sdk: {import_time('import istio_sdk'):.0f} ms (goal < 300 ms)")
    modules = (
        "import istio_sdk.api.envoy.config.cluster.v3, istio_sdk.api.envoy.config.route.v3, "
        "istio_sdk.api.envoy.service.discovery.v3"
    )
    upb_modules = (
        "import envoy.config.cluster.v3.cluster_pb2, envoy.config.route.v3.route_pb2, "
        "envoy.service.discovery.v3.discovery_pb2"
    )
    print(
        f"import cluster + route + discovery: {import_time(modules):.0f} ms (upb: "
        f"{import_time(upb_modules):.0f} ms)"
    )


if __name__ == "__main__":
    main()
