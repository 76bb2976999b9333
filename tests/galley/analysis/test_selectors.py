"""Sidecar and Telemetry selectors: unmatched, overlapping and missing ones."""

from __future__ import annotations

from support.analysis import codes, lines, namespace, pod

SIDECAR = """
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: %s, namespace: default}
spec:
  %s
  egress: [{hosts: ["./*"]}]
"""
MESH = namespace("default") + pod("web-1")


def test_selector_matching_no_pod_is_ist0101() -> None:
    out = lines(SIDECAR % ("s", "workloadSelector: {labels: {app: ghost}}") + MESH)
    assert (
        'Error [IST0101] (Sidecar default/s mesh.yaml:6) Referenced selector not found: "app=ghost"'
    ) in out
    assert codes(SIDECAR % ("s", "workloadSelector: {labels: {app: web}}") + MESH) == []


def test_pod_selected_by_two_sidecars_is_ist0110() -> None:
    text = SIDECAR % ("a", "workloadSelector: {labels: {app: web}}") + SIDECAR % (
        "b",
        "workloadSelector: {labels: {app: web}}",
    )
    out = [line for line in lines(text + MESH) if "IST0110" in line]
    assert len(out) == 2
    assert out[0].endswith(
        'The Sidecars [a b] in namespace "default" select the same workload pod "web-1", which can '
        "lead to undefined behavior."
    )


def test_two_sidecars_without_selector_are_ist0111() -> None:
    text = SIDECAR % ("a", "") + SIDECAR % ("b", "")
    out = [line for line in lines(text + MESH) if "IST0111" in line]
    assert out[0] == (
        'Error [IST0111] (Sidecar default/a mesh.yaml:2) The Sidecars [a b] in namespace "default" '
        "have no workload selector, which can lead to undefined behavior."
    )
    assert "IST0111" not in codes(SIDECAR % ("a", "") + MESH)


TELEMETRY = """
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: %s, namespace: default}
spec:
  %s
  tracing: [{randomSamplingPercentage: 10}]
"""


def test_telemetry_selectors() -> None:
    out = lines(TELEMETRY % ("t", "selector: {matchLabels: {app: ghost}}") + MESH)
    assert 'Referenced selector not found: "app=ghost"' in "\n".join(out)
    both = TELEMETRY % ("a", "selector: {matchLabels: {app: web}}") + TELEMETRY % (
        "b",
        "selector: {matchLabels: {app: web}}",
    )
    assert codes(both + MESH).count("IST0159") == 2
    assert codes(TELEMETRY % ("a", "selector: {matchLabels: {app: web}}") + MESH) == []


def test_two_selector_less_telemetries_are_ist0160_even_without_pods() -> None:
    out = lines(TELEMETRY % ("a", "") + TELEMETRY % ("b", ""))
    assert (
        "Error [IST0160] (Telemetry default/a mesh.yaml:2) The Telemetries [a b] in "
        'namespace "default" '
        "have no workload selector, which can lead to undefined behavior."
    ) in out
    assert codes(TELEMETRY % ("a", "")) == []


def test_selectors_match_pods_of_their_own_namespace_with_every_label() -> None:
    shop = (
        namespace("shop")
        + pod("a", ns="shop", labels="{app: x}")
        + pod("b", ns="shop", labels="{app: y}")
    )
    other = SIDECAR.replace("namespace: default", "namespace: shop") % (
        "s",
        "workloadSelector: {labels: {app: web}}",
    )
    assert "IST0101" in codes(other + MESH + shop)
    mixed = MESH + pod("web-2", labels="{app: other, version: v9}")
    partial = SIDECAR % ("s", "workloadSelector: {labels: {app: web, version: v9}}")
    assert 'Referenced selector not found: "app=web,version=v9"' in "\n".join(
        lines(partial + mixed)
    )
