"""Istio's capture rules for a :class:`CaptureConfig`, as ``iptables-restore`` input.

Pure: no processes, no files. :func:`build_rules` walks the same steps as istio-iptables, in the
same order, so the text is line for line what Istio writes (its golden files are the tests).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

from istio_sdk.proxy.iptables._config import ALL, CaptureConfig

__all__ = ["ISTIO_CHAIN_PREFIX", "Rule", "RuleSet", "build_rules"]

ISTIO_CHAIN_PREFIX = "ISTIO_"
IstioVersion = Literal[4, 6]

# Chains iptables has without being told, and targets that are not chains.
_BUILT_IN = frozenset(
    {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING", "ACCEPT", "RETURN", "DROP"}
)
_TABLES = ("filter", "nat", "mangle")  # always considered; raw only when a rule uses it

_OUTBOUND_MARK = "1338"  # TPROXY: proxy-to-app packets, kept out of the inbound capture
_DNS_PORT = "15053"  # where pilot-agent's DNS proxy listens


class _IpSpecific:
    """Placeholder for an address that differs between the IPv4 and IPv6 rule."""


_IP = _IpSpecific()


@attrs.frozen
class Rule:
    """One rule: ``-A CHAIN ARGS`` or, with ``position``, ``-I CHAIN POSITION ARGS``."""

    table: str
    chain: str
    args: tuple[str, ...]
    position: int | None = None

    @property
    def spec(self) -> str:
        """The rule as ``iptables-restore`` reads it."""
        head = f"-A {self.chain}" if self.position is None else f"-I {self.chain} {self.position}"
        return " ".join((head, *self.args))

    @property
    def target(self) -> str | None:
        """The chain or target a rule ending in ``-j TARGET`` jumps to."""
        if len(self.args) >= 2 and self.args[-2] == "-j":
            return self.args[-1]
        return None

    @property
    def in_istio_chain(self) -> bool:
        return self.chain.startswith(ISTIO_CHAIN_PREFIX)

    @property
    def jumps_to_istio(self) -> bool:
        target = self.target
        return target is not None and target.startswith(ISTIO_CHAIN_PREFIX)


@attrs.frozen
class RuleSet:
    """The IPv4 and IPv6 rules for one configuration (``ipv6`` is empty without IPv6)."""

    ipv4: tuple[Rule, ...]
    ipv6: tuple[Rule, ...]

    def rules(self, version: IstioVersion) -> tuple[Rule, ...]:
        return self.ipv4 if version == 4 else self.ipv6

    def chains(self, version: IstioVersion) -> dict[str, list[str]]:
        """Per table, the Istio chains the rules create, in the order they are created."""
        created: dict[str, list[str]] = {}
        rules = self.rules(version)
        named = [(rule.table, rule.chain) for rule in rules]
        named += [(rule.table, rule.target) for rule in rules if rule.target is not None]
        for table, chain in named:
            if chain in _BUILT_IN:
                continue
            chains = created.setdefault(table, [])
            if chain not in chains:
                chains.append(chain)
        return created

    def restore(self, version: IstioVersion) -> str:
        """``iptables-restore --noflush`` input that creates the chains and adds the rules."""
        tables: dict[str, list[str]] = {table: [] for table in _TABLES}
        for table, chains in self.chains(version).items():
            tables.setdefault(table, []).extend(f"-N {chain}" for chain in chains)
        for rule in self.rules(version):
            tables.setdefault(rule.table, []).append(rule.spec)
        return _restore_text(tables)

    def cleanup_restore(self, version: IstioVersion) -> str:
        """``iptables-restore --noflush`` input that removes every rule and chain it adds.

        Written as if every rule were present; :mod:`._apply` only deletes what it finds.
        """
        tables: dict[str, list[str]] = {}
        for rule in reversed(self.rules(version)):
            if not rule.in_istio_chain:
                tables.setdefault(rule.table, []).append(delete_spec(rule))
        for table, chains in self.chains(version).items():
            lines = tables.setdefault(table, [])
            lines += [f"-F {chain}" for chain in chains]
            lines += [f"-X {chain}" for chain in chains]
        return _restore_text(tables)


def delete_spec(rule: Rule) -> str:
    """The ``-D`` form of a rule: the same matches and target, without an insert position."""
    return " ".join((f"-D {rule.chain}", *rule.args))


def _restore_text(tables: dict[str, list[str]]) -> str:
    out: list[str] = []
    for table in sorted(tables):
        if tables[table]:
            out += [f"* {table}", *tables[table], "COMMIT"]
    return "".join(line + "\n" for line in out)


class _Builder:
    """Collects rules for both IP versions, in the order they are added."""

    def __init__(self, enable_ipv6: bool) -> None:
        self.enable_ipv6 = enable_ipv6
        self.v4: list[Rule] = []
        self.v6: list[Rule] = []

    def add(
        self,
        table: str,
        chain: str,
        *args: str | _IpSpecific,
        position: int | None = None,
        v4: str | bool = True,
        v6: str | bool = True,
    ) -> None:
        """Add to IPv4 and/or IPv6; a string for ``v4``/``v6`` fills the address placeholder."""
        for version, wanted, into in ((4, v4, self.v4), (6, v6, self.v6)):
            if wanted is False or (version == 6 and not self.enable_ipv6):
                continue
            filled = tuple(wanted if isinstance(arg, _IpSpecific) else arg for arg in args)
            assert all(isinstance(arg, str) for arg in filled)
            into.append(Rule(table, chain, filled, position))  # type: ignore[arg-type]

    def v4_only(self, table: str, chain: str, *args: str, position: int | None = None) -> None:
        self.add(table, chain, *args, position=position, v6=False)

    def v6_only(self, table: str, chain: str, *args: str, position: int | None = None) -> None:
        self.add(table, chain, *args, position=position, v4=False)


def _split_networks(
    ranges: Iterable[ipaddress.IPv4Interface | ipaddress.IPv6Interface],
) -> tuple[list[str], list[str], bool, bool]:
    v4 = [str(net) for net in ranges if net.version == 4]
    v6 = [str(net) for net in ranges if net.version == 6]
    v4_loop = any(ipaddress.ip_interface(net).ip.is_loopback for net in v4)
    v6_loop = any(ipaddress.ip_interface(net).ip.is_loopback for net in v6)
    return v4, v6, v4_loop, v6_loop


def build_rules(config: CaptureConfig) -> RuleSet:
    """Istio's rules for ``config``: the IPv4 set, and the IPv6 set when IPv6 is enabled."""
    b = _Builder(config.enable_ipv6)
    loopback = (config.host_ipv4_loopback_cidr, "::1/128")
    proxy_port = str(config.proxy_port)
    capture_port = str(config.inbound_capture_port)
    tunnel_port = str(config.inbound_tunnel_port)
    mark = str(config.inbound_tproxy_mark)
    dns = config.dns_capture
    include = config.outbound_ip_ranges_include
    include_all = include == ALL
    inc4, inc6, inc4_loop, inc6_loop = _split_networks(() if include == ALL else include)
    exclude = config.outbound_ip_ranges_exclude
    exc4, exc6, _, _ = _split_networks(() if exclude == ALL else exclude)

    for nic in config.exclude_interfaces:
        b.add("nat", "PREROUTING", "-i", nic, "-j", "RETURN")
        b.add("nat", "OUTPUT", "-o", nic, "-j", "RETURN")
    if config.tproxy:
        for nic in config.exclude_interfaces:
            b.add("mangle", "PREROUTING", "-i", nic, "-j", "RETURN")
            b.add("mangle", "OUTPUT", "-o", nic, "-j", "RETURN")
    for nic in config.kube_virt_interfaces:
        b.add("nat", "PREROUTING", "-i", nic, "-j", "RETURN", position=1)
    if config.drop_invalid:
        b.add("mangle", "PREROUTING", "-m", "conntrack", "--ctstate", "INVALID", "-j", "ISTIO_DROP")
        b.add("mangle", "ISTIO_DROP", "-j", "DROP")

    b.add("nat", "ISTIO_INBOUND", "-p", "tcp", "--dport", tunnel_port, "-j", "RETURN")
    b.add("nat", "ISTIO_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", proxy_port)
    b.add("nat", "ISTIO_IN_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", capture_port)
    _inbound(b, config, loopback)

    b.add("nat", "OUTPUT", "-j", "ISTIO_OUTPUT")
    for port in config.outbound_ports_exclude:
        b.add("nat", "ISTIO_OUTPUT", "-p", "tcp", "--dport", port, "-j", "RETURN")
        b.add("nat", "ISTIO_OUTPUT", "-p", "udp", "--dport", port, "-j", "RETURN")
    # Inbound passthrough connects from 127.0.0.6 (::6): never capture it again.
    b.add(
        "nat",
        "ISTIO_OUTPUT",
        "-o",
        "lo",
        "-s",
        _IP,
        "-j",
        "RETURN",
        v4="127.0.0.6/32",
        v6="::6/128",
    )
    owners = [("--uid-owner", uid) for uid in config.proxy_uids]
    owners += [("--gid-owner", gid) for gid in config.proxy_gids]
    for index, (match, owner) in enumerate(owners):
        is_uid = index < len(config.proxy_uids)
        # The proxy calling the app through a VIP comes back in through the inbound listener.
        skip: tuple[str, ...]
        if dns and is_uid:
            skip = ("-m", "multiport", "!", "--dports", f"53,{tunnel_port}")
        else:
            skip = ("!", "--dport", tunnel_port)
        b.add(
            "nat",
            "ISTIO_OUTPUT",
            "-o",
            "lo",
            "!",
            "-d",
            _IP,
            "-p",
            "tcp",
            *skip,
            "-m",
            "owner",
            match,
            owner,
            "-j",
            "ISTIO_IN_REDIRECT",
            v4=loopback[0],
            v6=loopback[1],
        )
        # The app calling itself on its own address stays local, unless loopback is included.
        if not inc4_loop and not inc6_loop:
            if dns:
                b.add(
                    "nat",
                    "ISTIO_OUTPUT",
                    "-o",
                    "lo",
                    "-p",
                    "tcp",
                    "!",
                    "--dport",
                    "53",
                    "-m",
                    "owner",
                    "!",
                    match,
                    owner,
                    "-j",
                    "RETURN",
                )
            else:
                b.add(
                    "nat",
                    "ISTIO_OUTPUT",
                    "-o",
                    "lo",
                    "-m",
                    "owner",
                    "!",
                    match,
                    owner,
                    "-j",
                    "RETURN",
                )
        # Anything else the proxy sends leaves as is (no loops), whatever the protocol.
        b.add("nat", "ISTIO_OUTPUT", "-m", "owner", match, owner, "-j", "RETURN")

    _owner_groups(b, config)
    if dns:
        _dns(b, config)
    b.add("nat", "ISTIO_OUTPUT", "-d", _IP, "-j", "RETURN", v4=loopback[0], v6=loopback[1])
    for cidr in exc4:
        b.v4_only("nat", "ISTIO_OUTPUT", "-d", cidr, "-j", "RETURN")
    for cidr in exc6:
        b.v6_only("nat", "ISTIO_OUTPUT", "-d", cidr, "-j", "RETURN")
    for port in config.outbound_ports_include:
        b.add("nat", "ISTIO_OUTPUT", "-p", "tcp", "--dport", port, "-j", "ISTIO_REDIRECT")
    for version, cidrs in ((4, inc4), (6, inc6)):
        only = b.v4_only if version == 4 else b.v6_only
        if include_all:
            only("nat", "ISTIO_OUTPUT", "-j", "ISTIO_REDIRECT")
            for nic in config.kube_virt_interfaces:
                only("nat", "PREROUTING", "-i", nic, "-j", "ISTIO_REDIRECT", position=1)
        for cidr in cidrs:
            for nic in config.kube_virt_interfaces:
                only("nat", "PREROUTING", "-i", nic, "-d", cidr, "-j", "ISTIO_REDIRECT", position=1)
            only("nat", "ISTIO_OUTPUT", "-d", cidr, "-j", "ISTIO_REDIRECT")
    if config.tproxy:
        _tproxy_marks(b, config, loopback, mark)
    return RuleSet(tuple(b.v4), tuple(b.v6))


