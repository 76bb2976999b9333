"""The DNS proxy's sockets: UDP and TCP on one port, forwarding upstream with bounded waits.

:class:`DnsProxy` is the thin loop around :class:`~istio_sdk.proxy.dns._resolver.Resolver`:
datagrams and TCP messages go in, the resolver decides, and forwarded queries go to the upstream
servers (resolv.conf's, or those given) over the transport the client used, one server after
another in random order, each given ``upstream_timeout`` seconds. At most ``max_inflight``
queries are upstream at once; past that a query gets SERVFAIL at once rather than a queue, so a
stalling upstream costs memory in proportion to the limit, never to the load. TCP clients get
``tcp_idle_timeout`` seconds between queries and at most ``max_connections`` connections.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import pathlib
import random
import time
from collections.abc import Sequence
from typing import Any

import attrs
import dns.asyncquery
import dns.exception
import dns.message

from istio_sdk._net import bind_tcp
from istio_sdk._resolv import read_resolv_conf
from istio_sdk.proxy.dns._resolver import Drop, Forward, Reply, Resolver, Transport
from istio_sdk.proxy.dns._table import LookupTable, NameInfo
from istio_sdk.proxy.dns._upstream import UdpUpstream

__all__ = ["DEFAULT_PORT", "DnsProxy", "DnsProxyError", "DnsStats"]

log = logging.getLogger("istio_sdk.proxy.dns")

DEFAULT_PORT = 15053
"""Where istio-iptables' ``--redirect-dns`` sends a Pod's port 53 traffic."""
_BIND_ATTEMPTS = 20


class DnsProxyError(Exception):
    """The DNS proxy cannot be set up (bad upstream address, unreadable resolv.conf, a port
    taken); the message says which."""


@attrs.define
class DnsStats:
    """What the proxy did since it started (istio-agent's ``dns_*`` counters and more)."""

    requests: int = 0
    answered: int = 0
    """Answered from the name table."""
    upstream_requests: int = 0
    upstream_failures: int = 0
    """Forwarded queries that got SERVFAIL: every upstream failed or timed out."""
    overloaded: int = 0
    """Queries refused with SERVFAIL because ``max_inflight`` were already upstream."""
    dropped: int = 0
    malformed: int = 0
    """Packets answered FORMERR or NOTIMP, or dropped."""
    upstream_seconds: float = 0.0


def _parse_upstream(text: str) -> tuple[str, int]:
    host, port = text, 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise DnsProxyError(f"upstream {text!r:.100}: expected IP, IP:PORT or [IPv6]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        port_text = ""
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise DnsProxyError(f"upstream {text!r:.100}: port must be 1-65535")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise DnsProxyError(f"upstream {text!r:.100}: not an IP address") from None
    return host, port


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, proxy: DnsProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        if transport is None:
            return
        proxy = self.proxy
        action = proxy._decide(data, "udp")
        if isinstance(action, Reply):
            transport.sendto(action.data, addr)
        elif isinstance(action, Forward):
            refused = proxy._refused(action)
            if refused is not None:
                transport.sendto(refused, addr)  # no task for a query that cannot go upstream
            else:
                proxy._spawn(self._answer_later(action, addr))

    async def _answer_later(self, action: Forward, addr: Any) -> None:
        data = await self.proxy._forward(action, "udp")
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP socket error: %s", exc)  # ICMP unreachable for a gone client


class DnsProxy:
    """The agent's DNS proxy: answers from Pilot's name table, forwards the rest upstream.

    ``namespace`` and ``domain`` are the Pod's (``domain`` like ``bookinfo.svc.cluster.local``,
    which decides the short names answered). ``upstream`` lists the servers to forward to
    (``IP``, ``IP:PORT``, ``[IPv6]:PORT``); without it, resolv.conf's ``nameserver`` lines are
    used, and its ``search`` domains unless ``search`` is given. Use ``async with`` or
    :meth:`start` / :meth:`close`; feed name tables with :meth:`load_name_table` (or
    :class:`~istio_sdk.proxy.dns.NameTableFollower`, which follows Pilot over NDS).
    """

    def __init__(
        self,
        *,
        namespace: str = "default",
        domain: str = "",
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        upstream: Sequence[str] | None = None,
        search: Sequence[str] | None = None,
        resolv_conf: str | pathlib.Path = "/etc/resolv.conf",
        upstream_timeout: float = 5.0,
        max_inflight: int = 256,
        max_connections: int = 128,
        tcp_idle_timeout: float = 8.0,
        respond_before_sync: bool = False,
    ) -> None:
        if (
            upstream_timeout <= 0
            or max_inflight < 1
            or max_connections < 1
            or tcp_idle_timeout <= 0
        ):
            raise DnsProxyError("timeouts must be positive and limits at least 1")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise DnsProxyError(f"host {host!r:.100}: not an IP address") from None
        if upstream is None or search is None:
            try:
                conf = read_resolv_conf(resolv_conf)
            except ValueError as exc:
                raise DnsProxyError(str(exc)) from None
            upstream = conf.nameservers if upstream is None else upstream
            search = conf.search if search is None else search
        self.upstreams = [_parse_upstream(u) for u in upstream]
        self.search = tuple(search)
        self.namespace = namespace
        self.domain = domain
        self.host = host
        self.port = port
        self.upstream_timeout = upstream_timeout
        self.max_inflight = max_inflight
        self.max_connections = max_connections
        self.tcp_idle_timeout = tcp_idle_timeout
        self.stats = DnsStats()
        self.resolver = Resolver(respond_before_sync=respond_before_sync)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._udp_upstreams: dict[tuple[str, int], UdpUpstream] = {}
        self._inflight = 0
        self._connections = 0
        self._ready = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        """Listen on UDP and TCP (the same port; 0 picks a free one); returns the address."""
        if self._udp is not None:
            raise DnsProxyError("the DNS proxy is already started")
        loop = asyncio.get_running_loop()
        for _ in range(_BIND_ATTEMPTS if self.port == 0 else 1):
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
                )
            except OSError as exc:
                raise DnsProxyError(
                    f"cannot listen on UDP {self.host}:{self.port}: {exc}"
                ) from None
            port = int(udp.get_extra_info("sockname")[1])
            try:
                sock = bind_tcp(self.host, port)
            except OSError as exc:
                udp.close()
                if exc.errno == errno.EADDRINUSE and self.port == 0:
                    continue  # the free UDP port is taken for TCP: try another
                raise DnsProxyError(f"cannot listen on TCP {self.host}:{port}: {exc}") from None
            self._udp = udp
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=sock)
            self.port = port
            log.info("DNS proxy listening on %s:%d (UDP and TCP)", self.host, port)
            return self.address
        raise DnsProxyError(f"no port free for both UDP and TCP on {self.host}")

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the proxy listens on (UDP and TCP)."""
        return self.host, self.port

    async def close(self) -> None:
        """Stop listening, end TCP connections and abandon queries still upstream."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        server, self._tcp = self._tcp, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        pending = [*self._tasks, *self._handlers]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        for upstream in self._udp_upstreams.values():
            upstream.close()
        self._udp_upstreams.clear()

    async def __aenter__(self) -> DnsProxy:
        if self._udp is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the table -------------------------------------------------------------------------
    def set_table(self, table: LookupTable) -> None:
        """Answer from ``table`` from now on."""
        self.resolver.table = table
        self._ready.set()

    async def load_name_table(self, name_table: Any) -> LookupTable:
        """Build the lookup table of a ``NameTable`` (off the event loop) and answer from it."""
        entries: dict[str, NameInfo] = dict(getattr(name_table, "table", name_table))
        table = await asyncio.to_thread(
            LookupTable.build,
            entries,
            namespace=self.namespace,
            domain=self.domain,
            search=self.search,
        )
        for problem in table.skipped[:20]:
            log.warning("name table entry left out: %s", problem)
        self.set_table(table)
        return table

    @property
    def ready(self) -> bool:
        """Whether a name table has arrived (before that, queries get SERVFAIL)."""
        return self._ready.is_set()

    async def wait_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait for the first name table."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    # -- queries ---------------------------------------------------------------------------
    def _decide(self, data: bytes, transport: Transport) -> Reply | Forward | Drop:
        self.stats.requests += 1
        action = self.resolver.handle(data, transport)
        if isinstance(action, Drop):
            self.stats.dropped += 1
            self.stats.malformed += 1
        elif isinstance(action, Reply):
            if action.answered:
                self.stats.answered += 1
            elif action.malformed:
                self.stats.malformed += 1
        return action

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _refused(self, action: Forward) -> bytes | None:
        """SERVFAIL when ``max_inflight`` queries are upstream already, else None."""
        if self._inflight < self.max_inflight:
            return None
        self.stats.overloaded += 1
        return self.resolver.forwarded(action, None)

    async def _forward(self, action: Forward, transport: Transport) -> bytes:
        refused = self._refused(action)
        if refused is not None:
            return refused
        self._inflight += 1
        self.stats.upstream_requests += 1
        started = time.monotonic()
        try:
            answer = await self._ask_upstream(action, transport)
        finally:
            self._inflight -= 1
            self.stats.upstream_seconds += time.monotonic() - started
        if answer is None:
            self.stats.upstream_failures += 1
        return self.resolver.forwarded(action, answer)

    async def _ask_upstream(
        self, action: Forward, transport: Transport
    ) -> dns.message.Message | None:
        servers = list(self.upstreams)
        random.shuffle(servers)
        for host, port in servers:
            try:
                if transport == "udp":
                    upstream = self._udp_upstreams.get((host, port))
                    if upstream is None:
                        upstream = self._udp_upstreams[(host, port)] = UdpUpstream(host, port)
                    return await upstream.ask(action.query, action.data, self.upstream_timeout)
                async with asyncio.timeout(self.upstream_timeout):
                    return await dns.asyncquery.tcp(
                        action.query, host, timeout=self.upstream_timeout, port=port
                    )
            except (
                TimeoutError,
                dns.exception.DNSException,
                OSError,
                EOFError,
            ) as exc:
                log.debug("upstream %s:%d failed: %s", host, port, type(exc).__name__)
        return None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= self.max_connections or self._tcp is None:
            writer.close()
            return
        self._connections += 1
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        self._writers.add(writer)
        try:
            await self._tcp_queries(reader, writer)
        finally:
            self._connections -= 1
            self._writers.discard(writer)
            if handler is not None:
                self._handlers.discard(handler)
            writer.close()

    async def _tcp_queries(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(self.tcp_idle_timeout):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            action = self._decide(data, "tcp")
            if isinstance(action, Drop):
                return  # a client speaking garbage gets no more of our time
            if isinstance(action, Forward):
                # Upstream in a task of its own, which close() cancels; this handler then ends
                # without being cancelled itself (asyncio's stream callback dislikes that).
                task = self._spawn(self._forward(action, "tcp"))
                await asyncio.wait({task})
                if task.cancelled():
                    return
                reply = task.result()
            else:
                reply = action.data
            writer.write(len(reply).to_bytes(2, "big") + reply)
            try:
                async with asyncio.timeout(self.tcp_idle_timeout):
                    await writer.drain()
            except (TimeoutError, ConnectionError):
                return
