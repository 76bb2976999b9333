"""Proxyless gRPC workloads on a Mesh: real grpcio traffic with the mesh's certificates."""

from __future__ import annotations

import pathlib

import pytest

pytest.importorskip("grpc")

from istio_sdk import Mesh, load_resources
from istio_sdk.testing.grpc_workload import GrpcWorkloads

MTLS = """
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"""


async def test_a_client_reaches_the_server_over_mtls_with_mesh_identities(
    tmp_path: pathlib.Path,
) -> None:
    async with Mesh(components=["pilot", "citadel"], free_ports=True, debounce_after=0.01) as mesh:
        mesh.apply(*load_resources(MTLS))
        workloads = GrpcWorkloads(mesh, tmp_path)
        try:
            server = await workloads.server("echo")
            client = await workloads.client("caller")
            await mesh.converged()
            result = await client.call(server.target, timeout=20)
            assert result.ok, result
            assert result.server == "echo"
            assert result.peer_identities == ("spiffe://cluster.local/ns/default/sa/caller",)
        finally:
            await workloads.close()


SUBSETS = """
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def to_subset(subset: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - route: [{{destination: {{host: reviews.default.svc.cluster.local, subset: {subset}}}}}]
"""


async def test_calls_follow_the_virtual_service(tmp_path: pathlib.Path) -> None:
    async with Mesh(components=["pilot", "citadel"], free_ports=True, debounce_after=0.01) as mesh:
        mesh.apply(*load_resources(SUBSETS), *load_resources(to_subset("v1")))
        workloads = GrpcWorkloads(mesh, tmp_path)
        try:
            v1 = await workloads.server("reviews", labels={"version": "v1"})
            v2 = await workloads.server("reviews", labels={"version": "v2"})
            client = await workloads.client("productpage")
            await mesh.converged()
            for _ in range(3):
                assert (await client.call(v1.target, timeout=20)).server_port == v1.port
            mesh.apply(*load_resources(to_subset("v2")))
            await mesh.converged()  # the client ACKed the new route...
            # ...and, once its channel uses it, every call goes to v2
            await client.call_until(v2.target, lambda r: r.server_port == v2.port)
            for _ in range(3):
                assert (await client.call(v2.target, timeout=20)).server_port == v2.port
        finally:
            await workloads.close()
