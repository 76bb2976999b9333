"""Binding listeners and reading back their port (istio_sdk._net), and "now" in UTC."""

from __future__ import annotations

import asyncio
import datetime
import socket

import pytest

from istio_sdk._grpc import create_server
from istio_sdk._net import bind_tcp, bound_port
from istio_sdk.timeutil import utcnow


async def _accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _connects(port: int) -> bool:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()
    return True


async def test_a_socket_bound_to_port_0_reports_the_port_it_got() -> None:
    sock = bind_tcp("127.0.0.1", 0)
    server = await asyncio.start_server(_accept, sock=sock)
    try:
        port = bound_port(sock)
        assert port > 0
        assert bound_port(server) == port
        assert await _connects(port)
    finally:
        server.close()
        await server.wait_closed()


async def test_connections_accepted_on_a_bound_socket_have_nagle_off() -> None:
    # a reply written in pieces must not wait ~40 ms for the peer's delayed ACK
    accepted: asyncio.Queue[int] = asyncio.Queue()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.put_nowait(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(record, sock=bind_tcp("127.0.0.1", 0))
    try:
        assert await _connects(bound_port(server))
        assert await asyncio.wait_for(accepted.get(), 10) != 0
    finally:
        server.close()
        await server.wait_closed()


async def test_the_port_of_a_grpclib_server() -> None:
    server = create_server([])
    await server.start("127.0.0.1", 0)
    try:
        port = bound_port(server)
        assert await _connects(port)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_that_is_not_listening_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not listening"):
        bound_port(create_server([]))


def test_bind_tcp_refuses_a_port_in_use() -> None:
    first = bind_tcp("127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            second = bind_tcp("127.0.0.1", bound_port(first))
            second.close()
    finally:
        first.close()


def test_utcnow_is_aware_and_in_utc() -> None:
    now = utcnow()
    assert now.tzinfo is datetime.UTC
    assert now.utcoffset() == datetime.timedelta(0)
