"""Codec benchmark: encode, decode and import, ours against upb and plain betterproto2.

The payload is what a control plane pushes: 2,000 Envoy Clusters with 10 endpoints each (in
``load_assignment``) and one RouteConfiguration of 500 virtual hosts. It is built with Google's
upb runtime (``xds-protos`` classes), serialized once, and then every codec encodes and decodes
the same messages. "betterproto2" is the library's own generic implementation, reached through
``istio_sdk.codec.reference_codec()``.

Decode is reported twice, because upb builds its Python objects only when a field is read:
"parse" times parsing alone, "parse+read" times parsing and then reading every field the way a
client does (each attribute once, into every present message, list and map). The second is what
a program feels; the first alone would favour trading read speed for a lazier parse.

Import is the cold import (CPU time) of ``istio_sdk`` and of the cluster + route + discovery
modules in fresh interpreters, ours and upb alternately: as they are, as where pydantic is not
installed (betterproto2 imports it when present; istio-sdk defers it, see
``istio_sdk._lazy_deps``), and with each side's runtime library (betterproto2,
google.protobuf) already loaded, which leaves the generated code. Every "x upb" figure is the
median of per-round ratios measured in the same run, so load
from other work on a shared machine affects both sides alike.

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


def upb_reader() -> Callable[[Any], None]:
    """Read every field of a upb message the way a client does, into what is present."""
    from google.protobuf.descriptor import FieldDescriptor

    plans: dict[Any, list[tuple[str, str]]] = {}

    def plan(descriptor: Any) -> list[tuple[str, str]]:
        fields = plans.get(descriptor)
        if fields is None:
            fields = []
            for field in descriptor.fields:
                message = field.type == FieldDescriptor.TYPE_MESSAGE
                if message and field.message_type.GetOptions().map_entry:
                    value = field.message_type.fields_by_name["value"]
                    is_message = value.type == FieldDescriptor.TYPE_MESSAGE
                    kind = "map_message" if is_message else "map"
                elif field.is_repeated:
                    kind = "list_message" if message else "list"
                else:
                    kind = "message" if message else "scalar"
                fields.append((field.name, kind))
            plans[descriptor] = fields
        return fields

    def read(message: Any) -> None:
        for name, kind in plan(message.DESCRIPTOR):
            if kind == "message":
                if message.HasField(name):
                    read(getattr(message, name))
                continue
            value = getattr(message, name)
            if kind == "list_message":
                for item in value:
                    read(item)
            elif kind == "list":
                for _ in value:
                    pass
            elif kind == "map_message":
                for key in value:
                    read(value[key])
            elif kind == "map":
                for key in value:
                    value[key]

    return read


def our_reader() -> Callable[[Any], None]:
    """The same read over our dataclasses (unset messages are None, wrappers plain values)."""
    import dataclasses

    message_type = betterproto2.Message
    plans: dict[type, list[str]] = {}

    def read(message: Any) -> None:
        names = plans.get(type(message))
        if names is None:
            names = plans[type(message)] = [f.name for f in dataclasses.fields(message)]
        for name in names:
            value = getattr(message, name)
            if isinstance(value, message_type):
                read(value)
            elif type(value) is list:
                for item in value:
                    if isinstance(item, message_type):
                        read(item)
            elif type(value) is dict:
                for key in value:
                    item = value[key]
                    if isinstance(item, message_type):
                        read(item)

    return read


def _interleaved(
    funcs: tuple[Callable[[], object], ...], items: int, rounds: int = 7
) -> tuple[list[float], list[float]]:
    """Best CPU microseconds per item of each function, and the median ratio of each odd one
    (ours) to the even one before it (upb), over rounds in which all run alternately.
    """
    for func in funcs:
        func()  # warm up
    samples: list[list[float]] = [[] for _ in funcs]
    for _ in range(rounds):
        for index, func in enumerate(funcs):
            started = time.process_time()
            func()
            samples[index].append((time.process_time() - started) / items * 1e6)
    best = [min(values) for values in samples]
    ratios = [
        statistics.median(o / u for o, u in zip(samples[i + 1], samples[i], strict=True))
        for i in range(0, len(funcs), 2)
    ]
    return best, ratios


def measure(
    name: str,
    upb_messages: list[Any],
    ours_cls: type[betterproto2.Message],
    rows: list[dict[str, Any]],
) -> None:
    from istio_sdk.codec import load_codec, reference_codec

    load_codec(ours_cls)
    upb_cls = type(upb_messages[0])
    data = [m.SerializeToString(deterministic=True) for m in upb_messages]
    ours = [ours_cls.parse(d) for d in data]
    mismatched = sum(1 for m, d in zip(ours, data, strict=True) if bytes(m) != d)
    n = len(data)
    read_upb, read_ours = upb_reader(), our_reader()

    def upb_encode() -> None:
        for m in upb_messages:
            m.SerializeToString(deterministic=True)

    def our_encode() -> None:
        for m in ours:
            bytes(m)

    def upb_decode() -> None:
        for d in data:
            upb_cls.FromString(d)

    def our_decode() -> None:
        for d in data:
            ours_cls.parse(d)

    def upb_decode_read() -> None:
        for d in data:
            read_upb(upb_cls.FromString(d))

    def our_decode_read() -> None:
        for d in data:
            read_ours(ours_cls.parse(d))

    best, ratios = _interleaved(
        (
            upb_encode,
            our_encode,
            upb_decode,
            our_decode,
            upb_decode_read,
            our_decode_read,
        ),
        n,
    )
    slow_n = max(1, n // 20)  # the generic path is slow: time a slice of the payload
    with reference_codec():
        slow = (
            _per_call(lambda: [bytes(m) for m in ours[:slow_n]], slow_n, 0.5),
            _per_call(lambda: [ours_cls.parse(d) for d in data[:slow_n]], slow_n, 0.5),
        )
    rows.append(
        {
            "name": name,
            "n": n,
            "size": sum(len(d) for d in data) / n,
            "best": best,
            "ratios": ratios,
            "slow": slow,
            "mismatched": mismatched,
        }
    )


def _run_timed(preload: str, statement: str, env: dict[str, str]) -> float:
    code = (
        f"{preload}\nimport time\nt = time.process_time()\n{statement}\n"
        "print(time.process_time() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout.strip()) * 1000


def import_times(
    ours: str, upb: str, *, ours_preload: str = "", upb_preload: str = "", runs: int = 9
) -> tuple[float, float, float]:
    """Median CPU ms of ``ours`` and ``upb`` in fresh interpreters, and the median run ratio.

    CPU time of the interpreter (``time.process_time``), like the encode and decode figures:
    on a machine shared with other work, wall time mostly measures the other work.

    The two run alternately; the first run of each writes the bytecode caches (an installed
    package has them) and is not counted.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    _run_timed(ours_preload, ours, env)
    _run_timed(upb_preload, upb, env)
    pairs = [
        (_run_timed(ours_preload, ours, env), _run_timed(upb_preload, upb, env))
        for _ in range(runs)
    ]
    return (
        statistics.median(o for o, _ in pairs),
        statistics.median(u for _, u in pairs),
        statistics.median(o / u for o, u in pairs),
    )


