"""Sidecar: ingress and egress listeners, their ports, binds, hosts and capture modes."""

from __future__ import annotations

from typing import Any

from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._destinationrule import connection_pool
from istio_sdk.config.semantic._gateway import server_tls
from istio_sdk.config.semantic._report import Report, flag, has, items, number, obj, text
from istio_sdk.config.semantic._serviceentry import alpha_selector
from istio_sdk.config.semantic._virtualservice import destination

_LOCAL_HOSTS = ("127.0.0.1", "0.0.0.0", "::1", "::")


def check_sidecar(report: Report, spec: dict[str, Any]) -> None:
    if not alpha_selector(
        report,
        "spec.workloadSelector",
        obj(spec, "workloadSelector"),
        "sidecar: {}, will be applied to all services in namespace",
    ):
        return
    if not any(
        has(spec, f)
        for f in ("egress", "ingress", "outboundTrafficPolicy", "inboundConnectionPool")
    ):
        report.error("spec", "sidecar: empty configuration provided")
        return
    ports: set[int] = set()
    for i, listener in enumerate(items(spec, "ingress")):
        _ingress(report, f"spec.ingress[{i}]", listener, ports)
    connection_pool(report, "spec.inboundConnectionPool", obj(spec, "inboundConnectionPool"))
    ports = set()
    sockets: set[str] = set()
    egress = items(spec, "egress")
    catch_all = False
    for i, listener in enumerate(egress):
        where = f"spec.egress[{i}]"
        if not isinstance(listener, dict):
            report.error(where, "egress listener may not be null")
            continue
        port = obj(listener, "port")
        if port is None:
            if catch_all:
                report.error(where, "sidecar: egress can have only one listener with empty port")
                continue
            if i == len(egress) - 1:
                catch_all = True
            else:
                report.error(
                    where,
                    "sidecar: the egress listener with empty port should be the last listener in "
                    "the list",
                )
        else:
            if number(port, "targetPort") > 0:
                report.error(f"{where}.port.targetPort", "targetPort has no impact on Sidecars")
            bind = text(listener, "bind")
            _egress_port(report, where, port, bind, text(listener, "captureMode") or "DEFAULT")
            if number(port, "number") == 0:
                if bind in sockets:
                    report.error(
                        f"{where}.bind",
                        "sidecar: unix domain socket values for listeners must be unique",
                    )
                sockets.add(bind)
            else:
                if number(port, "number") in ports:
                    report.error(
                        f"{where}.port.number",
                        "sidecar: ports on IP bound listeners must be unique",
                    )
                ports.add(number(port, "number"))
        _egress_hosts(report, where, [h for h in items(listener, "hosts") if isinstance(h, str)])
    _outbound_policy(report, "spec.outboundTrafficPolicy", obj(spec, "outboundTrafficPolicy"))


def _ingress(report: Report, where: str, listener: Any, ports: set[int]) -> None:
    if not isinstance(listener, dict):
        report.error(where, "sidecar: ingress may not be null")
        return
    port = obj(listener, "port")
    if port is None:
        report.error(f"{where}.port", "sidecar: port is required for ingress listeners")
        return
    if number(port, "targetPort") > 0:
        report.error(f"{where}.port.targetPort", "targetPort has no impact on Sidecars")
    if text(port, "name"):
        report.add(f"{where}.port.name", p.port_name_problem(text(port, "name")))
    report.add(f"{where}.port.protocol", p.protocol_problem(text(port, "protocol")))
    report.add(f"{where}.port.number", p.port_problem(number(port, "number")))
    if text(listener, "bind"):
        report.add(f"{where}.bind", p.ip_problem(text(listener, "bind")))
    if number(port, "number") in ports:
        report.error(f"{where}.port.number", "sidecar: ports on IP bound listeners must be unique")
    ports.add(number(port, "number"))
    endpoint = text(listener, "defaultEndpoint")
    if endpoint:
        _default_endpoint(report, f"{where}.defaultEndpoint", endpoint)
    tls = obj(listener, "tls")
    if tls is not None:
        here = f"{where}.tls"
        if items(tls, "subjectAltNames"):
            report.error(here, "sidecar: subjectAltNames is not supported in ingress tls")
        if flag(tls, "httpsRedirect"):
            report.error(here, "sidecar: httpsRedirect is not supported")
        if text(tls, "credentialName"):
            report.error(here, "sidecar: credentialName is not currently supported")
        if items(tls, "credentialNames"):
            report.error(here, "sidecar: credentialNames is not currently supported")
        if items(tls, "tlsCertificates"):
            report.error(here, "sidecar: tls_certificates is not currently supported")
        mode = text(tls, "mode") or "PASSTHROUGH"
        if mode in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
            report.error(
                f"{here}.mode",
                f"configuration is invalid: cannot set mode to {mode} in sidecar ingress tls",
            )
        if not p.is_tls(text(port, "protocol")):
            report.error(here, "server cannot have TLS settings for non HTTPS/TLS ports")
        server_tls(report, here, tls)
    pool = obj(listener, "connectionPool")
    connection_pool(report, f"{where}.connectionPool", pool)
    if pool is not None and obj(pool, "http") is not None and not p.is_http(text(port, "protocol")):
        report.warn(
            f"{where}.connectionPool.http",
            f"sidecar: HTTP connection pool settings are configured for port "
            f"{number(port, 'number')} ({p.go_quote(text(port, 'name'))}) but its protocol is not "
            f"HTTP ({text(port, 'protocol')}); only TCP settings will apply",
        )


