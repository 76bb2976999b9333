"""NDS: the name table Pilot builds for a proxy, when it is pushed, and our client receiving it."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator

import pytest

from istio_sdk import DiscoveryServer, PilotClient, xds
from istio_sdk.api.istio.networking.nds.v1 import NameTable, NameTableNameInfo
from istio_sdk.config import load_resources
from istio_sdk.pilot.client import sidecar_node
from istio_sdk.pilot.name_table import build_name_table, generate_name_table
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import (
    Endpoint,
    HealthStatus,
    Resolution,
    Service,
    ServicePort,
    ServiceRegistry,
)
from istio_sdk.pilot.translate import PushContextGenerator, generate

# istiod's own NDS test config (pilot/pkg/xds/testdata/nds-se.yaml), and what it expects.
ISTIOD_CASE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: service-dns-no-addr, namespace: ns2}
spec:
  hosts: [random-1.host.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: service-dns-with-addr, namespace: ns2}
spec:
  hosts: [random-2.host.example]
  addresses: [9.9.9.9]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: service-static-no-addr, namespace: ns2}
spec:
  hosts: [random-3.host.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{address: 1.2.3.4, labels: {security.istio.io/tlsMode: istio}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: service-none-wildcard, namespace: ns2}
spec:
  hosts: ["*.random-4.host.example"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: service-none-no-wildcard, namespace: ns2}
spec:
  hosts: [random-5.host.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cidr, namespace: default}
spec:
  addresses: [198.51.100.0/31]
  hosts: [address.internal]
  ports: [{name: tcp, number: 8888, protocol: TCP}]
"""

KUBE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00::10"]
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: bookinfo}
spec:
  clusterIP: None
  publishNotReadyAddresses: PUBLISH
  ports: [{name: tcp, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: bookinfo
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: tcp, port: 5432}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
- addresses: [10.0.0.2]
  conditions: {ready: false}
- addresses: [10.0.0.1]
  conditions: {ready: true}
---
apiVersion: v1
kind: Service
metadata: {name: mcs, namespace: bookinfo}
spec:
  clusterIP: 10.96.0.30
  ports: [{name: http, port: 80}]
"""


def resources(text: str) -> list[object]:
    return list(load_resources(textwrap.dedent(text)))


def proxy(
    namespace: str = "default", ips: tuple[str, ...] = ("10.1.0.1",), **kw: bool
) -> ProxyInfo:
    return ProxyInfo(id=f"sidecar~{ips[0]}~p.{namespace}~{namespace}.svc.cluster.local",
                     ip_addresses=ips, namespace=namespace, **kw)  # fmt: skip


def table(context: PushContext, who: ProxyInfo) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = build_name_table(context, who).to_dict().get("table", {})
    return out


def test_istiods_own_case_just_capture() -> None:
    context = PushContext.build(resources(ISTIOD_CASE))
    # no address, NONE resolution without endpoints, a CIDR: none of them is answerable
    assert table(context, proxy(dns_capture=True)) == {
        "random-2.host.example": {"ips": ["9.9.9.9"], "registry": "External"}
    }


def test_istiods_own_case_auto_allocate_gives_istiods_addresses() -> None:
    context = PushContext.build(resources(ISTIOD_CASE))
    assert table(context, proxy(dns_capture=True, dns_auto_allocate=True)) == {
        "random-1.host.example": {"ips": ["240.240.116.21"], "registry": "External"},
        "random-2.host.example": {"ips": ["9.9.9.9"], "registry": "External"},
        "random-3.host.example": {"ips": ["240.240.81.100"], "registry": "External"},
    }
    # allocation is consumed only by proxies that capture DNS, and follows their IP family
    assert "random-1.host.example" not in table(context, proxy(dns_auto_allocate=True))
    v6 = table(context, proxy(ips=("fd00::1",), dns_capture=True, dns_auto_allocate=True))
    assert v6["random-1.host.example"]["ips"] == ["2001:2::f0f0:7415"]


def test_auto_allocation_skips_the_dot_zero_address_and_shifts_the_rest_as_istiod() -> None:
    entries = "---".join(
        f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.example]
  ports: [{{number: 80, name: http}}]
  resolution: DNS
"""
        for name in ("h2", "h23", "h1")  # slots 2833, 4334 (x = 17*255) and 46436
    )
    got = table(
        PushContext.build(resources(entries)), proxy(dns_capture=True, dns_auto_allocate=True)
    )
    assert got["h2.example"]["ips"] == ["240.240.11.29"]
    assert got["h23.example"]["ips"] == ["240.240.17.1"]  # not 17.0
    assert got["h1.example"]["ips"] == ["240.240.182.28"]  # shifted by the skip before it


