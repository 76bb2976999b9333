"""Meshes shared by the translation tests: a hand-written bookinfo and a Hypothesis strategy.

Lives here so both the main test session and the ``envoy_validate`` session (protobuf < 7 with
protoc-gen-validate) translate exactly the same inputs.
"""

from __future__ import annotations

import datetime

from hypothesis import strategies as st

from istio_sdk.api.istio.networking import v1alpha3 as n
from istio_sdk.api.istio.security import v1beta1 as sec
from istio_sdk.api.istio.type import v1beta1 as istio_type
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.proxy import ProxyInfo, ProxyType
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort, ServiceRegistry

NS = "bookinfo"
REVIEWS = f"reviews.{NS}.svc.cluster.local"
RATINGS = f"ratings.{NS}.svc.cluster.local"
PRODUCTPAGE = f"productpage.{NS}.svc.cluster.local"
DETAILS = "details.other.svc.cluster.local"


def bookinfo_registry() -> ServiceRegistry:
    """Four services in two namespaces, with versions, localities and weights."""
    registry = ServiceRegistry()
    registry.register_service(
        Service(REVIEWS, NS, [ServicePort(9080, "http")], addresses=["10.96.0.10"]),
        [
            Endpoint("10.0.1.1", labels={"app": "reviews", "version": "v1"}, locality="eu/a/1"),
            Endpoint(
                "10.0.1.2",
                labels={"app": "reviews", "version": "v2", "security.istio.io/tlsMode": "istio"},
                locality="eu/b",
                service_account="bookinfo-reviews",
            ),
            Endpoint("10.0.1.3", labels={"app": "reviews", "version": "v3"}, weight=3),
        ],
    )
    registry.register_service(
        Service(RATINGS, NS, [ServicePort(9080, "http"), ServicePort(3306, "tcp-db")]),
        [Endpoint("10.0.2.1", labels={"app": "ratings"}, ports={"tcp-db": 13306})],
    )
    registry.register_service(
        Service(PRODUCTPAGE, NS, [ServicePort(9080, "http", target_port=8080)]),
        [Endpoint("10.0.3.1", labels={"app": "productpage"})],
    )
    registry.register_service(
        Service(DETAILS, "other", [ServicePort(9080, "grpc-api")]),
        [Endpoint("10.0.4.1", labels={"app": "details"})],
    )
    return registry


