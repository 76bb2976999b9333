"""Sidecar and EnvoyFilter verdicts from Istio's validation tests."""

from __future__ import annotations

from typing import Any

import pytest
from support.semantic import Case, check_case, findings

HTTP = {"number": 8080, "protocol": "HTTP", "name": "http"}


def egress(*hosts: str, **extra: Any) -> dict[str, Any]:
    return {"hosts": list(hosts), **extra}


SIDECAR = [
    Case("egress", {"egress": [egress("./*", "istio-system/*")]}),
    Case("empty", {}, error=("spec", "sidecar: empty configuration provided")),
    Case(
        "selector without labels",
        {"workloadSelector": {}, "egress": [egress("./*")]},
        warning=("spec.workloadSelector", "sidecar: workload selector specified without labels"),
    ),
    Case(
        "host without namespace",
        {"egress": [egress("foo.bar.com")]},
        error=("spec.egress[0].hosts[0]", "host must be of form namespace/dnsName"),
    ),
    Case(
        "short host",
        {"egress": [egress("ns/foo")]},
        error=("spec.egress[0].hosts[0]", "short names (non FQDN) are not allowed"),
    ),
    Case("~ namespace", {"egress": [egress("~/foo.bar.com")]}),
    Case(
        "bad namespace",
        {"egress": [egress("Bad_NS/*")]},
        error=("spec.egress[0].hosts[0]", 'invalid namespace value "Bad_NS" in sidecar'),
    ),
    Case(
        "no hosts",
        {"egress": [{"port": HTTP}]},
        error=("spec.egress[0].hosts", "sidecar: egress listener must contain at least one host"),
    ),
    Case(
        "two port-less listeners",
        {"egress": [egress("./*"), egress("*/*")]},
        error=(
            "spec.egress[0]",
            "sidecar: the egress listener with empty port should be the last listener",
        ),
    ),
    Case(
        "duplicate egress ports",
        {"egress": [egress("./*", port=HTTP), egress("*/*", port=HTTP)]},
        error=("spec.egress[1].port.number", "sidecar: ports on IP bound listeners must be unique"),
    ),
    Case(
        "port 0 without a socket",
        {"egress": [egress("./*", port={"name": "uds", "protocol": "HTTP"})]},
        error=(
            "spec.egress[0].bind",
            "sidecar: ports with 0 value must have a unix domain socket bind address",
        ),
    ),
    Case(
        "socket with IPTABLES capture",
        {
            "egress": [
                egress(
                    "./*",
                    port={"name": "uds", "protocol": "HTTP"},
                    bind="unix:///var/run/a.sock",
                    captureMode="IPTABLES",
                )
            ]
        },
        error=(
            "spec.egress[0].captureMode",
            "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
        ),
    ),
    Case(
        "duplicated host",
        {"egress": [egress("ns/foo.bar.com", "ns/foo.bar.com")]},
        warning=("spec.egress[0].hosts[1]", "duplicated egress host: ns/foo.bar.com"),
    ),
    Case(
        "*/* and more",
        {"egress": [egress("*/*", "ns/foo.bar.com")]},
        warning=(
            "spec.egress[0].hosts",
            "`*/*` host select all resources, no other hosts can be added",
        ),
    ),
    Case("ingress", {"ingress": [{"port": HTTP, "defaultEndpoint": "127.0.0.1:8080"}]}),
    Case(
        "ingress without port",
        {"ingress": [{"defaultEndpoint": "127.0.0.1:8080"}]},
        error=("spec.ingress[0].port", "sidecar: port is required for ingress listeners"),
    ),
    Case(
        "ingress default endpoint host",
        {"ingress": [{"port": HTTP, "defaultEndpoint": "10.0.0.1:8080"}]},
        error=(
            "spec.ingress[0].defaultEndpoint",
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>",
        ),
    ),
    Case(
        "ingress default endpoint port",
        {"ingress": [{"port": HTTP, "defaultEndpoint": "127.0.0.1:99999"}]},
        error=(
            "spec.ingress[0].defaultEndpoint",
            "port number 99999 must be in the range 1..65535",
        ),
    ),
    Case(
        "ingress duplicate ports",
        {"ingress": [{"port": HTTP}, {"port": HTTP}]},
        error=(
            "spec.ingress[1].port.number",
            "sidecar: ports on IP bound listeners must be unique",
        ),
    ),
    Case(
        "ingress tls istio mutual",
        {
            "ingress": [
                {
                    "port": {"number": 8443, "protocol": "HTTPS", "name": "https"},
                    "tls": {"mode": "ISTIO_MUTUAL"},
                }
            ]
        },
        error=(
            "spec.ingress[0].tls.mode",
            "cannot set mode to ISTIO_MUTUAL in sidecar ingress tls",
        ),
    ),
    Case(
        "ingress http pool on tcp",
        {
            "ingress": [
                {
                    "port": {"number": 9000, "protocol": "TCP", "name": "tcp"},
                    "connectionPool": {"http": {"maxRetries": 1}},
                }
            ]
        },
        warning=(
            "spec.ingress[0].connectionPool.http",
            "sidecar: HTTP connection pool settings are configured for port 9000",
        ),
    ),
    Case(
        "egress proxy without ALLOW_ANY",
        {
            "outboundTrafficPolicy": {
                "egressProxy": {"host": "proxy.example.com", "port": {"number": 80}}
            }
        },
        error=(
            "spec.outboundTrafficPolicy.egressProxy",
            "sidecar: egress_proxy must be set only with ALLOW_ANY",
        ),
    ),
    Case(
        "egress proxy",
        {
            "outboundTrafficPolicy": {
                "mode": "ALLOW_ANY",
                "egressProxy": {"host": "proxy.example.com", "port": {"number": 80}},
            }
        },
    ),
]

LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
ENVOY_FILTER_WARNING = ("spec", "EnvoyFilter exposes internal implementation details")


def patch(apply_to: str = "HTTP_FILTER", **extra: Any) -> dict[str, Any]:
    return {
        "applyTo": apply_to,
        "patch": {"operation": "INSERT_BEFORE", "value": {"name": "f"}},
        **extra,
    }


ENVOY_FILTER = [
    Case(
        "every filter gets the warning", {"configPatches": [patch()]}, warning=ENVOY_FILTER_WARNING
    ),
    Case(
        "no applyTo",
        {"configPatches": [{"patch": {"operation": "REMOVE"}}]},
        error=("spec.configPatches[0].applyTo", "Envoy filter: missing applyTo"),
    ),
    Case(
        "no patch",
        {"configPatches": [{"applyTo": "CLUSTER"}]},
        error=("spec.configPatches[0].patch", "Envoy filter: missing patch"),
    ),
    Case(
        "no operation",
        {"configPatches": [{"applyTo": "CLUSTER", "patch": {"value": {"name": "c"}}}]},
        error=("spec.configPatches[0].patch.operation", "Envoy filter: missing patch operation"),
    ),
    Case(
        "no value",
        {"configPatches": [{"applyTo": "CLUSTER", "patch": {"operation": "MERGE"}}]},
        error=(
            "spec.configPatches[0].patch.value",
            "Envoy filter: missing patch value for non-remove operation",
        ),
    ),
    Case(
        "remove needs no value",
        {"configPatches": [{"applyTo": "CLUSTER", "patch": {"operation": "REMOVE"}}]},
    ),
    Case(
        "bad proxy version regex",
        {"configPatches": [patch(match={"proxy": {"proxyVersion": "1.(2"}})]},
        error=(
            "spec.configPatches[0].match.proxy.proxyVersion",
            "Envoy filter: invalid regex for proxy version",
        ),
    ),
    Case(
        "listener patch with a cluster match",
        {"configPatches": [patch(match={"cluster": {"name": "c"}})]},
        error=(
            "spec.configPatches[0].match",
            "Envoy filter: applyTo for listener class objects cannot have non listener match",
        ),
    ),
    Case(
        "cluster patch with a listener match",
        {"configPatches": [patch("CLUSTER", match={"listener": {"portNumber": 80}})]},
        error=(
            "spec.configPatches[0].match",
            "Envoy filter: applyTo for cluster class objects cannot have non cluster match",
        ),
    ),
    Case(
        "subfilter outside the connection manager",
        {
            "configPatches": [
                patch(
                    match={
                        "listener": {
                            "filterChain": {
                                "filter": {
                                    "name": "envoy.filters.network.tcp_proxy",
                                    "subFilter": {"name": "x"},
                                }
                            }
                        }
                    }
                )
            ]
        },
        error=(
            "spec.configPatches[0].match.listener.filterChain.filter.subFilter",
            "Envoy filter: subfilter match requires filter match with "
            "envoy.filters.network.http_connection_manager",
        ),
    ),
    Case(
        "filter match on a LISTENER patch",
        {
            "configPatches": [
                patch(
                    "LISTENER",
                    match={
                        "listener": {
                            "filterChain": {"filter": {"name": "envoy.filters.network.tcp_proxy"}}
                        }
                    },
                )
            ]
        },
        warning=(
            "spec.configPatches[0].match.listener.filterChain.filter",
            "Envoy filter: filter match has no effect when used with LISTENER",
        ),
    ),
    Case(
        "deprecated filter name",
        {
            "configPatches": [
                patch(
                    "NETWORK_FILTER",
                    match={"listener": {"filterChain": {"filter": {"name": "envoy.tcp_proxy"}}}},
                )
            ]
        },
        warning=(
            "spec.configPatches[0].match.listener.filterChain.filter.name",
            (
                'using deprecated filter name "envoy.tcp_proxy"; '
                'use "envoy.filters.network.tcp_proxy" instead'
            ),
        ),
    ),
    Case(
        "cluster value of the wrong shape",
        {
            "configPatches": [
                {"applyTo": "CLUSTER", "patch": {"operation": "ADD", "value": {"name": 5}}}
            ]
        },
        error=("spec.configPatches[0].patch.value.name", "Envoy filter: expected a string"),
    ),
    Case(
        "cluster value with an unknown enum",
        {
            "configPatches": [
                {
                    "applyTo": "CLUSTER",
                    "patch": {"operation": "MERGE", "value": {"lb_policy": "FASTEST"}},
                }
            ]
        },
        error=(
            "spec.configPatches[0].patch.value.lb_policy",
            'Envoy filter: unknown value "FASTEST"',
        ),
    ),
    Case(
        "unknown field in the value",
        {
            "configPatches": [
                {"applyTo": "CLUSTER", "patch": {"operation": "MERGE", "value": {"colour": "red"}}}
            ]
        },
        warning=(
            "spec.configPatches[0].patch.value.colour",
            'Envoy filter: unknown field "colour"',
        ),
    ),
    Case(
        "a typed_config this SDK has no type for is let through",
        {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "patch": {
                        "operation": "INSERT_BEFORE",
                        "value": {
                            "name": "envoy.filters.http.lua",
                            "typed_config": {
                                "@type": LUA_TYPE,
                                "default_source_code": {"inline_string": "x"},
                            },
                        },
                    },
                }
            ]
        },
    ),
    Case(
        "cluster value",
        {
            "configPatches": [
                {
                    "applyTo": "CLUSTER",
                    "patch": {
                        "operation": "MERGE",
                        "value": {
                            "connect_timeout": "5s",
                            "per_connection_buffer_limit_bytes": 32768,
                            "circuit_breakers": {"thresholds": [{"max_connections": 100}]},
                        },
                    },
                }
            ]
        },
    ),
    Case(
        "selector with an empty key",
        {"workloadSelector": {"labels": {"": "a"}}, "configPatches": [patch()]},
        error=('spec.workloadSelector.labels[""]', 'empty key is not supported in selector: "=a"'),
    ),
]


@pytest.mark.parametrize("case", SIDECAR, ids=lambda c: c.id)
def test_sidecar_verdicts(case: Case) -> None:
    check_case("Sidecar", case)


@pytest.mark.parametrize("case", ENVOY_FILTER, ids=lambda c: c.id)
def test_envoy_filter_verdicts(case: Case) -> None:
    check_case("EnvoyFilter", case)


def test_an_envoy_filter_warning_does_not_make_it_invalid() -> None:
    assert [level for level, _, _ in findings("EnvoyFilter", {"configPatches": [patch()]})] == [
        "warning"
    ]
