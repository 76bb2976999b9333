"""Istio-to-Envoy translation: what each kind of proxy receives, checked against Istio's rules.

Every generated resource is also re-parsed with the official protobuf runtime (upb) over
Envoy's published descriptors; protoc-gen-validate runs in ``tests/pilot/envoy_validate``.
"""

from __future__ import annotations

import datetime
import importlib

import betterproto2
import pytest
from google.protobuf import descriptor_pool, message_factory
from hypothesis import given
from pilot.envoy_validate.meshes import (
    DETAILS,
    GATEWAY,
    GRPC_CLIENT,
    NS,
    PROXIES,
    RATINGS,
    RESTRICTED,
    REVIEWS,
    SIDECAR,
    bookinfo_configs,
    bookinfo_context,
    bookinfo_registry,
    random_contexts,
)

from istio_sdk import xds
from istio_sdk.api.envoy.config.cluster import v3 as cluster
from istio_sdk.api.envoy.config.endpoint import v3 as endpoint
from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.config.route import v3 as route
from istio_sdk.api.envoy.extensions.filters.http.fault import v3 as fault
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from istio_sdk.api.envoy.extensions.filters.network.tcp_proxy import v3 as tcp
from istio_sdk.api.envoy.extensions.transport_sockets.tls import v3 as tls
from istio_sdk.api.envoy.type import v3 as envoy_type
from istio_sdk.api.google.protobuf import Any
from istio_sdk.api.istio.networking import v1alpha3 as n
from istio_sdk.pilot.changes import ALL_TYPES
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Endpoint
from istio_sdk.pilot.translate import generate

V1 = f"outbound|9080|v1|{REVIEWS}"
V2 = f"outbound|9080|v2|{REVIEWS}"
V3 = f"outbound|9080|v3|{REVIEWS}"
TARGET = f"{REVIEWS}:9080"


@pytest.fixture(scope="module")
def ctx() -> PushContext:
    return bookinfo_context()


def unpack(value: Any | None) -> betterproto2.Message:
    assert value is not None
    msg = value.unpack()
    assert msg is not None
    return msg


for _module in (
    "envoy.config.cluster.v3.cluster_pb2",
    "envoy.config.listener.v3.listener_pb2",
    "envoy.config.route.v3.route_pb2",
    "envoy.config.endpoint.v3.endpoint_pb2",
):
    importlib.import_module(_module)  # xds-protos: Envoy's published descriptors


def official_roundtrip(msg: betterproto2.Message) -> None:
    """The official runtime parses our bytes and re-encodes the same content."""
    full = Any.pack(msg).type_url.rsplit("/", 1)[1]
    descriptor = descriptor_pool.Default().FindMessageTypeByName(full)
    parsed = message_factory.GetMessageClass(descriptor).FromString(bytes(msg))
    assert type(msg).parse(parsed.SerializeToString()) == msg


# -- proxyless gRPC ---------------------------------------------------------------------


def test_grpc_listener_is_an_api_listener_named_by_target(ctx: PushContext) -> None:
    out = generate(ctx, GRPC_CLIENT, xds.LISTENER, [TARGET, "reviews:9080", "nope:1"])
    assert set(out) == {TARGET, "reviews:9080"}  # short names resolve in the client's namespace
    lis = out[TARGET]
    assert isinstance(lis, listener.Listener)
    assert lis.name == TARGET and lis.address is None and lis.api_listener is not None
    manager = unpack(lis.api_listener.api_listener)
    assert isinstance(manager, hcm.HttpConnectionManager)
    assert manager.rds is not None and manager.rds.route_config_name == TARGET
    assert manager.rds.config_source is not None and manager.rds.config_source.ads is not None
    assert [f.name for f in manager.http_filters][-1] == "envoy.filters.http.router"