def test_kubernetes_services_carry_short_name_parts_and_the_proxys_ip_family() -> None:
    context = PushContext.build(resources(KUBE.replace("PUBLISH", "false")))
    got = table(context, proxy("bookinfo"))
    assert got["reviews.bookinfo.svc.cluster.local"] == {
        "ips": ["10.96.0.10"],
        "registry": "Kubernetes",
        "shortname": "reviews",
        "namespace": "bookinfo",
    }
    dual = table(context, proxy("bookinfo", ips=("10.1.0.1", "fd00::1")))
    assert dual["reviews.bookinfo.svc.cluster.local"]["ips"] == ["10.96.0.10", "fd00::10"]
    v6 = table(context, proxy("bookinfo", ips=("fd00::1",)))
    assert v6["reviews.bookinfo.svc.cluster.local"]["ips"] == ["fd00::10"]


def test_headless_services_answer_with_their_ready_endpoints_once_each() -> None:
    context = PushContext.build(resources(KUBE.replace("PUBLISH", "false")))
    assert table(context, proxy())["db.bookinfo.svc.cluster.local"]["ips"] == ["10.0.0.1"]
    published = PushContext.build(resources(KUBE.replace("PUBLISH", "true")))
    got = table(published, proxy())["db.bookinfo.svc.cluster.local"]["ips"]
    assert got == ["10.0.0.1", "10.0.0.2"]


STATEFUL = """
apiVersion: v1
kind: Service
metadata: {name: mysql, namespace: db}
spec: {clusterIP: None, selector: {app: mysql}, ports: [{name: tcp, port: 3306}]}
---
apiVersion: v1
kind: Pod
metadata: {name: mysql-0, namespace: db, labels: {app: mysql}}
spec: {subdomain: mysql, containers: [{name: mysql, image: mysql}]}
status: {phase: Running, podIP: 10.3.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: mysql-1, namespace: db, labels: {app: mysql}}
spec: {subdomain: mysql, hostname: primary, containers: [{name: mysql, image: mysql}]}
status: {phase: Running, podIP: 10.3.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: loose, namespace: db, labels: {app: mysql}}
spec: {containers: [{name: mysql, image: mysql}]}
status: {phase: Running, podIP: 10.3.0.3}
"""


def test_statefulset_pods_of_a_headless_service_get_their_own_names() -> None:
    got = table(PushContext.build(resources(STATEFUL)), proxy())
    assert sorted(got["mysql.db.svc.cluster.local"]["ips"]) == ["10.3.0.1", "10.3.0.2", "10.3.0.3"]
    assert got["mysql-0.mysql.db.svc.cluster.local"] == {
        "ips": ["10.3.0.1"],
        "registry": "Kubernetes",
        "shortname": "mysql-0.mysql",
        "namespace": "db",
    }
    assert got["primary.mysql.db.svc.cluster.local"]["ips"] == ["10.3.0.2"]  # spec.hostname
    assert len(got) == 3  # a Pod without a subdomain has no name of its own


def test_a_headless_service_entry_lists_its_healthy_endpoint_ips_only() -> None:
    context = PushContext.build(
        resources("""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: peers, namespace: default}
        spec:
          hosts: [peers.internal]
          ports: [{number: 7000, name: tcp, protocol: TCP}]
          resolution: NONE
          endpoints: [{address: 10.2.0.1}, {address: peer.example.com}, {address: 10.2.0.2}]
        """)
    )
    assert table(context, proxy())["peers.internal"]["ips"] == ["10.2.0.1", "10.2.0.2"]


