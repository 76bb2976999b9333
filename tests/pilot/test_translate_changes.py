"""Incremental pushes: what changed between two snapshots and which proxies must hear of it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pilot.envoy_validate.meshes import (
    GATEWAY,
    GRPC_CLIENT,
    NS,
    RATINGS,
    RESTRICTED,
    REVIEWS,
    SIDECAR,
    bookinfo_configs,
    bookinfo_registry,
    random_contexts,
)

from istio_sdk import xds
from istio_sdk.api.istio.networking import v1alpha3 as n
from istio_sdk.pilot.changes import ALL_TYPES, compute_changes
from istio_sdk.pilot.config_entry import ConfigEntry, ConfigKey
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Endpoint
from istio_sdk.pilot.translate import PushContextGenerator, generate


def _replace(configs: list[ConfigEntry], entry: ConfigEntry) -> list[ConfigEntry]:
    return [c for c in configs if c.key != entry.key] + [entry]


def test_identical_snapshots_change_nothing() -> None:
    registry = bookinfo_registry()
    a = PushContext.build(bookinfo_configs(), registry)
    b = PushContext.build(bookinfo_configs(), registry)
    change = compute_changes(a, b)
    assert change.empty and change.type_urls == frozenset()
    assert not change.affects(b, SIDECAR)


def test_first_snapshot_changes_everything() -> None:
    ctx = PushContext.build(bookinfo_configs(), bookinfo_registry())
    change = compute_changes(None, ctx)
    assert change.type_urls == ALL_TYPES | {xds.NAME_TABLE}
    assert all(change.affects(ctx, p) for p in (SIDECAR, RESTRICTED, GATEWAY, GRPC_CLIENT))


def test_endpoint_only_change_pushes_eds_to_proxies_that_see_the_service() -> None:
    registry = bookinfo_registry()
    before = PushContext.build(bookinfo_configs(), registry)
    registry.set_endpoints(REVIEWS, NS, [Endpoint("10.0.1.9", labels={"version": "v1"})])
    after = PushContext.build(bookinfo_configs(), registry)
    change = compute_changes(before, after)
    assert change.endpoints_only
    assert change.type_urls == frozenset({xds.ENDPOINT})
    assert change.changed_clusters(after) == {
        f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v2", "v3")
    }
    assert change.affects(after, SIDECAR)
    assert change.affects(after, GRPC_CLIENT)
    # The restricted proxy's Sidecar imports only ratings.
    assert not change.affects(after, RESTRICTED)


def test_virtual_service_change_is_a_full_push_for_affected_proxies() -> None:
    registry = bookinfo_registry()
    configs = bookinfo_configs()
    before = PushContext.build(configs, registry)
    new_vs = ConfigEntry(
        "VirtualService",
        "reviews",
        NS,
        n.VirtualService(
            hosts=["reviews"],
            http=[
                n.HttpRoute(
                    route=[n.HttpRouteDestination(destination=n.Destination(host="reviews"))]
                )
            ],
        ),
    )
    after = PushContext.build(_replace(configs, new_vs), registry)
    change = compute_changes(before, after)
    assert change.configs == {ConfigKey("VirtualService", NS, "reviews")}
    assert not change.endpoints_only and change.type_urls == ALL_TYPES
    assert REVIEWS in change.hosts
    assert change.affects(after, SIDECAR)
    assert change.affects(after, GATEWAY)
    assert not change.affects(after, RESTRICTED)


def test_sidecar_change_affects_its_namespace_only() -> None:
    registry = bookinfo_registry()
    configs = bookinfo_configs()
    before = PushContext.build(configs, registry)
    widened = ConfigEntry(
        "Sidecar",
        "restricted",
        NS,
        n.Sidecar(
            workload_selector=n.WorkloadSelector(labels={"app": "restricted"}),
            egress=[n.IstioEgressListener(hosts=["*/*"])],
        ),
    )
    after = PushContext.build(_replace(configs, widened), registry)
    change = compute_changes(before, after)
    assert change.sidecar_namespaces == {NS}
    assert change.affects(after, RESTRICTED)
    elsewhere = ProxyInfo("p", namespace="other", labels={"app": "restricted"})
    assert not change.affects(after, elsewhere)


def test_service_entry_endpoint_edit_is_endpoint_only() -> None:
    def entry(address: str) -> ConfigEntry:
        return ConfigEntry(
            "ServiceEntry",
            "vm",
            NS,
            n.ServiceEntry(
                hosts=["vm.example"],
                ports=[n.ServicePort(number=80, name="http")],
                resolution=n.ServiceEntryResolution.STATIC,
                endpoints=[n.WorkloadEntry(address=address)],
            ),
        )

    registry = bookinfo_registry()
    before = PushContext.build([*bookinfo_configs(), entry("1.1.1.1")], registry)
    after = PushContext.build([*bookinfo_configs(), entry("1.1.1.2")], registry)
    change = compute_changes(before, after)
    assert change.endpoints_only
    assert change.changed_clusters(after) == {"outbound|80||vm.example"}


def test_workload_entry_change_is_endpoint_only() -> None:
    se = ConfigEntry(
        "ServiceEntry",
        "vm",
        NS,
        n.ServiceEntry(
            hosts=["vm.example"],
            ports=[n.ServicePort(number=80, name="http")],
            workload_selector=n.WorkloadSelector(labels={"app": "vm"}),
        ),
    )

    def we(address: str) -> ConfigEntry:
        return ConfigEntry(
            "WorkloadEntry", "vm-1", NS, n.WorkloadEntry(address=address, labels={"app": "vm"})
        )

    before = PushContext.build([se, we("1.1.1.1")])
    after = PushContext.build([se, we("1.1.1.2")])
    change = compute_changes(before, after)
    assert change.endpoints_only and change.endpoint_services == {(NS, "vm.example")}


def test_new_service_is_a_full_push() -> None:
    registry = bookinfo_registry()
    before = PushContext.build(bookinfo_configs(), registry)
    extra = ConfigEntry(
        "ServiceEntry",
        "new",
        NS,
        n.ServiceEntry(hosts=["new.example"], ports=[n.ServicePort(number=80, name="http")]),
    )
    after = PushContext.build([*bookinfo_configs(), extra], registry)
    change = compute_changes(before, after)
    assert (NS, "new.example") in change.services
    assert change.type_urls == ALL_TYPES | {xds.NAME_TABLE}


def test_generator_turns_changes_into_push_requests() -> None:
    registry = bookinfo_registry()
    generator = PushContextGenerator(PushContext.build(bookinfo_configs(), registry))
    assert generator.apply(PushContext.build(bookinfo_configs(), registry)) is None
    registry.set_endpoints(RATINGS, NS, [Endpoint("10.0.2.9")])
    request = generator.apply(PushContext.build(bookinfo_configs(), registry))
    assert request is not None
    assert request.types == frozenset({xds.ENDPOINT})
    assert request.changed is not None
    assert request.changed[xds.ENDPOINT] == {
        f"outbound|9080||{RATINGS}",
        f"outbound|3306||{RATINGS}",
    }
    assert request.proxies is not None
    assert request.selects(RESTRICTED)  # it imports ratings
    clusters = generator.generate(SIDECAR, xds.ENDPOINT, [f"outbound|9080||{RATINGS}"])
    assert set(clusters) == {f"outbound|9080||{RATINGS}"}


def test_push_context_from_config_store_follows_its_revisions() -> None:
    from istio_sdk.config import ConfigStore, ObjectMeta, Resource

    def entry(port: int) -> Resource:
        return Resource(
            api_version="networking.istio.io/v1",
            kind="ServiceEntry",
            metadata=ObjectMeta(name="ext", namespace=NS),
            spec=n.ServiceEntry(
                hosts=["ext.example"],
                ports=[n.ServicePort(number=port, name="http")],
                resolution=n.ServiceEntryResolution.DNS,
            ),
        )

    store = ConfigStore([entry(80)])
    registry = bookinfo_registry()
    before = PushContext.from_store(store, registry)
    assert before.service_for_host("ext.example") is not None
    assert before.service_for_host(REVIEWS) is not None
    store.apply(entry(8080))
    after = PushContext.from_store(store, registry)
    assert after.version != before.version
    change = compute_changes(before, after)
    assert change.configs == {ConfigKey("ServiceEntry", NS, "ext")}
    assert (NS, "ext.example") in change.services


def test_dns_service_endpoint_change_is_a_cluster_change() -> None:
    """DNS clusters carry their endpoints inline, so CDS must be pushed, not EDS alone."""

    def entry(address: str) -> ConfigEntry:
        return ConfigEntry(
            "ServiceEntry",
            "dns",
            NS,
            n.ServiceEntry(
                hosts=["dns.example"],
                ports=[n.ServicePort(number=80, name="http")],
                resolution=n.ServiceEntryResolution.DNS,
                endpoints=[n.WorkloadEntry(address=address)],
            ),
        )

    before = PushContext.build([entry("a.example")])
    after = PushContext.build([entry("b.example")])
    change = compute_changes(before, after)
    assert not change.endpoints_only
    assert change.type_urls == ALL_TYPES | {xds.NAME_TABLE}  # a ServiceEntry change: NDS too
    assert (NS, "dns.example") in change.services


_endpoints = st.lists(
    st.builds(
        Endpoint,
        address=st.sampled_from(["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"]),
        labels=st.fixed_dictionaries({"version": st.sampled_from(["v1", "v2", "v3"])}),
        locality=st.sampled_from(["", "eu/a/1", "eu/b"]),
        weight=st.integers(1, 3),
    ),
    max_size=4,
)


def _all_resources(ctx: PushContext) -> dict[tuple[str, str, str], bytes]:
    out = {}
    grpc_names = {
        xds.LISTENER: [f"{REVIEWS}:9080", f"{RATINGS}:9080"],
        xds.ROUTE: [f"{REVIEWS}:9080", f"{RATINGS}:9080"],
        xds.CLUSTER: [f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v2", "v3")],
        xds.ENDPOINT: [f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v2", "v3")],
    }
    for proxy in (SIDECAR, RESTRICTED, GRPC_CLIENT):
        for type_url in sorted(ALL_TYPES):
            names = grpc_names[type_url] if proxy.is_grpc else None
            for name, msg in generate(ctx, proxy, type_url, names).items():
                out[(proxy.id, type_url, name)] = bytes(msg)
    return out


@settings(max_examples=15)
@given(before=_endpoints, after=_endpoints)
def test_change_sets_cover_every_resource_that_changed(
    before: list[Endpoint], after: list[Endpoint]
) -> None:
    """Whatever the server skips (types, proxies, EDS names) really did not change."""
    registry = bookinfo_registry()
    registry.set_endpoints(REVIEWS, NS, before)
    old = PushContext.build(bookinfo_configs(), registry)
    registry.set_endpoints(REVIEWS, NS, after)
    new = PushContext.build(bookinfo_configs(), registry)
    change = compute_changes(old, new)
    old_res, new_res = _all_resources(old), _all_resources(new)
    proxies = {p.id: p for p in (SIDECAR, RESTRICTED, GRPC_CLIENT)}
    for key in set(old_res) | set(new_res):
        if old_res.get(key) == new_res.get(key):
            continue
        proxy_id, type_url, name = key
        assert type_url in change.type_urls, key
        assert change.affects(new, proxies[proxy_id]), key
        if change.endpoints_only:
            assert name in change.changed_clusters(new), key
    if change.empty:
        assert old_res == new_res


@settings(max_examples=10)
@given(old=random_contexts(), new=random_contexts())
def test_config_change_sets_cover_every_resource_that_changed(
    old: PushContext, new: PushContext
) -> None:
    change = compute_changes(old, new)
    old_res, new_res = _all_resources(old), _all_resources(new)
    proxies = {p.id: p for p in (SIDECAR, RESTRICTED, GRPC_CLIENT)}
    for key in set(old_res) | set(new_res):
        if old_res.get(key) != new_res.get(key):
            assert key[1] in change.type_urls, key
            assert change.affects(new, proxies[key[0]]), key