def test_grpc_server_listener_for_xds_enabled_servers(ctx: PushContext) -> None:
    name = "xds.istio.io/grpc/lds/inbound/10.0.0.7:9080"
    templated = "grpc/server?xds.resource.listening_address=[::1]:50051"
    out = generate(ctx, GRPC_CLIENT, xds.LISTENER, [name, templated, "x/inbound/nope"])
    assert set(out) == {name, templated}
    lis = out[name]
    assert isinstance(lis, listener.Listener)
    assert lis.address is not None and lis.address.socket_address is not None
    assert (lis.address.socket_address.address, lis.address.socket_address.port_value) == (
        "10.0.0.7",
        9080,
    )
    manager = unpack(lis.filter_chains[0].filters[0].typed_config)
    assert isinstance(manager, hcm.HttpConnectionManager)
    assert manager.route_config is not None
    (only,) = manager.route_config.virtual_hosts[0].routes
    assert only.non_forwarding_action is not None
    assert manager.http_filters[-1].name == "envoy.filters.http.router"
    v6 = out[templated]
    assert isinstance(v6, listener.Listener) and v6.address is not None
    assert v6.address.socket_address is not None
    assert v6.address.socket_address.address == "::1"
    official_roundtrip(lis)


def test_grpc_routes_follow_the_virtual_service(ctx: PushContext) -> None:
    (rc,) = generate(ctx, GRPC_CLIENT, xds.ROUTE, [TARGET]).values()
    assert isinstance(rc, route.RouteConfiguration)
    (vh,) = rc.virtual_hosts
    assert TARGET in vh.domains
    jason, regex, regex_exact, split = vh.routes
    assert jason.match is not None and jason.match.prefix == "/reviews"
    (header,) = jason.match.headers
    assert header.name == "end-user" and header.string_match is not None
    assert header.string_match.exact == "jason"
    assert jason.route is not None and jason.route.cluster == V2
    injected = unpack(jason.typed_per_filter_config["envoy.filters.http.fault"])
    assert isinstance(injected, fault.HttpFault)
    assert injected.abort is not None and injected.abort.grpc_status == 14
    assert injected.abort.percentage == envoy_type.FractionalPercent(
        numerator=1_000_000, denominator=envoy_type.FractionalPercentDenominatorType.MILLION
    )
    assert injected.delay is not None
    assert injected.delay.fixed_delay == datetime.timedelta(milliseconds=5)
    assert regex.match is not None and regex.match.safe_regex is not None
    assert regex.match.safe_regex.regex == "/r[0-9]+"
    assert regex.match.case_sensitive is False
    by_name = {h.name: h for h in regex.match.headers}
    assert by_name["x-present"].present_match is True
    assert by_name["x-debug"].invert_match is True
    assert by_name["x-pre"].string_match is not None and by_name["x-pre"].string_match.prefix == "a"
    assert regex_exact.match is not None and regex_exact.match.path == "/exact"
    assert regex.route is not None and regex.route.retry_policy is not None
    # gRPC only retries on gRPC status names; HTTP codes are dropped.
    assert regex.route.retry_policy.retry_on == "unavailable"
    assert regex.route.retry_policy.num_retries == 3
    assert regex.route.max_stream_duration is not None
    assert regex.route.max_stream_duration.max_stream_duration == datetime.timedelta(seconds=7)
    assert split.route is not None and split.route.weighted_clusters is not None
    weights = [(c.name, c.weight) for c in split.route.weighted_clusters.clusters]
    assert weights == [(V1, 75), (V2, 25)]  # zero-weight destination dropped
    assert split.route.weighted_clusters.total_weight is None


