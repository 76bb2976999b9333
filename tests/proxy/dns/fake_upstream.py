"""A tiny upstream DNS server for the proxy's tests (dnspython, UDP and TCP, 127.0.0.1 only).

It answers A queries under ``upstream.test.`` with 192.0.2.53, ``giant.upstream.test.`` with
200 addresses (more than a 512-byte UDP reply holds), MX for any name, and NXDOMAIN for the rest.
With ``stall`` set it reads queries and never answers; with ``decoys`` set, each UDP answer is
preceded by one for another question and by garbage, both with the query's id. ``seen`` lists
the names it was asked.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from istio_sdk._net import bind_tcp


class FakeUpstream:
    def __init__(self, *, stall: bool = False, decoys: bool = False) -> None:
        self.stall = stall
        self.decoys = decoys
        self.seen: list[str] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().lower()
        self.seen.append(name)
        if self.stall:
            return None
        response = dns.message.make_response(query)
        if question.rdtype == dns.rdatatype.MX:
            response.answer.append(
                dns.rrset.from_text(name, 60, "IN", "MX", "10 mail.upstream.test.")
            )
        elif name == "giant.upstream.test.":
            ips = [f"10.9.0.{i}" for i in range(200)]
            response.answer.append(dns.rrset.from_text_list(name, 60, "IN", "A", ips))
        elif name.endswith("upstream.test.") and question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.53"))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                reply = upstream.answer(data)
                if reply is not None and upstream.decoys:
                    other = dns.message.make_query(
                        "decoy.example.", "A", id=int.from_bytes(data[:2])
                    )
                    self.transport.sendto(dns.message.make_response(other).to_wire(), addr)
                    self.transport.sendto(data[:2] + b"\x81\x80garbage", addr)
                if reply is not None:
                    self.transport.sendto(reply, addr)

        for _ in range(20):  # a free UDP port may be taken for TCP: try another
            udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
            port = udp.get_extra_info("sockname")[1]
            try:
                sock = bind_tcp("127.0.0.1", port)
            except OSError:
                udp.close()
                continue
            self._udp, self.port = udp, port  # type: ignore[assignment]
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=sock)
            return f"127.0.0.1:{port}"
        raise OSError("no port free for UDP and TCP")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = self.answer(await reader.readexactly(size))
                if reply is None:
                    await reader.read()  # stall until the client gives up
                    return
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
