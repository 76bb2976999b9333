"""ServiceEntry: hosts, addresses, ports, resolution against endpoints, workload selector."""

from __future__ import annotations

from typing import Any

from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import Report, items, join_key, mapping, number, obj, text
from istio_sdk.config.semantic._workload import workload_entry


def alpha_selector(
    report: Report, path: str, selector: dict[str, Any] | None, warning: str
) -> bool:
    """A networking ``{labels: ...}`` selector; False when it has errors (Istio stops there).

    ``warning`` is the text around "workload selector specified without labels".
    """
    if selector is None:
        return True
    labels = mapping(selector, "labels")
    before = len(report.findings)
    p.selector_labels(report, f"{path}.labels", labels)
    if len(report.findings) != before:
        return False
    if not labels:
        report.warn(path, warning.format("workload selector specified without labels"))
    return True


def check_service_entry(report: Report, spec: dict[str, Any]) -> None:
    selector = obj(spec, "workloadSelector")
    if not alpha_selector(
        report,
        "spec.workloadSelector",
        selector,
        "service entry: {}, will be applied to all services in namespace",
    ):
        return
    endpoints = items(spec, "endpoints")
    resolution = text(spec, "resolution") or "NONE"
    hosts = [h for h in items(spec, "hosts") if isinstance(h, str)]
    addresses = [a for a in items(spec, "addresses") if isinstance(a, str)]
    ports = items(spec, "ports")
    if selector is not None and endpoints:
        report.error(
            "spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry"
        )
    if not hosts:
        report.error("spec.hosts", "service entry must have at least one host")
    for i, host in enumerate(hosts):
        where = f"spec.hosts[{i}]"
        if host == "*":
            report.error(where, f"invalid host {host}")
            continue
        report.add(where, p.wildcard_domain_problem(host))
        if resolution != "DYNAMIC_DNS":
            partial = p.partial_wildcard_problem(host)
            if partial:
                report.warn(where, partial)
    cidr = False
    for i, address in enumerate(addresses):
        cidr = cidr or "/" in address
        report.add(f"spec.addresses[{i}]", p.subnet_problem(address))
    if cidr and resolution not in ("NONE", "STATIC"):
        report.error(
            "spec.addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types"
        )
    auto_allocate = (
        resolution != "NONE"
        and report.context.labels.get("networking.istio.io/enable-autoallocate-ip", "").lower()
        != "false"
        and not addresses
    )
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(ports):
        where = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            report.error(where, "service entry port may not be null")
            continue
        name, num, protocol = text(port, "name"), number(port, "number"), text(port, "protocol")
        if name in names:
            report.error(
                f"{where}.name", f"service entry port name {p.go_quote(name)} already defined"
            )
        names.add(name)
        if num in numbers:
            report.error(f"{where}.number", f"service entry port {num} already defined")
        numbers.add(num)
        if number(port, "targetPort"):
            report.add(f"{where}.targetPort", p.port_problem(number(port, "targetPort")))
        if not addresses and not auto_allocate and protocol in ("", "TCP"):
            report.warn(
                where,
                "addresses are required for ports serving TCP (or unset) protocol when IP "
                "Autoallocation is not enabled",
            )
        report.add(f"{where}.name", p.port_name_problem(name))
        report.add(f"{where}.protocol", p.protocol_problem(protocol))
        report.add(f"{where}.number", p.port_problem(num))
    if resolution == "NONE":
        if endpoints:
            report.error(
                "spec.endpoints", "no endpoints should be provided for resolution type none"
            )
        if selector is not None:
            report.warn(
                "spec.workloadSelector",
                "workloadSelector should not be set when resolution mode is NONE",
            )
    elif resolution == "STATIC":
        for i, endpoint in enumerate(endpoints):
            if not isinstance(endpoint, dict):
                report.error(f"spec.endpoints[{i}]", "endpoint cannot be nil")
                continue
            workload_entry(report, f"spec.endpoints[{i}]", endpoint, names, allow_fqdn=False)
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        _dns(report, resolution, hosts, endpoints, names, ports, addresses)
    elif resolution == "DYNAMIC_DNS":
        _dynamic_dns(report, spec, hosts, addresses, endpoints, ports)
    if resolution != "NONE" and len(hosts) > 1:
        for i, port in enumerate(ports):
            if not isinstance(port, dict):
                continue
            protocol = text(port, "protocol")
            if not p.is_http(protocol) and not p.is_tls(protocol):
                report.error(
                    f"spec.ports[{i}]", "multiple hosts provided with non-HTTP, non-TLS ports"
                )
                break
    p.export_to(
        report,
        "spec.exportTo",
        report.context.namespace,
        items(spec, "exportTo"),
        service_entry=True,
    )