def test_grpc_clusters_and_endpoints(ctx: PushContext) -> None:
    clusters = generate(ctx, GRPC_CLIENT, xds.CLUSTER, [V1, V2, V3, f"outbound|9080|v9|{REVIEWS}"])
    assert set(clusters) == {V1, V2, V3}  # an undefined subset does not exist
    v2 = clusters[V2]
    assert isinstance(v2, cluster.Cluster)
    assert v2.type == cluster.ClusterDiscoveryType.EDS
    assert v2.eds_cluster_config is not None and v2.eds_cluster_config.service_name == V2
    assert v2.lb_policy == cluster.ClusterLbPolicy.RING_HASH
    assert v2.ring_hash_lb_config is not None and v2.ring_hash_lb_config.minimum_ring_size == 2048
    # RANDOM is NACKed by gRPC; Istio sends round robin instead.
    assert clusters[V3].lb_policy == cluster.ClusterLbPolicy.ROUND_ROBIN
    sock = clusters[V1].transport_socket
    assert sock is not None
    upstream = unpack(sock.typed_config)
    assert isinstance(upstream, tls.UpstreamTlsContext)
    assert upstream.common_tls_context is not None
    provider = upstream.common_tls_context.tls_certificate_provider_instance
    assert provider is not None and provider.instance_name == "default"
    all_eps = generate(ctx, GRPC_CLIENT, xds.ENDPOINT, [f"outbound|9080||{REVIEWS}", V1])
    cla = all_eps[f"outbound|9080||{REVIEWS}"]
    assert isinstance(cla, endpoint.ClusterLoadAssignment)
    weights = {
        (g.locality.region, g.locality.zone): g.load_balancing_weight
        for g in cla.endpoints
        if g.locality is not None
    }
    assert weights == {("", ""): 3, ("eu", "a"): 1, ("eu", "b"): 1}
    assert all(g.priority == 0 for g in cla.endpoints)
    v1 = all_eps[V1]
    assert isinstance(v1, endpoint.ClusterLoadAssignment)
    addresses = [
        lb.endpoint.address.socket_address.address
        for g in v1.endpoints
        for lb in g.lb_endpoints
        if lb.endpoint and lb.endpoint.address and lb.endpoint.address.socket_address
    ]
    assert addresses == ["10.0.1.1"]


def test_grpc_default_route_without_virtual_service(ctx: PushContext) -> None:
    target = "productpage:9080"
    (rc,) = generate(ctx, GRPC_CLIENT, xds.ROUTE, [target]).values()
    assert isinstance(rc, route.RouteConfiguration)
    (vh,) = rc.virtual_hosts
    assert vh.domains[0] == target
    (only,) = vh.routes
    assert only.match is not None and only.match.prefix == "/"
    assert (
        only.route is not None
        and only.route.cluster == f"outbound|9080||{NS and 'productpage'}.{NS}.svc.cluster.local"
    )


def test_generate_answers_named_resources_and_nothing_for_unknown_types(ctx: PushContext) -> None:
    assert generate(ctx, GRPC_CLIENT, xds.CLUSTER, [V1]).keys() == {V1}
    assert generate(ctx, GRPC_CLIENT, "type.googleapis.com/unknown.Type", [V1]) == {}


# -- sidecars ---------------------------------------------------------------------------


def test_sidecar_listeners(ctx: PushContext) -> None:
    out = generate(ctx, SIDECAR, xds.LISTENER)
    assert {"0.0.0.0_9080", "0.0.0.0_80", "virtualOutbound", "virtualInbound"} <= set(out)
    http = out["0.0.0.0_9080"]
    assert isinstance(http, listener.Listener)
    assert http.bind_to_port is False
    (chain,) = http.filter_chains
    manager = unpack(chain.filters[0].typed_config)
    assert isinstance(manager, hcm.HttpConnectionManager)
    assert manager.rds is not None and manager.rds.route_config_name == "9080"
    assert manager.http_filters[-1].name == "envoy.filters.http.router"
    outbound = out["virtualOutbound"]
    assert isinstance(outbound, listener.Listener)
    assert outbound.use_original_dst is True
    assert outbound.address is not None and outbound.address.socket_address is not None
    assert outbound.address.socket_address.port_value == 15001
    inbound = out["virtualInbound"]
    assert isinstance(inbound, listener.Listener)
    ports = [
        c.filter_chain_match.destination_port for c in inbound.filter_chains if c.filter_chain_match
    ]
    # productpage's targetPort; PERMISSIVE (no PeerAuthentication): an mTLS and a plaintext chain
    assert ports == [8080, 8080]
    # the TCP port of ratings (no VIP) gets a 0.0.0.0 TCP proxy listener, split by the
    # VirtualService's tcp rule; the gateway-only tcp rule does not apply to sidecars
    db = out["0.0.0.0_3306"]
    assert isinstance(db, listener.Listener)
    split = unpack(db.filter_chains[0].filters[0].typed_config)
    assert isinstance(split, tcp.TcpProxy) and split.weighted_clusters is not None
    assert [(c.name, c.weight) for c in split.weighted_clusters.clusters] == [
        (f"outbound|3306||{RATINGS}", 70),
        ("outbound|443||api.example.com", 30),
    ]
    # ratings' VirtualService has no http rules: HTTP to it keeps the default route
    rc = generate(ctx, SIDECAR, xds.ROUTE, ["9080"])["9080"]
    assert isinstance(rc, route.RouteConfiguration)
    ratings_vh = next(vh for vh in rc.virtual_hosts if vh.name == f"{RATINGS}:9080")
    assert [r.name for r in ratings_vh.routes] == ["default"]


