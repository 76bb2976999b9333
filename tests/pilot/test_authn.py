"""PeerAuthentication resolution and the TLS it produces for gRPC servers, clusters, sidecars."""

from __future__ import annotations

import betterproto2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk import xds
from istio_sdk.api.envoy.config.cluster import v3 as cluster
from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.config.endpoint import v3 as endpoint
from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.extensions.transport_sockets.tls import v3 as tls
from istio_sdk.api.istio.networking import v1alpha3 as n
from istio_sdk.api.istio.security import v1beta1 as sec
from istio_sdk.api.istio.type import v1beta1 as istio_type
from istio_sdk.pilot.changes import compute_changes
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort, ServiceRegistry
from istio_sdk.pilot.translate import generate
from istio_sdk.pilot.translate.authn import MtlsMode, mtls_policy, spiffe_identity

MODES = sec.PeerAuthenticationMutualTlsMode
NS = "prod"
HOST = f"echo.{NS}.svc.cluster.local"
SERVER_LISTENER = "xds.istio.io/grpc/lds/inbound/10.0.0.5:8080"
CLUSTER = f"outbound|9090||{HOST}"


def _pa(
    name: str,
    namespace: str,
    mode: sec.PeerAuthenticationMutualTlsMode | None = None,
    selector: dict[str, str] | None = None,
    ports: dict[int, sec.PeerAuthenticationMutualTlsMode] | None = None,
) -> ConfigEntry:
    spec = sec.PeerAuthentication()
    if mode is not None:
        spec.mtls = sec.PeerAuthenticationMutualTls(mode=mode)
    if selector:
        spec.selector = istio_type.WorkloadSelector(match_labels=selector)
    for port, port_mode in (ports or {}).items():
        spec.port_level_mtls[port] = sec.PeerAuthenticationMutualTls(mode=port_mode)
    return ConfigEntry("PeerAuthentication", name, namespace, spec)


def _registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.register_service(
        Service(HOST, NS, [ServicePort(9090, "grpc", target_port=8080)]),
        [
            Endpoint("10.0.0.5", labels={"app": "echo"}, service_account="echo-sa"),
            Endpoint("10.0.0.6", labels={"app": "echo"}, service_account="echo-sa"),
            Endpoint("10.0.0.7", labels={"app": "echo"}, service_account="echo-canary"),
        ],
    )
    return registry


def _ctx(*configs: ConfigEntry) -> PushContext:
    return PushContext.build(configs, _registry())


def _unpack(value: object) -> betterproto2.Message:
    assert value is not None
    msg = value.unpack()  # type: ignore[attr-defined]
    assert msg is not None
    return msg


GRPC_SERVER = ProxyInfo("echo-1", namespace=NS, labels={"app": "echo"}, generator="grpc")
SIDECAR = ProxyInfo("echo-2", ip_addresses=["10.0.0.5"], namespace=NS, labels={"app": "echo"})


# -- resolution --------------------------------------------------------------------------


def test_no_policy_means_permissive() -> None:
    policy = mtls_policy(_ctx(), NS, {"app": "echo"})
    assert policy.mode is MtlsMode.PERMISSIVE and policy.sources == ()


def test_mesh_namespace_workload_and_port_levels() -> None:
    ctx = _ctx(
        _pa("default", "istio-system", MODES.STRICT),
        _pa("ns", NS, MODES.DISABLE),
        _pa("echo", NS, MODES.UNSET, {"app": "echo"}, {8080: MODES.STRICT, 9000: MODES.UNSET}),
    )
    # Other namespaces only see the mesh-wide policy.
    assert mtls_policy(ctx, "other").mode is MtlsMode.STRICT
    # The namespace overrides the mesh; a workload policy that says UNSET inherits it.
    echo = mtls_policy(ctx, NS, {"app": "echo"})
    assert echo.mode is MtlsMode.DISABLE
    assert echo.mode_for_port(8080) is MtlsMode.STRICT
    assert echo.mode_for_port(9000) is MtlsMode.DISABLE  # port UNSET inherits the workload
    assert echo.mode_for_port(1234) is MtlsMode.DISABLE
    assert echo.sources == ("istio-system/default", f"{NS}/ns", f"{NS}/echo")
    # Workloads the selector does not match get the namespace's mode.
    assert mtls_policy(ctx, NS, {"app": "other"}).mode is MtlsMode.DISABLE


