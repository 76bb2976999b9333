"""What istio-iptables reads from the machine: the proxy's user, local addresses, DNS servers.

Each reader is a small function so :func:`._options.config_from_options` can take stand-ins.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import ipaddress
import os
import pathlib
import pwd
import socket
import struct

from istio_sdk import _resolv
from istio_sdk.proxy.iptables._config import IptablesConfigError, _show

__all__ = [
    "enter_network_namespace",
    "local_addresses",
    "read_resolv_conf",
    "user_id",
    "wants_ipv6",
]

_SIOCGIFADDR = 0x8915  # linux/sockios.h: an interface's IPv4 address
_IF_INET6 = pathlib.Path("/proc/net/if_inet6")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def user_id(name: str) -> str | None:
    """The numeric UID of user ``name``, or None when there is no such user."""
    try:
        return str(pwd.getpwnam(name).pw_uid)
    except KeyError:
        return None


def local_addresses() -> list[Address]:
    """The addresses of this network namespace's interfaces: IPv4 first, then IPv6."""
    found: list[Address] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:  # no IPv4 address on this interface
                continue
            found.append(ipaddress.IPv4Address(answer[20:24]))
    with contextlib.suppress(OSError):
        for line in _IF_INET6.read_text().splitlines():
            fields = line.split()
            if fields:
                found.append(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
    return found


def wants_ipv6(addresses: list[Address], *, dual_stack: bool) -> bool:
    """Istio's rule: IPv6 rules when the Pod's first address is IPv6, or any is with dual stack.

    Loopback and link-local addresses do not count; with none left there is no Pod address
    to decide from, which istio-iptables reports as an error too.
    """
    usable = [a for a in addresses if not (a.is_loopback or a.is_link_local or a.is_multicast)]
    if not usable:
        raise IptablesConfigError(
            "no valid local IP address found to decide on IPv6 (use --ipv6 or --no-ipv6)"
        )
    if dual_stack:
        return any(a.version == 6 for a in usable)
    return usable[0].version == 6


def read_resolv_conf(path: pathlib.Path) -> tuple[list[str], list[str]]:
    """The IPv4 and IPv6 ``nameserver`` addresses of a resolv.conf, in file order."""
    try:
        servers = _resolv.read_resolv_conf(path).nameservers
    except ValueError as exc:
        raise IptablesConfigError(str(exc)) from None
    v4: list[str] = []
    v6: list[str] = []
    for server in servers:
        if "%" in server:
            continue  # a scoped IPv6 address cannot be written into a rule
        (v6 if ":" in server else v4).append(server)
    return v4, v6


_CLONE_NEWNET = 0x40000000  # linux/sched.h


def enter_network_namespace(path: str) -> None:
    """Move this thread into the network namespace at ``path`` (``/var/run/netns/NAME``).

    For the command line, which is one thread: everything after it (local addresses, the
    iptables processes it starts) happens in that namespace, as with Istio's
    ``--network-namespace``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise IptablesConfigError(
            f"--network-namespace: cannot open {_show(path)}: {exc.strerror or exc}"
        ) from None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise IptablesConfigError(
                f"--network-namespace: cannot enter {_show(path)}: {os.strerror(error)}"
            )
    finally:
        os.close(fd)
