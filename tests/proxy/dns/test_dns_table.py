"""The lookup table and the packet decisions, without sockets: istio-agent's own DNS cases."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from istio_sdk.api.istio.networking.nds.v1 import NameTableNameInfo as Info
from istio_sdk.proxy.dns import Forward, LookupTable, Reply, Resolver

# istio-agent's test table (pkg/dns/client/dns_test.go), for a proxy in ns1
TABLE = {
    "www.google.com": Info(ips=["1.1.1.1"], registry="External"),
    "productpage.ns1.svc.cluster.local": Info(
        ips=["9.9.9.9"], registry="Kubernetes", namespace="ns1", shortname="productpage"
    ),
    "example.ns2.svc.cluster.local": Info(
        ips=["10.10.10.10"], registry="Kubernetes", namespace="ns2", shortname="example"
    ),
    "details.ns2.svc.cluster.remote": Info(
        ips=["11.11.11.11", "12.12.12.12", "13.13.13.13", "14.14.14.14"],
        registry="Kubernetes",
        namespace="ns2",
        shortname="details",
    ),
    "ipv6.localhost": Info(ips=["2001:db8:0:0:0:ff00:42:8329"], registry="External"),
    "dual.localhost": Info(ips=["2.2.2.2", "2001:db8:0:0:0:ff00:42:8329"], registry="External"),
    "ipv4.localhost": Info(ips=["2.2.2.2"], registry="External"),
    "*.b.wildcard": Info(ips=["11.11.11.11"], registry="External"),
    "*.wildcard": Info(ips=["10.10.10.10"], registry="External"),
    "*.svc.mesh.company.net": Info(ips=["10.1.2.3"], registry="External"),
    "example.localhost.": Info(ips=["3.3.3.3"], registry="External"),
    "bad..name": Info(ips=["4.4.4.4"], registry="External"),
    "no-ip.example": Info(ips=["not-an-ip", "10.0.0.0/8"], registry="External"),
}
SEARCH = ["ns1.svc.cluster.local", "svc.cluster.local", "cluster.local"]


@pytest.fixture(scope="module")
def table() -> LookupTable:
    return LookupTable.build(TABLE, namespace="ns1", domain="ns1.svc.cluster.local", search=SEARCH)


def look(table: LookupTable, name: str, rdtype: str = "A") -> list[str] | None:
    found = table.lookup(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
    if found is None:
        return None
    return [line for rrset in found for line in rrset.to_text().splitlines()]


CASES = [
    # (name, type, records as text; None: forwarded upstream)
    ("www.google.com.", "A", ["www.google.com. 30 IN A 1.1.1.1"]),
    (
        "www.google.com.ns1.svc.cluster.local.",
        "A",
        [
            "www.google.com.ns1.svc.cluster.local. 30 IN CNAME www.google.com.",
            "www.google.com. 30 IN A 1.1.1.1",
        ],
    ),
    ("www.bing.com.", "A", None),
    (
        "productpage.ns1.svc.cluster.local.",
        "A",
        ["productpage.ns1.svc.cluster.local. 30 IN A 9.9.9.9"],
    ),
    ("productpage.ns1.svc.cluster.local.ns1.svc.cluster.local.", "A", None),
    ("productpage.ns1.", "A", ["productpage.ns1. 30 IN A 9.9.9.9"]),
    ("productpage.", "A", ["productpage. 30 IN A 9.9.9.9"]),
    (
        "productpage.ns1.ns1.svc.cluster.local.",
        "A",
        [
            "productpage.ns1.ns1.svc.cluster.local. 30 IN CNAME productpage.ns1.",
            "productpage.ns1. 30 IN A 9.9.9.9",
        ],
    ),
    ("productpage.ns1.ns1.svc.cluster.local.", "AAAA", []),
    ("example.ns2.", "A", ["example.ns2. 30 IN A 10.10.10.10"]),
    ("example.ns2.svc.", "A", ["example.ns2.svc. 30 IN A 10.10.10.10"]),
    ("example.", "A", None),  # another namespace's short name
    ("details.ns2.", "A", None),  # another cluster domain: no name.namespace
    ("dual.localhost.", "A", ["dual.localhost. 30 IN A 2.2.2.2"]),
    ("dual.localhost.", "AAAA", ["dual.localhost. 30 IN AAAA 2001:db8::ff00:42:8329"]),
    ("ipv6.localhost.", "A", []),
    ("ipv4.localhost.", "AAAA", []),
    ("foo.wildcard.", "A", ["foo.wildcard. 30 IN A 10.10.10.10"]),
    ("a.b.wildcard.", "A", ["a.b.wildcard. 30 IN A 11.11.11.11"]),
    (
        "foo.wildcard.ns1.svc.cluster.local.",
        "A",
        [
            "foo.wildcard.ns1.svc.cluster.local. 30 IN CNAME *.wildcard.",
            "*.wildcard. 30 IN A 10.10.10.10",
        ],
    ),
    ("foo.foons.svc.mesh.company.net.", "A", ["foo.foons.svc.mesh.company.net. 30 IN A 10.1.2.3"]),
    ("example.localhost.", "A", ["example.localhost. 30 IN A 3.3.3.3"]),
    ("Example.LocalHost.", "A", ["example.localhost. 30 IN A 3.3.3.3"]),
    ("productpage.", "MX", None),  # only A and AAAA are answered here
    ("no-ip.example.", "A", None),  # no usable address: not in the table
]


@pytest.mark.parametrize(("name", "rdtype", "expected"), CASES)
def test_istio_agents_cases(
    table: LookupTable, name: str, rdtype: str, expected: list[str] | None
) -> None:
    assert look(table, name, rdtype) == expected


def test_entries_without_a_usable_name_or_address_are_reported(table: LookupTable) -> None:
    assert sorted(p.split(":")[0] for p in table.skipped) == ["bad..name", "no-ip.example"]


def test_the_resolver_answers_authoritatively_in_random_order_and_forwards_the_rest(
    table: LookupTable,
) -> None:
    resolver = Resolver()
    resolver.table = table
    query = dns.message.make_query("details.ns2.svc.cluster.remote.", "A")
    orders = set()
    for _ in range(60):
        action = resolver.handle(query.to_wire(), "udp")
        assert isinstance(action, Reply) and action.answered
        reply = dns.message.from_wire(action.data)
        assert reply.id == query.id and reply.flags & dns.flags.AA
        orders.add(tuple(str(rd) for rd in reply.answer[0]))
    assert len(orders) > 1  # shuffled, as kube-dns does for headless services
    assert {frozenset(o) for o in orders} == {
        frozenset({"11.11.11.11", "12.12.12.12", "13.13.13.13", "14.14.14.14"})
    }
    forward = resolver.handle(dns.message.make_query("www.bing.com.", "A").to_wire(), "tcp")
    assert isinstance(forward, Forward) and forward.max_size == 65535
    failed = dns.message.from_wire(resolver.forwarded(forward, None))
    assert failed.rcode() == dns.rcode.SERVFAIL and failed.id == forward.query.id


def test_before_the_table_queries_fail_or_go_upstream_when_asked_to() -> None:
    wire = dns.message.make_query("www.google.com.", "A").to_wire()
    refused = Resolver().handle(wire, "udp")
    assert isinstance(refused, Reply)
    assert dns.message.from_wire(refused.data).rcode() == dns.rcode.SERVFAIL
    assert isinstance(Resolver(respond_before_sync=True).handle(wire, "udp"), Forward)


_TEXT = st.text(st.characters(codec="utf-8"), max_size=80)
_LABEL = st.from_regex(r"[a-z0-9*_-]{1,70}", fullmatch=True)


@given(
    st.dictionaries(
        st.one_of(_TEXT, st.lists(_LABEL, min_size=1, max_size=6).map(".".join)),
        st.builds(
            Info,
            ips=st.lists(st.one_of(st.ip_addresses().map(str), _TEXT), max_size=4),
            registry=st.sampled_from(["Kubernetes", "External", ""]),
            shortname=st.one_of(_LABEL, _TEXT),
            namespace=st.one_of(_LABEL, _TEXT),
        ),
        max_size=8,
    ),
    st.lists(_LABEL, max_size=3).map(".".join),
)
def test_any_name_table_builds_and_every_name_it_knows_answers(
    entries: dict[str, Info], search: str
) -> None:
    table = LookupTable.build(
        entries, namespace="ns1", domain="ns1.svc.cluster.local", search=[search]
    )
    for host in sorted(table.hosts)[:20]:
        name = dns.name.from_text(host)
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            assert table.lookup(name, rdtype) is not None  # known: answered, maybe NODATA


_QUERIES = st.builds(
    lambda name, rdtype, edns: dns.message.make_query(
        name, rdtype, use_edns=edns is not None, payload=edns or 512
    ).to_wire(),
    st.sampled_from(
        [*(h for h in TABLE if ".." not in h), "www.google.com.ns1.svc.cluster.local", "x.wildcard"]
    ),
    st.sampled_from(["A", "AAAA", "MX", "TXT", "ANY"]),
    st.one_of(st.none(), st.integers(0, 65535)),
)


@given(
    st.one_of(st.binary(max_size=600), _QUERIES, _QUERIES.flatmap(lambda q: st.just(q[:-2]))),
    st.sampled_from(["udp", "tcp"]),
)
@settings(max_examples=300)
def test_any_packet_gets_a_decision_and_a_reply_the_client_can_read(
    data: bytes, transport: str
) -> None:
    resolver = Resolver()
    resolver.table = LookupTable.build(TABLE, namespace="ns1", domain="ns1.svc.cluster.local")
    action = resolver.handle(data, transport)  # type: ignore[arg-type]
    if isinstance(action, Reply):
        assert action.data[:2] == data[:2] and action.data[2] & 0x80  # its id, a response
        if action.answered:
            reply = dns.message.from_wire(action.data)
            limit = Resolver.max_size(dns.message.from_wire(data), transport)  # type: ignore[arg-type]
            assert len(action.data) <= limit and reply.question
    elif isinstance(action, Forward):
        assert dns.message.from_wire(resolver.forwarded(action, None)).id == action.query.id