def bookinfo_configs() -> list[ConfigEntry]:
    """VirtualServices, DestinationRules, a Gateway, a ServiceEntry and a Sidecar."""
    reviews_vs = n.VirtualService(
        hosts=["reviews"],
        http=[
            n.HttpRoute(
                name="jason",
                match=[
                    n.HttpMatchRequest(
                        headers={"end-user": n.StringMatch(exact="jason")},
                        uri=n.StringMatch(prefix="/reviews"),
                    )
                ],
                route=[
                    n.HttpRouteDestination(destination=n.Destination(host="reviews", subset="v2"))
                ],
                fault=n.HttpFaultInjection(
                    abort=n.HttpFaultInjectionAbort(
                        grpc_status="UNAVAILABLE", percentage=n.Percent(value=100)
                    ),
                    delay=n.HttpFaultInjectionDelay(
                        fixed_delay=datetime.timedelta(milliseconds=5),
                        percentage=n.Percent(value=10),
                    ),
                ),
            ),
            n.HttpRoute(
                name="regex",
                match=[
                    n.HttpMatchRequest(
                        uri=n.StringMatch(regex="/r[0-9]+"),
                        headers={"x-present": n.StringMatch(), "x-pre": n.StringMatch(prefix="a")},
                        without_headers={"x-debug": n.StringMatch(exact="1")},
                        query_params={"q": n.StringMatch(exact="1")},
                        ignore_uri_case=True,
                    ),
                    n.HttpMatchRequest(uri=n.StringMatch(exact="/exact")),
                ],
                route=[
                    n.HttpRouteDestination(destination=n.Destination(host="reviews", subset="v3"))
                ],
                retries=n.HttpRetry(
                    attempts=3,
                    per_try_timeout=datetime.timedelta(seconds=2),
                    retry_on="unavailable,5xx,503",
                ),
                timeout=datetime.timedelta(seconds=7),
            ),
            n.HttpRoute(
                route=[
                    n.HttpRouteDestination(
                        destination=n.Destination(host="reviews", subset="v1"), weight=75
                    ),
                    n.HttpRouteDestination(
                        destination=n.Destination(host="reviews", subset="v2"), weight=25
                    ),
                    n.HttpRouteDestination(
                        destination=n.Destination(host="reviews", subset="v3"), weight=0
                    ),
                ],
                headers=n.Headers(request=n.HeadersHeaderOperations(set={"x-mesh": "yes"})),
            ),
        ],
    )
    reviews_dr = n.DestinationRule(
        host="reviews",
        traffic_policy=n.TrafficPolicy(
            connection_pool=n.ConnectionPoolSettings(
                tcp=n.ConnectionPoolSettingsTcpSettings(
                    max_connections=100, connect_timeout=datetime.timedelta(seconds=3)
                ),
                http=n.ConnectionPoolSettingsHttpSettings(
                    http1_max_pending_requests=10,
                    http2_max_requests=50,
                    max_retries=4,
                    idle_timeout=datetime.timedelta(minutes=5),
                ),
            ),
            outlier_detection=n.OutlierDetection(
                consecutive_5xx_errors=7,
                consecutive_gateway_errors=3,
                interval=datetime.timedelta(seconds=10),
                base_ejection_time=datetime.timedelta(minutes=5),
                max_ejection_percent=50,
                min_health_percent=30,
            ),
            tls=n.ClientTlsSettings(mode=n.ClientTlsSettingsTlSmode.ISTIO_MUTUAL),
        ),
        subsets=[
            n.Subset(name="v1", labels={"version": "v1"}),
            n.Subset(
                name="v2",
                labels={"version": "v2"},
                traffic_policy=n.TrafficPolicy(
                    load_balancer=n.LoadBalancerSettings(
                        consistent_hash=n.LoadBalancerSettingsConsistentHashLb(
                            http_header_name="x-user",
                            ring_hash=n.LoadBalancerSettingsConsistentHashLbRingHash(
                                minimum_ring_size=2048
                            ),
                        )
                    )
                ),
            ),
            n.Subset(
                name="v3",
                labels={"version": "v3"},
                traffic_policy=n.TrafficPolicy(
                    load_balancer=n.LoadBalancerSettings(
                        simple=n.LoadBalancerSettingsSimpleLb.RANDOM
                    )
                ),
            ),
        ],
    )
    ratings_dr = n.DestinationRule(
        host="ratings",
        traffic_policy=n.TrafficPolicy(
            tls=n.ClientTlsSettings(
                mode=n.ClientTlsSettingsTlSmode.MUTUAL,
                client_certificate="/etc/certs/cert.pem",
                private_key="/etc/certs/key.pem",
                ca_certificates="/etc/certs/ca.pem",
                subject_alt_names=["ratings.example"],
            ),
            port_level_settings=[
                n.TrafficPolicyPortTrafficPolicy(
                    port=n.PortSelector(number=3306),
                    tls=n.ClientTlsSettings(mode=n.ClientTlsSettingsTlSmode.DISABLE),
                )
            ],
        ),
    )
    external = n.ServiceEntry(
        hosts=["api.example.com"],
        ports=[n.ServicePort(number=443, name="tls", protocol="TLS")],
        resolution=n.ServiceEntryResolution.DNS,
        location=n.ServiceEntryLocation.MESH_EXTERNAL,
    )
    external_http = n.ServiceEntry(
        hosts=["httpbin.example.org"],
        ports=[n.ServicePort(number=80, name="http", protocol="HTTP")],
        resolution=n.ServiceEntryResolution.DNS_ROUND_ROBIN,
        location=n.ServiceEntryLocation.MESH_EXTERNAL,
    )
    passthrough = n.ServiceEntry(
        hosts=["*.wikipedia.org"],
        ports=[n.ServicePort(number=80, name="http", protocol="HTTP")],
        resolution=n.ServiceEntryResolution.NONE,
    )
    gateway = n.Gateway(
        selector={"istio": "ingressgateway"},
        servers=[
            n.Server(port=n.Port(number=80, name="http", protocol="HTTP"), hosts=["*"]),
            n.Server(
                port=n.Port(number=443, name="https", protocol="HTTPS"),
                hosts=["bookinfo.example.com"],
                tls=n.ServerTlsSettings(
                    mode=n.ServerTlsSettingsTlSmode.SIMPLE, credential_name="bookinfo-cert"
                ),
            ),
        ],
    )
    gateway_vs = n.VirtualService(
        hosts=["bookinfo.example.com"],
        gateways=["bookinfo-gateway"],
        http=[
            n.HttpRoute(
                match=[n.HttpMatchRequest(uri=n.StringMatch(prefix="/api"))],
                rewrite=n.HttpRewrite(uri="/"),
                route=[
                    n.HttpRouteDestination(
                        destination=n.Destination(
                            host="productpage", port=n.PortSelector(number=9080)
                        )
                    )
                ],
            ),
            n.HttpRoute(
                match=[n.HttpMatchRequest(uri=n.StringMatch(exact="/old"))],
                redirect=n.HttpRedirect(uri="/new", redirect_code=302),
            ),
            n.HttpRoute(
                direct_response=n.HttpDirectResponse(status=404, body=n.HttpBody(string="nope"))
            ),
        ],
    )
    gateway.servers.extend(
        [
            n.Server(
                port=n.Port(number=8443, name="tls", protocol="TLS"),
                hosts=["*.secure.example.com"],
                tls=n.ServerTlsSettings(mode=n.ServerTlsSettingsTlSmode.PASSTHROUGH),
            ),
            n.Server(port=n.Port(number=31400, name="tcp", protocol="TCP"), hosts=["*"]),
        ]
    )
    passthrough_vs = n.VirtualService(
        hosts=["*.secure.example.com"],
        gateways=["bookinfo-gateway"],
        tls=[
            n.TlsRoute(
                match=[n.TlsMatchAttributes(sni_hosts=["a.secure.example.com"], port=8443)],
                route=[
                    n.RouteDestination(
                        destination=n.Destination(
                            host="productpage", port=n.PortSelector(number=9080)
                        )
                    )
                ],
            )
        ],
    )
    tcp_vs = n.VirtualService(
        hosts=["ratings"],
        gateways=["bookinfo-gateway", "mesh"],
        tcp=[
            n.TcpRoute(
                match=[n.L4MatchAttributes(port=31400, gateways=["bookinfo-gateway"])],
                route=[
                    n.RouteDestination(
                        destination=n.Destination(host="ratings", port=n.PortSelector(number=3306))
                    )
                ],
            ),
            n.TcpRoute(
                match=[n.L4MatchAttributes(port=3306)],
                route=[
                    n.RouteDestination(
                        destination=n.Destination(host="ratings", port=n.PortSelector(number=3306)),
                        weight=70,
                    ),
                    n.RouteDestination(
                        destination=n.Destination(
                            host="api.example.com", port=n.PortSelector(number=443)
                        ),
                        weight=30,
                    ),
                ],
            ),
        ],
    )
    sidecar = n.Sidecar(
        workload_selector=n.WorkloadSelector(labels={"app": "restricted"}),
        egress=[n.IstioEgressListener(hosts=["./ratings.bookinfo.svc.cluster.local"])],
        outbound_traffic_policy=n.OutboundTrafficPolicy(
            mode=n.OutboundTrafficPolicyMode.REGISTRY_ONLY
        ),
    )
    return [
        ConfigEntry("VirtualService", "reviews", NS, reviews_vs),
        ConfigEntry("DestinationRule", "reviews", NS, reviews_dr),
        ConfigEntry("DestinationRule", "ratings", NS, ratings_dr),
        ConfigEntry("ServiceEntry", "external-api", NS, external),
        ConfigEntry("ServiceEntry", "httpbin", NS, external_http),
        ConfigEntry("ServiceEntry", "wikipedia", NS, passthrough),
        ConfigEntry("Gateway", "bookinfo-gateway", NS, gateway),
        ConfigEntry("VirtualService", "bookinfo", NS, gateway_vs),
        ConfigEntry("Sidecar", "restricted", NS, sidecar),
        ConfigEntry("VirtualService", "secure", NS, passthrough_vs),
        ConfigEntry("VirtualService", "ratings-tcp", NS, tcp_vs),
        *peer_authentications(),
        *authorization_policies(),
    ]


