"""DestinationRule: subsets selecting no pods, unknown hosts, TLS without CA certificates."""

from __future__ import annotations

from support.analysis import codes, lines, namespace, pod, service

DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: %s
  subsets:
  - name: v1
    labels: {%s}
"""
MESH = namespace("default") + pod("web-1", labels="{app: web, version: v1}") + service("web")


def test_subset_without_pods_is_ist0173() -> None:
    out = lines(DR % ("web", "version: v9") + MESH)
    assert (
        "Error [IST0173] (DestinationRule default/web mesh.yaml:7) The Subset v1 defined in the "
        "DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream)."
    ) in out
    assert codes(DR % ("web", "version: v1") + MESH) == []


def test_node_topology_labels_complete_pod_labels() -> None:
    node = """
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {topology.kubernetes.io/zone: z1}}
"""
    text = DR % ("web", "topology.kubernetes.io/zone: z1") + MESH.replace(
        "  - {name: istio-proxy, image: proxyv2}",
        "  - {name: istio-proxy, image: proxyv2}\n  nodeName: n1",
        1,
    )
    assert "IST0173" in codes(text)
    assert "IST0173" not in codes(text + node)


def test_unknown_host_is_ist0174() -> None:
    out = lines(DR % ("ghost", "version: v1") + MESH)
    assert (
        "Warning [IST0174] (DestinationRule default/web mesh.yaml:5) The host ghost defined in the "
        "DestinationRule does not match any services in the mesh."
    ) in out


TLS_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: %s}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: %s}
"""


def test_simple_tls_without_ca_is_ist0128_and_ist0129() -> None:
    out = lines(TLS_DR % ("SIMPLE", "MUTUAL, clientCertificate: c, privateKey: k"))
    assert (
        "Warning [IST0128] (DestinationRule default/ext mesh.yaml:7) DestinationRule "
        "default/ext in "
        "namespace default has TLS mode set to SIMPLE but no caCertificates are set to "
        "validate server "
        "identity for host: api.example.com"
    ) in out
    assert (
        "Warning [IST0129] (DestinationRule default/ext mesh.yaml:10) DestinationRule "
        "default/ext in "
        "namespace default has TLS mode set to MUTUAL but no caCertificates are set to "
        "validate server "
        "identity for host: api.example.com at port number:443"
    ) in out


def test_ca_certificates_or_istio_mutual_are_clean() -> None:
    assert codes(TLS_DR % ("SIMPLE, caCertificates: /ca.pem", "ISTIO_MUTUAL")) == []
