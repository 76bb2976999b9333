"""The bundled bookinfo (examples/: Kubernetes objects in kubernetes.yaml beside the Istio config)
served over ADS: the productpage sidecar gets istiod's names and the reviews Pods behind them."""

from __future__ import annotations

import pathlib

from istio_sdk import PilotClient, xds
from istio_sdk.config import ConfigStore, load_resources
from istio_sdk.mesh import Mesh
from istio_sdk.pilot.client import sidecar_node

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "src" / "istio_sdk" / "examples"
REVIEWS_V1 = "outbound|9080|v1|reviews.bookinfo.svc.cluster.local"
EXPECTED_CLUSTERS = {
    REVIEWS_V1,
    "outbound|9080|v2|reviews.bookinfo.svc.cluster.local",
    "outbound|9080|v3|reviews.bookinfo.svc.cluster.local",
    "outbound|9080||reviews.bookinfo.svc.cluster.local",
    "outbound|9080|v1|ratings.bookinfo.svc.cluster.local",
    "outbound|9080||ratings.bookinfo.svc.cluster.local",
    "outbound|9080|v1|details.bookinfo.svc.cluster.local",
    "outbound|9080||details.bookinfo.svc.cluster.local",
    "outbound|9080|v1|productpage.bookinfo.svc.cluster.local",
    "outbound|9080||productpage.bookinfo.svc.cluster.local",
    "inbound|9080||",
}


def endpoints_of(cla: object) -> list[tuple[str, int, str, str]]:
    out = []
    for group in cla.endpoints:  # type: ignore[attr-defined]
        for lb in group.lb_endpoints:
            socket = lb.endpoint.address.socket_address
            out.append(
                (socket.address, socket.port_value, group.locality.region, group.locality.zone)
            )
    return sorted(out)


def bookinfo_store() -> ConfigStore:
    return ConfigStore(load_resources(EXAMPLES))


async def test_productpage_sidecar_gets_istiod_names_and_reviews_pods() -> None:
    store = bookinfo_store()
    async with Mesh(store, xds_port=0, debounce_after=0.01) as mesh:
        node = sidecar_node(
            "10.1.0.31",
            "productpage-v1-7c9f8b5d4-31x",
            "bookinfo",
            labels={"app": "productpage", "version": "v1"},
        )
        async with PilotClient(f"127.0.0.1:{mesh.xds_port}", node=node) as client:
            client.subscribe(xds.CLUSTER)
            clusters = await client.wait_for(xds.CLUSTER, [REVIEWS_V1])
            assert set(clusters) >= EXPECTED_CLUSTERS
            client.subscribe(
                xds.ENDPOINT, [REVIEWS_V1, "outbound|9080||reviews.bookinfo.svc.cluster.local"]
            )
            loads = await client.wait_for(
                xds.ENDPOINT, [REVIEWS_V1, "outbound|9080||reviews.bookinfo.svc.cluster.local"]
            )
            # the reviews-v1 Pod (from the EndpointSlice, joined with its Pod and Node)
            assert endpoints_of(loads[REVIEWS_V1]) == [
                ("10.1.0.21", 9080, "us-east1", "us-east1-b")
            ]
            assert endpoints_of(loads["outbound|9080||reviews.bookinfo.svc.cluster.local"]) == [
                ("10.1.0.21", 9080, "us-east1", "us-east1-b"),
                ("10.1.0.22", 9080, "us-east1", "us-east1-c"),
                ("10.1.0.23", 9080, "us-east1", "us-east1-c"),
            ]
            client.subscribe(xds.LISTENER)
            listeners = await client.wait_for(xds.LISTENER, ["0.0.0.0_9080"])
            assert {"virtualOutbound", "virtualInbound"} <= set(listeners)
            client.subscribe(xds.ROUTE, ["9080"])
            routes = await client.wait_for(xds.ROUTE, ["9080"])
            domains = {d for vh in routes["9080"].virtual_hosts for d in vh.domains}
            assert "reviews.bookinfo.svc.cluster.local" in domains
            assert "reviews" in domains  # same-namespace short name, as istiod writes it

            # an EndpointSlice change reaches the proxy: reviews-v1 moves to a new Pod IP
            (old,) = [r for r in store.list("EndpointSlice") if r.name == "reviews-x7k2p"]
            text = (EXAMPLES / "kubernetes.yaml").read_text()
            moved = [
                r
                for r in load_resources(text.replace("10.1.0.21", "10.1.0.99"))
                if r.kind in ("EndpointSlice", "Pod") and "reviews" in r.name
            ]
            cds_before = mesh.discovery.metrics.pushes_by_type.get(xds.CLUSTER, 0)
            for resource in moved:
                store.apply(resource)
            assert old is not None
            await client.wait_for(
                xds.ENDPOINT,
                predicate=lambda s: [e[0] for e in endpoints_of(s[REVIEWS_V1])] == ["10.1.0.99"],
            )
            # only endpoints changed: EDS is pushed, CDS is not (as istiod's incremental EDS)
            assert mesh.discovery.metrics.pushes_by_type.get(xds.CLUSTER, 0) == cds_before