def test_unset_inherits_upwards_and_mesh_unset_is_permissive() -> None:
    ctx = _ctx(_pa("default", "istio-system", MODES.UNSET), _pa("ns", NS))
    assert mtls_policy(ctx, NS).mode is MtlsMode.PERMISSIVE
    ctx = _ctx(_pa("default", "istio-system", MODES.STRICT), _pa("ns", NS, MODES.UNSET))
    assert mtls_policy(ctx, NS).mode is MtlsMode.STRICT


def test_selectors_in_other_namespaces_do_not_apply() -> None:
    ctx = _ctx(
        _pa("root-echo", "istio-system", MODES.DISABLE, {"app": "echo"}),
        _pa("elsewhere", "other", MODES.DISABLE, {"app": "echo"}),
        _pa("default", "istio-system", MODES.STRICT),
    )
    assert mtls_policy(ctx, NS, {"app": "echo"}).mode is MtlsMode.STRICT
    # ... but a selector policy in the root namespace does select root-namespace workloads.
    assert mtls_policy(ctx, "istio-system", {"app": "echo"}).mode is MtlsMode.DISABLE


def test_conflicting_policies_first_by_name_wins() -> None:
    ctx = _ctx(_pa("b", NS, MODES.DISABLE), _pa("a", NS, MODES.STRICT))
    assert mtls_policy(ctx, NS).mode is MtlsMode.STRICT


def test_spiffe_identity() -> None:
    assert spiffe_identity("td", "ns", "sa") == "spiffe://td/ns/ns/sa/sa"
    assert spiffe_identity("td", "ns", "spiffe://x/ns/a/sa/b") == "spiffe://x/ns/a/sa/b"


# -- proxyless gRPC ------------------------------------------------------------------------


def _server_chain(ctx: PushContext, proxy: ProxyInfo = GRPC_SERVER) -> listener.FilterChain:
    lis = generate(ctx, proxy, xds.LISTENER, [SERVER_LISTENER])[SERVER_LISTENER]
    assert isinstance(lis, listener.Listener)
    (chain,) = lis.filter_chains
    return chain


def test_grpc_server_strict_requires_client_certificates() -> None:
    chain = _server_chain(_ctx(_pa("default", "istio-system", MODES.STRICT)))
    assert chain.name == "inbound-mtls"
    assert chain.transport_socket is not None
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"
    context = _unpack(chain.transport_socket.typed_config)
    assert isinstance(context, tls.DownstreamTlsContext)
    assert context.require_client_certificate is True
    common = context.common_tls_context
    assert common is not None and common.tls_certificate_provider_instance is not None
    assert (
        common.tls_certificate_provider_instance.instance_name,
        common.tls_certificate_provider_instance.certificate_name,
    ) == ("default", "default")
    assert common.validation_context is not None
    root = common.validation_context.ca_certificate_provider_instance
    assert root is not None and (root.instance_name, root.certificate_name) == (
        "default",
        "ROOTCA",
    )


@pytest.mark.parametrize(
    ("configs", "labels", "expected"),
    [
        ([], {"app": "echo"}, "inbound-plaintext"),
        # gRPC cannot serve both on one port: PERMISSIVE is plaintext ...
        ([_pa("default", "istio-system", MODES.PERMISSIVE)], {}, "inbound-plaintext"),
        # ... unless auto-mTLS clients will dial it with mTLS (the injector's label).
        (
            [_pa("default", "istio-system", MODES.PERMISSIVE)],
            {"security.istio.io/tlsMode": "istio"},
            "inbound-mtls",
        ),
        # Port-level settings apply to the port the server listens on.
        (
            [_pa("default", "istio-system", MODES.STRICT), _pa("w", NS, None, {"app": "echo"})],
            {"app": "echo"},
            "inbound-mtls",
        ),
        (
            [
                _pa("default", "istio-system", MODES.STRICT),
                _pa("w", NS, None, {"app": "echo"}, {8080: MODES.DISABLE}),
            ],
            {"app": "echo"},
            "inbound-plaintext",
        ),
    ],
)
def test_grpc_server_modes(
    configs: list[ConfigEntry], labels: dict[str, str], expected: str
) -> None:
    proxy = ProxyInfo("echo-1", namespace=NS, labels=labels, generator="grpc")
    chain = _server_chain(_ctx(*configs), proxy)
    assert chain.name == expected
    assert (chain.transport_socket is not None) == (expected == "inbound-mtls")


