"""Server addresses on the command line: ``HOST:PORT`` flags and failing fast when nobody listens.

Every command that dials a server parses its flag with :func:`parse_address` (a usage error,
exit 2, naming the flag) and calls :func:`check_reachable` before starting a client, so a
refused or unreachable address is one line on stderr at once instead of a client quietly
retrying until its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket

from istio_sdk.cli._command import CommandError

__all__ = ["check_reachable", "parse_address"]


def parse_address(flag: str, value: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets: ``[::1]:15010``) as ``(host, port)``.

    Raises :class:`CommandError` (exit 2) naming ``flag`` and the value when the port is
    missing, not a number in 1..65535, or the host is empty.
    """
    usage = f"{flag} wants HOST:PORT (for example 127.0.0.1:15010), got {value!r}"
    text = value.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise CommandError(usage)
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise CommandError(f"{flag}: {host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or not host or ":" in host:
            # no port at all, or an IPv6 address without brackets
            raise CommandError(usage)
    if not (port_text.isascii() and port_text.isdigit()):
        raise CommandError(usage)
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise CommandError(f"{flag}: port {port} is out of range (1-65535)")
    return host, port


async def check_reachable(
    flag: str,
    host: str,
    port: int,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - a plain deadline for one connect
) -> None:
    """Open (and close) one TCP connection to ``host:port``.

    Raises :class:`CommandError` (exit 1) naming the flag and the address when the connection
    is refused, the host does not resolve, or nothing answers within ``timeout`` seconds.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        raise CommandError(f"{flag} {where}: no answer within {timeout:g}s", exit_code=1) from None
    except OSError as exc:
        reason = _reason(exc)
        raise CommandError(f"{flag} {where}: cannot connect: {reason}", exit_code=1) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _reason(exc: OSError) -> str:
    # asyncio words a refusal as "Connect call failed ('127.0.0.1', 1)"; say what happened.
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
