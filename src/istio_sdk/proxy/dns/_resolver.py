"""What the DNS proxy does with one packet, sans I/O: answer it, forward it, refuse it or drop it.

:meth:`Resolver.handle` takes the bytes of a query (from UDP or TCP) and returns an action:

- :class:`Reply`: bytes to send back (an answer from the lookup table, or an error);
- :class:`Forward`: the parsed query, to send upstream; the upstream's answer (or ``None`` when
  every upstream failed or timed out) then goes through :meth:`Resolver.forwarded`;
- :class:`Drop`: send nothing.

The rules are the agent's (istio-agent's ``ServeDNS`` on miekg/dns): a packet shorter than a DNS
header, or one that is a response, is dropped (a reply to garbage only helps amplification); a
header that parses but a body that does not, or anything but one question (at most one answer,
one authority and two additional records), gets FORMERR; opcodes other than QUERY get NOTIMP;
before the first name table arrives a query gets SERVFAIL (or goes upstream with
``respond_before_sync``); a name the table knows is answered authoritatively, addresses in
random order; anything else is forwarded as it is, and a failed upstream is SERVFAIL. Every reply
fits the client: 512 bytes over UDP unless its EDNS payload says more, 65535 over TCP; what
does not fit is cut at a record boundary with the TC bit set, so the client retries over TCP.
Only the header is read before the counts are checked, so the work per packet stays bounded.
"""

from __future__ import annotations

import struct
from typing import Literal

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rrset

from istio_sdk.proxy.dns._table import LookupTable

__all__ = ["MAX_TCP_SIZE", "MIN_UDP_SIZE", "Drop", "Forward", "Reply", "Resolver", "Transport"]

Transport = Literal["udp", "tcp"]
MIN_UDP_SIZE = 512
MAX_TCP_SIZE = 65535
_HEADER = struct.Struct("!HHHHHH")
_QR = 0x8000
_RD = 0x0100


@attrs.frozen
class Reply:
    """Send ``data`` back to the client."""

    data: bytes
    answered: bool = False
    """From the lookup table (not an error)."""
    malformed: bool = False
    """FORMERR or NOTIMP: the packet was not a query we take."""


@attrs.frozen
class Forward:
    """Ask upstream with ``query``; then call :meth:`Resolver.forwarded`."""

    query: dns.message.Message
    max_size: int
    data: bytes = b""
    """The query as the client sent it (forwarded as it is)."""


@attrs.frozen
class Drop:
    """Send nothing; ``reason`` says why (for counters and debug logs)."""

    reason: str


def _error_header(ident: int, flags: int, rcode: int) -> bytes:
    # Header only: nothing of a malformed body is echoed back.
    opcode_bits = flags & 0x7800
    return _HEADER.pack(ident, _QR | opcode_bits | (flags & _RD) | rcode, 0, 0, 0, 0)


def _fitting(message: dns.message.Message, max_size: int) -> bytes:
    """``message`` on the wire in ``max_size`` bytes: whole, else cut at a record with TC."""
    try:
        return message.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        pass
    records = [(rrset, rdata) for rrset in message.answer for rdata in rrset]
    low, high = 0, len(records) - 1  # the largest count that fits, by bisection
    best = b""
    while low <= high:
        keep = (low + high) // 2
        trial = message.__class__(id=message.id)
        trial.flags = message.flags | dns.flags.TC
        trial.question = message.question
        trial.use_edns(message.edns, message.ednsflags, message.payload)
        trial.set_rcode(message.rcode())
        for rrset, rdata in records[:keep]:
            trial.find_rrset(
                trial.answer, rrset.name, rrset.rdclass, rrset.rdtype, create=True
            ).add(rdata, rrset.ttl)
        try:
            best = trial.to_wire(max_size=max_size)
            low = keep + 1
        except dns.exception.TooBig:
            high = keep - 1
    if best:
        return best
    flags = int(message.flags | dns.flags.TC) & 0xFFFF
    return _HEADER.pack(message.id, flags | message.rcode(), 0, 0, 0, 0)


class Resolver:
    """The decisions of the DNS proxy; :attr:`table` is swapped in as name tables arrive."""

    def __init__(self, *, respond_before_sync: bool = False) -> None:
        self.table: LookupTable | None = None
        self.respond_before_sync = respond_before_sync

    def handle(self, data: bytes, transport: Transport) -> Reply | Forward | Drop:
        """Decide what to do with one query packet."""
        if len(data) < _HEADER.size:
            return Drop("shorter than a DNS header")
        ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
        if flags & _QR:
            return Drop("a response, not a query")
        if (flags >> 11) & 0xF != dns.opcode.QUERY:
            return Reply(_error_header(ident, flags, dns.rcode.NOTIMP), malformed=True)
        if qdcount != 1 or ancount > 1 or nscount > 1 or arcount > 2:
            return Reply(_error_header(ident, flags, dns.rcode.FORMERR), malformed=True)
        try:
            query = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError, struct.error):
            return Reply(_error_header(ident, flags, dns.rcode.FORMERR), malformed=True)
        max_size = self.max_size(query, transport)
        table = self.table
        if table is None:
            if self.respond_before_sync:
                return Forward(query, max_size, data)
            return Reply(self.error(query, dns.rcode.SERVFAIL, max_size))
        question = query.question[0]
        records = table.lookup(question.name, question.rdtype)
        if records is None:
            return Forward(query, max_size, data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA  # the mesh is the authority for its own names
        response.answer = records  # dnspython writes each record set in a random order
        return Reply(_fitting(response, max_size), answered=True)

    @staticmethod
    def max_size(query: dns.message.Message, transport: Transport) -> int:
        """The largest reply the client takes: 65535 over TCP, else its EDNS payload (>= 512)."""
        if transport == "tcp":
            return MAX_TCP_SIZE
        payload = query.payload if query.edns >= 0 else 0
        return min(max(payload, MIN_UDP_SIZE), MAX_TCP_SIZE)

    @staticmethod
    def error(query: dns.message.Message, rcode: dns.rcode.Rcode, max_size: int) -> bytes:
        """A reply to ``query`` carrying ``rcode`` and no records."""
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        return _fitting(response, max_size)

    def forwarded(self, forward: Forward, answer: dns.message.Message | None) -> bytes:
        """The reply to a forwarded query: the upstream's answer as it is, re-encoded to fit
        the client, or SERVFAIL when there was none."""
        if answer is None:
            return self.error(forward.query, dns.rcode.SERVFAIL, forward.max_size)
        return _fitting(answer, forward.max_size)
