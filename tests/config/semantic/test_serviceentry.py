"""ServiceEntry, WorkloadEntry and WorkloadGroup verdicts from Istio's validation tests."""

from __future__ import annotations

from typing import Any

import pytest
from support.semantic import Case, check_case

HTTP = {"number": 80, "protocol": "HTTP", "name": "http"}
TCP = {"number": 5000, "protocol": "TCP", "name": "tcp"}


def se(**extra: Any) -> dict[str, Any]:
    return {"hosts": ["api.example.com"], "ports": [HTTP], "resolution": "DNS", **extra}


SERVICE_ENTRY = [
    Case("dns", se()),
    Case(
        "no hosts", se(hosts=[]), error=("spec.hosts", "service entry must have at least one host")
    ),
    Case("host *", se(hosts=["*"]), error=("spec.hosts[0]", "invalid host *")),
    Case(
        "*.*.bad host",
        se(hosts=["*.*.bad"]),
        error=("spec.hosts[0]", 'domain name "*.bad" invalid'),
    ),
    Case(
        "partial wildcard",
        se(hosts=["*api.example.com"], resolution="NONE", addresses=["10.0.0.1"]),
        warning=("spec.hosts[0]", 'partial wildcard "*api.example.com" not allowed'),
    ),
    Case(
        "bad address",
        se(addresses=["10.0.0.256"]),
        error=("spec.addresses[0]", "10.0.0.256 is not a valid IP"),
    ),
    Case(
        "cidr with dns",
        se(addresses=["10.0.0.0/24"]),
        error=(
            "spec.addresses",
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        ),
    ),
    Case("cidr with none", se(addresses=["10.0.0.0/24"], resolution="NONE")),
    Case(
        "duplicate port numbers",
        se(ports=[HTTP, {"number": 80, "protocol": "HTTP", "name": "http2"}]),
        error=("spec.ports[1].number", "service entry port 80 already defined"),
    ),
    Case(
        "duplicate port names",
        se(ports=[HTTP, {"number": 81, "protocol": "HTTP", "name": "http"}]),
        error=("spec.ports[1].name", 'service entry port name "http" already defined'),
    ),
    Case(
        "port 99999",
        se(ports=[{"number": 99999, "protocol": "HTTP", "name": "http"}]),
        error=("spec.ports[0].number", "port number 99999 must be in the range 1..65535"),
    ),
    Case(
        "bad protocol",
        se(ports=[{"number": 80, "protocol": "SMTP", "name": "smtp"}]),
        error=("spec.ports[0].protocol", "unsupported protocol: SMTP"),
    ),
    Case(
        "tcp without addresses and no auto-allocation",
        se(ports=[TCP], resolution="NONE"),
        warning=(
            "spec.ports[0]",
            "addresses are required for ports serving TCP (or unset) "
            "protocol when IP Autoallocation is not enabled",
        ),
    ),
    Case(
        "none with endpoints",
        se(resolution="NONE", addresses=["10.0.0.1"], endpoints=[{"address": "10.0.0.2"}]),
        error=("spec.endpoints", "no endpoints should be provided for resolution type none"),
    ),
    Case(
        "selector and endpoints",
        se(
            resolution="STATIC",
            workloadSelector={"labels": {"app": "a"}},
            endpoints=[{"address": "10.0.0.2"}],
        ),
        error=("spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry"),
    ),
    Case(
        "static",
        se(resolution="STATIC", endpoints=[{"address": "10.0.0.2", "ports": {"http": 8080}}]),
    ),
    Case(
        "static endpoint not an IP",
        se(resolution="STATIC", endpoints=[{"address": "api.internal"}]),
        error=(
            "spec.endpoints[0].address",
            'endpoint address "api.internal" is not a valid IP address',
        ),
    ),
    Case(
        "endpoint port the service lacks",
        se(resolution="STATIC", endpoints=[{"address": "10.0.0.2", "ports": {"grpc": 9090}}]),
        error=(
            "spec.endpoints[0].ports.grpc",
            "endpoint port 9090 is not defined by the service entry",
        ),
    ),
    Case(
        "dns wildcard host without endpoints",
        se(hosts=["*.example.com"]),
        error=(
            "spec.hosts[0]",
            "hosts must be FQDN or contain only prefix wildcards if no "
            "endpoints are provided for resolution mode DNS",
        ),
    ),
    Case(
        "dns round robin with two endpoints",
        se(
            resolution="DNS_ROUND_ROBIN",
            endpoints=[{"address": "a.example.com"}, {"address": "b.example.com"}],
        ),
        error=(
            "spec.endpoints",
            "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
        ),
    ),
    Case("dynamic dns", se(hosts=["*.example.com"], resolution="DYNAMIC_DNS")),
    Case(
        "dynamic dns plain host",
        se(resolution="DYNAMIC_DNS"),
        error=("spec.hosts[0]", "host must be wildcarded for resolution mode DYNAMIC_DNS"),
    ),
    Case(
        "two hosts on a tcp port",
        se(hosts=["a.example.com", "b.example.com"], ports=[TCP], addresses=["10.0.0.1"]),
        error=("spec.ports[0]", "multiple hosts provided with non-HTTP, non-TLS ports"),
    ),
    Case(
        "several hosts with an address and an https port",
        se(
            hosts=["httpbin.org", "wikipedia.org"],
            addresses=["10.10.10.10"],
            ports=[HTTP, {"number": 443, "protocol": "HTTPS", "name": "https"}],
        ),
        warning=(
            "spec.hosts",
            "service entry can not have more than one host specified simultaneously",
        ),
    ),
    Case(
        "dns with a unix endpoint",
        se(hosts=["*.google.com"], endpoints=[{"address": "unix:///lon/google/com"}]),
        error=(
            "spec.endpoints[0].address",
            'endpoint address "unix:///lon/google/com" is not a valid FQDN',
        ),
    ),
    Case(
        "static unix socket",
        se(
            hosts=["uds.cluster.local"],
            resolution="STATIC",
            endpoints=[{"address": "unix:///path/to/socket"}],
        ),
    ),
    Case(
        "static unix socket with two service ports",
        se(
            hosts=["uds.cluster.local"],
            resolution="STATIC",
            ports=[HTTP, TCP],
            addresses=["10.0.0.1"],
            endpoints=[{"address": "unix:///path/to/socket"}],
        ),
        error=("spec.endpoints[0]", "exactly 1 service port required for unix endpoints"),
    ),
    Case(
        "endpoint with a network and no address",
        se(resolution="STATIC", endpoints=[{"network": "cluster-1"}]),
        warning=("spec.endpoints[0].address", 'address is unset with network "cluster-1"'),
    ),
    Case(
        "selector with resolution NONE",
        se(resolution="NONE", workloadSelector={"labels": {"key": "bar"}}, addresses=["10.0.0.1"]),
        warning=(
            "spec.workloadSelector",
            "workloadSelector should not be set when resolution mode is NONE",
        ),
    ),
    Case(
        "target port 65536",
        se(ports=[{"number": 80, "protocol": "HTTP", "name": "http", "targetPort": 65536}]),
        error=("spec.ports[0].targetPort", "port number 65536 must be in the range 1..65535"),
    ),
    Case(
        "repeated target port",
        se(
            ports=[
                {"number": 80, "protocol": "HTTP", "name": "a", "targetPort": 80},
                {"number": 81, "protocol": "HTTP", "name": "b", "targetPort": 80},
            ]
        ),
    ),
    Case("exportTo ~", se(exportTo=["~"])),
    Case(
        "exportTo ~ and more",
        se(exportTo=["~", "."]),
        error=("spec.exportTo", "cannot export service entry to no one (~) and someone"),
    ),
    Case(
        "selector without labels",
        se(resolution="STATIC", workloadSelector={}),
        warning=(
            "spec.workloadSelector",
            "service entry: workload selector specified without labels, "
            "will be applied to all services in namespace",
        ),
    ),
    Case(
        "selector with a wildcard",
        se(resolution="STATIC", workloadSelector={"labels": {"app": "*"}}),
        error=(
            "spec.workloadSelector.labels.app",
            'wildcard is not supported in selector: "app=*"',
        ),
    ),
]

