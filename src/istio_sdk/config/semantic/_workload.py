"""WorkloadEntry and WorkloadGroup (a WorkloadEntry's rules also check ServiceEntry endpoints)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import Report, items, join_key, mapping, number, obj, text


def check_workload_entry(report: Report, spec: dict[str, Any]) -> None:
    workload_entry(report, "spec", spec, None, allow_fqdn=True)


def workload_entry(
    report: Report,
    path: str,
    entry: dict[str, Any],
    service_ports: Collection[str] | None,
    *,
    allow_fqdn: bool,
) -> None:
    address = text(entry, "address")
    if not address:
        if not text(entry, "network"):
            report.error(f"{path}.address", "address is required")
            return
        report.warn(
            f"{path}.address", f"address is unset with network {p.go_quote(text(entry, 'network'))}"
        )
    unix = address.startswith(p.UNIX_PREFIX)
    ports = mapping(entry, "ports")
    if unix:
        report.add(f"{path}.address", p.unix_address_problem(address.removeprefix(p.UNIX_PREFIX)))
        if ports:
            report.error(f"{path}.ports", f"unix endpoint {p.clip(address)} must not include ports")
    elif address and not p.is_ip(address):
        if not allow_fqdn:
            report.error(
                f"{path}.address",
                f"endpoint address {p.go_quote(address)} is not a valid IP address",
            )
        elif p.fqdn_problem(address):
            report.error(
                f"{path}.address",
                f"endpoint address {p.go_quote(address)} is not a valid FQDN or an IP address",
            )
    for name, value in ports.items():
        here = join_key(f"{path}.ports", name)
        port = value if isinstance(value, int) else 0
        if service_ports is not None and name not in service_ports:
            report.error(here, f"endpoint port {port} is not defined by the service entry")
        report.add(here, p.port_name_problem(name))
        report.add(here, p.port_problem(port))
    for problem in p.labels_problems(mapping(entry, "labels")):
        report.error(f"{path}.labels", problem)
    if unix and service_ports is not None and len(service_ports) != 1:
        report.error(path, "exactly 1 service port required for unix endpoints")


def check_workload_group(report: Report, spec: dict[str, Any]) -> None:
    if obj(spec, "template") is None:
        report.error("spec.template", "template is required")
        return
    problems = p.labels_problems(mapping(obj(spec, "metadata"), "labels"))
    if problems:
        report.error("spec.metadata.labels", f"invalid labels: {'; '.join(problems)}")
        return
    _probe(report, "spec.probe", obj(spec, "probe"))


def _probe(report: Report, path: str, probe: dict[str, Any] | None) -> None:
    if probe is None:
        return
    for field in (
        "periodSeconds",
        "initialDelaySeconds",
        "timeoutSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        if number(probe, field) < 0:
            report.error(f"{path}.{field}", f"{field} must be non-negative")
    http, tcp, command = obj(probe, "httpGet"), obj(probe, "tcpSocket"), obj(probe, "exec")
    if http is not None:
        report.add(f"{path}.httpGet.port", p.port_problem(number(http, "port")))
        scheme = text(http, "scheme")
        if scheme and scheme not in ("HTTP", "HTTPS"):
            report.error(f"{path}.httpGet.scheme", 'httpGet.scheme must be one of "HTTPS", "HTTP"')
        for i, header in enumerate(items(http, "httpHeaders")):
            report.add(
                f"{path}.httpGet.httpHeaders[{i}].name",
                p.probe_header_problem(text(header, "name")),
            )
    elif tcp is not None:
        report.add(f"{path}.tcpSocket.port", p.port_problem(number(tcp, "port")))
    elif command is not None:
        if not items(command, "command"):
            report.error(f"{path}.exec.command", "exec.command is required")
    else:
        report.error(path, "unknown health check method <nil>")
