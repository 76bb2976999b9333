"""Envoy's own rules: generated resources parse with xds-protos and pass protoc-gen-validate.

protoc-gen-validate 1.3.3 needs protobuf >= 6.31 and < 7, while the main test environment has
protobuf 7, so these tests run in their own session: ``nox -s envoy_validate``. Elsewhere they
skip. PGV checks an ``Any``'s type URL but not its contents, so every ``Any`` (HTTP connection
manager, filters, TLS contexts, per-route fault config, ...) is unpacked and validated too.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterator

import pytest

pgv = pytest.importorskip("protoc_gen_validate.validator", reason="needs protoc-gen-validate")
protobuf = pytest.importorskip("google.protobuf")
if int(protobuf.__version__.split(".")[0]) >= 7:
    pytest.skip("protoc-gen-validate needs protobuf < 7", allow_module_level=True)

from google.protobuf import any_pb2, descriptor_pool, message_factory  # noqa: E402
from google.protobuf.message import Message as OfficialMessage  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from pilot.envoy_validate.meshes import (  # noqa: E402
    GRPC_CLIENT,
    GRPC_IN_EU,
    PROXIES,
    REVIEWS,
    SIDECAR,
    bookinfo_context,
    random_contexts,
)

from istio_sdk import xds  # noqa: E402
from istio_sdk.api.google.protobuf import Any  # noqa: E402
from istio_sdk.pilot.changes import ALL_TYPES  # noqa: E402
from istio_sdk.pilot.push_context import PushContext  # noqa: E402
from istio_sdk.pilot.translate import generate  # noqa: E402

# Every Envoy message type the translators can emit, top level or inside an Any.
_PB2_MODULES = [
    "envoy.config.cluster.v3.cluster_pb2",
    "envoy.config.listener.v3.listener_pb2",
    "envoy.config.route.v3.route_pb2",
    "envoy.config.endpoint.v3.endpoint_pb2",
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.filters.http.fault.v3.fault_pb2",
    "envoy.extensions.filters.http.rbac.v3.rbac_pb2",
    "envoy.extensions.filters.network.rbac.v3.rbac_pb2",
    "envoy.extensions.filters.listener.original_dst.v3.original_dst_pb2",
    "envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2",
    "envoy.extensions.transport_sockets.tls.v3.tls_pb2",
    "envoy.extensions.transport_sockets.raw_buffer.v3.raw_buffer_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2",
    "envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2",
]
for _module in _PB2_MODULES:
    importlib.import_module(_module)

# protoc-gen-validate's own templates still call FieldDescriptor.label (deprecated in 6.x).
pytestmark = pytest.mark.filterwarnings("ignore:label\\(\\) is deprecated:DeprecationWarning")

_POOL = descriptor_pool.Default()


def _official(type_url: str, data: bytes) -> OfficialMessage:
    full_name = type_url.rsplit("/", 1)[1]
    cls = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))
    message: OfficialMessage = cls.FromString(data)
    return message


def _anys(message: OfficialMessage) -> Iterator[any_pb2.Any]:
    """Every Any nested anywhere inside ``message`` (not descending into the Anys)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if not isinstance(item, OfficialMessage):
                continue
            if item.DESCRIPTOR.full_name == "google.protobuf.Any":
                yield item
            else:
                yield from _anys(item)


def validate_deep(type_url: str, data: bytes, seen: Counter[str] | None = None) -> int:
    """Parse with the official runtime, run PGV, then do the same for every packed Any.

    Returns how many messages were validated and counts their full names in ``seen``. Raises
    ``AssertionError`` naming the rule PGV reports.
    """
    message = _official(type_url, data)
    assert type(message).FromString(message.SerializeToString()) == message
    try:
        pgv.validate(message)
    except pgv.ValidationFailed as exc:
        raise AssertionError(f"{type_url.rsplit('.', 1)[1]}: {exc}") from exc
    if seen is not None:
        seen[message.DESCRIPTOR.full_name] += 1
    count = 1
    for inner in _anys(message):
        count += validate_deep(inner.type_url, inner.value, seen)
    return count


def validate_all(ctx: PushContext) -> int:
    count = 0
    for proxy in PROXIES:
        for type_url in sorted(ALL_TYPES):
            names = None
            if proxy.is_grpc:
                if type_url in (xds.LISTENER, xds.ROUTE):
                    names = [f"{REVIEWS}:9080", "ratings:9080", "productpage:9080"]
                    if type_url == xds.LISTENER:
                        names.append("xds.istio.io/grpc/lds/inbound/10.0.0.7:9080")
                else:
                    names = [f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v2", "v3")]
            for msg in generate(ctx, proxy, type_url, names).values():
                count += validate_deep(Any.pack(msg).type_url, bytes(msg))
    return count


def test_bookinfo_passes_envoy_validation() -> None:
    assert validate_all(bookinfo_context()) > 60


def test_validation_catches_a_broken_resource() -> None:
    """The harness can fail: a cluster with an empty name breaks Envoy's rules."""
    from istio_sdk.api.envoy.config.cluster.v3 import Cluster

    with pytest.raises(AssertionError, match="name"):
        validate_deep(Any.pack(Cluster()).type_url, bytes(Cluster(name="")))


_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_SUBSET_CLUSTERS = {f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v2", "v3")}


@settings(max_examples=30)
@given(random_contexts())
def test_random_meshes_pass_envoy_validation(ctx: PushContext) -> None:
    # Validation failures raise inside validate_deep; the asserts below make sure the random
    # VirtualService and DestinationRule really produced resources that were validated.
    generated: dict[tuple[str, str], set[str]] = {}
    seen: Counter[str] = Counter()
    for proxy in (GRPC_CLIENT, GRPC_IN_EU, SIDECAR):
        for type_url in sorted(ALL_TYPES):
            names = None
            if proxy.is_grpc:
                names = (
                    [f"{REVIEWS}:9080", "xds.istio.io/grpc/lds/inbound/10.0.0.7:8080"]
                    if type_url in (xds.LISTENER, xds.ROUTE)
                    else sorted(_SUBSET_CLUSTERS)
                )
            resources = generate(ctx, proxy, type_url, names)
            generated[proxy.id, type_url] = set(resources)
            for msg in resources.values():
                validate_deep(Any.pack(msg).type_url, bytes(msg), seen)
    for proxy in (GRPC_CLIENT, GRPC_IN_EU, SIDECAR):
        # Every subset of the random DestinationRule is a cluster for every proxy.
        assert generated[proxy.id, xds.CLUSTER] >= _SUBSET_CLUSTERS, proxy.id
    assert f"{REVIEWS}:9080" in generated[GRPC_CLIENT.id, xds.LISTENER]
    assert f"{REVIEWS}:9080" in generated[GRPC_CLIENT.id, xds.ROUTE]  # the random routes
    assert "9080" in generated[SIDECAR.id, xds.ROUTE]
    # The sidecar's listeners and the gRPC API listeners carry HTTP connection managers in
    # Anys, and those were validated too.
    assert seen[_HCM] >= 2
    assert seen["envoy.config.route.v3.RouteConfiguration"] >= 2
    assert seen["envoy.config.cluster.v3.Cluster"] >= 3 * len(_SUBSET_CLUSTERS)