def _inbound(b: _Builder, config: CaptureConfig, loopback: tuple[str, str]) -> None:
    ports = config.inbound_ports_include
    if ports == ():
        return
    mark = str(config.inbound_tproxy_mark)
    table = "mangle" if config.tproxy else "nat"
    if config.tproxy:
        # Marked packets are routed to lo, where the TPROXY target hands them to the proxy.
        b.add("mangle", "ISTIO_DIVERT", "-j", "MARK", "--set-mark", mark)
        b.add("mangle", "ISTIO_DIVERT", "-j", "ACCEPT")
        b.add(
            "mangle",
            "ISTIO_TPROXY",
            "!",
            "-d",
            _IP,
            "-p",
            "tcp",
            "-j",
            "TPROXY",
            "--tproxy-mark",
            f"{mark}/0xffffffff",
            "--on-port",
            str(config.inbound_capture_port),
            v4=loopback[0],
            v6=loopback[1],
        )
    b.add(table, "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND")
    established = ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ISTIO_DIVERT")
    if ports == ALL:
        for port in config.inbound_ports_exclude:
            b.add(table, "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "RETURN")
        if config.tproxy:
            b.add("mangle", "ISTIO_INBOUND", "-p", "tcp", *established)
            b.add("mangle", "ISTIO_INBOUND", "-p", "tcp", "-j", "ISTIO_TPROXY")
        else:
            b.add("nat", "ISTIO_INBOUND", "-p", "tcp", "-j", "ISTIO_IN_REDIRECT")
        return
    for port in ports:
        if config.tproxy:
            b.add("mangle", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, *established)
            b.add("mangle", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "ISTIO_TPROXY")
        else:
            b.add("nat", "ISTIO_INBOUND", "-p", "tcp", "--dport", port, "-j", "ISTIO_IN_REDIRECT")


def _owner_groups(b: _Builder, config: CaptureConfig) -> None:
    if config.owner_groups_include == ALL:
        for group in config.owner_groups_exclude:
            b.add("nat", "ISTIO_OUTPUT", "-m", "owner", "--gid-owner", group, "-j", "RETURN")
        return
    # Only the listed groups are captured: everyone else's traffic returns early.
    matches: list[str] = []
    for group in config.owner_groups_include:
        matches += ["-m", "owner", "!", "--gid-owner", group]
    b.add("nat", "ISTIO_OUTPUT", *matches, "-j", "RETURN")


def _dns(b: _Builder, config: CaptureConfig) -> None:
    all_dns = config.capture_all_dns
    servers4, servers6 = config.dns_servers_v4, config.dns_servers_v6
    b.add("raw", "OUTPUT", "-j", "ISTIO_OUTPUT_DNS")
    if all_dns or servers4:
        b.v4_only("nat", "ISTIO_OUTPUT", "-j", "ISTIO_OUTPUT_DNS")
    if all_dns or servers6:
        b.v6_only("nat", "ISTIO_OUTPUT", "-j", "ISTIO_OUTPUT_DNS")
    for proto, to in (("tcp", "--to-ports"), ("udp", "--to-port")):
        redirect = ("-j", "REDIRECT", to, _DNS_PORT)
        if all_dns:
            b.add("nat", "ISTIO_OUTPUT_DNS", "-p", proto, "--dport", "53", *redirect)
            continue
        for server in servers4:
            b.v4_only(
                "nat",
                "ISTIO_OUTPUT_DNS",
                "-p",
                proto,
                "--dport",
                "53",
                "-d",
                f"{server}/32",
                *redirect,
            )
        for server in servers6:
            b.v6_only(
                "nat",
                "ISTIO_OUTPUT_DNS",
                "-p",
                proto,
                "--dport",
                "53",
                "-d",
                f"{server}/128",
                *redirect,
            )
    _dns_conntrack_zones(b, config)


def _dns_conntrack_zones(b: _Builder, config: CaptureConfig) -> None:
    """Proxy-to-upstream DNS in conntrack zone 1, app-to-proxy in zone 2 (UDP races)."""
    owners = [("--uid-owner", uid) for uid in config.proxy_uids]
    owners += [("--gid-owner", gid) for gid in config.proxy_gids]
    for match, owner in owners:
        own = ("-m", "owner", match, owner)
        b.add(
            "raw", "ISTIO_OUTPUT_DNS", "-p", "udp", "--dport", "53", *own, "-j", "CT", "--zone", "1"
        )
        b.add(
            "raw",
            "ISTIO_OUTPUT_DNS",
            "-p",
            "udp",
            "--sport",
            _DNS_PORT,
            *own,
            "-j",
            "CT",
            "--zone",
            "2",
        )
    if config.capture_all_dns:
        b.add("raw", "PREROUTING", "-j", "ISTIO_INBOUND")
        b.add("raw", "ISTIO_OUTPUT_DNS", "-p", "udp", "--dport", "53", "-j", "CT", "--zone", "2")
        b.add("raw", "ISTIO_INBOUND", "-p", "udp", "--sport", "53", "-j", "CT", "--zone", "1")
        return
    for servers, only, bits in (
        (config.dns_servers_v4, b.v4_only, 32),
        (config.dns_servers_v6, b.v6_only, 128),
    ):
        if servers:
            only("raw", "PREROUTING", "-j", "ISTIO_INBOUND")
        for server in servers:
            host = f"{server}/{bits}"
            only(
                "raw",
                "ISTIO_OUTPUT_DNS",
                "-p",
                "udp",
                "--dport",
                "53",
                "-d",
                host,
                "-j",
                "CT",
                "--zone",
                "2",
            )
            only(
                "raw",
                "ISTIO_INBOUND",
                "-p",
                "udp",
                "--sport",
                "53",
                "-s",
                host,
                "-j",
                "CT",
                "--zone",
                "1",
            )


def _tproxy_marks(b: _Builder, config: CaptureConfig, loopback: tuple[str, str], mark: str) -> None:
    # Keep the mark set by Envoy's original_src filter on the connection.
    b.add(
        "mangle",
        "PREROUTING",
        "-p",
        "tcp",
        "-m",
        "mark",
        "--mark",
        mark,
        "-j",
        "CONNMARK",
        "--save-mark",
    )
    b.add("mangle", "OUTPUT", "-p", "tcp", "-o", "lo", "-m", "mark", "--mark", mark, "-j", "RETURN")
    owners: Sequence[tuple[str, str]] = [("--uid-owner", uid) for uid in config.proxy_uids]
    owners = [*owners, *(("--gid-owner", gid) for gid in config.proxy_gids)]
    for match, owner in owners:
        # The proxy's outbound leg to the app by pod IP must not come back in as inbound.
        b.add(
            "mangle",
            "OUTPUT",
            "!",
            "-d",
            _IP,
            "-p",
            "tcp",
            "-o",
            "lo",
            "-m",
            "owner",
            match,
            owner,
            "-j",
            "MARK",
            "--set-mark",
            _OUTBOUND_MARK,
            v4=loopback[0],
            v6=loopback[1],
        )
    b.add(
        "mangle",
        "OUTPUT",
        "-p",
        "tcp",
        "-m",
        "connmark",
        "--mark",
        mark,
        "-j",
        "CONNMARK",
        "--restore-mark",
    )
    b.add(
        "mangle",
        "ISTIO_INBOUND",
        "-p",
        "tcp",
        "-m",
        "mark",
        "--mark",
        mark,
        "-j",
        "RETURN",
        position=1,
    )
    b.v4_only(
        "mangle",
        "ISTIO_INBOUND",
        "-p",
        "tcp",
        "-s",
        "127.0.0.6/32",
        "-i",
        "lo",
        "-j",
        "RETURN",
        position=2,
    )
    b.v6_only(
        "mangle",
        "ISTIO_INBOUND",
        "-p",
        "tcp",
        "-s",
        "::6/128",
        "-i",
        "lo",
        "-j",
        "RETURN",
        position=2,
    )
    b.add(
        "mangle",
        "ISTIO_INBOUND",
        "-p",
        "tcp",
        "-i",
        "lo",
        "-m",
        "mark",
        "!",
        "--mark",
        _OUTBOUND_MARK,
        "-j",
        "RETURN",
        position=3,
    )