def test_sidecar_routes_and_domains(ctx: PushContext) -> None:
    routes = generate(ctx, SIDECAR, xds.ROUTE, ["9080"])
    rc = routes["9080"]
    assert isinstance(rc, route.RouteConfiguration)
    vhosts = {vh.name: vh for vh in rc.virtual_hosts}
    reviews = vhosts[f"{REVIEWS}:9080"]
    assert {"reviews", "reviews:9080", "10.96.0.10", REVIEWS} <= set(reviews.domains)
    details = vhosts[f"{DETAILS}:9080"]
    assert set(details.domains) == {DETAILS, f"{DETAILS}:9080"}  # other namespace: no short names
    assert "allow_any" in vhosts
    all_domains = [d for vh in rc.virtual_hosts for d in vh.domains]
    assert len(all_domains) == len(set(all_domains))
    split = reviews.routes[-1]
    assert split.route is not None and split.route.weighted_clusters is not None
    assert split.request_headers_to_add[0].header is not None
    assert split.request_headers_to_add[0].header.key == "x-mesh"
    assert split.route.timeout == datetime.timedelta(0)  # Istio disables Envoy's 15 s default
    assert split.route.retry_policy is not None and split.route.retry_policy.num_retries == 2
    (predicate,) = split.route.retry_policy.retry_host_predicate
    assert predicate.typed_config is not None
    assert predicate.typed_config.type_url == (
        "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
    )
    regex = reviews.routes[1]
    assert regex.route is not None and regex.route.retry_policy is not None
    assert regex.route.retry_policy.retriable_status_codes == [503]
    assert "5xx" in regex.route.retry_policy.retry_on
    assert regex.route.timeout == datetime.timedelta(seconds=7)
    jason = reviews.routes[0]
    assert jason.route is not None
    assert [h.header.header_name for h in jason.route.hash_policy if h.header] == ["x-user"]


def test_sidecar_cluster_policies(ctx: PushContext) -> None:
    clusters = generate(ctx, SIDECAR, xds.CLUSTER)
    for name in (V1, V2, V3, "inbound|9080||", "BlackHoleCluster", "PassthroughCluster"):
        assert name in clusters
    default = clusters[f"outbound|9080||{REVIEWS}"]
    assert isinstance(default, cluster.Cluster)
    assert default.connect_timeout == datetime.timedelta(seconds=3)
    assert default.lb_policy == cluster.ClusterLbPolicy.LEAST_REQUEST
    assert default.circuit_breakers is not None
    (limits,) = default.circuit_breakers.thresholds
    assert (limits.max_connections, limits.max_pending_requests, limits.max_requests) == (
        100,
        10,
        50,
    )
    assert limits.max_retries == 4
    od = default.outlier_detection
    assert od is not None
    assert (od.consecutive_5xx, od.enforcing_consecutive_5xx) == (7, 100)
    assert od.consecutive_gateway_failure == 3 and od.max_ejection_percent == 50
    assert default.common_lb_config is not None
    assert default.common_lb_config.healthy_panic_threshold == envoy_type.Percent(value=30.0)
    sock = default.transport_socket
    assert sock is not None
    upstream = unpack(sock.typed_config)
    assert isinstance(upstream, tls.UpstreamTlsContext)
    assert upstream.sni == f"outbound_.9080_._.{REVIEWS}"
    assert upstream.common_tls_context is not None
    assert upstream.common_tls_context.alpn_protocols == ["istio-peer-exchange", "istio"]
    assert clusters[V3].lb_policy == cluster.ClusterLbPolicy.RANDOM
    assert clusters[V2].lb_policy == cluster.ClusterLbPolicy.RING_HASH
    # port-level settings override the rule-level TLS for ratings' TCP port
    ratings_http = clusters[f"outbound|9080||{RATINGS}"]
    ratings_db = clusters[f"outbound|3306||{RATINGS}"]
    assert isinstance(ratings_http, cluster.Cluster) and isinstance(ratings_db, cluster.Cluster)
    assert ratings_http.transport_socket is not None and ratings_db.transport_socket is None
    mutual = unpack(ratings_http.transport_socket.typed_config)
    assert isinstance(mutual, tls.UpstreamTlsContext) and mutual.common_tls_context is not None
    assert mutual.common_tls_context.tls_certificates[0].certificate_chain is not None
    # DNS and NONE resolution
    external = clusters["outbound|443||api.example.com"]
    assert isinstance(external, cluster.Cluster)
    assert external.type == cluster.ClusterDiscoveryType.STRICT_DNS
    assert external.load_assignment is not None
    httpbin = clusters["outbound|80||httpbin.example.org"]
    assert isinstance(httpbin, cluster.Cluster)
    assert httpbin.type == cluster.ClusterDiscoveryType.LOGICAL_DNS
    wiki = clusters["outbound|80||*.wikipedia.org"]
    assert isinstance(wiki, cluster.Cluster)
    assert wiki.type == cluster.ClusterDiscoveryType.ORIGINAL_DST
    assert wiki.lb_policy == cluster.ClusterLbPolicy.CLUSTER_PROVIDED
    inbound = clusters["inbound|9080||"]
    assert isinstance(inbound, cluster.Cluster) and inbound.load_assignment is not None
    sock_addr = inbound.load_assignment.endpoints[0].lb_endpoints[0].endpoint
    assert sock_addr is not None and sock_addr.address is not None
    assert sock_addr.address.socket_address is not None
    assert sock_addr.address.socket_address.port_value == 8080


