"""AuthorizationPolicy -> Envoy RBAC filters for sidecar inbound filter chains (pure).

Which policies apply to a workload: those in its namespace whose ``selector.matchLabels``
match its labels (no selector: every workload of the namespace), plus those in the root
namespace (``istio-system``), which apply mesh-wide (again narrowed by their selector).

Each action becomes one RBAC filter: AUDIT (Envoy ``LOG``) first, then DENY, then ALLOW, so a
request a DENY policy matches is refused before any ALLOW policy is consulted. HTTP chains get
``envoy.filters.http.rbac`` filters before the router; TCP chains (and the passthrough
catch-all) get ``envoy.filters.network.rbac`` filters before ``tcp_proxy``. CUSTOM policies
(external authorizers) are not translated; they are logged and left out.

Each rule becomes the policy ``ns[NS]-policy[NAME]-rule[N]``: its ``from`` entries are the
principals (any one of them), its ``to`` entries the permissions (any one of them), its
``when`` conditions are added to every principal or permission. A rule with no ``from``,
``to`` and ``when`` matches everything; an ALLOW policy with no rules contributes nothing,
so (when it is the only ALLOW policy) everything is denied.

On TCP chains, HTTP-only fields (request principals, hosts, methods, paths, request headers)
cannot be evaluated. As Istio does, an ALLOW or AUDIT rule using them is left out (it matches
nothing), while a DENY rule drops just those fields (so it denies more, never less). A
``when`` key outside the supported set leaves the rule out, with a logged reason.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.config.listener import v3 as listener
from istio_sdk.api.envoy.config.rbac import v3 as rbac
from istio_sdk.api.envoy.config.route import v3 as route
from istio_sdk.api.envoy.extensions.filters.http.rbac import v3 as http_rbac
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from istio_sdk.api.envoy.extensions.filters.network.rbac import v3 as network_rbac
from istio_sdk.api.envoy.type.matcher import v3 as matcher
from istio_sdk.api.istio.security import v1beta1 as security
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.labels import labels_match
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.translate._common import pack
from istio_sdk.spiffe import SCHEME as SPIFFE_SCHEME

__all__ = [
    "HTTP_RBAC_FILTER",
    "NETWORK_RBAC_FILTER",
    "AuthzFilters",
    "applicable_policies",
    "authz_filters",
    "build_rbac",
    "policy_name",
]

HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
_NETWORK_STAT_PREFIX = "tcp."
_AUTHN_FILTER = "istio_authn"
_REQUEST_PRINCIPAL_KEY = "request.auth.principal"

_log = logging.getLogger(__name__)

_Action = security.AuthorizationPolicyAction
# Filter order on a chain: audit sees every request, deny decides before allow.
_ORDER = (
    (_Action.AUDIT, rbac.RbacAction.LOG),
    (_Action.DENY, rbac.RbacAction.DENY),
    (_Action.ALLOW, rbac.RbacAction.ALLOW),
)


class _SkipRule(Exception):
    """The rule cannot be translated for this chain; the message says why."""


def policy_name(namespace: str, name: str, rule_index: int) -> str:
    """Istio's RBAC policy name of one rule: ``ns[NS]-policy[NAME]-rule[INDEX]``."""
    return f"ns[{namespace}]-policy[{name}]-rule[{rule_index}]"


def _selector_matches(spec: security.AuthorizationPolicy, labels: Mapping[str, str]) -> bool:
    wanted = spec.selector.match_labels if spec.selector is not None else {}
    return labels_match(wanted, labels)


def applicable_policies(
    context: PushContext, namespace: str, labels: Mapping[str, str]
) -> list[ConfigEntry]:
    """The AuthorizationPolicies that apply to a workload in ``namespace`` with ``labels``.

    Root-namespace policies first (mesh-wide), then the namespace's own; each sorted by name.
    """
    root = context.root_namespace
    picked = [
        entry
        for entry in context.entries("AuthorizationPolicy")
        if isinstance(entry.spec, security.AuthorizationPolicy)
        and entry.namespace in (root, namespace)
        and _selector_matches(entry.spec, labels)
    ]
    return sorted(picked, key=lambda e: (e.namespace != root, e.namespace, e.name))


# -- string matching ----------------------------------------------------------------------


def _string(value: str, *, prefix: str = "", ignore_case: bool = False) -> matcher.StringMatcher:
    """Istio's value syntax: ``*`` (any non-empty), ``abc*`` (prefix), ``*abc`` (suffix), exact."""
    if value == "*":
        return matcher.StringMatcher(safe_regex=matcher.RegexMatcher(regex=".+"))
    if value.endswith("*"):
        return matcher.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    if value.startswith("*"):
        return matcher.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    return matcher.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def _glob_regex(value: str) -> str:
    return ".*".join(re.escape(part) for part in value.split("*"))


