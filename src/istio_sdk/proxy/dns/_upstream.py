"""Forwarding to one upstream DNS server over UDP on one socket, queries matched by id.

A socket per forwarded query (what ``dns.asyncquery.udp`` does) costs a bind, a close and an
event-loop registration each time; :class:`UdpUpstream` keeps one connected socket per upstream
server instead, gives each query in flight an id of its own (the client's id is put back on the
answer) and matches answers by id and question. The kernel drops datagrams from anyone but the
server on a connected socket, an answer whose question differs is ignored, and an ICMP error
fails every query waiting on that server at once, so the next server is tried without waiting
for the timeout.
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Any

import dns.exception
import dns.flags
import dns.message
from dns.message import Message

__all__ = ["UdpUpstream"]

_ID = struct.Struct("!H")


class UdpUpstream(asyncio.DatagramProtocol):
    """One upstream server, one UDP socket; :meth:`ask` sends a query and waits for its answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._transport: asyncio.DatagramTransport | None = None
        self._opening = asyncio.Lock()
        self._pending: dict[int, tuple[asyncio.Future[Message], Message]] = {}

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail_all(ConnectionError(f"socket to {self.host}:{self.port} closed"))

    def error_received(self, exc: Exception) -> None:
        self._fail_all(ConnectionError(f"{self.host}:{self.port}: {exc}"))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12:
            return
        waiting = self._pending.get(_ID.unpack_from(data)[0])
        if waiting is None:
            return  # late (timed out) or not ours
        future, query = waiting
        try:
            answer = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError, struct.error):
            return  # garbage with a matching id: keep waiting for the real answer
        if answer.question != query.question or not answer.flags & dns.flags.QR:
            return
        if not future.done():
            future.set_result(answer)

    def _fail_all(self, error: Exception) -> None:
        for future, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(error)

    async def _open(self) -> asyncio.DatagramTransport:
        if self._transport is None:
            async with self._opening:  # one socket, however many queries arrive at once
                if self._transport is None:
                    await self._connect()
        if self._transport is None:
            raise ConnectionError(f"cannot reach {self.host}:{self.port}")
        return self._transport

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: self, remote_addr=(self.host, self.port))
        except OSError as exc:
            raise ConnectionError(f"cannot reach {self.host}:{self.port}: {exc}") from None

    async def ask(
        self,
        query: dns.message.Message,
        data: bytes,
        timeout: float,  # noqa: ASYNC109
    ) -> dns.message.Message:
        """Send ``data`` (the wire form of ``query``) and return the answer, with the query's id.

        Raises ``ConnectionError`` (an ICMP error, the socket closed) or ``TimeoutError`` when
        there is none in ``timeout``.
        """
        transport = await self._open()
        ident = random.randrange(65536)
        while ident in self._pending:
            ident = random.randrange(65536)
        future: asyncio.Future[dns.message.Message] = asyncio.get_running_loop().create_future()
        self._pending[ident] = (future, query)
        try:
            transport.sendto(_ID.pack(ident) + data[2:])
            async with asyncio.timeout(timeout):
                answer = await future
        finally:
            del self._pending[ident]
        answer.id = query.id
        return answer

    def close(self) -> None:
        """Close the socket; queries waiting on it fail."""
        if self._transport is not None:
            self._transport.close()
