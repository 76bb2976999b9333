"""AuthorizationPolicy -> Envoy RBAC filters on sidecar inbound chains."""

from __future__ import annotations

import logging
import re

import betterproto2
import pytest
from hypothesis import given
from pilot.envoy_validate.meshes import SIDECAR as PRODUCTPAGE
from pilot.envoy_validate.meshes import random_contexts

from istio_sdk import xds
from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.config.rbac import v3 as rbac
from istio_sdk.api.envoy.extensions.filters.http.rbac import v3 as http_rbac
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from istio_sdk.api.envoy.extensions.filters.network.rbac import v3 as network_rbac
from istio_sdk.api.istio.security import v1beta1 as sec
from istio_sdk.api.istio.type import v1beta1 as istio_type
from istio_sdk.pilot.changes import compute_changes
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort, ServiceRegistry
from istio_sdk.pilot.translate import generate
from istio_sdk.pilot.translate.authz import (
    HTTP_RBAC_FILTER,
    NETWORK_RBAC_FILTER,
    applicable_policies,
    authz_filters,
    build_rbac,
    policy_name,
)

ACTION = sec.AuthorizationPolicyAction
NS = "prod"
HOST = f"echo.{NS}.svc.cluster.local"
SIDECAR = ProxyInfo("echo-1", ip_addresses=["10.0.0.5"], namespace=NS, labels={"app": "echo"})
OTHER = ProxyInfo("db-1", ip_addresses=["10.0.0.9"], namespace=NS, labels={"app": "db"})


def _ap(
    name: str,
    namespace: str = NS,
    *rules: sec.Rule,
    action: sec.AuthorizationPolicyAction = ACTION.ALLOW,
    selector: dict[str, str] | None = None,
) -> ConfigEntry:
    spec = sec.AuthorizationPolicy(rules=list(rules), action=action)
    if selector:
        spec.selector = istio_type.WorkloadSelector(match_labels=selector)
    return ConfigEntry("AuthorizationPolicy", name, namespace, spec)


def _rule(
    source: sec.Source | None = None,
    operation: sec.Operation | None = None,
    when: list[sec.Condition] | None = None,
) -> sec.Rule:
    return sec.Rule(
        from_=[sec.RuleFrom(source=source)] if source else [],
        to=[sec.RuleTo(operation=operation)] if operation else [],
        when=when or [],
    )


def _registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    registry.register_service(
        Service(HOST, NS, [ServicePort(80, "http", target_port=8080), ServicePort(5432, "tcp")]),
        [Endpoint("10.0.0.5", labels={"app": "echo"}, service_account="echo")],
    )
    return registry


def _ctx(*configs: ConfigEntry) -> PushContext:
    return PushContext.build(configs, _registry())


def _unpack(value: object) -> betterproto2.Message:
    assert value is not None
    msg = value.unpack()  # type: ignore[attr-defined]
    assert msg is not None
    return msg


def _inbound(ctx: PushContext) -> listener.Listener:
    out = generate(ctx, SIDECAR, xds.LISTENER, ["virtualInbound"])["virtualInbound"]
    assert isinstance(out, listener.Listener)
    return out


def _chain(lis: listener.Listener, name: str) -> listener.FilterChain:
    return next(c for c in lis.filter_chains if c.name == name)


def _http_rbacs(chain: listener.FilterChain) -> list[rbac.Rbac]:
    manager = _unpack(chain.filters[-1].typed_config)
    assert isinstance(manager, hcm.HttpConnectionManager)
    assert manager.http_filters[-1].name == "envoy.filters.http.router"
    out = []
    for f in manager.http_filters:
        if f.name == HTTP_RBAC_FILTER:
            config = _unpack(f.typed_config)
            assert isinstance(config, http_rbac.Rbac) and config.rules is not None
            out.append(config.rules)
    return out


def _tcp_rbacs(chain: listener.FilterChain) -> list[rbac.Rbac]:
    assert chain.filters[-1].name == "envoy.filters.network.tcp_proxy"
    out = []
    for f in chain.filters:
        if f.name == NETWORK_RBAC_FILTER:
            config = _unpack(f.typed_config)
            assert isinstance(config, network_rbac.Rbac) and config.rules is not None
            assert config.stat_prefix
            out.append(config.rules)
    return out