def _cluster_tls(ctx: PushContext, proxy: ProxyInfo) -> tls.UpstreamTlsContext:
    built = generate(ctx, proxy, xds.CLUSTER, [CLUSTER])[CLUSTER]
    assert isinstance(built, cluster.Cluster) and built.transport_socket is not None
    context = _unpack(built.transport_socket.typed_config)
    assert isinstance(context, tls.UpstreamTlsContext)
    return context


def _dr(sans: list[str] | None = None) -> ConfigEntry:
    mode = n.ClientTlsSettingsTlSmode.ISTIO_MUTUAL
    rule = n.DestinationRule(
        host=HOST,
        traffic_policy=n.TrafficPolicy(
            tls=n.ClientTlsSettings(mode=mode, subject_alt_names=sans or [])
        ),
    )
    return ConfigEntry("DestinationRule", "echo", NS, rule)


def test_grpc_istio_mutual_matches_the_service_identities() -> None:
    client = ProxyInfo("client", namespace=NS, generator="grpc")
    context = _cluster_tls(_ctx(_dr()), client)
    common = context.common_tls_context
    assert common is not None and common.validation_context is not None
    assert [m.exact for m in common.validation_context.match_subject_alt_names] == [
        f"spiffe://cluster.local/ns/{NS}/sa/echo-canary",
        f"spiffe://cluster.local/ns/{NS}/sa/echo-sa",
    ]
    # The rule's own subjectAltNames win.
    context = _cluster_tls(_ctx(_dr(["spiffe://x/ns/y/sa/z"])), client)
    common = context.common_tls_context
    assert common is not None and common.validation_context is not None
    assert [m.exact for m in common.validation_context.match_subject_alt_names] == [
        "spiffe://x/ns/y/sa/z"
    ]
    # A custom trust domain shows up in the derived identities.
    ctx = PushContext.build([_dr()], _registry(), trust_domain="example.org")
    common = _cluster_tls(ctx, client).common_tls_context
    assert common is not None and common.validation_context is not None
    assert common.validation_context.match_subject_alt_names[0].exact.startswith(
        "spiffe://example.org/"
    )


def test_sidecar_istio_mutual_matches_typed_uri_sans() -> None:
    client = ProxyInfo("client", namespace=NS)
    common = _cluster_tls(_ctx(_dr()), client).common_tls_context
    assert common is not None and common.combined_validation_context is not None
    default = common.combined_validation_context.default_validation_context
    assert default is not None
    assert [
        (m.san_type, m.matcher.exact if m.matcher else "")
        for m in default.match_typed_subject_alt_names
    ] == [
        (tls.SubjectAltNameMatcherSanType.URI, f"spiffe://cluster.local/ns/{NS}/sa/echo-canary"),
        (tls.SubjectAltNameMatcherSanType.URI, f"spiffe://cluster.local/ns/{NS}/sa/echo-sa"),
    ]


# -- sidecars ------------------------------------------------------------------------------


def _inbound(ctx: PushContext) -> listener.Listener:
    lis = generate(ctx, SIDECAR, xds.LISTENER, ["virtualInbound"])["virtualInbound"]
    assert isinstance(lis, listener.Listener)
    return lis


def _port_chains(lis: listener.Listener) -> list[listener.FilterChain]:
    return [
        c
        for c in lis.filter_chains
        if c.filter_chain_match is not None and c.filter_chain_match.destination_port == 8080
    ]


def _sds_names(socket: core.TransportSocket | None) -> tuple[list[str], str, bool]:
    context = _unpack(socket.typed_config if socket else None)
    assert isinstance(context, tls.DownstreamTlsContext)
    common = context.common_tls_context
    assert common is not None and common.combined_validation_context is not None
    root = common.combined_validation_context.validation_context_sds_secret_config
    assert root is not None
    return (
        [s.name for s in common.tls_certificate_sds_secret_configs],
        root.name,
        bool(context.require_client_certificate),
    )


def test_sidecar_strict_inbound_terminates_mtls() -> None:
    lis = _inbound(_ctx(_pa("default", "istio-system", MODES.STRICT)))
    (chain,) = _port_chains(lis)
    assert _sds_names(chain.transport_socket) == (["default"], "ROOTCA", True)
    assert chain.filter_chain_match is not None
    assert not chain.filter_chain_match.application_protocols
    assert [f.name for f in lis.listener_filters] == ["envoy.filters.listener.original_dst"]