def test_a_registered_headless_service_lists_healthy_addresses_once() -> None:
    registry = ServiceRegistry()
    registry.register_service(
        Service("peers.internal", "default", [ServicePort(7000, "tcp")], Resolution.NONE),
        [
            Endpoint("10.2.0.1"),
            Endpoint("10.2.0.1", ports={"tcp": 7001}),
            Endpoint("10.2.0.3", health=HealthStatus.UNHEALTHY),
        ],
    )
    got = table(PushContext.build((), registry), proxy())
    assert got == {"peers.internal": {"ips": ["10.2.0.1"], "registry": "External"}}


def test_a_kubernetes_service_beats_a_service_entry_for_the_same_host_in_any_order() -> None:
    docs = KUBE.replace("PUBLISH", "false") + textwrap.dedent("""
    ---
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: decorate, namespace: other}
    spec:
      hosts: [reviews.bookinfo.svc.cluster.local]
      addresses: [192.0.2.1]
      ports: [{number: 9080, name: http}]
    """)
    context = PushContext.build(resources(docs))
    for who in (proxy("other"), proxy("bookinfo")):  # the ServiceEntry first, then second
        entry = table(context, who)["reviews.bookinfo.svc.cluster.local"]
        assert entry["registry"] == "Kubernetes" and entry["ips"] == ["10.96.0.10"]


def test_service_entries_for_one_host_add_up_their_addresses() -> None:
    entry = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: api, namespace: {ns}}}
    spec:
      hosts: [api.example.com]
      addresses: [{ips}]
      ports: [{{number: 443, name: tls}}]
    """
    docs = (
        entry.format(ns="a", ips="192.0.2.1, 192.0.2.2")
        + "---"
        + entry.format(ns="b", ips="192.0.2.3")
    )
    context = PushContext.build(resources(docs))
    got = table(context, proxy("b"))["api.example.com"]["ips"]
    assert got == ["192.0.2.3", "192.0.2.1", "192.0.2.2"]  # the proxy's namespace first


def test_a_sidecar_limits_the_table_to_what_it_imports() -> None:
    sidecar = """
    ---
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: default, namespace: default}
    spec:
      egress: [{hosts: ["./*"]}]
    """
    context = PushContext.build(resources(ISTIOD_CASE + textwrap.dedent(sidecar)))
    assert table(context, proxy()) == {}
    assert "random-2.host.example" in table(context, proxy("ns2"))


def test_the_generator_answers_one_unnamed_table_shared_by_a_scope() -> None:
    context = PushContext.build(resources(ISTIOD_CASE))
    a = generate(context, proxy(), xds.NAME_TABLE)
    b = generate(context, proxy(ips=("10.1.0.2",)), xds.NAME_TABLE, None)
    assert list(a) == [""] and a[""] is b[""]
    assert isinstance(a[""], NameTable)
    assert generate_name_table(context, proxy(), {"other"}) == {}


def test_node_metadata_flags_are_read_as_the_agent_writes_them() -> None:
    node = sidecar_node(
        "10.1.0.1", "p", "default", extra_metadata={"DNS_CAPTURE": "true", "DNS_AUTO_ALLOCATE": "1"}
    )
    parsed = ProxyInfo.from_node(node)
    assert parsed.dns_capture and parsed.dns_auto_allocate
    off = ProxyInfo.from_node(sidecar_node("10.1.0.1", "p", "default"))
    assert not off.dns_capture and not off.dns_auto_allocate


SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.example.com]
  addresses: [{ip}]
  ports: [{{number: 80, name: http}}]
"""
VIRTUAL_SERVICE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: [api.example.com]
  http: [{route: [{destination: {host: api.example.com}}], timeout: TIMEOUT}]
