"""Injection and annotations: namespaces, pods without proxies, UID 1337, Istio annotations."""

from __future__ import annotations

from support.analysis import analyze_yaml, codes, lines, namespace, pod

PLAIN_POD = """
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: default%s}
spec:
  %s
  containers:
  - {name: app, image: app%s}
"""


def test_namespace_without_injection_label_is_ist0102() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n" + pod("web-1", ns="shop")
    out = lines(text)
    assert out[-1] == (
        "Info [IST0102] (Namespace shop mesh.yaml:3) The namespace is not enabled for "
        "Istio injection. "
        "Run 'kubectl label namespace shop istio-injection=enabled' to enable it, or "
        "'kubectl label "
        "namespace shop istio-injection=disabled' to explicitly mark it as not needing injection."
    )
    assert codes(namespace("shop") + pod("web-1", ns="shop")) == []


def test_several_injection_labels_are_ist0123() -> None:
    text = namespace("shop").replace(
        "istio-injection: enabled", "istio-injection: enabled, istio.io/rev: canary"
    )
    assert (
        "Warning [IST0123] (Namespace shop mesh.yaml:4) The namespace has more than one "
        "type of injection "
        "labels [istio-injection=enabled istio.io/rev=canary], which may lead to undefined "
        "behavior. "
        "Make sure only one injection label exists."
    ) in lines(text + pod("web-1", ns="shop"))


def test_pod_without_proxy_in_injected_namespace_is_ist0103() -> None:
    text = namespace("default") + PLAIN_POD % ("", "", "")
    assert (
        "Warning [IST0103] (Pod default/web-1 mesh.yaml:9) The pod default/web-1 is "
        "missing the Istio "
        "proxy. This can often be resolved by restarting or redeploying the workload."
    ) in lines(text)
    opted_out = PLAIN_POD % (", labels: {sidecar.istio.io/inject: 'false'}", "", "")
    assert codes(namespace("default") + opted_out) == []
    assert codes(namespace("default") + PLAIN_POD % ("", "hostNetwork: true", "")) == []


def test_uid_1337_is_ist0144() -> None:
    text = (
        namespace("default")
        + pod("p")
        + PLAIN_POD % ("", "", ", securityContext: {runAsUser: 1337}")
    )
    assert "IST0144" in codes(text.replace("name: web-1", "name: web-2", 1))
    assert "IST0144" in codes(
        namespace("default") + PLAIN_POD % ("", "securityContext: {runAsUser: 1337}", "")
    )


def test_istio_annotations_unknown_deprecated_misplaced() -> None:
    annotated = PLAIN_POD % (
        ", annotations: {sidecar.istio.io/bogus: x, sidecar.istio.io/inject: 'true', "
        "networking.istio.io/exportTo: '.', example.com/other: x}",
        "",
        "",
    )
    out = lines(annotated.replace("- {name: app, image: app}", "- {name: istio-proxy, image: p}"))
    assert (
        "Warning [IST0108] (Pod default/web-1 mesh.yaml:4) Unknown annotation: "
        "sidecar.istio.io/bogus" in out
    )
    assert (
        "Warning [IST0107] (Pod default/web-1 mesh.yaml:4) Misplaced annotation: "
        "networking.istio.io/exportTo can only be applied to Service"
    ) in out
    assert (
        "Info [IST0135] (Pod default/web-1 mesh.yaml:4) Annotation "
        '"sidecar.istio.io/inject" has been '
        'deprecated in favor of the "sidecar.istio.io/inject" label and may not work in '
        "future Istio "
        "versions."
    ) in out
    assert len(out) == 3


def test_injection_analyzer_is_skipped_without_namespaces() -> None:
    result = analyze_yaml(PLAIN_POD % ("", "", ""))
    assert "injection.Analyzer (missing: Namespace)" in result.skipped
