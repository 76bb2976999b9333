"""The DNS proxy for real: dnspython queries over UDP and TCP against a proxy fed by our Pilot
over NDS, forwarding to a tiny upstream this test starts on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import attrs
import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from proxy.dns.fake_upstream import FakeUpstream

from istio_sdk import DiscoveryServer, PilotClient
from istio_sdk.config import load_resources
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.translate import PushContextGenerator
from istio_sdk.proxy.dns import DnsProxy, DnsProxyError, NameTableFollower, dns_node

MESH = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: other}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: bookinfo}
spec:
  clusterIP: None
  ports: [{name: tcp, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: bookinfo, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: tcp, port: 5432}]
endpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2]}, {addresses: [10.0.0.3]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: bookinfo}
spec:
  hosts: [api.example.com]
  addresses: [192.0.2.10]
  ports: [{number: 443, name: tls}]
"""
SEARCH = ["bookinfo.svc.cluster.local", "svc.cluster.local", "cluster.local"]
TIMEOUT = 5.0


def mesh(extra: str = "") -> PushContext:
    return PushContext.build(load_resources(textwrap.dedent(MESH + extra)))


@attrs.define
class Setup:
    pilot: DiscoveryServer
    generator: PushContextGenerator
    upstream: FakeUpstream
    proxy: DnsProxy
    follower: NameTableFollower

    @property
    def where(self) -> tuple[str, int]:
        return self.proxy.address


async def start_proxy(upstream: str, **kw: Any) -> DnsProxy:
    proxy = DnsProxy(
        namespace="bookinfo",
        domain="bookinfo.svc.cluster.local",
        port=0,
        upstream=[upstream],
        search=SEARCH,
        **kw,
    )
    await proxy.start()
    return proxy


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    generator = PushContextGenerator(mesh())
    pilot = DiscoveryServer(generator, debounce_after=0.01, debounce_max=0.5)
    await pilot.start("127.0.0.1", 0)
    upstream = FakeUpstream()
    address = await upstream.start()
    proxy = await start_proxy(address, upstream_timeout=0.5)
    follower = NameTableFollower(
        proxy, f"127.0.0.1:{pilot.port}", node=dns_node("10.1.0.1", "app", "bookinfo")
    )
    await follower.start()
    try:
        await eventually(lambda: follower.tables == 1)  # the first table is in
        yield Setup(pilot, generator, upstream, proxy, follower)
    finally:
        await follower.close()
        await proxy.close()
        await upstream.close()
        await pilot.stop()


async def ask(
    where: tuple[str, int], name: str, rdtype: str = "A", *, tcp: bool = False, **kw: Any
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)
    if tcp:
        return await dns.asyncquery.tcp(query, where[0], port=where[1], timeout=TIMEOUT)
    return await dns.asyncquery.udp(query, where[0], port=where[1], timeout=TIMEOUT)


def addresses(response: dns.message.Message) -> list[str]:
    return sorted(str(rd) for rrset in response.answer if rrset.rdtype == 1 for rd in rrset)


