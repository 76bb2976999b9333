"""Gateway: servers, ports, binds, hosts and server TLS settings."""

from __future__ import annotations

from typing import Any

from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import Report, flag, items, number, obj, text

_CIPHERS = frozenset(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
    )
)


def check_gateway(report: Report, spec: dict[str, Any]) -> None:
    name = report.context.name
    semantics = report.context.annotations.get("internal.istio.io/gateway-semantics") == "gateway"
    if not p.is_label(name) and not semantics:
        report.error("metadata.name", f"invalid gateway name: {p.go_quote(name)}")
    servers = items(spec, "servers")
    if not servers:
        report.error("spec.servers", "gateway must have at least one server")
    for i, server in enumerate(servers):
        if isinstance(server, dict):
            _server(report, f"spec.servers[{i}]", server)
    names: set[str] = set()
    for i, server in enumerate(servers):
        if not isinstance(server, dict):
            report.error(f"spec.servers[{i}]", "server may not be nil")
            continue
        port = obj(server, "port")
        if port is None:
            continue
        port_name = text(port, "name")
        if port_name in names:
            report.error(
                f"spec.servers[{i}].port.name",
                f"port names in servers must be unique: duplicate name {p.clip(port_name)}",
            )
        names.add(port_name)
        if not p.is_http(text(port, "protocol")) and flag(obj(server, "tls"), "httpsRedirect"):
            report.warn(
                f"spec.servers[{i}].tls.httpsRedirect",
                "tls.httpsRedirect should only be used with http servers",
            )


def _server(report: Report, path: str, server: dict[str, Any]) -> None:
    hosts = items(server, "hosts")
    if not hosts:
        report.error(f"{path}.hosts", "server config must contain at least one host")
    for i, host in enumerate(hosts):
        if isinstance(host, str):
            for problem in p.namespace_host_problems(host, is_gateway=True):
                report.error(f"{path}.hosts[{i}]", problem)
    port, bind, tls = obj(server, "port"), text(server, "bind"), obj(server, "tls")
    port_ok = _server_port(report, f"{path}.port", port, bind)
    if bind.startswith(p.UNIX_PREFIX):
        report.add(f"{path}.bind", p.unix_address_problem(bind.removeprefix(p.UNIX_PREFIX)))
        if port is not None and number(port, "number") != 0:
            report.error(
                f"{path}.port.number",
                f"port number must be 0 for unix domain socket: {_show_port(port)}",
            )
    elif bind:
        report.add(f"{path}.bind", p.ip_problem(bind))
    server_tls(report, f"{path}.tls", tls)
    if port_ok and port is not None:
        protocol = text(port, "protocol")
        if p.is_tls(protocol) and tls is None:
            report.error(path, "server must have TLS settings for HTTPS/TLS protocols")
        elif not p.is_tls(protocol) and tls is not None:
            if p.is_http(protocol):
                passthrough = (text(tls, "mode") or "PASSTHROUGH") == "PASSTHROUGH"
                if not passthrough or any(
                    text(tls, f) for f in ("caCertificates", "privateKey", "serverCertificate")
                ):
                    report.error(
                        f"{path}.tls", "server cannot have TLS settings for plain text HTTP ports"
                    )
            else:
                report.error(
                    f"{path}.tls", "server cannot have TLS settings for non HTTPS/TLS ports"
                )


def _show_port(port: dict[str, Any]) -> str:
    parts = [f"number:{number(port, 'number')}"]
    if text(port, "protocol"):
        parts.append(f"protocol:{p.go_quote(text(port, 'protocol'))}")
    if text(port, "name"):
        parts.append(f"name:{p.go_quote(text(port, 'name'))}")
    return " ".join(parts)


def _server_port(report: Report, path: str, port: dict[str, Any] | None, bind: str) -> bool:
    """Report what is wrong with a server's port; True when nothing is."""
    if port is None:
        report.error(path, "port is required")
        return False
    before = len(report.findings)
    if not p.protocol(text(port, "protocol")):
        report.error(
            f"{path}.protocol",
            f"invalid protocol {p.go_quote(text(port, 'protocol'))}, supported protocols are HTTP, "
            "HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP",
        )
    if number(port, "number") > 0 or not bind.startswith(p.UNIX_PREFIX):
        report.add(f"{path}.number", p.port_problem(number(port, "number")))
    if number(port, "targetPort") > 0:
        report.error(f"{path}.targetPort", "targetPort has no impact on Gateways")
    if not text(port, "name"):
        report.error(f"{path}.name", f"port name must be set: {_show_port(port)}")
    return len(report.findings) == before


