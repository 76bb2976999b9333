"""resolv.conf as the mesh reads it: the name servers and search domains of a Pod.

istio-iptables takes the name servers to capture DNS to them; the agent's DNS proxy forwards to
them and expands short names with the first search domain. The file is read up to
:data:`MAX_RESOLV_CONF` bytes and refused beyond (``/dev/zero`` is not read until memory runs
out).
"""

from __future__ import annotations

import ipaddress
import pathlib

import attrs

__all__ = [
    "MAX_RESOLV_CONF",
    "ResolvConf",
    "parse_resolv_conf",
    "read_resolv_conf",
]

MAX_RESOLV_CONF = 1 << 20


@attrs.frozen
class ResolvConf:
    """``nameserver`` addresses in file order (IPs only) and the ``search`` domains."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()


def parse_resolv_conf(text: str) -> ResolvConf:
    """The name servers and search domains of resolv.conf ``text``.

    A ``nameserver`` that is not an IP address is skipped, as Istio skips it; the last
    ``search`` or ``domain`` line wins, as in glibc.
    """
    servers: list[str] = []
    search: tuple[str, ...] = ()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        if fields[0] == "nameserver":
            try:
                ipaddress.ip_address(fields[1])
            except ValueError:
                continue
            servers.append(fields[1])
        elif fields[0] == "search":
            search = tuple(fields[1:])
        elif fields[0] == "domain":
            search = (fields[1],)
    return ResolvConf(tuple(servers), search)


def read_resolv_conf(path: pathlib.Path | str) -> ResolvConf:
    """:func:`parse_resolv_conf` of the file at ``path``.

    Raises ``ValueError`` naming the file and why when it cannot be read or is too large;
    callers turn it into their own error type.
    """
    path = pathlib.Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_RESOLV_CONF + 1)  # never all of /dev/zero
    except OSError as exc:
        raise ValueError(f"failed to load {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_RESOLV_CONF:
        raise ValueError(f"failed to load {path}: larger than {MAX_RESOLV_CONF} bytes")
    return parse_resolv_conf(data.decode(errors="replace"))