def _only_policy(rules: rbac.Rbac | None) -> rbac.Policy:
    assert rules is not None and len(rules.policies) == 1
    return next(iter(rules.policies.values()))


def test_no_policies_no_filters() -> None:
    lis = _inbound(_ctx())
    assert _http_rbacs(_chain(lis, "0.0.0.0_8080")) == []
    assert _tcp_rbacs(_chain(lis, "0.0.0.0_5432")) == []
    assert authz_filters(_ctx(), SIDECAR).empty


def test_policy_names_and_principals() -> None:
    rule = _rule(
        sec.Source(
            principals=["cluster.local/ns/web/sa/frontend", "cluster.local/ns/a/*"],
            namespaces=["web"],
            not_ip_blocks=["10.1.0.0/16"],
        )
    )
    entry = _ap("allow-web", NS, _rule(), rule)
    out = build_rbac([entry], ACTION.ALLOW, tcp=False)
    assert out is not None and out.action is rbac.RbacAction.ALLOW
    assert sorted(out.policies) == [
        policy_name(NS, "allow-web", 0),
        policy_name(NS, "allow-web", 1),
    ]
    assert policy_name(NS, "allow-web", 1) == "ns[prod]-policy[allow-web]-rule[1]"
    allow_all = out.policies["ns[prod]-policy[allow-web]-rule[0]"]
    assert allow_all.principals == [rbac.Principal(any=True)]
    assert allow_all.permissions == [rbac.Permission(any=True)]
    principal = out.policies["ns[prod]-policy[allow-web]-rule[1]"].principals[0]
    assert principal.and_ids is not None
    ids = principal.and_ids.ids
    assert ids[0].or_ids is not None
    names = [p.authenticated.principal_name for p in ids[0].or_ids.ids if p.authenticated]
    assert names[0] is not None and names[0].exact == "spiffe://cluster.local/ns/web/sa/frontend"
    assert names[1] is not None and names[1].prefix == "spiffe://cluster.local/ns/a/"
    assert ids[1].authenticated is not None
    regex = ids[1].authenticated.principal_name
    assert regex is not None and regex.safe_regex is not None
    assert regex.safe_regex.regex == ".*/ns/web/.*"
    assert ids[2].not_id is not None and ids[2].not_id.direct_remote_ip is not None
    assert ids[2].not_id.direct_remote_ip.address_prefix == "10.1.0.0"
    assert ids[2].not_id.direct_remote_ip.prefix_len == 16


def test_operation_permissions() -> None:
    op = sec.Operation(
        hosts=["echo.prod"], ports=["8080"], methods=["GET"], paths=["/api/*", "*.js", "/x", "*"]
    )
    policy = _only_policy(
        build_rbac([_ap("ops", NS, _rule(operation=op))], ACTION.ALLOW, tcp=False)
    )
    assert policy.principals == [rbac.Principal(any=True)]
    perm = policy.permissions[0]
    assert perm.and_rules is not None
    host, port, method, paths = perm.and_rules.rules
    assert host.header is not None and host.header.name == ":authority"
    assert port.destination_port == 8080
    assert method.header is not None and method.header.name == ":method"
    assert method.header.string_match is not None and method.header.string_match.exact == "GET"
    assert paths.or_rules is not None
    matchers = [p.url_path.path for p in paths.or_rules.rules if p.url_path]
    assert [(m.prefix, m.suffix, m.exact) for m in matchers if m][:3] == [
        ("/api/", None, None),
        (None, ".js", None),
        (None, None, "/x"),
    ]
    any_path = matchers[3]
    assert any_path is not None and any_path.safe_regex is not None
    assert any_path.safe_regex.regex == ".+"