def server_tls(report: Report, path: str, tls: dict[str, Any] | None) -> None:
    if tls is None:
        return
    mode = text(tls, "mode") or "PASSTHROUGH"
    ciphers = [c for c in items(tls, "cipherSuites") if isinstance(c, str)]
    if text(tls, "minProtocolVersion") in ("TLSV1_0", "TLSV1_1") and not ciphers:
        report.warn(
            f"{path}.minProtocolVersion",
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no "
            "longer include compatible ciphers.",
        )
    invalid, valid, duplicate = set(), set(), set()
    for cipher in ciphers:
        if not _valid_cipher(cipher):
            invalid.add(cipher)
        elif cipher in valid:
            duplicate.add(cipher)
        else:
            valid.add(cipher)
    if invalid:
        report.warn(
            f"{path}.cipherSuites", f"ignoring invalid cipher suites: [{' '.join(sorted(invalid))}]"
        )
    if duplicate:
        report.warn(
            f"{path}.cipherSuites",
            f"ignoring duplicate cipher suites: [{' '.join(sorted(duplicate))}]",
        )
    cert, key, ca = (
        text(tls, "serverCertificate"),
        text(tls, "privateKey"),
        text(tls, "caCertificates"),
    )
    certificates = items(tls, "tlsCertificates")
    credential, credentials = text(tls, "credentialName"), items(tls, "credentialNames")
    if mode == "ISTIO_MUTUAL":
        for present, what, field in (
            (cert, "server certificate", "serverCertificate"),
            (key, "private key", "privateKey"),
            (ca, "CA bundle", "caCertificates"),
            (certificates, "tlsCertificates", "tlsCertificates"),
            (credential, "credentialName", "credentialName"),
            (credentials, "credentialNames", "credentialNames"),
        ):
            if present:
                report.error(f"{path}.{field}", f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (
        text(tls, "caCrl") or cert or key or ca or certificates or credential or credentials
    ):
        report.warn(path, f"{mode} mode does not use certificates, they will be ignored")
    sources = sum((bool(cert and key), bool(credential), bool(credentials), bool(certificates)))
    if sources > 1:
        report.error(
            path,
            "only one of credential_name, credential_names, server_certificate/private_key, "
            "tls_certificates should be specified",
        )
    mutual = mode in ("MUTUAL", "OPTIONAL_MUTUAL")
    if (mode == "SIMPLE" or mutual) and (credential or credentials):
        return
    if mode == "SIMPLE" or mutual:
        prefix = "MUTUAL TLS" if mutual else "SIMPLE TLS"
        if mutual and not ca:
            report.error(f"{path}.caCertificates", f"{prefix} requires a client CA bundle")
        if len(certificates) > 2:
            report.warn(
                f"{path}.tlsCertificates", f"{prefix} can support up to 2 server certificates"
            )
        pairs: list[tuple[str, Any]] = (
            [(f"{path}.tlsCertificates[{i}]", c) for i, c in enumerate(certificates)]
            if certificates
            else [(path, {"serverCertificate": cert, "privateKey": key})]
        )
        for where, pair in pairs:
            if not text(pair, "serverCertificate"):
                report.error(where, f"{prefix} requires a server certificate")
            if not text(pair, "privateKey"):
                report.error(where, f"{prefix} requires a private key")
    if text(tls, "caCrl"):
        if credential:
            report.error(
                f"{path}.caCrl",
                "CRL is not supported with credentialName. CRL has to be specified in the "
                "credential",
            )
        if mode == "SIMPLE":
            report.error(f"{path}.caCrl", "CRL is not supported with SIMPLE TLS")


def _valid_cipher(cipher: str) -> bool:
    if cipher in ("", "ALL"):
        return True
    if not cipher[0].isalnum():  # an exclusion such as "-AES128-SHA" or "!aNULL"
        return True
    return cipher in _CIPHERS
