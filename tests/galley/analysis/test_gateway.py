"""Gateway analyzers: workload selector and Service ports, conflicts, shared certificates."""

from __future__ import annotations

from support.analysis import codes, lines, pod, service

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: %s, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: http, protocol: HTTP}
    hosts: ["%s"]
"""
INGRESS = pod("ingress-1", ns="istio-system", labels="{istio: ingressgateway}") + service(
    "ingress",
    ns="istio-system",
    ports="[{name: http2, port: 80, targetPort: 8080}, {name: https, port: 443}]",
    selector="{istio: ingressgateway}",
)


def test_selector_without_pods_is_ist0101() -> None:
    out = lines(GATEWAY % ("public", 80, "*") + pod("web-1") + service("web"))
    assert (
        "Error [IST0101] (Gateway default/public mesh.yaml:5) Referenced selector not found: "
        '"istio=ingressgateway"'
    ) in out


def test_ports_of_the_service_in_front_of_the_gateway_pods() -> None:
    for number in (80, 8080, 443):
        assert codes(GATEWAY % ("public", number, "*") + INGRESS) == [], number
    out = lines(GATEWAY % ("public", 9999, "*") + INGRESS)
    assert (
        "Warning [IST0162] (Gateway default/public mesh.yaml:5) The gateway is listening "
        "on a target "
        "port (port 9999) that is not defined in the Service associated with its workload "
        "instances "
        "(Pod selector istio=ingressgateway). If you need to access the gateway port through the "
        "gateway Service, it will not be available."
    ) in out


def test_udp_service_ports_do_not_count() -> None:
    udp = INGRESS.replace("{name: https, port: 443}", "{name: https, port: 443, protocol: UDP}")
    assert "IST0162" in codes(GATEWAY % ("public", 443, "*") + udp)


def test_same_selector_port_and_host_conflict_ist0145() -> None:
    text = (
        GATEWAY % ("a", 80, "shop.example.com")
        + "---\n"
        + GATEWAY % ("b", 80, "shop.example.com")
        + INGRESS
    )
    out = [line for line in lines(text) if "IST0145" in line]
    assert out == [
        "Error [IST0145] (Gateway default/a mesh.yaml:1) Conflict with gateways default/b "
        "(workload "
        "selector istio=ingressgateway, port 80, hosts shop.example.com).",
        "Error [IST0145] (Gateway default/b mesh.yaml:11) Conflict with gateways default/a "
        "(workload "
        "selector istio=ingressgateway, port 80, hosts shop.example.com).",
    ]


def test_other_host_or_port_does_not_conflict() -> None:
    text = (
        GATEWAY % ("a", 80, "shop.example.com") + "---\n" + GATEWAY % ("b", 80, "api.example.com")
    )
    assert "IST0145" not in codes(text + INGRESS)
    text = (
        GATEWAY % ("a", 80, "shop.example.com") + "---\n" + GATEWAY % ("b", 443, "shop.example.com")
    )
    assert "IST0145" not in codes(text + INGRESS)


TLS_GATEWAY = """
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: %s, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["%s"]
    tls: {mode: SIMPLE, credentialName: %s}
"""


def test_shared_credential_is_ist0138() -> None:
    text = TLS_GATEWAY % ("a", "a.example.com", "cert") + TLS_GATEWAY % (
        "b",
        "b.example.com",
        "cert",
    )
    out = [line for line in lines(text) if "IST0138" in line]
    assert out == [
        "Warning [IST0138] (Gateway default/a mesh.yaml:4) Duplicate certificate in "
        "multiple gateways "
        "[default/a default/b] may cause 404s if clients re-use HTTP2 connections.",
        "Warning [IST0138] (Gateway default/b mesh.yaml:15) Duplicate certificate in "
        "multiple gateways "
        "[default/b default/a] may cause 404s if clients re-use HTTP2 connections.",
    ]
    other = TLS_GATEWAY % ("a", "a.example.com", "cert") + TLS_GATEWAY % (
        "b",
        "b.example.com",
        "other",
    )
    assert "IST0138" not in codes(other)