def _mtls(mode: sec.PeerAuthenticationMutualTlsMode) -> sec.PeerAuthenticationMutualTls:
    return sec.PeerAuthenticationMutualTls(mode=mode)


def peer_authentications() -> list[ConfigEntry]:
    """Mesh-wide STRICT; productpage's port 8080 PERMISSIVE (mTLS and plaintext chains)."""
    modes = sec.PeerAuthenticationMutualTlsMode
    mesh = sec.PeerAuthentication(mtls=_mtls(modes.STRICT))
    productpage = sec.PeerAuthentication(
        selector=istio_type.WorkloadSelector(match_labels={"app": "productpage"}),
        port_level_mtls={8080: _mtls(modes.PERMISSIVE)},
    )
    return [
        ConfigEntry("PeerAuthentication", "default", "istio-system", mesh),
        ConfigEntry("PeerAuthentication", "productpage", NS, productpage),
    ]


def authorization_policies() -> list[ConfigEntry]:
    """A mesh-wide DENY, and productpage ALLOW rules using every translated field."""
    actions = sec.AuthorizationPolicyAction
    deny = sec.AuthorizationPolicy(
        action=actions.DENY,
        rules=[
            sec.Rule(
                from_=[sec.RuleFrom(source=sec.Source(not_namespaces=[NS, "istio-system"]))],
                to=[sec.RuleTo(operation=sec.Operation(methods=["DELETE"], ports=["9080"]))],
            )
        ],
    )
    source = sec.Source(
        principals=["cluster.local/ns/bookinfo/sa/gateway", "*"],
        not_principals=["cluster.local/ns/test/*"],
        request_principals=["issuer/*"],
        namespaces=["bookinfo"],
        service_accounts=["bookinfo/reviews"],
        trust_domains=["cluster.local"],
        ip_blocks=["10.0.0.0/8", "10.1.2.3"],
        not_remote_ip_blocks=["192.168.0.0/16"],
    )
    operation = sec.Operation(
        hosts=["productpage.bookinfo", "*.example.com"],
        not_hosts=["evil.*"],
        ports=["9080"],
        methods=["GET", "HEAD"],
        paths=["/productpage", "/static/*", "*.css", "*"],
        not_paths=["/admin"],
    )
    when = [
        sec.Condition(key="request.headers[x-user]", values=["*"], not_values=["bot"]),
        sec.Condition(key="source.ip", values=["10.0.0.0/8"]),
        sec.Condition(key="source.namespace", values=["bookinfo"]),
        sec.Condition(key="source.principal", values=["cluster.local/ns/bookinfo/sa/*"]),
        sec.Condition(key="destination.port", not_values=["15000"]),
    ]
    allow = sec.AuthorizationPolicy(
        selector=istio_type.WorkloadSelector(match_labels={"app": "productpage"}),
        rules=[
            sec.Rule(
                from_=[sec.RuleFrom(source=source)],
                to=[sec.RuleTo(operation=operation)],
                when=when,
            ),
            sec.Rule(),
            sec.Rule(when=[sec.Condition(key="unsupported.key", values=["x"])]),
        ],
    )
    audit = sec.AuthorizationPolicy(action=actions.AUDIT, rules=[sec.Rule()])
    return [
        ConfigEntry("AuthorizationPolicy", "deny-outsiders", "istio-system", deny),
        ConfigEntry("AuthorizationPolicy", "productpage", NS, allow),
        ConfigEntry("AuthorizationPolicy", "audit", NS, audit),
    ]


