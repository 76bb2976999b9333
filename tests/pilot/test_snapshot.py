"""Snapshots: written once per proxy scope by translation, consistent, read by the server."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from datetime import timedelta

import betterproto2
import pytest

from istio_sdk import xds
from istio_sdk.api.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.envoy.config.endpoint.v3 import ClusterLoadAssignment
from istio_sdk.api.envoy.config.listener.v3 import Filter, FilterChain, Listener
from istio_sdk.api.envoy.config.route.v3 import RouteConfiguration
from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    Rds,
)
from istio_sdk.api.google.protobuf import Struct
from istio_sdk.config import load_resources
from istio_sdk.pilot.cache import SnapshotCache
from istio_sdk.pilot.consistency import (
    ProblemKind,
    SnapshotProblem,
    check_consistency,
    eds_service_names,
    rds_route_names,
)
from istio_sdk.pilot.publisher import SnapshotWriter
from istio_sdk.pilot.push_context import ProxyInfo, PushContext
from istio_sdk.pilot.registry import Endpoint, Service, ServicePort, ServiceRegistry
from istio_sdk.pilot.static import StaticGenerator
from istio_sdk.pilot.translate import PushContextGenerator

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "src" / "istio_sdk" / "examples"
ALL = {xds.CLUSTER: None, xds.ENDPOINT: None, xds.LISTENER: None, xds.ROUTE: None}


def bookinfo_registry() -> ServiceRegistry:
    registry = ServiceRegistry()
    for number, (name, versions) in enumerate(
        {
            "productpage": ["v1"],
            "details": ["v1"],
            "reviews": ["v1", "v2"],
            "ratings": ["v1"],
        }.items()
    ):
        registry.register_service(
            Service(f"{name}.bookinfo.svc.cluster.local", "bookinfo", [ServicePort(9080, "http")]),
            [
                Endpoint(f"10.1.{number}.{i}", labels={"app": name, "version": v})
                for i, v in enumerate(versions, start=1)
            ],
        )
    return registry


def eds_cluster(name: str, service: str = "") -> Cluster:
    cluster = Cluster(
        name=name, type=ClusterDiscoveryType.EDS, connect_timeout=timedelta(seconds=1)
    )
    if service:
        from istio_sdk.api.envoy.config.cluster.v3 import ClusterEdsClusterConfig

        cluster.eds_cluster_config = ClusterEdsClusterConfig(service_name=service)
    return cluster


def rds_listener(name: str, route: str) -> Listener:
    manager = HttpConnectionManager(stat_prefix=name, rds=Rds(route_config_name=route))
    return Listener(
        name=name,
        filter_chains=[FilterChain(filters=[Filter(name="hcm", typed_config=xds.pack(manager))])],
    )


@pytest.mark.parametrize(
    ("node_id", "labels"),
    [
        ("sidecar~10.0.0.9~productpage-v1-1.bookinfo~bookinfo.svc.cluster.local", {}),
        (
            "router~10.0.0.20~ingressgateway-1.istio-system~istio-system.svc.cluster.local",
            {"istio": "ingressgateway"},
        ),
    ],
)
def test_the_example_mesh_writes_consistent_snapshots(node_id: str, labels: dict[str, str]) -> None:
    context = PushContext.build(load_resources(EXAMPLES), bookinfo_registry())
    cache = SnapshotCache()
    writer = SnapshotWriter(PushContextGenerator(context), cache)
    node = Node(id=node_id, metadata=Struct.from_dict({"LABELS": labels}))
    proxy = ProxyInfo.from_node(node)
    snapshot, failures = writer.write(writer.scope(proxy), proxy, 1, ALL)
    assert failures == []
    assert snapshot.resources[xds.CLUSTER] and snapshot.resources[xds.LISTENER]
    messages = snapshot.messages()
    # Not vacuous: listeners load routes over RDS and clusters load endpoints over EDS.
    assert any(rds_route_names(m) for m in messages[xds.LISTENER].values())
    assert any(eds_service_names(m) for m in messages[xds.CLUSTER].values())
    assert snapshot.problems() == ()
    assert cache.get(writer.scope(proxy)) is snapshot


def test_dangling_endpoint_and_route_names_are_reported() -> None:
    resources: Mapping[str, Mapping[str, betterproto2.Message]] = {
        xds.CLUSTER: {"a": eds_cluster("a"), "b": eds_cluster("b", service="b-svc")},
        xds.ENDPOINT: {"a": ClusterLoadAssignment(cluster_name="a")},
        xds.LISTENER: {"l": rds_listener("l", "r1"), "m": rds_listener("m", "gone")},
        xds.ROUTE: {"r1": RouteConfiguration(name="r1")},
    }
    assert check_consistency(resources) == (
        SnapshotProblem(ProblemKind.MISSING_ENDPOINTS, "b-svc", "b"),
        SnapshotProblem(ProblemKind.MISSING_ROUTE, "gone", "m"),
    )
    text = [str(p) for p in check_consistency(resources)]
    assert text == [
        "cluster 'b' uses endpoints 'b-svc', which are missing",
        "listener 'm' uses route configuration 'gone', which is missing",
    ]
    # A snapshot without endpoints at all (nobody asked for EDS) has nothing dangling.
    assert check_consistency({xds.CLUSTER: resources[xds.CLUSTER]}) == ()


def test_a_broken_snapshot_reports_its_problems() -> None:
    gen = StaticGenerator([eds_cluster("a"), rds_listener("l", "missing")])
    cache = SnapshotCache()
    writer = SnapshotWriter(gen, cache)
    proxy = ProxyInfo("p")
    snapshot, _ = writer.write(writer.scope(proxy), proxy, 1, ALL)
    assert {(p.kind, p.name) for p in snapshot.problems()} == {
        (ProblemKind.MISSING_ENDPOINTS, "a"),
        (ProblemKind.MISSING_ROUTE, "missing"),
    }


def test_one_serialization_per_resource_across_scopes_and_unchanged_rounds() -> None:
    gen = StaticGenerator([Cluster(name=f"c{i}") for i in range(5)])
    cache = SnapshotCache()
    writer = SnapshotWriter(gen, cache)
    wanted = {xds.CLUSTER: None}
    for scope in ("x", "y", "z"):  # three scopes, one round
        writer.write(scope, ProxyInfo("p"), 1, wanted)
    assert cache.serializations == 5
    writer.end_round()
    request = gen.set(Cluster(name="c0", alt_stat_name="new"))
    snapshot, _ = writer.write("x", ProxyInfo("p"), 2, wanted, changed=request.changed)
    assert cache.serializations == 6  # only the changed cluster
    assert snapshot.version == "2"
    old = cache.get("y")
    assert (
        old is not None
        and old.resources[xds.CLUSTER]["c1"] is snapshot.resources[xds.CLUSTER]["c1"]
    )


def test_a_failing_generator_keeps_the_last_resources_of_that_type() -> None:
    class Flaky(StaticGenerator):
        broken = False

        def generate(
            self, proxy: ProxyInfo, type_url: str, names: frozenset[str] | None
        ) -> Mapping[str, betterproto2.Message]:
            if self.broken and type_url == xds.CLUSTER:
                raise RuntimeError("translation blew up")
            return super().generate(proxy, type_url, names)

    gen = Flaky([Cluster(name="ok"), Listener(name="l")])
    writer = SnapshotWriter(gen, SnapshotCache())
    wanted = {xds.CLUSTER: None, xds.LISTENER: None}
    writer.write("s", ProxyInfo("p"), 1, wanted)
    gen.broken = True
    gen.set(Cluster(name="new"), Listener(name="l2"))
    snapshot, failures = writer.write("s", ProxyInfo("p"), 2, wanted)
    assert [f.type_url for f in failures] == [xds.CLUSTER]
    assert set(snapshot.resources[xds.CLUSTER]) == {"ok"}  # last good clusters
    assert set(snapshot.resources[xds.LISTENER]) == {"l", "l2"}  # other types move on


def test_new_names_are_looked_up_without_regenerating_the_others() -> None:
    asked: list[frozenset[str] | None] = []

    class Recording(StaticGenerator):
        def generate(
            self, proxy: ProxyInfo, type_url: str, names: frozenset[str] | None
        ) -> Mapping[str, betterproto2.Message]:
            asked.append(names)
            return super().generate(proxy, type_url, names)

    gen = Recording([ClusterLoadAssignment(cluster_name=n) for n in "abc"])
    writer = SnapshotWriter(gen, SnapshotCache())
    writer.write("s", ProxyInfo("p"), 1, {xds.ENDPOINT: frozenset({"a"})})
    snapshot, _ = writer.write(
        "s", ProxyInfo("p"), 1, {xds.ENDPOINT: frozenset({"a", "b"})}, types=()
    )
    assert asked == [frozenset({"a"}), frozenset({"b"})]
    assert set(snapshot.resources[xds.ENDPOINT]) == {"a", "b"}
    assert snapshot.covers(xds.ENDPOINT, frozenset({"a", "b"}))
    assert not snapshot.covers(xds.ENDPOINT, frozenset({"c"}))
