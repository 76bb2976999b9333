"""Listening sockets: bind one up front, and read back the port a listener is bound to.

Servers started on port 0 learn their port here, whatever they listen with: a bound socket,
an ``asyncio.Server`` or a grpclib ``Server``.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

__all__ = ["bind_tcp", "bound_port"]


def bind_tcp(host: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket on ``host:port`` (0 picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio and grpclib set TCP_NODELAY only on sockets whose
    # proto says TCP, and accepted sockets inherit it. With Nagle on, a reply written in
    # pieces (HTTP/2 headers, data, trailers) waits for the peer's delayed ACK: ~40 ms a call.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bound_port(listener: Any) -> int:
    """The local port of a bound socket, an ``asyncio.Server`` or a started grpclib ``Server``.

    Raises ``ValueError`` for a server that is not listening (not started, or closed).
    """
    if isinstance(listener, socket.socket):
        return int(listener.getsockname()[1])
    if not isinstance(listener, asyncio.AbstractServer):
        # grpclib keeps its asyncio server private; this is the one place that reads it.
        listener = getattr(listener, "_server", None)
    sockets = getattr(listener, "sockets", None) or ()
    if not sockets:
        raise ValueError("the server is not listening on any socket")
    return int(sockets[0].getsockname()[1])