def bookinfo_context() -> PushContext:
    """The bookinfo push context."""
    return PushContext.build(bookinfo_configs(), bookinfo_registry())


GRPC_CLIENT = ProxyInfo("grpc-client", namespace=NS, generator="grpc")
GRPC_IN_EU = ProxyInfo("grpc-eu", namespace=NS, generator="grpc", locality="eu/a/1")
SIDECAR = ProxyInfo(
    "sidecar~10.0.3.1~productpage-1.bookinfo~bookinfo.svc.cluster.local",
    ip_addresses=["10.0.3.1"],
    namespace=NS,
    labels={"app": "productpage"},
)
RESTRICTED = ProxyInfo(
    "sidecar~10.0.9.9~restricted.bookinfo~bookinfo.svc.cluster.local",
    ip_addresses=["10.0.9.9"],
    namespace=NS,
    labels={"app": "restricted"},
)
GATEWAY = ProxyInfo(
    "router~10.0.0.50~gw.istio-system~istio-system.svc.cluster.local",
    type=ProxyType.ROUTER,
    namespace="istio-system",
    labels={"istio": "ingressgateway"},
)
PROXIES = [GRPC_CLIENT, GRPC_IN_EU, SIDECAR, RESTRICTED, GATEWAY]


# -- random meshes ----------------------------------------------------------------------