def test_sidecar_eds_only_for_static_services(ctx: PushContext) -> None:
    eds = generate(ctx, SIDECAR, xds.ENDPOINT)
    assert V1 in eds and "outbound|443||api.example.com" not in eds
    ratings_db = eds[f"outbound|3306||{RATINGS}"]
    assert isinstance(ratings_db, endpoint.ClusterLoadAssignment)
    lb = ratings_db.endpoints[0].lb_endpoints[0]
    assert lb.endpoint is not None and lb.endpoint.address is not None
    assert lb.endpoint.address.socket_address is not None
    assert lb.endpoint.address.socket_address.port_value == 13306  # the endpoint's port map


def test_sidecar_resource_scopes_what_a_proxy_sees(ctx: PushContext) -> None:
    clusters = generate(ctx, RESTRICTED, xds.CLUSTER)
    outbound = {c for c in clusters if c.startswith("outbound|")}
    assert outbound == {f"outbound|9080||{RATINGS}", f"outbound|3306||{RATINGS}"}
    listeners = generate(ctx, RESTRICTED, xds.LISTENER)
    vo = listeners["virtualOutbound"]
    assert isinstance(vo, listener.Listener)
    tcp = unpack(vo.filter_chains[0].filters[0].typed_config)
    assert getattr(tcp, "cluster", None) == "BlackHoleCluster"  # REGISTRY_ONLY
    rc = generate(ctx, RESTRICTED, xds.ROUTE)["9080"]
    assert isinstance(rc, route.RouteConfiguration)
    assert [vh.name for vh in rc.virtual_hosts] == [f"{RATINGS}:9080", "block_all"]


def test_export_to_hides_config_from_other_namespaces() -> None:
    configs = [
        *bookinfo_configs(),
        ConfigEntry(
            "VirtualService",
            "private",
            "other",
            n.VirtualService(
                hosts=[DETAILS],
                export_to=["."],
                http=[
                    n.HttpRoute(
                        route=[n.HttpRouteDestination(destination=n.Destination(host=RATINGS))]
                    )
                ],
            ),
        ),
    ]
    ctx = PushContext.build(configs, bookinfo_registry())
    other = ProxyInfo("o", namespace="other", generator="grpc")
    (rc_other,) = generate(ctx, other, xds.ROUTE, [f"{DETAILS}:9080"]).values()
    (rc_here,) = generate(ctx, GRPC_CLIENT, xds.ROUTE, [f"{DETAILS}:9080"]).values()
    assert isinstance(rc_other, route.RouteConfiguration)
    assert isinstance(rc_here, route.RouteConfiguration)
    other_route = rc_other.virtual_hosts[0].routes[0].route
    here_route = rc_here.virtual_hosts[0].routes[0].route
    assert other_route is not None and other_route.cluster == f"outbound|9080||{RATINGS}"
    assert here_route is not None and here_route.cluster == f"outbound|9080||{DETAILS}"