"""


def test_nds_is_pushed_for_service_changes_and_not_for_routing_changes() -> None:
    generator = PushContextGenerator(
        PushContext.build(resources(SERVICE_ENTRY.format(name="api", ip="192.0.2.1")))
    )
    vs = VIRTUAL_SERVICE.replace("TIMEOUT", "1s")
    routing = generator.apply(
        PushContext.build(resources(SERVICE_ENTRY.format(name="api", ip="192.0.2.1") + "---" + vs))
    )
    assert routing is not None and routing.types is not None
    assert xds.NAME_TABLE not in routing.types and xds.LISTENER in routing.types
    moved = generator.apply(
        PushContext.build(resources(SERVICE_ENTRY.format(name="api", ip="192.0.2.9") + "---" + vs))
    )
    assert moved is not None and moved.types is not None and xds.NAME_TABLE in moved.types
    assert moved.selects(proxy())  # fmt: skip


def test_headless_endpoint_changes_push_nds_beside_eds() -> None:
    def context(ready: str) -> PushContext:
        return PushContext.build(
            resources(KUBE.replace("PUBLISH", "false").replace("ready: false", f"ready: {ready}"))
        )

    generator = PushContextGenerator(context("false"))
    request = generator.apply(context("true"))
    assert request is not None and request.types == {xds.ENDPOINT, xds.NAME_TABLE}
    assert request.changed is not None and request.changed[xds.NAME_TABLE] == {""}
    assert generate(generator.context, proxy(), xds.NAME_TABLE, {""})[""].table[
        "db.bookinfo.svc.cluster.local"
    ].ips == ["10.0.0.1", "10.0.0.2"]  # fmt: skip


@pytest.fixture
async def pilot() -> AsyncIterator[tuple[DiscoveryServer, PushContextGenerator]]:
    generator = PushContextGenerator(
        PushContext.build(resources(SERVICE_ENTRY.format(name="api", ip="192.0.2.1")))
    )
    server = DiscoveryServer(generator, debounce_after=0.01, debounce_max=0.5)
    await server.start("127.0.0.1", 0)
    try:
        yield server, generator
    finally:
        await server.stop()


@pytest.mark.parametrize("mode", ["sotw", "delta"])
async def test_our_client_gets_the_table_and_a_new_one_when_a_service_entry_changes(
    pilot: tuple[DiscoveryServer, PushContextGenerator], mode: str
) -> None:
    server, generator = pilot
    node = sidecar_node("10.1.0.1", "app", "default", extra_metadata={"DNS_CAPTURE": "true"})
    async with PilotClient(f"127.0.0.1:{server.port}", node=node, mode=mode) as client:  # type: ignore[arg-type]
        client.subscribe("nds")  # no names, as the agent asks
        state = await client.wait_for(xds.NAME_TABLE)
        first = state[""]
        assert isinstance(first, NameTable)
        assert first.table == {
            "api.example.com": NameTableNameInfo(ips=["192.0.2.1"], registry="External")
        }
        both = (
            SERVICE_ENTRY.format(name="api", ip="192.0.2.1")
            + "---"
            + SERVICE_ENTRY.format(name="web", ip="192.0.2.2")
        )
        request = generator.apply(PushContext.build(resources(both)))
        assert request is not None
        server.push(request)
        state = await client.wait_for(
            xds.NAME_TABLE, predicate=lambda s: "web.example.com" in getattr(s[""], "table", {})
        )
        assert state[""].table["web.example.com"].ips == ["192.0.2.2"]  # type: ignore[union-attr]
        assert client.nacks == 0


async def test_proxies_that_differ_only_in_dns_metadata_get_their_own_tables(
    pilot: tuple[DiscoveryServer, PushContextGenerator],
) -> None:
    server, generator = pilot
    server.push(generator.apply(PushContext.build(resources(ISTIOD_CASE))))

    def node(auto: str) -> object:
        meta = {"DNS_CAPTURE": "true", "DNS_AUTO_ALLOCATE": auto}
        return sidecar_node("10.1.0.1", "app", "default", extra_metadata=meta)

    tables = []
    for auto in ("true", "false"):  # the allocating proxy first: its table must not leak
        async with PilotClient(f"127.0.0.1:{server.port}", node=node(auto)) as client:  # type: ignore[arg-type]
            client.subscribe(xds.NAME_TABLE)
            state = await client.wait_for(
                xds.NAME_TABLE,
                predicate=lambda s: "random-2.host.example" in getattr(s[""], "table", {}),
            )
            tables.append(set(state[""].table))  # type: ignore[union-attr]
    assert "random-1.host.example" in tables[0]
    assert "random-1.host.example" not in tables[1]