_SUBSETS = ["v1", "v2", "v3"]
_names = st.sampled_from(["a", "b", "x-user", "end-user"])
_string_match = st.one_of(
    st.builds(n.StringMatch, exact=st.text("abc/", max_size=5)),
    st.builds(n.StringMatch, prefix=st.sampled_from(["/", "/a", "/b/"])),
    st.builds(n.StringMatch, regex=st.sampled_from(["/a.*", "[0-9]+", ".*"])),
    st.just(n.StringMatch()),
)
_match = st.builds(
    n.HttpMatchRequest,
    uri=st.one_of(st.none(), _string_match.filter(lambda m: m.exact is None or m.exact != "")),
    headers=st.dictionaries(_names, _string_match, max_size=2),
    ignore_uri_case=st.booleans(),
)
_destination = st.builds(
    n.HttpRouteDestination,
    destination=st.builds(
        n.Destination,
        host=st.sampled_from(["reviews", REVIEWS, "ratings"]),
        subset=st.sampled_from(["", *_SUBSETS]),
    ),
    weight=st.integers(0, 100),
)
_percent = st.builds(n.Percent, value=st.floats(0, 100, allow_nan=False))
_fault = st.builds(
    n.HttpFaultInjection,
    abort=st.one_of(
        st.none(),
        st.builds(
            n.HttpFaultInjectionAbort,
            http_status=st.integers(200, 599),
            percentage=_percent,
        ),
        st.builds(
            n.HttpFaultInjectionAbort,
            grpc_status=st.sampled_from(["UNAVAILABLE", "INTERNAL", "14"]),
            percentage=_percent,
        ),
    ),
    delay=st.one_of(
        st.none(),
        st.builds(
            n.HttpFaultInjectionDelay,
            fixed_delay=st.timedeltas(
                min_value=datetime.timedelta(milliseconds=1),
                max_value=datetime.timedelta(seconds=5),
            ),
            percentage=_percent,
        ),
    ),
)
_http_route = st.builds(
    n.HttpRoute,
    name=st.sampled_from(["", "r1", "r2"]),
    match=st.lists(_match, max_size=2),
    route=st.lists(_destination, min_size=1, max_size=3),
    fault=st.one_of(st.none(), _fault),
    timeout=st.one_of(
        st.none(),
        st.timedeltas(min_value=datetime.timedelta(0), max_value=datetime.timedelta(seconds=30)),
    ),
    retries=st.one_of(
        st.none(),
        st.builds(
            n.HttpRetry,
            attempts=st.integers(0, 5),
            retry_on=st.sampled_from(["", "5xx", "unavailable,cancelled", "503,connect-failure"]),
        ),
    ),
)
_localities = st.sampled_from(["eu", "eu/a", "eu/a/1", "eu/b/*", "us", "*"])
_locality_lb = st.one_of(
    st.none(),
    st.builds(
        n.LocalityLoadBalancerSetting,
        distribute=st.lists(
            st.builds(
                n.LocalityLoadBalancerSettingDistribute,
                from_=_localities,
                to=st.dictionaries(_localities, st.integers(1, 100), min_size=1, max_size=2),
            ),
            max_size=2,
        ),
        failover=st.lists(
            st.builds(
                n.LocalityLoadBalancerSettingFailover,
                from_=st.sampled_from(["eu", "us"]),
                to=st.sampled_from(["eu", "us"]),
            ),
            max_size=1,
        ),
        enabled=st.one_of(st.none(), st.booleans()),
    ),
)
_lb = st.one_of(
    st.none(),
    st.builds(
        n.LoadBalancerSettings,
        simple=st.sampled_from(list(n.LoadBalancerSettingsSimpleLb)),
        locality_lb_setting=_locality_lb,
    ),
    st.builds(
        n.LoadBalancerSettings,
        consistent_hash=st.one_of(
            st.builds(n.LoadBalancerSettingsConsistentHashLb, http_header_name=st.just("x-user")),
            st.builds(n.LoadBalancerSettingsConsistentHashLb, use_source_ip=st.just(True)),
            st.builds(
                n.LoadBalancerSettingsConsistentHashLb,
                http_query_parameter_name=st.just("u"),
                maglev=st.builds(
                    n.LoadBalancerSettingsConsistentHashLbMagLev, table_size=st.just(65537)
                ),
            ),
        ),
    ),
)
_policy = st.builds(
    n.TrafficPolicy,
    load_balancer=_lb,
    outlier_detection=st.one_of(
        st.none(),
        st.builds(
            n.OutlierDetection,
            consecutive_5xx_errors=st.one_of(st.none(), st.integers(0, 10)),
            max_ejection_percent=st.integers(0, 100),
            min_health_percent=st.integers(0, 100),
        ),
    ),
    tls=st.one_of(
        st.none(),
        st.builds(n.ClientTlsSettings, mode=st.sampled_from(list(n.ClientTlsSettingsTlSmode))),
    ),
)