def test_when_conditions() -> None:
    when = [
        sec.Condition(key="request.headers[x-token]", values=["abc"]),
        sec.Condition(key="source.ip", values=["10.0.0.1"]),
        sec.Condition(key="source.namespace", not_values=["test"]),
        sec.Condition(key="destination.port", values=["8080"]),
    ]
    policy = _only_policy(build_rbac([_ap("c", NS, _rule(when=when))], ACTION.ALLOW, tcp=False))
    principal = policy.principals[0]
    assert principal.and_ids is not None
    header, ip, not_ns = principal.and_ids.ids
    assert header.header is not None and header.header.name == "x-token"
    assert ip.direct_remote_ip is not None and ip.direct_remote_ip.prefix_len == 32
    assert not_ns.not_id is not None and not_ns.not_id.authenticated is not None
    assert policy.permissions[0].and_rules is not None
    assert policy.permissions[0].and_rules.rules[0].destination_port == 8080


def test_unsupported_condition_leaves_the_rule_out(caplog: pytest.LogCaptureFixture) -> None:
    bad = _rule(when=[sec.Condition(key="experimental.envoy.filters.x", values=["1"])])
    entry = _ap("odd", NS, bad, _rule())
    with caplog.at_level(logging.INFO, logger="istio_sdk.pilot.translate.authz"):
        out = build_rbac([entry], ACTION.ALLOW, tcp=False)
    assert out is not None and list(out.policies) == ["ns[prod]-policy[odd]-rule[1]"]
    assert "experimental.envoy.filters.x" in caplog.text
    assert "ns[prod]-policy[odd]-rule[0]" in caplog.text


def test_a_header_key_with_a_trailing_newline_is_not_a_header_condition() -> None:
    bad = _rule(when=[sec.Condition(key="request.headers[x-token]\n", values=["abc"])])
    out = build_rbac([_ap("nl", NS, bad, _rule())], ACTION.ALLOW, tcp=False)
    assert out is not None and list(out.policies) == ["ns[prod]-policy[nl]-rule[1]"]


def test_invalid_values_leave_the_rule_out() -> None:
    rules = [
        _rule(sec.Source(ip_blocks=["10.0.0.300"])),
        _rule(operation=sec.Operation(ports=["http"])),
        _rule(sec.Source(service_accounts=["no-namespace"])),
        _rule(sec.Source(ip_blocks=["fd00::/8", "10.0.0.1"])),
    ]
    out = build_rbac([_ap("v", NS, *rules)], ACTION.ALLOW, tcp=False)
    assert out is not None and list(out.policies) == ["ns[prod]-policy[v]-rule[3]"]
    principal = out.policies["ns[prod]-policy[v]-rule[3]"].principals[0]
    assert principal.and_ids is not None and principal.and_ids.ids[0].or_ids is not None
    cidrs = [p.direct_remote_ip for p in principal.and_ids.ids[0].or_ids.ids]
    assert [(c.address_prefix, c.prefix_len) for c in cidrs if c] == [
        ("fd00::", 8),
        ("10.0.0.1", 32),
    ]


def test_allow_without_rules_denies_everything() -> None:
    lis = _inbound(_ctx(_ap("deny-all")))
    (rules,) = _http_rbacs(_chain(lis, "0.0.0.0_8080"))
    assert rules.action is rbac.RbacAction.ALLOW and rules.policies == {}
    (tcp_rules,) = _tcp_rbacs(_chain(lis, "0.0.0.0_5432"))
    assert tcp_rules.action is rbac.RbacAction.ALLOW and tcp_rules.policies == {}


def test_deny_filter_comes_before_allow_and_audit_first() -> None:
    ctx = _ctx(
        _ap("allow", NS, _rule()),
        _ap("deny", NS, _rule(sec.Source(namespaces=["evil"])), action=ACTION.DENY),
        _ap("audit", NS, _rule(), action=ACTION.AUDIT),
        _ap("ext", NS, _rule(), action=ACTION.CUSTOM),
    )
    lis = _inbound(ctx)
    actions = [r.action for r in _http_rbacs(_chain(lis, "0.0.0.0_8080"))]
    assert actions == [rbac.RbacAction.LOG, rbac.RbacAction.DENY, rbac.RbacAction.ALLOW]
    tcp_actions = [r.action for r in _tcp_rbacs(_chain(lis, "0.0.0.0_5432"))]
    assert tcp_actions == actions
    # The passthrough catch-all is guarded too.
    catch_all = [c for c in lis.filter_chains if c.name.startswith("virtualInbound-catchall")]
    assert catch_all and all(len(_tcp_rbacs(c)) == 3 for c in catch_all)


