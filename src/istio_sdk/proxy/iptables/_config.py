"""What istio-iptables is asked to capture: one validated, immutable value.

Every field accepts Istio's own text syntax (comma separated lists, ``*`` for all) as well as
Python values, and is checked at construction: ports are numbers, CIDRs parse, names are single
tokens. Nothing unchecked ever reaches the ``iptables-restore`` text, so a value can neither
smuggle in a second rule nor fail half way through applying.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Literal, TypeAlias

import attrs

__all__ = [
    "ALL",
    "CaptureConfig",
    "InterceptionMode",
    "IptablesConfigError",
    "IptablesError",
]

ALL: Literal["*"] = "*"
"""The wildcard Istio writes as ``*``: every port, every outbound address, every group."""

Network: TypeAlias = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Ports: TypeAlias = Literal["*"] | tuple[str, ...]
Networks: TypeAlias = Literal["*"] | tuple[Network, ...]
Names: TypeAlias = Literal["*"] | tuple[str, ...]

# Istio caps included owner groups: they all become matches of one rule.
MAX_OWNER_GROUPS_INCLUDE = 64
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_INTERFACE = re.compile(r"[A-Za-z0-9_.:@+-]{1,15}")


class IptablesError(Exception):
    """istio-iptables could not do what it was asked; no capture rules were left behind."""


class IptablesConfigError(IptablesError, ValueError):
    """A flag, environment variable or field has a value istio-iptables cannot use."""


class InterceptionMode(enum.Enum):
    """How inbound connections reach the proxy (``-m``)."""

    REDIRECT = "REDIRECT"
    TPROXY = "TPROXY"


def _show(value: object) -> str:
    """A value for an error message: quoted, and cut short if it is long."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _items(value: object, field: str) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip() != ""]
    if isinstance(value, Iterable):
        return [str(part) for part in value]
    raise IptablesConfigError(f"{field}: expected a comma separated list, got {_show(value)}")