_values = st.lists(
    st.sampled_from(["*", "bookinfo", "a*", "*b", "cluster.local/ns/x/sa/y", "10.0.0.0/8"]),
    max_size=2,
)
_ports = st.lists(st.sampled_from(["9080", "8080", "15000"]), max_size=2)
_condition = st.builds(
    sec.Condition,
    key=st.sampled_from(
        [
            "request.headers[x-a]",
            "source.ip",
            "source.namespace",
            "source.principal",
            "destination.port",
            "request.auth.claims[iss]",
        ]
    ),
    values=st.lists(st.sampled_from(["10.1.0.0/16", "9080"]), min_size=1, max_size=2),
)
_source = st.builds(
    sec.Source,
    principals=_values,
    not_principals=_values,
    request_principals=_values,
    namespaces=_values,
    not_namespaces=_values,
    ip_blocks=st.lists(st.sampled_from(["10.0.0.0/8", "10.2.3.4", "::1"]), max_size=2),
)
_operation = st.builds(
    sec.Operation,
    hosts=_values,
    ports=_ports,
    not_ports=_ports,
    methods=st.lists(st.sampled_from(["GET", "POST"]), max_size=2),
    paths=st.lists(st.sampled_from(["/a", "/b/*", "*.js", "*"]), max_size=2),
)
_rule = st.builds(
    sec.Rule,
    from_=st.lists(st.builds(sec.RuleFrom, source=_source), max_size=2),
    to=st.lists(st.builds(sec.RuleTo, operation=_operation), max_size=2),
    when=st.lists(_condition, max_size=2),
)
_authorization_policies = st.lists(
    st.builds(
        lambda name, namespace, action, rules, select: ConfigEntry(
            "AuthorizationPolicy",
            name,
            namespace,
            sec.AuthorizationPolicy(
                action=action,
                rules=rules,
                selector=istio_type.WorkloadSelector(match_labels={"app": "productpage"})
                if select
                else None,
            ),
        ),
        st.sampled_from(["a", "b"]),
        st.sampled_from([NS, "istio-system"]),
        st.sampled_from(list(sec.AuthorizationPolicyAction)),
        st.lists(_rule, max_size=3),
        st.booleans(),
    ),
    max_size=3,
    unique_by=lambda e: (e.name, e.namespace),
)


@st.composite
def random_contexts(draw: st.DrawFn) -> PushContext:
    """A bookinfo registry with random VirtualServices and DestinationRules over it."""
    vs = n.VirtualService(
        hosts=[draw(st.sampled_from(["reviews", REVIEWS]))],
        http=draw(st.lists(_http_route, min_size=1, max_size=3)),
    )
    dr = n.DestinationRule(
        host="reviews",
        traffic_policy=draw(st.one_of(st.none(), _policy)),
        subsets=[
            n.Subset(
                name=s, labels={"version": s}, traffic_policy=draw(st.one_of(st.none(), _policy))
            )
            for s in _SUBSETS
        ],
    )
    configs = [
        ConfigEntry("VirtualService", "reviews", NS, vs),
        ConfigEntry("DestinationRule", "reviews", NS, dr),
    ]
    modes = st.sampled_from(list(sec.PeerAuthenticationMutualTlsMode))
    for name, namespace, selector in (
        ("mesh", "istio-system", {}),
        ("namespace", NS, {}),
        ("workload", NS, {"app": "productpage"}),
    ):
        if not draw(st.booleans()):
            continue
        spec = sec.PeerAuthentication(mtls=_mtls(draw(modes)))
        if selector:
            spec.selector = istio_type.WorkloadSelector(match_labels=selector)
            spec.port_level_mtls = draw(
                st.dictionaries(st.sampled_from([8080, 9080]), modes.map(_mtls), max_size=2)
            )
        configs.append(ConfigEntry("PeerAuthentication", name, namespace, spec))
    configs.extend(draw(_authorization_policies))
    return PushContext.build(configs, bookinfo_registry())