def test_sidecar_permissive_inbound_has_mtls_and_plaintext_chains() -> None:
    lis = _inbound(_ctx())
    mtls, plain = _port_chains(lis)
    assert mtls.filter_chain_match is not None
    assert "istio" in mtls.filter_chain_match.application_protocols
    assert _sds_names(mtls.transport_socket) == (["default"], "ROOTCA", True)
    assert plain.transport_socket is None
    assert plain.filter_chain_match is not None
    assert not plain.filter_chain_match.application_protocols
    assert [f.name for f in lis.listener_filters] == [
        "envoy.filters.listener.original_dst",
        "envoy.filters.listener.tls_inspector",
    ]


def test_sidecar_disable_inbound_is_plaintext() -> None:
    lis = _inbound(_ctx(_pa("ns", NS, MODES.DISABLE)))
    (chain,) = _port_chains(lis)
    assert chain.transport_socket is None
    assert len(lis.listener_filters) == 1


def test_peer_authentication_change_pushes_to_every_proxy() -> None:
    before = _ctx()
    after = _ctx(_pa("default", "istio-system", MODES.STRICT))
    change = compute_changes(before, after)
    assert not change.empty and xds.LISTENER in change.type_urls
    assert change.affects(after, SIDECAR) and change.affects(after, GRPC_SERVER)


# -- auto mTLS (sidecars) ------------------------------------------------------------------

TLS_LABEL = {"security.istio.io/tlsMode": "istio"}


def _auto_registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.register_service(
        Service(HOST, NS, [ServicePort(9090, "grpc")]),
        [
            Endpoint("10.0.0.5", labels={"app": "echo", **TLS_LABEL}, service_account="echo-sa"),
            Endpoint("10.0.0.6", labels={"app": "echo"}),  # no sidecar: plaintext
        ],
    )
    return registry


def _sidecar_cluster(ctx: PushContext) -> cluster.Cluster:
    client = ProxyInfo("client", namespace="other")
    built = generate(ctx, client, xds.CLUSTER, [CLUSTER])[CLUSTER]
    assert isinstance(built, cluster.Cluster)
    return built


def test_auto_mtls_matches_endpoints_with_a_sidecar() -> None:
    ctx = PushContext.build([], _auto_registry())
    built = _sidecar_cluster(ctx)
    assert built.transport_socket is None
    istio, plain = built.transport_socket_matches
    assert (istio.name, plain.name) == ("tlsMode-istio", "tlsMode-disabled")
    assert istio.match is not None and istio.match.to_dict() == {"tlsMode": "istio"}
    assert plain.match is not None and plain.match.to_dict() == {}
    assert plain.transport_socket is not None
    assert plain.transport_socket.name == "envoy.transport_sockets.raw_buffer"
    assert istio.transport_socket is not None
    context = _unpack(istio.transport_socket.typed_config)
    assert isinstance(context, tls.UpstreamTlsContext)
    assert context.sni == f"outbound_.9090_._.{HOST}"
    common = context.common_tls_context
    assert common is not None and common.combined_validation_context is not None
    default = common.combined_validation_context.default_validation_context
    assert default is not None
    assert [m.matcher.exact for m in default.match_typed_subject_alt_names if m.matcher] == [
        f"spiffe://cluster.local/ns/{NS}/sa/echo-sa"
    ]
    # Only the endpoint with a sidecar carries the metadata the first match looks for.
    cla = generate(ctx, ProxyInfo("client", namespace="other"), xds.ENDPOINT, [CLUSTER])[CLUSTER]
    assert isinstance(cla, endpoint.ClusterLoadAssignment)
    metadata = {
        e.endpoint.address.socket_address.address: (
            e.metadata.filter_metadata["envoy.transport_socket_match"].to_dict()
            if e.metadata is not None
            else None
        )
        for group in cla.endpoints
        for e in group.lb_endpoints
        if e.endpoint is not None
        and e.endpoint.address is not None
        and e.endpoint.address.socket_address is not None
    }
    assert metadata == {"10.0.0.5": {"tlsMode": "istio"}, "10.0.0.6": None}