def _port_number(text: str, field: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise IptablesConfigError(f"{field}: {_show(text)} is not a port number (0-65535)")
    return int(text)


def _port(field: str) -> Callable[[object], int]:
    def convert(value: object) -> int:
        number = _port_number(str(value).strip(), field)
        if number == 0:
            raise IptablesConfigError(f"{field}: port 0 cannot be listened on")
        return number

    return convert


def _ports(field: str, *, wildcard: bool) -> Callable[[object], Ports]:
    """A list of ports or ``low:high`` ranges, as iptables' ``--dport`` takes them."""

    def convert(value: object) -> Ports:
        if wildcard and value == ALL:
            return ALL
        found: list[str] = []
        for item in _items(value, field):
            low, sep, high = item.partition(":")
            if sep:
                first, last = _port_number(low, field), _port_number(high, field)
                if first > last:
                    raise IptablesConfigError(f"{field}: port range {_show(item)} runs backwards")
                found.append(f"{first}:{last}")
            else:
                found.append(str(_port_number(item, field)))
        return tuple(found)

    return convert


def _network(text: str, field: str) -> Network:
    if "/" not in text:
        raise IptablesConfigError(f"{field}: {_show(text)} is not a CIDR (address/prefix length)")
    if "%" in text:
        # ipaddress keeps any text after '%' (spaces, newlines) as an IPv6 scope id, and
        # iptables takes no scope id in -d/-s: refuse it before it reaches the rules' text.
        raise IptablesConfigError(f"{field}: {_show(text)} has a scope id (%...): not a CIDR")
    try:
        return ipaddress.ip_interface(text)
    except ValueError as exc:
        raise IptablesConfigError(f"{field}: {_show(text)} is not a CIDR: {exc}") from None


def _networks(field: str, *, wildcard: bool) -> Callable[[object], Networks]:
    def convert(value: object) -> Networks:
        if value == ALL:
            if not wildcard:
                raise IptablesConfigError(f"{field}: '*' is not allowed here")
            return ALL
        found: list[Network] = []
        for item in _items(value, field):
            found.append(item if isinstance(item, Network) else _network(item, field))
        return tuple(found)

    return convert


def _names(field: str, pattern: re.Pattern[str], *, wildcard: bool) -> Callable[[object], Names]:
    def convert(value: object) -> Names:
        if wildcard and value == ALL:
            return ALL
        found = _items(value, field)
        for item in found:
            if not pattern.fullmatch(item):
                raise IptablesConfigError(f"{field}: {_show(item)} is not a valid name")
        return tuple(found)

    return convert


def _owners(field: str) -> Callable[[object], tuple[str, ...]]:
    names = _names(field, _NAME, wildcard=False)

    def convert(value: object) -> tuple[str, ...]:
        found = names(value)
        assert found != ALL
        if not found:
            raise IptablesConfigError(f"{field}: at least one user or group is needed")
        return found

    return convert


def _number(field: str, *, bits: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) >= 1 << bits:
            raise IptablesConfigError(f"{field}: {_show(text)} is not a number below 2**{bits}")
        return int(text)

    return convert


def _mode(value: object) -> InterceptionMode:
    if isinstance(value, InterceptionMode):
        return value
    if value == "":
        return InterceptionMode.REDIRECT
    try:
        return InterceptionMode(value)
    except ValueError:
        raise IptablesConfigError(
            f"inbound_interception_mode: {_show(value)} is not REDIRECT or TPROXY"
        ) from None


def _addresses(field: str, version: int) -> Callable[[object], tuple[str, ...]]:
    def convert(value: object) -> tuple[str, ...]:
        found: list[str] = []
        for item in _items(value, field):
            try:
                address = ipaddress.ip_address(item)
            except ValueError:
                raise IptablesConfigError(f"{field}: {_show(item)} is not an IP address") from None
            if address.version != version or "%" in item:
                raise IptablesConfigError(f"{field}: {_show(item)} is not an IPv{version} address")
            found.append(item)  # as written, like Istio (``::127.0.0.53`` stays so)
        return tuple(found)

    return convert


def _loopback_cidr(value: object) -> str:
    text = str(value)
    network = _network(text, "host_ipv4_loopback_cidr")
    if network.version != 4 or not network.ip.is_loopback:
        raise IptablesConfigError(
            f"host_ipv4_loopback_cidr: expected an IPv4 loopback CIDR, got {_show(text)}"
        )
    if not 8 <= network.network.prefixlen <= 32:
        raise IptablesConfigError(
            f"host_ipv4_loopback_cidr: the prefix length of {_show(text)} must be 8 to 32"
        )
    return str(network)


# Named converters: one per field, so errors name the field.
def _to_proxy_port(value: object) -> int:
    return _port("proxy_port")(value)


def _to_inbound_capture_port(value: object) -> int:
    return _port("inbound_capture_port")(value)


def _to_inbound_tunnel_port(value: object) -> int:
    return _port("inbound_tunnel_port")(value)


def _to_proxy_uids(value: object) -> tuple[str, ...]:
    return _owners("proxy_uids")(value)


def _to_proxy_gids(value: object) -> tuple[str, ...]:
    return _owners("proxy_gids")(value)


def _to_inbound_tproxy_mark(value: object) -> int:
    return _number("inbound_tproxy_mark", bits=32)(value)


def _to_inbound_tproxy_route_table(value: object) -> int:
    return _number("inbound_tproxy_route_table", bits=32)(value)


def _to_inbound_ports_include(value: object) -> Ports:
    return _ports("inbound_ports_include", wildcard=True)(value)


def _to_inbound_ports_exclude(value: object) -> Ports:
    return _ports("inbound_ports_exclude", wildcard=False)(value)


def _to_outbound_ports_include(value: object) -> Ports:
    return _ports("outbound_ports_include", wildcard=False)(value)


def _to_outbound_ports_exclude(value: object) -> Ports:
    return _ports("outbound_ports_exclude", wildcard=False)(value)


def _to_outbound_ip_ranges_include(value: object) -> Networks:
    return _networks("outbound_ip_ranges_include", wildcard=True)(value)


def _to_outbound_ip_ranges_exclude(value: object) -> Networks:
    return _networks("outbound_ip_ranges_exclude", wildcard=False)(value)


def _to_kube_virt_interfaces(value: object) -> Names:
    return _names("kube_virt_interfaces", _INTERFACE, wildcard=False)(value)


def _to_exclude_interfaces(value: object) -> Names:
    return _names("exclude_interfaces", _INTERFACE, wildcard=False)(value)


def _to_owner_groups_include(value: object) -> Names:
    return _names("owner_groups_include", _NAME, wildcard=True)(value)


def _to_owner_groups_exclude(value: object) -> Names:
    return _names("owner_groups_exclude", _NAME, wildcard=False)(value)


def _to_dns_servers_v4(value: object) -> tuple[str, ...]:
    return _addresses("dns_servers_v4", 4)(value)


def _to_dns_servers_v6(value: object) -> tuple[str, ...]:
    return _addresses("dns_servers_v6", 6)(value)


@attrs.frozen(kw_only=True)
class CaptureConfig:
    """The traffic istio-iptables captures, with Istio's defaults.

    ``inbound_ports_include`` and ``outbound_ip_ranges_include`` default to nothing, as in
    istio-iptables; the sidecar injector passes ``-b '*'`` and ``-i '*'``. Lists accept Istio's
    comma separated text (``"80,443"``) or any iterable.
    """

    proxy_port: int = attrs.field(default=15001, converter=_to_proxy_port)
    inbound_capture_port: int = attrs.field(default=15006, converter=_to_inbound_capture_port)
    inbound_tunnel_port: int = attrs.field(default=15008, converter=_to_inbound_tunnel_port)
    proxy_uids: tuple[str, ...] = attrs.field(default=("1337",), converter=_to_proxy_uids)
    proxy_gids: tuple[str, ...] = attrs.field(default=("1337",), converter=_to_proxy_gids)
    inbound_interception_mode: InterceptionMode = attrs.field(
        default=InterceptionMode.REDIRECT, converter=_mode
    )
    inbound_tproxy_mark: int = attrs.field(default=1337, converter=_to_inbound_tproxy_mark)
    inbound_tproxy_route_table: int = attrs.field(
        default=133, converter=_to_inbound_tproxy_route_table
    )
    inbound_ports_include: Ports = attrs.field(default=(), converter=_to_inbound_ports_include)
    inbound_ports_exclude: Ports = attrs.field(default=(), converter=_to_inbound_ports_exclude)
    outbound_ports_include: Ports = attrs.field(default=(), converter=_to_outbound_ports_include)
    outbound_ports_exclude: Ports = attrs.field(default=(), converter=_to_outbound_ports_exclude)
    outbound_ip_ranges_include: Networks = attrs.field(
        default=(), converter=_to_outbound_ip_ranges_include
    )
    outbound_ip_ranges_exclude: Networks = attrs.field(
        default=(), converter=_to_outbound_ip_ranges_exclude
    )
    kube_virt_interfaces: Names = attrs.field(default=(), converter=_to_kube_virt_interfaces)
    exclude_interfaces: Names = attrs.field(default=(), converter=_to_exclude_interfaces)
    owner_groups_include: Names = attrs.field(default=ALL, converter=_to_owner_groups_include)
    owner_groups_exclude: Names = attrs.field(default=(), converter=_to_owner_groups_exclude)
    redirect_dns: bool = attrs.field(default=False, converter=bool)
    capture_all_dns: bool = attrs.field(default=False, converter=bool)
    drop_invalid: bool = attrs.field(default=False, converter=bool)
    enable_ipv6: bool = attrs.field(default=False, converter=bool)
    dns_servers_v4: tuple[str, ...] = attrs.field(default=(), converter=_to_dns_servers_v4)
    dns_servers_v6: tuple[str, ...] = attrs.field(default=(), converter=_to_dns_servers_v6)
    host_ipv4_loopback_cidr: str = attrs.field(default="127.0.0.1/32", converter=_loopback_cidr)

    def __attrs_post_init__(self) -> None:
        groups = self.owner_groups_include
        if groups != ALL and len(groups) > MAX_OWNER_GROUPS_INCLUDE:
            raise IptablesConfigError(
                f"owner_groups_include: at most {MAX_OWNER_GROUPS_INCLUDE} groups, "
                f"got {len(groups)}"
            )
        if self.proxy_port == self.inbound_capture_port:
            raise IptablesConfigError(
                f"proxy_port and inbound_capture_port are both {self.proxy_port}: outbound and "
                "inbound traffic need their own listeners"
            )

    @property
    def tproxy(self) -> bool:
        """Whether inbound traffic is captured with TPROXY (else REDIRECT)."""
        return self.inbound_interception_mode is InterceptionMode.TPROXY

    @property
    def dns_capture(self) -> bool:
        """Whether DNS rules are written: asked for, and with somewhere to capture DNS to.

        As in Istio, ``redirect_dns`` without ``capture_all_dns`` and without any DNS server
        (from ``/etc/resolv.conf``) captures nothing.
        """
        return self.redirect_dns and (
            self.capture_all_dns or bool(self.dns_servers_v4) or bool(self.dns_servers_v6)
        )