def test_selectors_and_mesh_wide_root_namespace() -> None:
    ctx = _ctx(
        _ap("mesh", "istio-system", _rule()),
        _ap("mesh-db", "istio-system", _rule(), selector={"app": "db"}),
        _ap("echo-only", NS, _rule(), selector={"app": "echo"}),
        _ap("ns-wide", NS, _rule()),
        _ap("elsewhere", "other", _rule()),
    )
    names = [e.name for e in applicable_policies(ctx, NS, SIDECAR.labels)]
    assert names == ["mesh", "echo-only", "ns-wide"]
    names_db = [e.name for e in applicable_policies(ctx, NS, OTHER.labels)]
    assert names_db == ["mesh", "mesh-db", "ns-wide"]
    assert [e.name for e in applicable_policies(ctx, "other", {})] == ["mesh", "elsewhere"]
    (rules,) = _http_rbacs(_chain(_inbound(ctx), "0.0.0.0_8080"))
    assert sorted(rules.policies) == [
        "ns[istio-system]-policy[mesh]-rule[0]",
        "ns[prod]-policy[echo-only]-rule[0]",
        "ns[prod]-policy[ns-wide]-rule[0]",
    ]


def test_http_fields_on_tcp_chains() -> None:
    http_rule = _rule(operation=sec.Operation(methods=["GET"], ports=["5432"]))
    allow = _ap("allow-get", NS, http_rule)
    deny = _ap("deny-get", NS, http_rule, action=ACTION.DENY)
    # ALLOW: the rule cannot match on TCP, so it is left out (nothing allowed).
    allow_tcp = build_rbac([allow], ACTION.ALLOW, tcp=True)
    assert allow_tcp is not None and allow_tcp.policies == {}
    assert _only_policy(build_rbac([allow], ACTION.ALLOW, tcp=False)) is not None
    # DENY: the HTTP-only field is dropped, the port still applies (denies more).
    policy = _only_policy(build_rbac([deny], ACTION.DENY, tcp=True))
    assert policy.permissions[0].and_rules is not None
    assert policy.permissions[0].and_rules.rules == [rbac.Permission(destination_port=5432)]


def test_request_principals_are_http_only() -> None:
    rule = _rule(sec.Source(request_principals=["issuer/subject"]))
    http = _only_policy(build_rbac([_ap("jwt", NS, rule)], ACTION.ALLOW, tcp=False))
    ids = http.principals[0].and_ids
    assert ids is not None and ids.ids[0].sourced_metadata is not None
    found = ids.ids[0].sourced_metadata.metadata_matcher
    assert found is not None and found.filter == "istio_authn"
    tcp = build_rbac([_ap("jwt", NS, rule)], ACTION.ALLOW, tcp=True)
    assert tcp is not None and tcp.policies == {}


def test_authorization_policy_changes_push_listeners_to_affected_proxies() -> None:
    before = _ctx()
    after = _ctx(_ap("p", NS, _rule()))
    changes = compute_changes(before, after)
    assert changes.type_urls == frozenset({xds.LISTENER})
    assert changes.affects(after, SIDECAR)
    elsewhere = ProxyInfo("x", namespace="other")
    assert not changes.affects(after, elsewhere)
    mesh = compute_changes(before, _ctx(_ap("m", "istio-system", _rule())))
    assert mesh.affects(after, elsewhere)
    assert compute_changes(after, _ctx(_ap("p", NS, _rule()))).empty


def test_generator_pushes_only_listeners_to_affected_sidecars() -> None:
    from istio_sdk.pilot.translate import PushContextGenerator

    generator = PushContextGenerator(_ctx())
    request = generator.apply(_ctx(_ap("p", NS, _rule())))
    assert request is not None and request.types == frozenset({xds.LISTENER})
    assert request.proxies is not None
    assert request.selects(SIDECAR) and request.selects(OTHER)
    assert not request.selects(ProxyInfo("x", namespace="other"))
    (rules,) = _http_rbacs(_chain(_inbound(generator.context), "0.0.0.0_8080"))
    assert list(rules.policies) == ["ns[prod]-policy[p]-rule[0]"]


