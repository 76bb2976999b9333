"""gRPC's own xDS client routes by VirtualService to backends declared as Kubernetes objects.

Three real grpcio backends on loopback play the reviews v1, v2 and v3 Pods; a Kubernetes
Service, the Pods and one EndpointSlice per version describe them, and a VirtualService and
DestinationRule route between the versions. A Mesh serves the store; grpcio's xDS client, in a
subprocess, dials ``xds:///reviews.default.svc.cluster.local:9080``.
"""

from __future__ import annotations

import pathlib
import time
from concurrent import futures

import pytest

grpc = pytest.importorskip("grpc")

from support.grpc_xds import start_python, stop_process, xds_bootstrap  # noqa: E402

from istio_sdk.config import ConfigStore, load_resources  # noqa: E402
from istio_sdk.mesh import Mesh  # noqa: E402

HOST = "reviews.default.svc.cluster.local"
CLIENT_SCRIPT = """
import sys
import grpc

channel = grpc.insecure_channel("xds:///reviews.default.svc.cluster.local:9080")
call = channel.unary_unary("/istio_sdk.proof.Backend/Who")
for line in sys.stdin:
    user = line.strip()
    metadata = (("end-user", user),) if user else ()
    try:
        reply = call(b"", timeout=2.0, metadata=metadata).decode()
    except grpc.RpcError as exc:
        reply = "error:" + exc.code().name
    sys.stdout.write(reply + "\\n")
    sys.stdout.flush()
"""

ISTIO = f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{HOST}]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: {HOST}, subset: v3}}}}]
  - route: [{{destination: {{host: {HOST}, subset: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: {HOST}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: v3, labels: {{version: v3}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  clusterIP: 10.96.0.13
  selector: {{app: reviews}}
  ports: [{{name: grpc, port: 9080}}]
"""


def kubernetes_objects(version: str, port: int) -> str:
    return f"""
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-{version}
  namespace: default
  labels: {{app: reviews, version: {version}}}
spec: {{containers: [{{name: reviews, image: reviews}}]}}
status: {{phase: Running, podIP: 127.0.0.1}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-{version}
  namespace: default
  labels: {{kubernetes.io/service-name: reviews}}
addressType: IPv4
ports: [{{name: grpc, port: {port}}}]
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
  targetRef: {{kind: Pod, namespace: default, name: reviews-{version}}}
"""


def backend(name: str) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "istio_sdk.proof.Backend",
        {"Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx: name.encode())},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


async def test_grpc_xds_client_routes_to_kubernetes_backends(tmp_path: pathlib.Path) -> None:
    backends = {v: backend(v) for v in ("v1", "v2", "v3")}
    text = ISTIO + "".join(kubernetes_objects(v, port) for v, (_, port) in backends.items())
    store = ConfigStore(load_resources(text))
    try:
        async with Mesh(store, xds_port=0, debounce_after=0.01) as mesh:
            node = "sidecar~127.0.0.1~proof-client.default~default.svc.cluster.local"
            client = await start_python(
                tmp_path,
                "client",
                CLIENT_SCRIPT,
                xds_bootstrap(mesh.xds_port, node),
            )
            try:

                async def reply(user: str) -> str:
                    assert client.stdin is not None and client.stdout is not None
                    client.stdin.write(f"{user}\n".encode())
                    await client.stdin.drain()
                    return (await client.stdout.readline()).decode().strip()

                replies: list[str] = []
                end = time.monotonic() + 30
                while time.monotonic() < end:
                    replies = [await reply(""), await reply("jason")]
                    if replies == ["v2", "v3"]:
                        break
                assert replies == ["v2", "v3"]
            finally:
                await stop_process(client)
    finally:
        for server, _ in backends.values():
            server.stop(grace=None)
