"""istio-iptables' flags and environment variables, resolved into a :class:`CaptureConfig`.

:data:`OPTIONS` is the one table of flags: its long and short names, the environment variables
that set it (``istio-service-cidr`` is also ``ISTIO_SERVICE_CIDR``, ``redirect-dns`` also
``ISTIO_META_DNS_CAPTURE``) and its meaning. Precedence is Istio's: the command line, then the
extra variable, then the flag's own variable, then the default.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Literal

import attrs

from istio_sdk.proxy.iptables import _host
from istio_sdk.proxy.iptables._config import CaptureConfig, IptablesConfigError, _show

__all__ = ["OPTIONS", "Option", "RunSettings", "config_from_options"]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
DEFAULT_PROXY_UID = "1337"


@attrs.frozen
class Option:
    """One istio-iptables flag."""

    name: str  # the long flag, without ``--``
    short: str | None
    help: str
    boolean: bool = False
    bind_env: bool = True  # the flag's own variable: the name upper-cased, ``-`` as ``_``
    extra_env: str | None = None

    @property
    def env(self) -> tuple[str, ...]:
        """The variables that set this flag, weakest first."""
        own = (self.name.upper().replace("-", "_"),) if self.bind_env else ()
        return own + ((self.extra_env,) if self.extra_env else ())


OPTIONS: tuple[Option, ...] = (
    Option("envoy-port", "p", "port all outbound TCP traffic is redirected to", bind_env=False),
    Option("inbound-capture-port", "z", "port all inbound TCP traffic is redirected to"),
    Option("inbound-tunnel-port", "e", "the proxy's tunnel port, never captured"),
    Option("proxy-uid", "u", "UIDs (comma separated) whose traffic is not captured"),
    Option("proxy-gid", "g", "GIDs (comma separated) whose traffic is not captured"),
    Option("istio-inbound-interception-mode", "m", "REDIRECT or TPROXY"),
    Option("istio-inbound-ports", "b", "inbound ports to capture, * for all, empty for none"),
    Option("istio-local-exclude-ports", "d", "inbound ports not captured (with -b '*')"),
    Option("istio-exclude-interfaces", "c", "interfaces whose traffic is never captured"),
    Option("istio-service-cidr", "i", "outbound CIDRs to capture, * for all, empty for none"),
    Option("istio-service-exclude-cidr", "x", "outbound CIDRs not captured"),
    Option("istio-outbound-ports", "q", "outbound ports always captured"),
    Option("istio-local-outbound-ports-exclude", "o", "outbound ports not captured"),
    Option("kube-virt-interfaces", "k", "interfaces whose inbound traffic counts as outbound"),
    Option("istio-inbound-tproxy-mark", "t", "packet mark used by TPROXY"),
    Option("istio-inbound-tproxy-route-table", "r", "routing table used by TPROXY"),
    Option("dry-run", "n", "print the rules instead of applying them", boolean=True),
    Option("skip-rule-apply", None, "apply nothing", boolean=True),
    Option(
        "redirect-dns",
        None,
        "capture DNS to the agent on 15053",
        boolean=True,
        extra_env="ISTIO_META_DNS_CAPTURE",
    ),
    Option(
        "drop-invalid",
        None,
        "drop packets conntrack marks INVALID",
        boolean=True,
        extra_env="INVALID_DROP",
    ),
    Option(
        "dual-stack",
        None,
        "IPv4 and IPv6 rules when the Pod has both",
        boolean=True,
        extra_env="ISTIO_DUAL_STACK",
    ),
    Option(
        "capture-all-dns",
        None,
        "with --redirect-dns: capture all port 53 traffic, not only to resolv.conf's servers",
        boolean=True,
    ),
    Option("reconcile", None, "replace Istio rules already present", boolean=True),
    Option("cleanup-only", None, "remove the rules instead of adding them", boolean=True),
    Option("force-apply", None, "apply even when the rules look already in place", boolean=True),
    Option("force-iptables-binary", None, "legacy or nft: which iptables to run"),
    Option("network-namespace", None, "the network namespace (a path) to apply the rules in"),
)
_BY_NAME = {option.name: option for option in OPTIONS}


@attrs.frozen
class RunSettings:
    """How to run, as opposed to what to capture."""

    dry_run: bool = False
    skip_rule_apply: bool = False
    cleanup_only: bool = False
    reconcile: bool = False
    force_apply: bool = False
    iptables_binary: Literal["", "legacy", "nft"] = ""
    network_namespace: str = ""


def _boolean(text: str, where: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise IptablesConfigError(f"{where}: {_show(text)} is not true or false")


def config_from_options(
    values: Mapping[str, str | None],
    environ: Mapping[str, str] | None = None,
    *,
    ipv6: bool | None = None,
    resolv_conf: pathlib.Path = pathlib.Path("/etc/resolv.conf"),
    user_id: Callable[[str], str | None] = _host.user_id,
    local_addresses: Callable[[], list[_host.Address]] = _host.local_addresses,
) -> tuple[CaptureConfig, RunSettings]:
    """Resolve flags (``values``: long name to text, None when absent) and the environment.

    Unknown names are refused. ``ipv6`` forces the IPv6 decision, which Istio otherwise makes
    from the local addresses. Raises :class:`IptablesConfigError` naming the flag or variable.
    """
    env = os.environ if environ is None else environ
    unknown = sorted(set(values) - set(_BY_NAME))
    if unknown:
        raise IptablesConfigError(f"unknown option(s): {', '.join('--' + n for n in unknown)}")
    text: dict[str, str] = {}
    source: dict[str, str] = {}
    for option in OPTIONS:
        for variable in option.env:
            if variable in env:
                text[option.name], source[option.name] = env[variable], variable
        given = values.get(option.name)
        if given is not None:
            text[option.name], source[option.name] = given, f"--{option.name}"

    def flag(name: str, default: str = "") -> str:
        return text.get(name, default)

    def boolean(name: str) -> bool:
        return name in text and _boolean(text[name], source[name])

    binary = flag("force-iptables-binary")
    if binary not in ("", "legacy", "nft"):
        raise IptablesConfigError(
            f"{source['force-iptables-binary']}: {_show(binary)} is not legacy or nft"
        )
    settings = RunSettings(
        dry_run=boolean("dry-run"),
        skip_rule_apply=boolean("skip-rule-apply"),
        cleanup_only=boolean("cleanup-only"),
        reconcile=boolean("reconcile"),
        force_apply=boolean("force-apply"),
        iptables_binary=binary,  # type: ignore[arg-type]
        network_namespace=flag("network-namespace"),
    )
    if settings.cleanup_only and settings.skip_rule_apply:
        raise IptablesConfigError("--cleanup-only and --skip-rule-apply contradict each other")

    uid = flag("proxy-uid")
    if uid == "":
        uid = user_id(env.get("ENVOY_USER", "istio-proxy")) or DEFAULT_PROXY_UID
    gid = flag("proxy-gid") or uid
    redirect_dns, capture_all_dns = boolean("redirect-dns"), boolean("capture-all-dns")
    servers: tuple[list[str], list[str]] = ([], [])
    if redirect_dns and not capture_all_dns:
        servers = _host.read_resolv_conf(resolv_conf)
    if ipv6 is None:
        ipv6 = _host.wants_ipv6(local_addresses(), dual_stack=boolean("dual-stack"))

    fields = {
        "proxy_port": flag("envoy-port", "15001"),
        "inbound_capture_port": flag("inbound-capture-port", "15006"),
        "inbound_tunnel_port": flag("inbound-tunnel-port", "15008"),
        "proxy_uids": uid,
        "proxy_gids": gid,
        "inbound_interception_mode": flag("istio-inbound-interception-mode"),
        "inbound_tproxy_mark": flag("istio-inbound-tproxy-mark", "1337"),
        "inbound_tproxy_route_table": flag("istio-inbound-tproxy-route-table", "133"),
        "inbound_ports_include": flag("istio-inbound-ports"),
        "inbound_ports_exclude": flag("istio-local-exclude-ports"),
        "exclude_interfaces": flag("istio-exclude-interfaces"),
        "outbound_ip_ranges_include": flag("istio-service-cidr"),
        "outbound_ip_ranges_exclude": flag("istio-service-exclude-cidr"),
        "outbound_ports_include": flag("istio-outbound-ports"),
        "outbound_ports_exclude": flag("istio-local-outbound-ports-exclude"),
        "kube_virt_interfaces": flag("kube-virt-interfaces"),
        "owner_groups_include": env.get("ISTIO_OUTBOUND_OWNER_GROUPS", "*"),
        "owner_groups_exclude": env.get("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", ""),
        "host_ipv4_loopback_cidr": env.get("ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR", "127.0.0.1/32"),
        "redirect_dns": redirect_dns,
        "capture_all_dns": capture_all_dns,
        "drop_invalid": boolean("drop-invalid"),
        "enable_ipv6": ipv6,
        "dns_servers_v4": servers[0],
        "dns_servers_v6": servers[1],
    }
    try:
        return CaptureConfig(**fields), settings
    except IptablesConfigError as exc:
        raise IptablesConfigError(_name_the_flag(str(exc), source)) from None


_FIELD_FLAGS = {
    "proxy_port": "envoy-port",
    "inbound_capture_port": "inbound-capture-port",
    "inbound_tunnel_port": "inbound-tunnel-port",
    "proxy_uids": "proxy-uid",
    "proxy_gids": "proxy-gid",
    "inbound_interception_mode": "istio-inbound-interception-mode",
    "inbound_tproxy_mark": "istio-inbound-tproxy-mark",
    "inbound_tproxy_route_table": "istio-inbound-tproxy-route-table",
    "inbound_ports_include": "istio-inbound-ports",
    "inbound_ports_exclude": "istio-local-exclude-ports",
    "exclude_interfaces": "istio-exclude-interfaces",
    "outbound_ip_ranges_include": "istio-service-cidr",
    "outbound_ip_ranges_exclude": "istio-service-exclude-cidr",
    "outbound_ports_include": "istio-outbound-ports",
    "outbound_ports_exclude": "istio-local-outbound-ports-exclude",
    "kube_virt_interfaces": "kube-virt-interfaces",
}
_FIELD_ENV = {
    "owner_groups_include": "ISTIO_OUTBOUND_OWNER_GROUPS",
    "owner_groups_exclude": "ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE",
    "host_ipv4_loopback_cidr": "ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR",
}


def _name_the_flag(message: str, source: Mapping[str, str]) -> str:
    """Say which flag or variable a CaptureConfig error came from, not the field name."""
    field, sep, rest = message.partition(": ")
    if not sep:
        return message
    if field in _FIELD_FLAGS:
        name = _FIELD_FLAGS[field]
        short = _BY_NAME[name].short
        where = source.get(name, f"--{name}")
        if where.startswith("--") and short:
            where = f"-{short}/{where}"
        return f"{where}: {rest}"
    if field in _FIELD_ENV:
        return f"{_FIELD_ENV[field]}: {rest}"
    return message