# -- gateways ---------------------------------------------------------------------------


def test_gateway_listeners_and_routes(ctx: PushContext) -> None:
    listeners = generate(ctx, GATEWAY, xds.LISTENER)
    assert set(listeners) == {"0.0.0.0_80", "0.0.0.0_443", "0.0.0.0_8443", "0.0.0.0_31400"}
    passthrough = listeners["0.0.0.0_8443"]
    assert isinstance(passthrough, listener.Listener)
    (sni_chain,) = passthrough.filter_chains
    assert sni_chain.filter_chain_match is not None
    assert sni_chain.filter_chain_match.server_names == ["a.secure.example.com"]
    assert [f.name for f in passthrough.listener_filters] == [
        "envoy.filters.listener.tls_inspector"
    ]
    proxied = unpack(sni_chain.filters[0].typed_config)
    assert isinstance(proxied, tcp.TcpProxy)
    assert proxied.cluster == f"outbound|9080||productpage.{NS}.svc.cluster.local"
    tcp_listener = listeners["0.0.0.0_31400"]
    assert isinstance(tcp_listener, listener.Listener)
    to_db = unpack(tcp_listener.filter_chains[0].filters[0].typed_config)
    assert isinstance(to_db, tcp.TcpProxy) and to_db.cluster == f"outbound|3306||{RATINGS}"
    https = listeners["0.0.0.0_443"]
    assert isinstance(https, listener.Listener)
    assert https.bind_to_port is None  # gateways bind
    (chain,) = https.filter_chains
    assert chain.filter_chain_match is not None
    assert chain.filter_chain_match.server_names == ["bookinfo.example.com"]
    assert chain.transport_socket is not None
    downstream = unpack(chain.transport_socket.typed_config)
    assert isinstance(downstream, tls.DownstreamTlsContext)
    assert downstream.common_tls_context is not None
    assert downstream.common_tls_context.tls_certificate_sds_secret_configs[0].name == (
        "bookinfo-cert"
    )
    routes = generate(ctx, GATEWAY, xds.ROUTE)
    assert set(routes) == {"http.80", "https.443.https.bookinfo-gateway.bookinfo"}
    http = routes["http.80"]
    assert isinstance(http, route.RouteConfiguration)
    (vh,) = http.virtual_hosts
    assert vh.name == "bookinfo.example.com:80"
    rewrite, redirect, direct = vh.routes
    assert rewrite.route is not None and rewrite.route.prefix_rewrite == "/"
    assert rewrite.route.cluster == f"outbound|9080||productpage.{NS}.svc.cluster.local"
    assert redirect.redirect is not None and redirect.redirect.path_redirect == "/new"
    assert redirect.redirect.response_code == route.RedirectActionRedirectResponseCode.FOUND
    assert direct.direct_response is not None and direct.direct_response.status == 404
    # The mesh VirtualService for reviews is not bound to the gateway.
    assert all("reviews" not in v.name for r in routes.values() for v in r.virtual_hosts)  # type: ignore[attr-defined]


def test_non_gateway_proxies_get_no_gateway_listeners(ctx: PushContext) -> None:
    not_selected = ProxyInfo("router~1.1.1.1~x.y~y.svc.cluster.local", type=GATEWAY.type)
    assert generate(ctx, not_selected, xds.LISTENER) == {}


# -- the official runtime ---------------------------------------------------------------


def test_every_bookinfo_resource_parses_with_the_official_runtime(ctx: PushContext) -> None:
    count = 0
    for proxy in PROXIES:
        for type_url in sorted(ALL_TYPES):
            names = None
            if proxy.is_grpc:
                names = (
                    [TARGET, "ratings:9080", f"{DETAILS}:9080"]
                    if type_url in (xds.LISTENER, xds.ROUTE)
                    else [V1, V2, V3, f"outbound|9080||{REVIEWS}"]
                )
            for msg in generate(ctx, proxy, type_url, names).values():
                official_roundtrip(msg)
                count += 1
    assert count > 40


