"""ServiceEntry protocol conflicts and Service port names."""

from __future__ import annotations

from support.analysis import codes, lines, service

SE = """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s, namespace: %s}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: p, protocol: %s}]
  resolution: DNS
  %s
"""


def test_one_host_port_with_two_protocols_is_ist0177_on_each() -> None:
    text = SE % ("a", "default", "HTTPS", "") + SE % ("b", "other", "TLS", "")
    out = [line for line in lines(text) if "IST0177" in line]
    assert out == [
        "Warning [IST0177] (ServiceEntry default/a mesh.yaml:7) Multiple ServiceEntries "
        "(default/a, "
        'other/b) define the same host "api.example.com" and port 443 with conflicting protocols '
        "(HTTPS, TLS).",
        "Warning [IST0177] (ServiceEntry other/b mesh.yaml:17) Multiple ServiceEntries (default/a, "
        'other/b) define the same host "api.example.com" and port 443 with conflicting protocols '
        "(HTTPS, TLS).",
    ]


def test_same_protocol_in_any_case_or_separate_scopes_is_clean() -> None:
    assert codes(SE % ("a", "default", "HTTPS", "") + SE % ("b", "other", "https", "")) == []
    private = SE % ("a", "default", "HTTPS", "exportTo: [.]") + SE % (
        "b",
        "other",
        "TLS",
        "exportTo: [.]",
    )
    assert "IST0177" not in codes(private)


def test_unconventional_port_name_is_ist0118() -> None:
    out = lines(service("web", ports="[{name: web, port: 8080, targetPort: 9090}]"))
    assert out == [
        "Info [IST0118] (Service default/web mesh.yaml:7) Port name web (port: 8080, "
        "targetPort: 9090) "
        "doesn't follow the naming convention of Istio port."
    ]


def test_conventional_port_names_and_exemptions_are_clean() -> None:
    for ports in (
        "[{name: http-web, port: 80}]",
        "[{name: grpc-web, port: 80}]",
        "[{name: x, port: 80, appProtocol: http}]",
        "[{name: dns, port: 53}]",
        "[{name: x, port: 5000, protocol: UDP}]",
    ):
        assert codes(service("web", ports=ports)) == [], ports
    control = service("istiod", ports="[{name: x, port: 80}]").replace(
        "metadata: {name: istiod, namespace: default}",
        "metadata: {name: istiod, namespace: default, labels: {istio: pilot}}",
    )
    assert codes(control) == []


def test_external_name_service_port_is_ist0150() -> None:
    text = service("ext", ports="[{name: tcp, port: 80}]").replace(
        "spec:\n", "spec:\n  type: ExternalName\n  externalName: api.example.com\n"
    )
    assert codes(text) == ["IST0150"]
