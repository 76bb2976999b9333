"""EnvoyFilter patch operations Istio ignores or may apply out of order."""

from __future__ import annotations

from support.analysis import codes as all_codes
from support.analysis import lines

ANALYZER = ["envoyfilter.EnvoyPatchAnalyzer"]


def codes(text: str) -> list[str]:
    # only this analyzer: validation also warns about every EnvoyFilter (IST0133), as in istioctl
    return all_codes(text, analyzers=ANALYZER)


FILTER = """
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: %s, namespace: default}
spec:
  %s
  configPatches:
  - applyTo: %s
    match: {context: SIDECAR_INBOUND%s}
    patch:
      operation: %s
      value: {name: envoy.filters.http.lua}
"""


def one(apply_to: str, operation: str, priority: str = "", proxy: str = "", name: str = "f") -> str:
    return FILTER % (name, priority, apply_to, proxy, operation)


def test_add_and_remove_on_route_configuration_are_errors() -> None:
    assert codes(one("ROUTE_CONFIGURATION", "ADD")) == ["IST0153"]
    assert codes(one("HTTP_ROUTE", "REMOVE")) == ["IST0154"]
    assert (
        "Error [IST0153] (EnvoyFilter default/f mesh.yaml:11) The ADD operation will be "
        "ignored when "
        "applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."
    ) in lines(one("ROUTE_CONFIGURATION", "ADD"), analyzers=ANALYZER)


def test_replace_only_on_filters_and_virtual_hosts() -> None:
    assert codes(one("CLUSTER", "REPLACE", priority="priority: 1")) == ["IST0152"]
    assert codes(one("HTTP_FILTER", "REPLACE", priority="priority: 1")) == []


def test_relative_operation_without_priority_is_ist0151() -> None:
    assert codes(one("HTTP_FILTER", "INSERT_BEFORE")) == ["IST0151"]
    assert codes(one("HTTP_FILTER", "INSERT_BEFORE", priority="priority: 10")) == []
    assert codes(one("HTTP_FILTER", "INSERT_FIRST")) == []
    assert codes(one("CLUSTER", "MERGE")) == []


def test_relative_after_a_proxy_version_patch_of_the_same_filter_is_ist0155() -> None:
    versioned = one("HTTP_FILTER", "ADD", proxy=", proxy: {proxyVersion: '^1\\.2.*'}", name="a")
    relative = one("HTTP_FILTER", "INSERT_AFTER", name="b")
    assert codes(versioned + relative) == ["IST0155"]
    other = relative.replace("envoy.filters.http.lua", "envoy.filters.http.cors")
    assert codes(versioned + other) == ["IST0151"]