def _dns(  # noqa: PLR0917
    report: Report,
    resolution: str,
    hosts: list[str],
    endpoints: list[Any],
    names: set[str],
    ports: list[Any],
    addresses: list[str],
) -> None:
    if not endpoints:
        for i, host in enumerate(hosts):
            problem = p.fqdn_problem(host)
            if problem:
                report.error(
                    f"spec.hosts[{i}]",
                    "hosts must be FQDN or contain only prefix wildcards if no endpoints are "
                    f"provided for resolution mode {resolution}, {problem}",
                )
                break
    if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
        report.error(
            "spec.endpoints", f"there must only be 0 or 1 endpoint for resolution mode {resolution}"
        )
    for i, endpoint in enumerate(endpoints):
        where = f"spec.endpoints[{i}]"
        if not isinstance(endpoint, dict):
            report.error(where, "endpoint cannot be nil")
            continue
        address = text(endpoint, "address")
        if not p.is_ip(address) and p.fqdn_problem(address):
            report.error(
                f"{where}.address",
                f"endpoint address {p.go_quote(address)} is not a valid FQDN or an IP address",
            )
        for problem in p.labels_problems(mapping(endpoint, "labels")):
            report.error(f"{where}.labels", problem)
        for name, value in mapping(endpoint, "ports").items():
            here = join_key(f"{where}.ports", name)
            port = value if isinstance(value, int) else 0
            if name not in names:
                report.error(here, f"endpoint port {port} is not defined by the service entry")
            report.add(here, p.port_name_problem(name))
            report.add(here, p.port_problem(port))
    if addresses:
        for port in ports:
            if isinstance(port, dict) and p.is_tcp(text(port, "protocol")):
                if len(hosts) > 1:
                    report.warn(
                        "spec.hosts",
                        "service entry can not have more than one host specified simultaneously "
                        "with address and tcp port",
                    )
                break


def _dynamic_dns(  # noqa: PLR0917
    report: Report,
    spec: dict[str, Any],
    hosts: list[str],
    addresses: list[str],
    endpoints: list[Any],
    ports: list[Any],
) -> None:
    kind = "DYNAMIC_DNS"
    if not hosts:
        report.error(
            "spec.hosts", f"at least one wildcard host must be provided for resolution type {kind}"
        )
    for i, host in enumerate(hosts):
        if not host.startswith("*"):
            report.error(f"spec.hosts[{i}]", f"host must be wildcarded for resolution mode {kind}")
    if addresses:
        report.error(
            "spec.addresses",
            f"addresses cannot be set for resolution type {kind}. HTTP route domains will only be "
            "generatedfrom the hosts field values",
        )
    if endpoints:
        report.error(
            "spec.endpoints",
            f"endpoints cannot be set for resolution type {kind}. Destination IP address "
            "determined from hostsfield values",
        )
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        if p.protocol(text(port, "protocol")) not in ("HTTP", "TLS", "GRPC", "HTTP2"):
            report.error(
                f"spec.ports[{i}].protocol",
                "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution "
                f"type {kind}",
            )
    location = text(spec, "location") or "MESH_EXTERNAL"
    if location not in ("MESH_EXTERNAL", "MESH_INTERNAL"):
        report.error(
            "spec.location",
            f"location must be MESH_EXTERNAL or MESH_INTERNAL for resolution type {kind}",
        )
    waypoint = report.context.labels.get("istio.io/use-waypoint", "")
    if location == "MESH_INTERNAL" and waypoint and waypoint.lower() != "none":
        report.error(
            "spec.location",
            f"location MESH_INTERNAL with resolution type {kind} is not supported when "
            "using waypoints",
        )