@given(random_contexts())
def test_random_meshes_translate_to_parseable_envoy(ctx: PushContext) -> None:
    for proxy in (GRPC_CLIENT, SIDECAR):
        names = [TARGET] if proxy.is_grpc else None
        rc = generate(ctx, proxy, xds.ROUTE, names)
        for msg in rc.values():
            official_roundtrip(msg)
            assert isinstance(msg, route.RouteConfiguration)
            for vh in msg.virtual_hosts:
                for r in vh.routes:
                    wc = r.route.weighted_clusters if r.route else None
                    if wc is not None:
                        assert len(wc.clusters) >= 2
                        assert all(c.weight and c.weight > 0 for c in wc.clusters)
        for name, c in generate(
            ctx, proxy, xds.CLUSTER, [V1, V2, V3] if proxy.is_grpc else None
        ).items():
            official_roundtrip(c)
            if proxy.is_grpc:
                assert isinstance(c, cluster.Cluster)
                assert c.lb_policy in (
                    cluster.ClusterLbPolicy.ROUND_ROBIN,
                    cluster.ClusterLbPolicy.RING_HASH,
                ), name


def test_node_parsing() -> None:
    from istio_sdk.api.envoy.config.core.v3 import Locality, Node
    from istio_sdk.api.google.protobuf import Struct

    node = Node(
        id="sidecar~10.1.2.3~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local",
        metadata=Struct.from_dict({"LABELS": {"app": "reviews"}, "GENERATOR": "grpc"}),
        locality=Locality(region="eu", zone="a"),
    )
    proxy = ProxyInfo.from_node(node)
    assert proxy.namespace == "bookinfo" and proxy.ip_addresses == ("10.1.2.3",)
    assert proxy.is_grpc and dict(proxy.labels) == {"app": "reviews"}
    assert proxy.locality == "eu/a/"
    plain = ProxyInfo.from_node(Node(id="anything"))
    assert plain.namespace == "default" and not plain.is_grpc
    router = ProxyInfo.from_node(
        Node(id="router~1.1.1.1~gw.istio-system~istio-system.svc.cluster.local")
    )
    assert router.type is GATEWAY.type and router.namespace == "istio-system"


def test_endpoints_follow_registry_updates() -> None:
    registry = bookinfo_registry()
    before = PushContext.build(bookinfo_configs(), registry)
    registry.set_endpoints(REVIEWS, NS, [Endpoint("10.9.9.9", labels={"version": "v1"})])
    after = PushContext.build(bookinfo_configs(), registry)
    old = generate(before, GRPC_CLIENT, xds.ENDPOINT, [V1])[V1]
    new = generate(after, GRPC_CLIENT, xds.ENDPOINT, [V1])[V1]
    assert old != new
    assert isinstance(new, endpoint.ClusterLoadAssignment)
    lb = new.endpoints[0].lb_endpoints[0]
    assert lb.endpoint is not None and lb.endpoint.address is not None
    assert lb.endpoint.address.socket_address is not None
    assert lb.endpoint.address.socket_address.address == "10.9.9.9"


def _locality_context(setting: n.LocalityLoadBalancerSetting | None) -> PushContext:
    rule = n.DestinationRule(
        host="reviews",
        traffic_policy=n.TrafficPolicy(
            load_balancer=n.LoadBalancerSettings(
                simple=n.LoadBalancerSettingsSimpleLb.ROUND_ROBIN, locality_lb_setting=setting
            ),
            outlier_detection=n.OutlierDetection(consecutive_5xx_errors=3),
        ),
    )
    return PushContext.build(
        [ConfigEntry("DestinationRule", "reviews", NS, rule)], bookinfo_registry()
    )


def _by_locality(cla: betterproto2.Message) -> dict[str, tuple[int, int | None]]:
    assert isinstance(cla, endpoint.ClusterLoadAssignment)
    out = {}
    for g in cla.endpoints:
        assert g.locality is not None
        key = "/".join(p for p in (g.locality.region, g.locality.zone, g.locality.sub_zone) if p)
        out[key] = (g.priority, g.load_balancing_weight)
    return out