WORKLOAD_ENTRY = [
    Case("ip", {"address": "10.0.0.1", "ports": {"http": 8080}, "labels": {"app": "a"}}),
    Case("fqdn", {"address": "vm.example.com"}),
    Case("no address", {"labels": {"app": "a"}}, error=("spec.address", "address is required")),
    Case(
        "network only",
        {"network": "vm-net"},
        warning=("spec.address", 'address is unset with network "vm-net"'),
    ),
    Case(
        "unix with ports",
        {"address": "unix:///var/run/a.sock", "ports": {"http": 80}},
        error=("spec.ports", "unix endpoint unix:///var/run/a.sock must not include ports"),
    ),
    Case(
        "unix relative",
        {"address": "unix://a.sock"},
        error=("spec.address", "a.sock is not an absolute path to a file"),
    ),
    Case(
        "port name",
        {"address": "10.0.0.1", "ports": {"HTTP_1": 80}},
        error=("spec.ports.HTTP_1", "invalid port name: HTTP_1"),
    ),
    Case(
        "bad address",
        {"address": "not an address"},
        error=(
            "spec.address",
            'endpoint address "not an address" is not a valid FQDN or an IP address',
        ),
    ),
]

WORKLOAD_GROUP = [
    Case(
        "template",
        {
            "template": {"serviceAccount": "a"},
            "probe": {"httpGet": {"port": 8080, "path": "/ready"}},
        },
    ),
    Case(
        "no template",
        {"metadata": {"labels": {"app": "a"}}},
        error=("spec.template", "template is required"),
    ),
    Case(
        "probe scheme",
        {"template": {}, "probe": {"httpGet": {"port": 8080, "scheme": "FTP"}}},
        error=("spec.probe.httpGet.scheme", 'httpGet.scheme must be one of "HTTPS", "HTTP"'),
    ),
    Case(
        "probe header",
        {
            "template": {},
            "probe": {"httpGet": {"port": 80, "httpHeaders": [{"name": "x_y", "value": "1"}]}},
        },
        error=(
            "spec.probe.httpGet.httpHeaders[0].name",
            "header name x_y is not a valid header name",
        ),
    ),
    Case(
        "probe negative period",
        {"template": {}, "probe": {"periodSeconds": -1, "tcpSocket": {"port": 80}}},
        error=("spec.probe.periodSeconds", "periodSeconds must be non-negative"),
    ),
    Case(
        "probe without a method",
        {"template": {}, "probe": {"periodSeconds": 5}},
        error=("spec.probe", "unknown health check method"),
    ),
    Case(
        "exec without a command",
        {"template": {}, "probe": {"exec": {}}},
        error=("spec.probe.exec.command", "exec.command is required"),
    ),
]


@pytest.mark.parametrize("case", SERVICE_ENTRY, ids=lambda c: c.id)
def test_service_entry_verdicts(case: Case) -> None:
    check_case("ServiceEntry", case)


@pytest.mark.parametrize("case", WORKLOAD_ENTRY, ids=lambda c: c.id)
def test_workload_entry_verdicts(case: Case) -> None:
    check_case("WorkloadEntry", case)


@pytest.mark.parametrize("case", WORKLOAD_GROUP, ids=lambda c: c.id)
def test_workload_group_verdicts(case: Case) -> None:
    check_case("WorkloadGroup", case)


def test_the_auto_allocation_opt_out_label_brings_the_tcp_warning_back() -> None:
    from support.semantic import findings

    spec = se(ports=[TCP])
    label = {"networking.istio.io/enable-autoallocate-ip": "false"}
    assert [m for lvl, _, m in findings("ServiceEntry", spec) if lvl == "warning"] == []
    assert [lvl for lvl, _, _ in findings("ServiceEntry", spec, labels=label)] == ["warning"]
