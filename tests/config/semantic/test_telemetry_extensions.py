"""Telemetry, WasmPlugin, TrafficExtension and ProxyConfig verdicts."""

from __future__ import annotations

import pytest
from support.semantic import Case, check_case

SELECTOR = {"matchLabels": {"app": "a"}}

TELEMETRY = [
    Case("metrics", {"metrics": [{"providers": [{"name": "prometheus"}]}]}),
    Case(
        "empty provider name",
        {"accessLogging": [{"providers": [{}]}]},
        error=("spec.accessLogging[0].providers[0].name", "providers.name may not be empty"),
    ),
    Case(
        "access log filter",
        {
            "accessLogging": [
                {"filter": {"expression": "response.code >= 400 && request.headers['x'] == 'y'"}}
            ]
        },
    ),
    Case(
        "access log filter not CEL",
        {"accessLogging": [{"filter": {"expression": "response.code >="}}]},
        error=("spec.accessLogging[0].filter.expression", "must be a valid CEL expression"),
    ),
    Case(
        "sampling over 100",
        {"tracing": [{"randomSamplingPercentage": 101}]},
        error=(
            "spec.tracing[0].randomSamplingPercentage",
            "randomSamplingPercentage must be in range [0.0, 100.0]",
        ),
    ),
    Case(
        "two tracings",
        {"tracing": [{}, {}]},
        warning=("spec.tracing", "multiple tracing is not currently supported"),
    ),
    Case(
        "two tracing providers",
        {"tracing": [{"providers": [{"name": "a"}, {"name": "b"}]}]},
        warning=("spec.tracing[0].providers", "multiple providers is not currently supported"),
    ),
    Case(
        "literal tag without value",
        {"tracing": [{"customTags": {"t": {"literal": {}}}}]},
        error=("spec.tracing[0].customTags", "literal tag value may not be empty"),
    ),
    Case(
        "upsert without value",
        {"metrics": [{"overrides": [{"tagOverrides": {"t": {"operation": "UPSERT"}}}]}]},
        error=(
            "spec.metrics[0].overrides[0].tagOverrides",
            "tagOverrides.value must be set when operation is UPSERT",
        ),
    ),
    Case(
        "remove with value",
        {
            "metrics": [
                {"overrides": [{"tagOverrides": {"t": {"operation": "REMOVE", "value": "v"}}}]}
            ]
        },
        error=(
            "spec.metrics[0].overrides[0].tagOverrides",
            "tagOverrides.value may only be set when operation is UPSERT",
        ),
    ),
    Case(
        "selector without labels",
        {"selector": {}, "metrics": [{}]},
        warning=("spec.selector", "workload selector specified without labels"),
    ),
]

SHA = "a" * 64
WASM = [
    Case(
        "oci", {"selector": SELECTOR, "url": "oci://registry.example.com/plugin:1", "sha256": SHA}
    ),
    Case("bare registry path", {"url": "registry.example.com/plugin:1"}),
    Case("file", {"url": "file:///opt/plugin.wasm"}),
    Case("no url", {"pluginName": "p"}, error=("spec.url", "url field needs to be set")),
    Case(
        "ftp url",
        {"url": "ftp://example.com/p.wasm"},
        error=("spec.url", "url contains unsupported scheme: ftp"),
    ),
    Case(
        "short sha",
        {"url": "oci://r/p", "sha256": "abc"},
        error=("spec.sha256", "sha256 field must be 64 characters long"),
    ),
    Case(
        "upper case sha",
        {"url": "oci://r/p", "sha256": "A" * 64},
        error=("spec.sha256", "sha256 field must match [a-f0-9]{64} pattern"),
    ),
    Case(
        "duplicate env",
        {
            "url": "oci://r/p",
            "vmConfig": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        },
        error=("spec.vmConfig.env[1].name", "duplicate env"),
    ),
    Case(
        "host env with a value",
        {
            "url": "oci://r/p",
            "vmConfig": {"env": [{"name": "A", "valueFrom": "HOST", "value": "1"}]},
        },
        error=("spec.vmConfig.env[0].value", "value may only be set when valueFrom is INLINE"),
    ),
    Case(
        "match port 0",
        {"url": "oci://r/p", "match": [{"ports": [{}]}]},
        error=("spec.match[0].ports[0].number", "spec.Match[0].Ports[0] is out of range: 0"),
    ),
]

TRAFFIC_EXTENSION = [
    Case("lua", {"lua": {"inlineCode": "function envoy_on_request(h) end"}}),
    Case(
        "neither", {"selector": SELECTOR}, error=("spec", "exactly one of wasm or lua must be set")
    ),
    Case(
        "lua too large",
        {"lua": {"inlineCode": "x" * 65537}},
        error=("spec.lua.inlineCode", "lua.inlineCode exceeds maximum size of 64KB"),
    ),
]

PROXY_CONFIG = [
    Case("concurrency", {"selector": SELECTOR, "concurrency": 2}),
    Case(
        "negative concurrency",
        {"concurrency": -1},
        error=("spec.concurrency", "concurrency must be greater than or equal to 0"),
    ),
]


@pytest.mark.parametrize("case", TELEMETRY, ids=lambda c: c.id)
def test_telemetry_verdicts(case: Case) -> None:
    check_case("Telemetry", case)


@pytest.mark.parametrize("case", WASM, ids=lambda c: c.id)
def test_wasm_plugin_verdicts(case: Case) -> None:
    check_case("WasmPlugin", case)


@pytest.mark.parametrize("case", TRAFFIC_EXTENSION, ids=lambda c: c.id)
def test_traffic_extension_verdicts(case: Case) -> None:
    check_case("TrafficExtension", case)


@pytest.mark.parametrize("case", PROXY_CONFIG, ids=lambda c: c.id)
def test_proxy_config_verdicts(case: Case) -> None:
    check_case("ProxyConfig", case)
