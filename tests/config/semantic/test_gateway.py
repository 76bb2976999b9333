"""Gateway verdicts from Istio's validation tests."""

from __future__ import annotations

from typing import Any

import pytest
from support.semantic import Case, check_case


def server(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "hosts": ["foo.bar.com"],
        "port": {"name": "http", "number": 80, "protocol": "HTTP"},
    }
    base.update(extra)
    return base


def https(tls: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    base = server(port={"name": "https", "number": 443, "protocol": "HTTPS"}, **extra)
    if tls is not None:
        base["tls"] = tls
    return base


def gw(*servers: dict[str, Any]) -> dict[str, Any]:
    return {"selector": {"istio": "ingressgateway"}, "servers": list(servers)}


CASES = [
    Case("simple", gw(server())),
    Case(
        "no servers",
        {"selector": {"istio": "ingressgateway"}},
        error=("spec.servers", "gateway must have at least one server"),
    ),
    Case(
        "name with a dot",
        gw(server()),
        name="my.gw",
        error=("metadata.name", 'invalid gateway name: "my.gw"'),
    ),
    Case(
        "port 99999",
        gw(server(port={"name": "http", "number": 99999, "protocol": "HTTP"})),
        error=("spec.servers[0].port.number", "port number 99999 must be in the range 1..65535"),
    ),
    Case(
        "port 0",
        gw(server(port={"name": "http", "protocol": "HTTP"})),
        error=("spec.servers[0].port.number", "port number 0 must be in the range 1..65535"),
    ),
    Case(
        "no port name",
        gw(server(port={"number": 80, "protocol": "HTTP"})),
        error=("spec.servers[0].port.name", "port name must be set"),
    ),
    Case(
        "bad protocol",
        gw(server(port={"name": "x", "number": 80, "protocol": "SMTP"})),
        error=("spec.servers[0].port.protocol", 'invalid protocol "SMTP"'),
    ),
    Case(
        "targetPort",
        gw(server(port={"name": "x", "number": 80, "protocol": "HTTP", "targetPort": 8080})),
        error=("spec.servers[0].port.targetPort", "targetPort has no impact on Gateways"),
    ),
    Case(
        "duplicate port names",
        gw(
            server(),
            server(
                hosts=["scooby.doo.com"], port={"name": "http", "number": 8080, "protocol": "HTTP"}
            ),
        ),
        error=(
            "spec.servers[1].port.name",
            "port names in servers must be unique: duplicate name http",
        ),
    ),
    Case(
        "*.*.bad host",
        gw(server(hosts=["*.*.bad"])),
        error=("spec.servers[0].hosts[0]", 'domain name "*.bad" invalid'),
    ),
    Case("ns/host", gw(server(hosts=["shop/foo.bar.com", "*/*.bar.com", "./x.bar.com"]))),
    Case(
        "short host",
        gw(server(hosts=["shop/foo"])),
        error=("spec.servers[0].hosts[0]", "short names (non FQDN) are not allowed"),
    ),
    Case(
        "bad namespace",
        gw(server(hosts=["Bad_NS/foo.bar.com"])),
        error=("spec.servers[0].hosts[0]", 'invalid namespace value "Bad_NS" in gateway'),
    ),
    Case(
        "~ namespace",
        gw(server(hosts=["~/foo.bar.com"])),
        error=("spec.servers[0].hosts[0]", "invalid namespace value"),
    ),
    Case(
        "partial wildcard",
        gw(server(hosts=["*bar.com"])),
        error=("spec.servers[0].hosts[0]", 'partial wildcard "*bar.com" not allowed'),
    ),
    Case("ip host", gw(server(hosts=["10.0.0.1"]))),
    Case(
        "https without tls",
        gw(https()),
        error=("spec.servers[0]", "server must have TLS settings for HTTPS/TLS protocols"),
    ),
    Case("https with a credential", gw(https({"mode": "SIMPLE", "credentialName": "cert"}))),
    Case("https redirect on http", gw(server(tls={"httpsRedirect": True}))),
    Case(
        "simple tls on http",
        gw(server(tls={"mode": "SIMPLE", "credentialName": "c"})),
        error=("spec.servers[0].tls", "server cannot have TLS settings for plain text HTTP ports"),
    ),
    Case(
        "tls on tcp",
        gw(
            server(port={"name": "tcp", "number": 31400, "protocol": "TCP"}, tls={"mode": "SIMPLE"})
        ),
        error=("spec.servers[0].tls", "server cannot have TLS settings for non HTTPS/TLS ports"),
    ),
    Case(
        "https redirect on https",
        gw(https({"httpsRedirect": True})),
        warning=(
            "spec.servers[0].tls.httpsRedirect",
            "tls.httpsRedirect should only be used with http servers",
        ),
    ),
    Case(
        "simple without certificates",
        gw(https({"mode": "SIMPLE"})),
        error=("spec.servers[0].tls", "SIMPLE TLS requires a server certificate"),
    ),
    Case(
        "mutual without CA",
        gw(https({"mode": "MUTUAL", "serverCertificate": "/c", "privateKey": "/k"})),
        error=("spec.servers[0].tls.caCertificates", "MUTUAL TLS requires a client CA bundle"),
    ),
    Case(
        "istio mutual with a key",
        gw(https({"mode": "ISTIO_MUTUAL", "privateKey": "/k"})),
        error=(
            "spec.servers[0].tls.privateKey",
            "ISTIO_MUTUAL TLS cannot have associated private key",
        ),
    ),
    Case(
        "two certificate sources",
        gw(
            https(
                {
                    "mode": "SIMPLE",
                    "credentialName": "c",
                    "serverCertificate": "/c",
                    "privateKey": "/k",
                }
            )
        ),
        error=(
            "spec.servers[0].tls",
            "only one of credential_name, credential_names, "
            "server_certificate/private_key, tls_certificates should be specified",
        ),
    ),
    Case(
        "crl with simple",
        gw(
            https(
                {"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k", "caCrl": "/crl"}
            )
        ),
        error=("spec.servers[0].tls.caCrl", "CRL is not supported with SIMPLE TLS"),
    ),
    Case(
        "passthrough with certificates",
        gw(https({"mode": "PASSTHROUGH", "serverCertificate": "/c"})),
        warning=(
            "spec.servers[0].tls",
            "PASSTHROUGH mode does not use certificates, they will be ignored",
        ),
    ),
    Case(
        "old tls without ciphers",
        gw(https({"mode": "SIMPLE", "credentialName": "c", "minProtocolVersion": "TLSV1_0"})),
        warning=(
            "spec.servers[0].tls.minProtocolVersion",
            "TLS version below TLSV1_2 require setting compatible ciphers",
        ),
    ),
    Case(
        "unknown and repeated ciphers",
        gw(
            https(
                {
                    "mode": "SIMPLE",
                    "credentialName": "c",
                    "cipherSuites": ["FOO", "AES128-SHA", "AES128-SHA", "-AES256-SHA"],
                }
            )
        ),
        warning=("spec.servers[0].tls.cipherSuites", "ignoring invalid cipher suites: [FOO]"),
    ),
    Case(
        "unix bind with a port",
        gw(server(bind="unix:///var/run/gw.sock")),
        error=("spec.servers[0].port.number", "port number must be 0 for unix domain socket"),
    ),
    Case(
        "bind not an IP",
        gw(server(bind="localhost")),
        error=("spec.servers[0].bind", "localhost is not a valid IP"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gateway_verdicts(case: Case) -> None:
    check_case("Gateway", case)