@pytest.mark.parametrize(
    "ctx",
    [
        # The server namespace disables mTLS: clients do not try it.
        pytest.param(
            PushContext.build([_pa("ns", NS, MODES.DISABLE)], _auto_registry()), id="disable"
        ),
        # Turned off for the whole push context (meshConfig.enableAutoMtls: false).
        pytest.param(PushContext.build([], _auto_registry(), auto_mtls=False), id="off"),
        # A DestinationRule's explicit TLS settings win over auto mTLS.
        pytest.param(
            PushContext.build(
                [
                    ConfigEntry(
                        "DestinationRule",
                        "echo",
                        NS,
                        n.DestinationRule(
                            host=HOST,
                            traffic_policy=n.TrafficPolicy(
                                tls=n.ClientTlsSettings(mode=n.ClientTlsSettingsTlSmode.DISABLE)
                            ),
                        ),
                    )
                ],
                _auto_registry(),
            ),
            id="dr-disable",
        ),
    ],
)
def test_no_auto_mtls(ctx: PushContext) -> None:
    built = _sidecar_cluster(ctx)
    assert built.transport_socket is None and not built.transport_socket_matches


def test_grpc_clients_get_no_auto_mtls() -> None:
    """Proxyless gRPC understands no transport socket matches; Istio sends none."""
    ctx = PushContext.build([], _auto_registry())
    client = ProxyInfo("client", namespace="other", generator="grpc")
    built = generate(ctx, client, xds.CLUSTER, [CLUSTER])[CLUSTER]
    assert isinstance(built, cluster.Cluster)
    assert built.transport_socket is None and not built.transport_socket_matches


def test_peer_authentication_from_a_config_store_reaches_translation() -> None:
    """The path the Mesh and ``istio-sdk serve`` take: YAML -> ConfigStore -> push context."""
    from istio_sdk import ConfigStore, load_resources

    store = ConfigStore()
    for resource in load_resources(
        """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""
    ):
        store.apply(resource)
    ctx = PushContext.from_store(store, _registry())
    assert _server_chain(ctx).name == "inbound-mtls"


def _catch_all(lis: listener.Listener) -> list[listener.FilterChain]:
    return [c for c in lis.filter_chains if c.name.startswith("virtualInbound-catchall")]


@pytest.mark.parametrize(
    ("configs", "expected"),
    [
        ([], [("virtualInbound-catchall-tcp-mtls", True), ("virtualInbound-catchall-tcp", False)]),
        ([_pa("default", "istio-system", MODES.STRICT)], [("virtualInbound-catchall-tcp", True)]),
        ([_pa("ns", NS, MODES.DISABLE)], [("virtualInbound-catchall-tcp", False)]),
    ],
)
def test_sidecar_passthrough_follows_the_workload_mode(
    configs: list[ConfigEntry], expected: list[tuple[str, bool]]
) -> None:
    """Ports no service names pass through under the workload-wide mode, as in Istio."""
    chains = _catch_all(_inbound(_ctx(*configs)))
    assert [(c.name, c.transport_socket is not None) for c in chains] == expected
    for chain in chains:
        match = chain.filter_chain_match
        assert match is None or match.destination_port is None


# -- properties ----------------------------------------------------------------------------

_modes = st.sampled_from(list(MODES))
_labels = st.dictionaries(st.sampled_from(["app", "version"]), st.sampled_from(["a", "b"]))


@st.composite
def _policies(draw: st.DrawFn) -> list[ConfigEntry]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        namespace = draw(st.sampled_from(["istio-system", NS, "other"]))
        selector = draw(_labels)
        ports = draw(st.dictionaries(st.sampled_from([80, 8080]), _modes)) if selector else {}
        mode = draw(st.one_of(st.none(), _modes))
        out.append(_pa(f"p{i}", namespace, mode, selector, ports))
    return out


@given(_policies(), _labels, st.sampled_from([80, 8080, 9000]))
def test_resolution_properties(
    policies: list[ConfigEntry], labels: dict[str, str], port: int
) -> None:
    ctx = PushContext.build(policies)
    mode = mtls_policy(ctx, NS, labels).mode_for_port(port)
    assert isinstance(mode, MtlsMode)  # UNSET never survives
    # Policies in a namespace that is neither the workload's nor the root change nothing.
    mine = [p for p in policies if p.namespace != "other"]
    assert mtls_policy(PushContext.build(mine), NS, labels).mode_for_port(port) is mode
    # A matching workload policy with an explicit mode decides every port it does not list.
    override = _pa("0-override", NS, MODES.DISABLE, {"zone": "z"})
    ctx = PushContext.build([*policies, override])
    assert mtls_policy(ctx, NS, {**labels, "zone": "z"}).mode_for_port(port) is MtlsMode.DISABLE