async def udp_exchange(where: tuple[str, int], data: bytes, wait: float = 0.5) -> bytes | None:
    """Send one datagram as it is and return the first reply (None after ``wait`` seconds)."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, reply: bytes, addr: Any) -> None:
            if not got.done():
                got.set_result(reply)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=where)
    try:
        transport.sendto(data)
        try:
            return await asyncio.wait_for(got, wait)
        except TimeoutError:
            return None
    finally:
        transport.close()


async def eventually(condition: Any) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_pilots_names_are_answered_with_the_pods_search_expansion(
    setup: Setup, tcp: bool
) -> None:
    for name in (
        "reviews.",
        "reviews.bookinfo.",
        "reviews.bookinfo.svc.",
        "reviews.bookinfo.svc.cluster.local.",
        "REVIEWS.Bookinfo.",
    ):
        response = await ask(setup.where, name, tcp=tcp)
        assert response.rcode() == dns.rcode.NOERROR, name
        assert response.flags & dns.flags.AA
        assert addresses(response) == ["10.96.0.10"], name
        assert response.answer[0].ttl == 30
    # the first search domain's expansion answers with a CNAME to the name and its address
    response = await ask(setup.where, "api.example.com.bookinfo.svc.cluster.local.", tcp=tcp)
    cname, _ = response.answer
    assert cname.rdtype == dns.rdatatype.CNAME and str(cname[0].target) == "api.example.com."
    assert addresses(response) == ["192.0.2.10"]
    # a headless service answers with its endpoints
    assert addresses(await ask(setup.where, "db.", tcp=tcp)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert setup.upstream.seen == []  # none of that went upstream


async def test_short_names_of_another_namespace_and_other_types_go_upstream(setup: Setup) -> None:
    assert addresses(await ask(setup.where, "ratings.other.")) == ["10.96.0.20"]
    response = await ask(setup.where, "ratings.")  # not the Pod's namespace: not ours
    assert response.rcode() == dns.rcode.NXDOMAIN  # the upstream's answer
    mx = await ask(setup.where, "reviews.", "MX")
    assert [str(rd) for rd in mx.answer[0]] == ["10 mail.upstream.test."]
    assert setup.upstream.seen == ["ratings.", "reviews."]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_a_known_name_without_the_family_asked_is_nodata_not_nxdomain(
    setup: Setup, tcp: bool
) -> None:
    response = await ask(setup.where, "reviews.", "AAAA", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR and response.answer == []
    assert setup.upstream.seen == []


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_other_names_are_forwarded_and_the_upstream_answer_relayed(
    setup: Setup, tcp: bool
) -> None:
    response = await ask(setup.where, "www.upstream.test.", tcp=tcp)
    assert addresses(response) == ["192.0.2.53"]
    assert not response.flags & dns.flags.AA
    missing = await ask(setup.where, "nowhere.invalid.", tcp=tcp)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert setup.upstream.seen == ["www.upstream.test.", "nowhere.invalid."]


async def test_upstream_answers_for_another_question_or_garbage_are_ignored() -> None:
    upstream = FakeUpstream(decoys=True)
    proxy = await start_proxy(await upstream.start())
    await proxy.load_name_table({})
    try:
        for i in range(5):
            response = await ask(proxy.address, f"w{i}.upstream.test.")
            assert addresses(response) == ["192.0.2.53"]
            assert str(response.question[0].name) == f"w{i}.upstream.test."
    finally:
        await proxy.close()
        await upstream.close()


async def test_an_upstream_that_refuses_is_skipped_without_waiting_for_the_timeout() -> None:
    upstream = FakeUpstream()
    good = await upstream.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    # a 60 s timeout: only the ICMP error can make these answers arrive within ask()'s 5 s
    proxy = DnsProxy(port=0, upstream=[closed, good], search=[], upstream_timeout=60)
    await proxy.start()
    await proxy.load_name_table({})
    try:
        for i in range(4):
            assert addresses(await ask(proxy.address, f"r{i}.upstream.test.")) == ["192.0.2.53"]
        lonely = DnsProxy(port=0, upstream=[closed], search=[], upstream_timeout=60)
        async with lonely:
            await lonely.load_name_table({})
            assert (await ask(lonely.address, "x.upstream.test.")).rcode() == dns.rcode.SERVFAIL
    finally:
        await proxy.close()
        await upstream.close()


async def test_a_service_entry_change_reaches_the_proxy_over_nds(setup: Setup) -> None:
    added = """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: new, namespace: bookinfo}
spec:
  hosts: [new.example.com]
  addresses: [192.0.2.77]
  ports: [{number: 80, name: http}]