def _default_endpoint(report: Report, path: str, endpoint: str) -> None:
    if endpoint.startswith(p.UNIX_PREFIX):
        report.add(path, p.unix_address_problem(endpoint.removeprefix(p.UNIX_PREFIX)))
        return
    host, port, problem = _split_host_port(endpoint)
    if problem:
        report.error(path, problem)
    if host and host not in _LOCAL_HOSTS:
        report.error(
            path,
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,"
            "[::]:port,unix://filepath or unset",
        )
    if port.isdigit() and len(port) < 12:
        report.add(path, p.port_problem(int(port)))
    else:
        report.error(
            path,
            f"sidecar: defaultEndpoint port ({p.clip(port)}) is not a number: strconv.Atoi: "
            f"parsing {p.go_quote(port)}: "
            f"{'value out of range' if port.isdigit() else 'invalid syntax'}",
        )


def _split_host_port(address: str) -> tuple[str, str, str | None]:
    """Go's ``net.SplitHostPort`` for the cases a defaultEndpoint meets."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            return "", "", f"address {address}: missing ']' in address"
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            return "", "", f"address {address}: missing port in address"
        return host, rest[1:], None
    host, colon, port = address.rpartition(":")
    if not colon:
        return "", "", f"address {address}: missing port in address"
    if ":" in host:
        return "", "", f"address {address}: too many colons in address"
    return host, port, None


def _egress_port(report: Report, where: str, port: dict[str, Any], bind: str, capture: str) -> None:
    if text(port, "name"):
        report.add(f"{where}.port.name", p.port_name_problem(text(port, "name")))
    report.add(f"{where}.port.protocol", p.protocol_problem(text(port, "protocol")))
    if number(port, "number") == 0:
        if not bind.startswith(p.UNIX_PREFIX):
            report.error(
                f"{where}.bind",
                "sidecar: ports with 0 value must have a unix domain socket bind address",
            )
        else:
            report.add(f"{where}.bind", p.unix_address_problem(bind.removeprefix(p.UNIX_PREFIX)))
        if capture not in ("DEFAULT", "NONE"):
            report.error(
                f"{where}.captureMode",
                "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
            )
    else:
        report.add(f"{where}.port.number", p.port_problem(number(port, "number")))
        if bind:
            report.add(f"{where}.bind", p.ip_problem(bind))


def _egress_hosts(report: Report, where: str, hosts: list[str]) -> None:
    if not hosts:
        report.error(f"{where}.hosts", "sidecar: egress listener must contain at least one host")
        return
    seen: dict[str, dict[str, bool]] = {}
    for i, host in enumerate(hosts):
        here = f"{where}.hosts[{i}]"
        namespace, slash, name = host.partition("/")
        if slash and not namespace.startswith("~"):
            if namespace == ".":
                namespace = report.context.namespace
            names = seen.setdefault(namespace, {})
            if (name != "*" and (name in names or names.get("*"))) or (name == "*" and names):
                report.warn(here, f"duplicated egress host: {p.clip(host)}")
            names[name] = True
        for problem in p.namespace_host_problems(host, is_gateway=False):
            report.error(here, problem)
    if seen.get("*", {}).get("*") and len(seen) != 1:
        report.warn(
            f"{where}.hosts", "`*/*` host select all resources, no other hosts can be added"
        )


def _outbound_policy(report: Report, path: str, policy: dict[str, Any] | None) -> None:
    if policy is None:
        return
    mode = policy.get("mode", "REGISTRY_ONLY")
    if mode == "ALLOW_ANY_DYNAMIC_DNS" or mode == 2:  # noqa: PLR1714  (a name or a bare number)
        report.error(
            f"{path}.mode",
            "sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not in Sidecar "
            "resource",
        )
        return
    proxy = obj(policy, "egressProxy")
    if proxy is not None:
        if mode != "ALLOW_ANY":
            report.error(
                f"{path}.egressProxy",
                "sidecar: egress_proxy must be set only with ALLOW_ANY "
                "outbound_traffic_policy mode",
            )
            return
        report.add(f"{path}.egressProxy.host", p.fqdn_problem(text(proxy, "host")))
        if obj(proxy, "port") is None:
            report.error(f"{path}.egressProxy.port", "sidecar: egress_proxy port must be non-nil")
            return
        destination(report, f"{path}.egressProxy", proxy)
