"""Schema messages (IST0106) and the bundled bookinfo example."""

from __future__ import annotations

import pathlib

from support.analysis import analyze_yaml, codes, lines

from istio_sdk import AnalysisResult, Resource, analyze, validate
from istio_sdk.galley.analysis import Location, load_for_analysis

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"


def envoy_filter_warnings(resources: list[tuple[Resource, Location]]) -> list[tuple[str, str]]:
    """IST0133 on the EnvoyFilter when validation reports warnings: Istio warns about every
    EnvoyFilter, and istioctl prints that as IST0133."""
    envoy_filter = next(r for r, _ in resources if r.kind == "EnvoyFilter")
    warns = any(not p.is_error for p in validate(envoy_filter))
    return [("IST0133", "EnvoyFilter")] if warns else []


LEVELS = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  ports:
  - {number: 8080, name: p, protocol: HTTP}
  - {number: 8080, name: q, protocol: HTTP}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: [api.example.com]
  http:
  - route: [{destination: {host: api.example.com}}]
  - route: [{destination: {host: api.example.com}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ef, namespace: default}
spec:
  configPatches:
  - applyTo: CLUSTER
    patch: {operation: MERGE, value: {connect_timeout: 1s}}
"""


def test_validation_levels_map_to_ist0106_ist0133_and_the_rule_codes() -> None:
    # An error is IST0106, a warning IST0133, and validation's unused-rule warning is IST0130
    # only (not also IST0133), as istioctl maps them.
    found = codes(
        LEVELS,
        analyzers=[
            "schema.ValidationAnalyzer.ServiceEntry",
            "schema.ValidationAnalyzer.VirtualService",
            "schema.ValidationAnalyzer.EnvoyFilter",
        ],
    )
    assert sorted(set(found)) == ["IST0106", "IST0130", "IST0133"]
    printed = lines(LEVELS, analyzers=["schema.ValidationAnalyzer.VirtualService"])
    assert printed == [
        "Warning [IST0130] (VirtualService default/vs mesh.yaml:17) VirtualService rule #1 not "
        "used (only the last rule can have no matches)."
    ]
    printed = lines(LEVELS, analyzers=["schema.ValidationAnalyzer.EnvoyFilter"])
    assert len(printed) == 1 and printed[0].startswith(
        "Warning [IST0133] (EnvoyFilter default/ef mesh.yaml:23) Schema validation warning: spec: "
        "EnvoyFilter exposes internal implementation details"
    )


def test_schema_error_is_ist0106_at_the_field() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 99999, name: p, protocol: TCP}]
"""
    out = lines(text)
    assert any(
        line.startswith(
            "Error [IST0106] (ServiceEntry default/ext mesh.yaml:6) Schema validation "
            "error: spec.ports[0].number"
        )
        for line in out
    ), out


def test_every_istio_kind_has_a_schema_analyzer() -> None:
    result = analyze_yaml("")
    for kind in ("VirtualService", "DestinationRule", "Gateway", "Telemetry", "WasmPlugin"):
        assert f"schema.ValidationAnalyzer.{kind}" in result.executed


def test_bookinfo_yields_only_what_istioctl_would_explain() -> None:
    # The example is what `kubectl get -o yaml` shows before injection and without an
    # ingress gateway deployment: istioctl reports exactly these.
    loaded = load_for_analysis([EXAMPLES])
    assert loaded.problems == ()
    result = analyze(loaded.resources)
    assert isinstance(result, AnalysisResult)
    found = sorted({(m.code, m.origin.kind if m.origin else "") for m in result.messages})
    expected = [("IST0101", "Gateway"), ("IST0103", "Pod"), ("IST0151", "EnvoyFilter")]
    assert found == sorted(expected + envoy_filter_warnings(loaded.resources))
    assert result.skipped == ()
    gateway = [str(m) for m in result.messages if m.code == "IST0101"]
    assert gateway == [
        "Error [IST0101] (Gateway bookinfo/bookinfo-gateway "
        f'{EXAMPLES / "gateway.yaml"}:9) Referenced selector not found: "istio=ingressgateway"'
    ]
    assert sum(m.code == "IST0103" for m in result.messages) == 6


def test_bookinfo_with_an_ingress_gateway_and_injected_pods_is_clean() -> None:
    loaded = load_for_analysis([EXAMPLES])
    extra = """
apiVersion: v1
kind: Pod
metadata: {name: ingress-1, namespace: istio-system, labels: {istio: ingressgateway}}
spec: {containers: [{name: istio-proxy, image: proxyv2}]}
---
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports: [{name: http2, port: 80, targetPort: 8080}, {name: https, port: 443, targetPort: 8443}]
"""
    from istio_sdk.galley.analysis._load import load_text

    gateway, _ = load_text(extra, "ingress.yaml")
    injected = []
    for resource, location in loaded.resources:
        if resource.kind == "Pod":
            resource.spec.spec.containers.append(
                type(resource.spec.spec.containers[0])(name="istio-proxy", image="proxyv2")
            )
        injected.append((resource, location))
    result = analyze(injected + gateway)
    found = [(m.code, m.origin.kind if m.origin else "") for m in result.messages]
    assert sorted(found) == sorted([("IST0151", "EnvoyFilter"), *envoy_filter_warnings(injected)])


def test_plain_resources_without_locations() -> None:
    import istio_sdk

    resources = istio_sdk.load_resources(EXAMPLES / "virtual-services.yaml")
    result = analyze(resources)
    assert all(m.origin is None or m.origin.reference is None for m in result.messages)
    assert codes("") == []