def test_locality_failover_priorities_follow_proximity() -> None:
    ctx = _locality_context(None)
    near = ProxyInfo("c", namespace=NS, generator="grpc", locality="eu/a/1")
    name = f"outbound|9080||{REVIEWS}"
    (cla,) = generate(ctx, near, xds.ENDPOINT, [name]).values()
    # same subzone first, then same region, then the rest; compacted to 0, 1, 2
    assert {k: v[0] for k, v in _by_locality(cla).items()} == {"eu/a/1": 0, "eu/b": 1, "": 2}
    far = ProxyInfo("c", namespace=NS, generator="grpc", locality="us/x/1")
    (cla_far,) = generate(ctx, far, xds.ENDPOINT, [name]).values()
    assert {v[0] for v in _by_locality(cla_far).values()} == {0}
    nowhere = ProxyInfo("c", namespace=NS, generator="grpc")
    (cla_none,) = generate(ctx, nowhere, xds.ENDPOINT, [name]).values()
    assert {v[0] for v in _by_locality(cla_none).values()} == {0}
    off = _locality_context(n.LocalityLoadBalancerSetting(enabled=False))
    (cla_off,) = generate(off, near, xds.ENDPOINT, [name]).values()
    assert {v[0] for v in _by_locality(cla_off).values()} == {0}


def test_locality_failover_regions_rank_before_the_rest() -> None:
    setting = n.LocalityLoadBalancerSetting(
        failover=[n.LocalityLoadBalancerSettingFailover(from_="us", to="eu")]
    )
    ctx = _locality_context(setting)
    proxy = ProxyInfo("c", namespace=NS, generator="grpc", locality="us/x/1")
    (cla,) = generate(ctx, proxy, xds.ENDPOINT, [f"outbound|9080||{REVIEWS}"]).values()
    priorities = {k: v[0] for k, v in _by_locality(cla).items()}
    assert priorities == {"eu/a/1": 0, "eu/b": 0, "": 1}
    official_roundtrip(cla)


def test_locality_distribute_sets_weights_and_drops_unlisted() -> None:
    setting = n.LocalityLoadBalancerSetting(
        distribute=[
            n.LocalityLoadBalancerSettingDistribute(from_="eu/*", to={"eu/a/*": 80, "eu/b/*": 20})
        ]
    )
    ctx = _locality_context(setting)
    proxy = ProxyInfo("c", namespace=NS, generator="grpc", locality="eu/a/1")
    (cla,) = generate(ctx, proxy, xds.ENDPOINT, [f"outbound|9080||{REVIEWS}"]).values()
    weights = {k: v[1] for k, v in _by_locality(cla).items()}
    assert weights == {"eu/a/1": 80_000, "eu/b": 20_000}  # the locality-less group is dropped


def test_sidecar_egress_listener_ports_scope_hosts_per_port() -> None:
    sidecar = n.Sidecar(
        workload_selector=n.WorkloadSelector(labels={"app": "porty"}),
        egress=[
            n.IstioEgressListener(
                port=n.SidecarPort(number=9080, protocol="HTTP", name="http"), hosts=["./*"]
            ),
            n.IstioEgressListener(hosts=["other/*"]),
        ],
    )
    configs = [*bookinfo_configs(), ConfigEntry("Sidecar", "porty", NS, sidecar)]
    ctx = PushContext.build(configs, bookinfo_registry())
    proxy = ProxyInfo("p", namespace=NS, labels={"app": "porty"})
    routes = generate(ctx, proxy, xds.ROUTE)
    on_9080 = routes["9080"]
    assert isinstance(on_9080, route.RouteConfiguration)
    names = {vh.name for vh in on_9080.virtual_hosts}
    assert {f"{REVIEWS}:9080", f"{DETAILS}:9080"} <= names
    # bookinfo's port-80 ServiceEntries are imported on 9080 only, so port 80 has none.
    on_80 = routes["80"]
    assert isinstance(on_80, route.RouteConfiguration)
    assert [vh.name for vh in on_80.virtual_hosts] == ["allow_any"]


def test_wildcard_is_none_and_empty_names_ask_for_nothing(ctx: PushContext) -> None:
    for proxy in (GRPC_CLIENT, SIDECAR, GATEWAY):
        for type_url in sorted(ALL_TYPES):
            assert generate(ctx, proxy, type_url, []) == {}, (proxy.id, type_url)
        assert generate(ctx, proxy, xds.CLUSTER, None)
