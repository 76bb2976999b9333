"""Helpers for tests that run against the test Kubernetes API server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from istio_sdk.config import ConfigStore, KindInfo, KubernetesSource, kind_for

KINDS: tuple[KindInfo, ...] = (
    kind_for("VirtualService"),
    kind_for("DestinationRule"),
    kind_for("Service"),
    kind_for("EndpointSlice"),
    kind_for("Pod"),
)


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until ``predicate()`` is true (fails the test after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + timeout
    while not predicate():
        if loop.time() > ends:
            raise AssertionError(f"timed out waiting for {getattr(predicate, '__name__', '')}")
        await asyncio.sleep(0.01)


def vs(name: str, host: str, namespace: str = "shop", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}]}]},
    }


def service(name: str, namespace: str = "shop", port: int = 9080) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterIP": "10.96.0.10",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": port, "targetPort": port}],
        },
    }


def slice_for(
    service_name: str, ips: list[str], namespace: str = "shop", name: str = ""
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-abc",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 9080}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
    }


def hosts(store: ConfigStore, name: str, namespace: str = "shop") -> list[str] | None:
    found = store.get("VirtualService", name, namespace)
    return None if found is None else list(found.spec.hosts)


def source_for(store: ConfigStore, url: str, **kwargs: Any) -> KubernetesSource:
    import httpx

    kwargs.setdefault("kinds", KINDS)
    kwargs.setdefault("backoff_initial", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    return KubernetesSource(store, client=httpx.AsyncClient(base_url=url), **kwargs)
