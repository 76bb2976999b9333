"""AuthorizationPolicy: policies selecting no in-mesh workload, unknown source namespaces."""

from __future__ import annotations

from support.analysis import codes, lines, namespace, pod

POLICY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: %s}
spec:
  %s
  rules:
  - from: [{source: {namespaces: ["%s"]}}]
"""
MESH = namespace("default") + namespace("istio-system") + namespace("prod-eu") + pod("web-1")


def test_selector_matching_no_mesh_workload_is_ist0127() -> None:
    out = lines(POLICY % ("default", "selector: {matchLabels: {app: ghost}}", "*") + MESH)
    assert (
        "Warning [IST0127] (AuthorizationPolicy default/allow mesh.yaml:1) No matching "
        "workloads for "
        "this resource with the following labels: app=ghost"
    ) in out
    assert codes(POLICY % ("default", "selector: {matchLabels: {app: web}}", "*") + MESH) == []


def test_namespace_policy_needs_mesh_pods_there() -> None:
    assert "IST0127" in codes(POLICY % ("prod-eu", "", "*") + MESH)
    assert "IST0127" not in codes(POLICY % ("default", "", "*") + MESH)


def test_pod_without_proxy_in_a_plain_namespace_is_not_in_the_mesh() -> None:
    plain = MESH.replace("- {name: istio-proxy, image: proxyv2}", "").replace(
        "metadata: {name: default, labels: {istio-injection: enabled}}", "metadata: {name: default}"
    )
    assert "IST0127" in codes(
        POLICY % ("default", "selector: {matchLabels: {app: web}}", "*") + plain
    )


def test_root_namespace_policy_looks_everywhere() -> None:
    assert "IST0127" not in codes(
        POLICY % ("istio-system", "selector: {matchLabels: {app: web}}", "*") + MESH
    )
    assert "IST0127" in codes(
        POLICY % ("istio-system", "selector: {matchLabels: {app: x}}", "*") + MESH
    )


def test_unknown_source_namespace_is_ist0101() -> None:
    out = lines(POLICY % ("default", "", "nowhere") + MESH)
    assert (
        "Error [IST0101] (AuthorizationPolicy default/allow mesh.yaml:7) Referenced "
        'namespace not found: "nowhere"'
    ) in out
    for pattern in ("prod-*", "*-eu", "*", "PROD-EU"):
        assert "IST0101" not in codes(POLICY % ("default", "", pattern) + MESH), pattern