OUR_MODULES = (
    "import istio_sdk.api.envoy.config.cluster.v3, istio_sdk.api.envoy.config.route.v3, "
    "istio_sdk.api.envoy.service.discovery.v3"
)
UPB_MODULES = (
    "import envoy.config.cluster.v3.cluster_pb2, envoy.config.route.v3.route_pb2, "
    "envoy.service.discovery.v3.discovery_pb2"
)
OUR_RUNTIME = "import betterproto2"
# betterproto2 imports pydantic (about 16 ms) whenever it is installed. istio-sdk does not
# depend on it; here the test tools bring it (common-expression-language -> typer), and
# istio_sdk._lazy_deps defers it to its first use. Marking it missing shows what an
# installation without it pays (about the same, now).
NO_PYDANTIC = "import sys\nsys.modules['pydantic'] = sys.modules['pydantic_core'] = None"
UPB_RUNTIME = (
    "from google.protobuf import descriptor, descriptor_pool, runtime_version, "
    "symbol_database\nfrom google.protobuf.internal import builder"
)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    scale = 10 if "--quick" in args else 1
    from istio_sdk.api.envoy.config.cluster.v3 import Cluster
    from istio_sdk.api.envoy.config.route.v3 import RouteConfiguration

    clusters = build_clusters(CLUSTERS // scale)
    routes = build_route_configuration(VIRTUAL_HOSTS // scale)
    rows: list[dict[str, Any]] = []
    gc.collect()
    measure(f"Cluster ({ENDPOINTS} endpoints)", clusters, Cluster, rows)
    measure(
        f"RouteConfiguration ({VIRTUAL_HOSTS // scale} vhosts)", [routes], RouteConfiguration, rows
    )

    print(
        f"{'message':32} {'n':>5} {'bytes':>7} | {'upb enc':>8} {'parse':>8} {'+read':>8} | "
        f"{'ours enc':>8} {'parse':>8} {'+read':>8} | {'x upb: enc':>10} {'parse':>6} "
        f"{'+read':>6}"
    )
    for row in rows:
        best, ratios, slow, n = row["best"], row["ratios"], row["slow"], row["n"]
        print(
            f"{row['name']:32} {n:>5} {row['size']:>7.0f} | {best[0]:>8.1f} {best[2]:>8.1f} "
            f"{best[4]:>8.1f} | {best[1]:>8.1f} {best[3]:>8.1f} {best[5]:>8.1f} | "
            f"{ratios[0]:>10.1f} {ratios[1]:>6.1f} {ratios[2]:>6.1f}"
        )
        print(
            f"{'':32} betterproto2 enc / parse {slow[0]:.0f} / {slow[1]:.0f} us ("
            f"{slow[0] / best[0]:.0f} / {slow[1] / best[2]:.0f} x upb); bytes equal to upb "
            f"deterministic: {n - row['mismatched']}/{n}"
        )
    print(
        "(best CPU microseconds per message; x upb = median of per-round ratios, upb and ours\n"
        " run alternately; +read = parse, then read every field as a client does; betterproto2\n"
        " = plain betterproto2 0.10, timed on 1/20 of the payload)"
    )
    ours_ms, upb_ms, ratio = import_times("import istio_sdk", "import google.protobuf")
    print(f"import istio_sdk: {ours_ms:.1f} CPU ms (goal < 30 ms)")
    ours_ms, upb_ms, ratio = import_times(OUR_MODULES, UPB_MODULES)
    print(
        f"import cluster + route + discovery: {ours_ms:.0f} CPU ms, upb {upb_ms:.0f} ms: "
        f"{ratio:.1f} x upb (goal < 2)"
    )
    ours_ms, upb_ms, ratio = import_times(OUR_MODULES, UPB_MODULES, ours_preload=NO_PYDANTIC)
    print(
        f"  the same as where pydantic is not installed: {ours_ms:.0f} ms, upb {upb_ms:.0f} ms: "
        f"{ratio:.1f} x upb"
    )
    ours_ms, upb_ms, ratio = import_times(
        OUR_MODULES, UPB_MODULES, ours_preload=OUR_RUNTIME, upb_preload=UPB_RUNTIME
    )
    print(
        f"  the same with betterproto2 / google.protobuf already imported: {ours_ms:.0f} ms, "
        f"upb {upb_ms:.0f} ms: {ratio:.1f} x upb"
    )


if __name__ == "__main__":
    main()