def _authenticated(value: str) -> rbac.Principal:
    return rbac.Principal(
        authenticated=rbac.PrincipalAuthenticated(
            principal_name=_string(value, prefix="" if value == "*" else SPIFFE_SCHEME)
        )
    )


def _authenticated_regex(regex: str) -> rbac.Principal:
    return rbac.Principal(
        authenticated=rbac.PrincipalAuthenticated(
            principal_name=matcher.StringMatcher(safe_regex=matcher.RegexMatcher(regex=regex))
        )
    )


def _namespace_principal(value: str) -> rbac.Principal:
    return _authenticated_regex(f".*/ns/{_glob_regex(value)}/.*")


def _service_account_principal(value: str) -> rbac.Principal:
    namespace, _, account = value.partition("/")
    if not account:
        raise _SkipRule(f"serviceAccounts value {value!r} is not NAMESPACE/NAME")
    return _authenticated_regex(f".*/ns/{re.escape(namespace)}/sa/{re.escape(account)}")


def _trust_domain_principal(value: str) -> rbac.Principal:
    return _authenticated_regex(f"{re.escape(SPIFFE_SCHEME)}{_glob_regex(value)}/.*")


def _cidr(value: str) -> core.CidrRange:
    """An IP address (a single host) or CIDR block as Envoy's ``CidrRange``."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _SkipRule(f"{value!r} is not an IP address or CIDR block") from None
    address = value.partition("/")[0]
    return core.CidrRange(address_prefix=address, prefix_len=network.prefixlen)


def _request_principal(value: str) -> rbac.Principal:
    # Dynamic metadata the JWT authentication filter leaves behind (``metadata`` is deprecated
    # in favour of ``sourced_metadata``, which reads dynamic metadata by default).
    return rbac.Principal(
        sourced_metadata=rbac.SourcedMetadata(
            metadata_matcher=matcher.MetadataMatcher(
                filter=_AUTHN_FILTER,
                path=[matcher.MetadataMatcherPathSegment(key=_REQUEST_PRINCIPAL_KEY)],
                value=matcher.ValueMatcher(string_match=_string(value)),
            )
        )
    )


def _header_principal(name: str) -> Callable[[str], rbac.Principal]:
    def build(value: str) -> rbac.Principal:
        return rbac.Principal(header=_header(name, value))

    return build


def _header(name: str, value: str, *, ignore_case: bool = False) -> route.HeaderMatcher:
    if value == "*":
        return route.HeaderMatcher(name=name, present_match=True)
    return route.HeaderMatcher(name=name, string_match=_string(value, ignore_case=ignore_case))


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise _SkipRule(f"port {value!r} is not a number") from None
    if not 0 < port < 65536:
        raise _SkipRule(f"port {value!r} is out of range")
    return port


def _path_permission(value: str) -> rbac.Permission:
    return rbac.Permission(url_path=matcher.PathMatcher(path=_string(value)))


# -- composing ----------------------------------------------------------------------------


def _any_principal(ids: list[rbac.Principal]) -> rbac.Principal:
    return ids[0] if len(ids) == 1 else rbac.Principal(or_ids=rbac.PrincipalSet(ids=ids))


def _all_principals(ids: list[rbac.Principal]) -> rbac.Principal:
    if not ids:
        return rbac.Principal(any=True)
    return rbac.Principal(and_ids=rbac.PrincipalSet(ids=ids))


def _any_permission(rules: list[rbac.Permission]) -> rbac.Permission:
    return (
        rules[0] if len(rules) == 1 else rbac.Permission(or_rules=rbac.PermissionSet(rules=rules))
    )


def _all_permissions(rules: list[rbac.Permission]) -> rbac.Permission:
    if not rules:
        return rbac.Permission(any=True)
    return rbac.Permission(and_rules=rbac.PermissionSet(rules=rules))


class _RuleBuilder:
    """Collects the principal and permission clauses of one rule for one chain kind."""

    def __init__(self, *, tcp: bool, action: security.AuthorizationPolicyAction) -> None:
        self.tcp = tcp
        self.action = action

    def _keep(self, name: str, http_only: bool) -> bool:
        """Whether an HTTP-only field is evaluated here (raises for ALLOW/AUDIT on TCP)."""
        if not (self.tcp and http_only):
            return True
        if self.action is _Action.DENY:
            return False  # Istio drops the field: the DENY rule matches more.
        raise _SkipRule(f"{name} is HTTP-only and this is a TCP filter chain")

    def principals(
        self,
        name: str,
        values: Sequence[str],
        not_values: Sequence[str],
        build: Callable[[str], rbac.Principal],
        *,
        http_only: bool = False,
    ) -> list[rbac.Principal]:
        """Clauses (all must hold) for one source field: any of ``values``, none of
        ``not_values``; nothing when the field is empty or dropped on this chain."""
        if not (values or not_values) or not self._keep(name, http_only):
            return []
        out = []
        if values:
            out.append(_any_principal([build(v) for v in values]))
        if not_values:
            out.append(rbac.Principal(not_id=_any_principal([build(v) for v in not_values])))
        return out

    def permissions(
        self,
        name: str,
        values: Sequence[str],
        not_values: Sequence[str],
        build: Callable[[str], rbac.Permission],
        *,
        http_only: bool = False,
    ) -> list[rbac.Permission]:
        """Like :meth:`principals`, for a field matched on the request or connection."""
        if not (values or not_values) or not self._keep(name, http_only):
            return []
        out = []
        if values:
            out.append(_any_permission([build(v) for v in values]))
        if not_values:
            out.append(rbac.Permission(not_rule=_any_permission([build(v) for v in not_values])))
        return out


def _source_ids(b: _RuleBuilder, source: security.Source) -> list[rbac.Principal]:
    ids: list[rbac.Principal] = []
    ids += b.principals("principals", source.principals, source.not_principals, _authenticated)
    ids += b.principals(
        "requestPrincipals",
        source.request_principals,
        source.not_request_principals,
        _request_principal,
        http_only=True,
    )
    ids += b.principals(
        "namespaces", source.namespaces, source.not_namespaces, _namespace_principal
    )
    ids += b.principals(
        "serviceAccounts",
        source.service_accounts,
        source.not_service_accounts,
        _service_account_principal,
    )
    ids += b.principals(
        "trustDomains", source.trust_domains, source.not_trust_domains, _trust_domain_principal
    )
    ids += b.principals(
        "ipBlocks",
        source.ip_blocks,
        source.not_ip_blocks,
        lambda v: rbac.Principal(direct_remote_ip=_cidr(v)),
    )
    ids += b.principals(
        "remoteIpBlocks",
        source.remote_ip_blocks,
        source.not_remote_ip_blocks,
        lambda v: rbac.Principal(remote_ip=_cidr(v)),
    )
    return ids


def _operation_rules(b: _RuleBuilder, op: security.Operation) -> list[rbac.Permission]:
    rules: list[rbac.Permission] = []
    rules += b.permissions(
        "hosts",
        op.hosts,
        op.not_hosts,
        lambda v: rbac.Permission(header=_header(":authority", v, ignore_case=True)),
        http_only=True,
    )
    rules += b.permissions(
        "ports", op.ports, op.not_ports, lambda v: rbac.Permission(destination_port=_port(v))
    )
    rules += b.permissions(
        "methods",
        op.methods,
        op.not_methods,
        lambda v: rbac.Permission(header=_header(":method", v)),
        http_only=True,
    )
    rules += b.permissions("paths", op.paths, op.not_paths, _path_permission, http_only=True)
    return rules


_HEADER_KEY = re.compile(r"request\.headers\[(?P<name>[^\]]+)\]")


def _condition(
    b: _RuleBuilder, cond: security.Condition
) -> tuple[list[rbac.Principal], list[rbac.Permission]]:
    """A ``when`` condition as principal clauses or permission clauses."""
    key, values, not_values = cond.key, cond.values, cond.not_values
    header = _HEADER_KEY.fullmatch(key)
    if header is not None:
        build = _header_principal(header.group("name"))
        return b.principals(key, values, not_values, build, http_only=True), []
    if key == "source.ip":
        return b.principals(
            key, values, not_values, lambda v: rbac.Principal(direct_remote_ip=_cidr(v))
        ), []
    if key == "remote.ip":
        return b.principals(
            key, values, not_values, lambda v: rbac.Principal(remote_ip=_cidr(v))
        ), []
    if key == "source.namespace":
        return b.principals(key, values, not_values, _namespace_principal), []
    if key == "source.principal":
        return b.principals(key, values, not_values, _authenticated), []
    if key == "request.auth.principal":
        return b.principals(key, values, not_values, _request_principal, http_only=True), []
    if key == "destination.port":
        build_port: Callable[[str], rbac.Permission] = lambda v: rbac.Permission(  # noqa: E731
            destination_port=_port(v)
        )
        return [], b.permissions(key, values, not_values, build_port)
    if key == "destination.ip":
        return [], b.permissions(
            key, values, not_values, lambda v: rbac.Permission(destination_ip=_cidr(v))
        )
    raise _SkipRule(f"condition key {key!r} is not supported")


def _rule_policy(
    rule: security.Rule, *, tcp: bool, action: security.AuthorizationPolicyAction
) -> rbac.Policy:
    """One rule as an RBAC policy (raises :class:`_SkipRule` when it must be left out)."""
    b = _RuleBuilder(tcp=tcp, action=action)
    extra_ids: list[rbac.Principal] = []
    extra_rules: list[rbac.Permission] = []
    for cond in rule.when:
        ids, rules = _condition(b, cond)
        extra_ids += ids
        extra_rules += rules
    froms = [f.source for f in rule.from_ if f.source is not None]
    tos = [t.operation for t in rule.to if t.operation is not None]
    principals = [_all_principals(_source_ids(b, s) + extra_ids) for s in froms] or [
        _all_principals(extra_ids)
    ]
    permissions = [_all_permissions(_operation_rules(b, op) + extra_rules) for op in tos] or [
        _all_permissions(extra_rules)
    ]
    return rbac.Policy(permissions=permissions, principals=principals)


def build_rbac(
    policies: Iterable[ConfigEntry],
    action: security.AuthorizationPolicyAction,
    *,
    tcp: bool,
) -> rbac.Rbac | None:
    """The RBAC rules for the ``action`` policies among ``policies`` (None: there are none).

    ``tcp`` selects the TCP semantics (HTTP-only fields cannot be evaluated). An ALLOW result
    may have no policies at all: Envoy then denies every request, as Istio intends.
    """
    envoy_action = dict(_ORDER)[action]
    chosen = [
        p
        for p in policies
        if isinstance(p.spec, security.AuthorizationPolicy) and p.spec.action is action
    ]
    if not chosen:
        return None
    out: dict[str, rbac.Policy] = {}
    for entry in chosen:
        spec = entry.spec
        assert isinstance(spec, security.AuthorizationPolicy)
        for index, rule in enumerate(spec.rules):
            name = policy_name(entry.namespace, entry.name, index)
            try:
                out[name] = _rule_policy(rule, tcp=tcp, action=action)
            except _SkipRule as reason:
                _log.info(
                    "authorization %s left out (%s chain): %s",
                    name,
                    "TCP" if tcp else "HTTP",
                    reason,
                )
    return rbac.Rbac(action=envoy_action, policies=out)


@attrs.frozen
class AuthzFilters:
    """The RBAC filters of one workload: ``http`` go into HTTP chains' connection manager
    before the router; ``tcp`` go into TCP chains before ``tcp_proxy``.

    Filter messages are shared between chains (treat them as read-only).
    """

    http: tuple[hcm.HttpFilter, ...] = ()
    tcp: tuple[listener.Filter, ...] = ()

    @property
    def empty(self) -> bool:
        """True when no AuthorizationPolicy applies."""
        return not (self.http or self.tcp)


def authz_filters(context: PushContext, proxy: ProxyInfo) -> AuthzFilters:
    """The RBAC filters for the workload behind ``proxy``; memoised per snapshot."""
    key = ("authz-filters", proxy.namespace, tuple(sorted(proxy.labels.items())))
    cached: AuthzFilters | None = context.cache.get(key)
    if cached is not None:
        return cached
    policies = applicable_policies(context, proxy.namespace, proxy.labels)
    for entry in policies:
        spec = entry.spec
        assert isinstance(spec, security.AuthorizationPolicy)
        if spec.action is _Action.CUSTOM:
            _log.info(
                "authorization policy %s/%s: CUSTOM action is not supported, left out",
                entry.namespace,
                entry.name,
            )
    http: list[hcm.HttpFilter] = []
    tcp: list[listener.Filter] = []
    for action, _ in _ORDER:
        http_rules = build_rbac(policies, action, tcp=False)
        if http_rules is not None:
            http.append(
                hcm.HttpFilter(
                    name=HTTP_RBAC_FILTER, typed_config=pack(http_rbac.Rbac(rules=http_rules))
                )
            )
        tcp_rules = build_rbac(policies, action, tcp=True)
        if tcp_rules is not None:
            config = network_rbac.Rbac(rules=tcp_rules, stat_prefix=_NETWORK_STAT_PREFIX)
            tcp.append(listener.Filter(name=NETWORK_RBAC_FILTER, typed_config=pack(config)))
    result = AuthzFilters(http=tuple(http), tcp=tuple(tcp))
    context.cache[key] = result
    return result