"""
    loaded = setup.follower.tables
    request = setup.generator.apply(mesh(added))
    assert request is not None
    setup.pilot.push(request)
    await eventually(lambda: setup.follower.tables > loaded)
    assert addresses(await ask(setup.where, "new.example.com.")) == ["192.0.2.77"]
    assert setup.upstream.seen == []


async def test_big_upstream_answers_are_cut_with_tc_over_udp_and_whole_over_tcp(
    setup: Setup,
) -> None:
    query = dns.message.make_query("giant.upstream.test.", "A")
    data = await udp_exchange(setup.where, query.to_wire(), TIMEOUT)
    assert data is not None and len(data) <= 512
    cut = dns.message.from_wire(data)
    assert cut.flags & dns.flags.TC and 0 < len(addresses(cut)) < 200
    big = await ask(setup.where, "giant.upstream.test.", use_edns=0, payload=4096)
    assert len(addresses(big)) == 200  # the client said it takes 4096 bytes
    assert len(addresses(await ask(setup.where, "giant.upstream.test.", tcp=True))) == 200


async def test_before_the_first_name_table_queries_get_servfail() -> None:
    upstream = FakeUpstream()
    proxy = await start_proxy(await upstream.start())
    try:
        assert not proxy.ready
        response = await ask(proxy.address, "www.upstream.test.")
        assert response.rcode() == dns.rcode.SERVFAIL
        assert upstream.seen == []
    finally:
        await proxy.close()
        await upstream.close()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_a_stalling_upstream_gets_servfail_and_local_names_still_answer(tcp: bool) -> None:
    upstream = FakeUpstream(stall=True)
    proxy = await start_proxy(await upstream.start(), upstream_timeout=0.3)
    await proxy.load_name_table({})
    try:
        stalled = asyncio.ensure_future(ask(proxy.address, "www.upstream.test.", tcp=tcp))
        await eventually(lambda: upstream.seen)
        await proxy.load_name_table(_table())  # the table can change meanwhile
        assert addresses(await ask(proxy.address, "reviews.", tcp=tcp)) == ["10.96.0.10"]
        response = await stalled
        assert response.rcode() == dns.rcode.SERVFAIL
        assert proxy.stats.upstream_failures == 1
    finally:
        await proxy.close()
        await upstream.close()


def _table() -> Any:
    from istio_sdk.pilot.name_table import build_name_table
    from istio_sdk.pilot.proxy import ProxyInfo

    return build_name_table(mesh(), ProxyInfo(id="x", namespace="bookinfo"))


async def test_queries_past_the_inflight_limit_get_servfail_at_once() -> None:
    upstream = FakeUpstream(stall=True)
    proxy = await start_proxy(await upstream.start(), upstream_timeout=1.0, max_inflight=2)
    await proxy.load_name_table({})
    try:
        queries = [
            asyncio.ensure_future(ask(proxy.address, f"q{i}.upstream.test.")) for i in range(2)
        ]
        await eventually(lambda: len(upstream.seen) == 2)
        # both slots taken by a stalled upstream: the next ones are refused, not queued
        extra = [await ask(proxy.address, f"x{i}.upstream.test.") for i in range(5)]
        assert all(r.rcode() == dns.rcode.SERVFAIL for r in extra)
        assert proxy.stats.overloaded == 5 and len(upstream.seen) == 2
        assert all(not q.done() for q in queries)  # still waiting for their upstream
        for query in queries:
            assert (await query).rcode() == dns.rcode.SERVFAIL
    finally:
        await proxy.close()
        await upstream.close()


def header(*, flags: int = 0x0100, qd: int = 1, ar: int = 0) -> bytes:
    """A DNS header: id 0x1234, ``flags`` (RD), one question, no other records by default."""
    return struct.pack("!HHHHHH", 0x1234, flags, qd, 0, 0, ar)


async def test_garbage_packets_are_dropped_or_refused_and_the_proxy_keeps_serving(
    setup: Setup,
) -> None:
    where = setup.where
    good = dns.message.make_query("reviews.", "A").to_wire()
    cases: list[tuple[bytes, int | None]] = [
        (b"", None),
        (b"\x00" * 5, None),  # shorter than a header
        (os.urandom(11), None),
        (header(flags=0x8000), None),  # a response: dropped, no reflection
        (header(flags=0x2800), dns.rcode.NOTIMP),  # opcode UPDATE
        (header(qd=2) + good[12:], dns.rcode.FORMERR),
        (header(qd=0), dns.rcode.FORMERR),
        (header() + b"\x3fabc", dns.rcode.FORMERR),  # a label running past the end
        (header() + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),  # a pointer loop
        (header() + good[12:-3], dns.rcode.FORMERR),  # the question cut short
        (header(ar=1) + good[12:] + b"\x00\x00\x29\xff", dns.rcode.FORMERR),  # a cut OPT
    ]
    for data, expected in cases:
        reply = await udp_exchange(where, data, 0.3 if expected is None else TIMEOUT)
        if expected is None:
            assert reply is None, data
            continue
        assert reply is not None and len(reply) == 12, data
        ident, flags = struct.unpack("!HH", reply[:4])
        assert ident == 0x1234 and flags & 0x8000 and flags & 0xF == expected, data
    for _ in range(50):  # random junk with a query-like header
        await udp_exchange(where, header() + os.urandom(40), 0.05)
    assert addresses(await ask(where, "reviews.")) == ["10.96.0.10"]
    # over TCP: a garbage message is answered FORMERR; a short header ends the connection
    reader, writer = await asyncio.open_connection(*where)
    writer.write(struct.pack("!H", 14) + header() + b"\x3f\x00")
    size = struct.unpack("!H", await reader.readexactly(2))[0]
    assert (await reader.readexactly(size))[3] & 0xF == dns.rcode.FORMERR
    writer.write(struct.pack("!H", 3) + b"abc")
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed by the proxy
    writer.close()
    assert addresses(await ask(where, "reviews.", tcp=True)) == ["10.96.0.10"]


async def test_huge_queries_are_refused_or_answered_within_bounds(setup: Setup) -> None:
    where = setup.where
    # a 65000-byte datagram of garbage after a query header
    reply = await udp_exchange(where, header() + b"\x01a" * 32494, TIMEOUT)
    assert reply is not None and reply[3] & 0xF == dns.rcode.FORMERR
    # a valid query carrying a 60 KB EDNS option, over UDP and TCP: answered as usual
    option = dns.edns.GenericOption(65001, b"x" * 60000)
    query = dns.message.make_query("reviews.", "A", use_edns=0, payload=1232, options=[option])
    wire = query.to_wire(max_size=65535)
    reply = await udp_exchange(where, wire, TIMEOUT)
    assert reply is not None and addresses(dns.message.from_wire(reply)) == ["10.96.0.10"]
    assert len(reply) <= 1232
    reader, writer = await asyncio.open_connection(*where)
    writer.write(struct.pack("!H", len(wire)) + wire)
    size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TIMEOUT))[0]
    assert addresses(dns.message.from_wire(await reader.readexactly(size))) == ["10.96.0.10"]
    writer.close()
    # a TCP message of the largest size the length prefix allows
    reader, writer = await asyncio.open_connection(*where)
    writer.write(struct.pack("!H", 65535) + header() + b"\x00" * (65535 - 12))
    size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TIMEOUT))[0]
    assert (await reader.readexactly(size))[3] & 0xF == dns.rcode.FORMERR
    writer.close()
    assert addresses(await ask(where, "reviews.")) == ["10.96.0.10"]


def test_bad_settings_are_typed_errors(tmp_path: Any) -> None:
    with pytest.raises(DnsProxyError, match="not an IP address"):
        DnsProxy(upstream=["dns.example.com"], search=[])
    with pytest.raises(DnsProxyError, match="port must be"):
        DnsProxy(upstream=["127.0.0.1:99999"], search=[])
    with pytest.raises(DnsProxyError, match="failed to load"):
        DnsProxy(resolv_conf=tmp_path / "missing")
    with pytest.raises(DnsProxyError, match="positive"):
        DnsProxy(upstream=[], search=[], upstream_timeout=0)
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.96.0.53\nnameserver [::1]:5353\nsearch a.svc b.svc\n")
    proxy = DnsProxy(resolv_conf=conf)
    assert proxy.upstreams == [("10.96.0.53", 53)] and proxy.search == ("a.svc", "b.svc")
    both = DnsProxy(upstream=["[::1]:5353", "127.0.0.1:53", "10.0.0.1"], search=[])
    assert both.upstreams == [("::1", 5353), ("127.0.0.1", 53), ("10.0.0.1", 53)]


async def test_a_follower_on_an_injected_delta_client_loads_the_table() -> None:
    pilot = DiscoveryServer(PushContextGenerator(mesh()))
    await pilot.start("127.0.0.1", 0)
    client = PilotClient(
        f"127.0.0.1:{pilot.port}", node=dns_node("10.1.0.1", "app", "bookinfo"), mode="delta"
    )
    try:
        async with (
            DnsProxy(namespace="bookinfo", domain="bookinfo.svc.cluster.local", port=0,
                     upstream=[], search=SEARCH) as proxy,
            NameTableFollower(proxy, client=client) as follower,
        ):  # fmt: skip
            await eventually(lambda: follower.tables == 1)
            assert proxy.ready and client.validator is not None
            assert addresses(await ask(proxy.address, "reviews.")) == ["10.96.0.10"]
    finally:
        await pilot.stop()


async def test_a_port_taken_is_a_typed_error() -> None:
    async with DnsProxy(port=0, upstream=[], search=[]) as first:
        with pytest.raises(DnsProxyError, match="cannot listen"):
            await DnsProxy(port=first.address[1], upstream=[], search=[]).start()


async def test_resolv_conf_servers_are_where_queries_go(tmp_path: Any) -> None:
    upstream = FakeUpstream()
    await upstream.start()
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver 127.0.0.1\nsearch {' '.join(SEARCH)}\n")
    proxy = DnsProxy(namespace="bookinfo", domain="bookinfo.svc.cluster.local", port=0,
                     resolv_conf=conf, upstream=[f"127.0.0.1:{upstream.port}"])  # fmt: skip
    # resolv.conf gives the search domains here; the port of a test upstream is not 53
    assert proxy.search == tuple(SEARCH)
    async with proxy:
        await proxy.load_name_table(_table())
        response = await ask(proxy.address, "api.example.com.bookinfo.svc.cluster.local.")
        assert addresses(response) == ["192.0.2.10"]
        assert addresses(await ask(proxy.address, "x.upstream.test.")) == ["192.0.2.53"]
    await upstream.close()


async def tcp_query(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    query = dns.message.make_query("api.example.com.", "A").to_wire()
    writer.write(struct.pack("!H", len(query)) + query)
    size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TIMEOUT))[0]
    return await reader.readexactly(size)


async def test_tcp_connections_past_the_limit_are_closed_at_once() -> None:
    # idle connections would be kept 60 s: only the limit can close one within TIMEOUT
    proxy = DnsProxy(port=0, upstream=[], search=[], max_connections=1, tcp_idle_timeout=60)
    async with proxy:
        await proxy.load_name_table(_table())
        first = await asyncio.open_connection(*proxy.address)
        await tcp_query(*first)  # answered: this connection holds the one slot
        second_reader, second_writer = await asyncio.open_connection(*proxy.address)
        assert await asyncio.wait_for(second_reader.read(), TIMEOUT) == b""
        second_writer.close()
        first[1].close()
        await first[1].wait_closed()
        async with asyncio.timeout(TIMEOUT):  # the slot is free again once the proxy sees it
            while True:
                with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                    third = await asyncio.open_connection(*proxy.address)
                    await tcp_query(*third)
                    third[1].close()
                    break
                await asyncio.sleep(0.05)


async def test_idle_tcp_connections_are_closed_after_the_idle_timeout() -> None:
    async with DnsProxy(port=0, upstream=[], search=[], tcp_idle_timeout=0.3) as proxy:
        await proxy.load_name_table(_table())
        reader, writer = await asyncio.open_connection(*proxy.address)
        await tcp_query(reader, writer)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()


async def test_the_proxy_listens_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    async with DnsProxy(host="::1", port=0, upstream=[], search=[]) as proxy:
        await proxy.load_name_table(_table())
        assert proxy.address[0] == "::1"
        for tcp in (False, True):
            assert addresses(await ask(proxy.address, "api.example.com.", tcp=tcp)) == [
                "192.0.2.10"
            ]
