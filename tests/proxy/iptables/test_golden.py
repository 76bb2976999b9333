"""build_rules writes exactly what istio-iptables writes, for each of Istio's golden flag sets.

The golden files are Istio's (tools/istio-iptables/pkg/capture/testdata); each holds the
iptables-restore input for IPv4 then IPv6, between the iptables-save calls Istio's test stub
records, which are dropped here. The configurations are the ones Istio's test gives each file.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from istio_sdk.proxy.iptables import CaptureConfig, build_rules

GOLDEN = pathlib.Path(__file__).parent / "golden"

CASES: dict[str, dict[str, Any]] = {
    "ipv6-empty-inbound-ports": {"enable_ipv6": True},
    "ip-range": {
        "outbound_ip_ranges_exclude": "1.1.0.0/16",
        "outbound_ip_ranges_include": "9.9.0.0/16",
        "redirect_dns": True,
        "proxy_gids": "1,2",
        "proxy_uids": "3,4",
        "dns_servers_v4": ["127.0.0.53"],
    },
    "tproxy": {
        "inbound_interception_mode": "TPROXY",
        "inbound_ports_include": "*",
        "outbound_ip_ranges_exclude": "1.1.0.0/16",
        "outbound_ip_ranges_include": "9.9.0.0/16",
        "redirect_dns": True,
        "dns_servers_v4": ["127.0.0.53"],
        "exclude_interfaces": "not-istio-nic",
        "enable_ipv6": True,
    },
    "ipv6-inbound-ports": {"inbound_ports_include": "4000,5000", "enable_ipv6": True},
    "ipv6-virt-interfaces": {
        "inbound_ports_include": "4000,5000",
        "kube_virt_interfaces": "eth0,eth1",
        "enable_ipv6": True,
    },
    "ipv6-ipnets": {
        "inbound_ports_include": "4000,5000",
        "inbound_ports_exclude": "6000,7000,",
        "kube_virt_interfaces": "eth0,eth1",
        "outbound_ip_ranges_exclude": "2001:db8::/32",
        "outbound_ip_ranges_include": "2001:db8::/32",
        "enable_ipv6": True,
    },
    "ipv6-uid-gid": {
        "inbound_ports_include": "4000,5000",
        "inbound_ports_exclude": "6000,7000",
        "kube_virt_interfaces": "eth0,eth1",
        "proxy_gids": "1,2",
        "proxy_uids": "3,4",
        "enable_ipv6": True,
        "outbound_ip_ranges_exclude": "2001:db8::/32",
        "outbound_ip_ranges_include": "2001:db8::/32",
    },
    "ipv6-outbound-ports": {"outbound_ports_include": "32000,31000", "enable_ipv6": True},
    "empty": {},
    "kube-virt-interfaces": {
        "kube_virt_interfaces": "eth1,eth2",
        "outbound_ip_ranges_include": "*",
    },
    "ipnets": {"outbound_ip_ranges_include": "10.0.0.0/8"},
    "ipnets-with-kube-virt-interfaces": {
        "kube_virt_interfaces": "eth1,eth2",
        "outbound_ip_ranges_include": "10.0.0.0/8",
    },
    "inbound-ports-include": {"inbound_ports_include": "32000,31000"},
    "inbound-ports-wildcard": {"inbound_ports_include": "*"},
    "inbound-ports-tproxy": {
        "inbound_ports_include": "32000,31000",
        "inbound_interception_mode": "TPROXY",
    },
    "inbound-ports-wildcard-tproxy": {
        "inbound_ports_include": "*",
        "inbound_interception_mode": "TPROXY",
    },
    "dns-uid-gid": {
        "redirect_dns": True,
        "dns_servers_v4": ["127.0.0.53"],
        "dns_servers_v6": ["::127.0.0.53"],
        "proxy_gids": "1,2",
        "proxy_uids": "3,4",
        "enable_ipv6": True,
    },
    "ipv6-dns-uid-gid": {
        "enable_ipv6": True,
        "redirect_dns": True,
        "proxy_gids": "1,2",
        "proxy_uids": "3,4",
    },
    "outbound-owner-groups": {"owner_groups_include": "java,202"},
    "outbound-owner-groups-exclude": {"owner_groups_exclude": "888,ftp"},
    "ipv6-dns-outbound-owner-groups": {
        "enable_ipv6": True,
        "redirect_dns": True,
        "owner_groups_include": "java,202",
    },
    "ipv6-dns-outbound-owner-groups-exclude": {
        "enable_ipv6": True,
        "redirect_dns": True,
        "owner_groups_exclude": "888,ftp",
    },
    "outbound-ports-include": {"outbound_ports_include": "32000,31000"},
    "loopback-outbound-iprange": {
        "outbound_ip_ranges_include": "127.1.2.3/32",
        "redirect_dns": True,
        "dns_servers_v4": ["127.0.0.53"],
        "proxy_gids": "1,2",
        "proxy_uids": "3,4",
    },
    "basic-exclude-nic": {"exclude_interfaces": "not-istio-nic"},
    "drop-invalid": {"drop_invalid": True},
    "host-ipv4-loopback-cidr": {"host_ipv4_loopback_cidr": "127.0.0.1/8"},
}


def golden_restore(name: str) -> str:
    """The golden file without the iptables-save/ip6tables-save calls around the input."""
    lines = (GOLDEN / f"{name}.golden").read_text().splitlines()
    return "".join(f"{line}\n" for line in lines if line not in ("iptables-save", "ip6tables-save"))


def test_every_golden_file_has_a_case() -> None:
    assert sorted(path.stem for path in GOLDEN.glob("*.golden")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rules_match_istios_golden_file(name: str) -> None:
    rules = build_rules(CaptureConfig(**CASES[name]))
    assert rules.restore(4) + rules.restore(6) == golden_restore(name)