def test_authorization_policy_from_a_config_store_reaches_translation() -> None:
    """YAML -> ConfigStore -> push context -> RBAC filter, as ``istio-sdk serve`` does it."""
    from istio_sdk import ConfigStore, load_resources

    store = ConfigStore()
    for resource in load_resources(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-only, namespace: prod}
spec:
  action: DENY
  rules:
  - to:
    - operation: {ports: ["5432"]}
"""
    ):
        store.apply(resource)
    ctx = PushContext.from_store(store, _registry())
    (rules,) = _tcp_rbacs(_chain(_inbound(ctx), "0.0.0.0_5432"))
    assert rules.action is rbac.RbacAction.DENY
    assert list(rules.policies) == ["ns[prod]-policy[tcp-only]-rule[0]"]


_NAME = re.compile(r"^ns\[(?P<ns>[^\]]+)\]-policy\[(?P<name>[^\]]+)\]-rule\[(?P<i>\d+)\]$")
_ENVOY_ACTION = {
    ACTION.AUDIT: rbac.RbacAction.LOG,
    ACTION.DENY: rbac.RbacAction.DENY,
    ACTION.ALLOW: rbac.RbacAction.ALLOW,
}


@given(random_contexts())
def test_random_policies_give_ordered_filters_naming_applicable_rules(ctx: PushContext) -> None:
    applicable = applicable_policies(ctx, PRODUCTPAGE.namespace, PRODUCTPAGE.labels)
    by_key = {(e.namespace, e.name): e.spec for e in applicable}
    wanted = [
        envoy
        for action, envoy in _ENVOY_ACTION.items()
        if any(
            isinstance(s, sec.AuthorizationPolicy) and s.action is action for s in by_key.values()
        )
    ]
    filters = authz_filters(ctx, PRODUCTPAGE)
    for tcp, configs in ((False, filters.http), (True, filters.tcp)):
        rules_list = []
        for f in configs:
            config = _unpack(f.typed_config)
            assert isinstance(config, (http_rbac.Rbac, network_rbac.Rbac))
            assert config.rules is not None
            rules_list.append(config.rules)
        assert [r.action for r in rules_list] == wanted, tcp
        for rules in rules_list:
            for name in rules.policies:
                found = _NAME.match(name)
                assert found is not None
                spec = by_key[(found["ns"], found["name"])]
                assert isinstance(spec, sec.AuthorizationPolicy)
                assert _ENVOY_ACTION[spec.action] is rules.action
                assert int(found["i"]) < len(spec.rules)


GRPC_SERVER = ProxyInfo(
    "echo-grpc", ip_addresses=["10.0.0.5"], namespace=NS, labels={"app": "echo"}, generator="grpc"
)
GRPC_SERVER_LISTENER = "xds.istio.io/grpc/lds/inbound/10.0.0.5:8080"


def _grpc_server_chain(ctx: PushContext, proxy: ProxyInfo = GRPC_SERVER) -> listener.FilterChain:
    out = generate(ctx, proxy, xds.LISTENER, [GRPC_SERVER_LISTENER])[GRPC_SERVER_LISTENER]
    assert isinstance(out, listener.Listener)
    (chain,) = out.filter_chains
    return chain


def test_xds_enabled_grpc_servers_get_their_policies_as_rbac_filters() -> None:
    """grpcio enforces RBAC HTTP filters on its server listeners: a DENY policy for the
    workload reaches it, before the router; another workload's policy does not."""
    deny = _ap(
        "no-caller",
        NS,
        _rule(sec.Source(principals=["cluster.local/ns/prod/sa/caller"])),
        action=ACTION.DENY,
        selector={"app": "echo"},
    )
    other = _ap("db-only", NS, _rule(), selector={"app": "db"})
    chain = _grpc_server_chain(_ctx(deny, other))
    (rules,) = _http_rbacs(chain)
    assert rules.action is rbac.RbacAction.DENY
    assert list(rules.policies) == [policy_name(NS, "no-caller", 0)]
    assert _http_rbacs(_grpc_server_chain(_ctx(other))) == []
