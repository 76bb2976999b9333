"""Application probes rewritten to pilot-agent's status port.

With mTLS the kubelet cannot reach an application's HTTP, TCP or gRPC probe directly, so the
injector points each probe (and each HTTP/TCP ``preStop``/``postStart`` hook) of every
application container at the agent's status port (15020 by default) under
``/app-health/CONTAINER/readyz|livez|startupz`` or ``/app-lifecycle/CONTAINER/prestopz|
poststartz``, and tells the agent the original probes in ``ISTIO_KUBE_APP_PROBERS`` (a JSON
object from each of those paths to the original action, named ports resolved).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from istio_sdk.proxy.inject._merge import copy_json

__all__ = ["KUBE_APP_PROBERS", "app_probers", "prober_paths", "rewrite_probes"]

KUBE_APP_PROBERS = "ISTIO_KUBE_APP_PROBERS"
PROXY = "istio-proxy"
Json = dict[str, Any]

_PROBES = (("readinessProbe", "readyz"), ("livenessProbe", "livez"), ("startupProbe", "startupz"))
_HOOKS = (("preStop", "prestopz"), ("postStart", "poststartz"))
_HTTP_ORDER = ("path", "port", "host", "scheme", "httpHeaders")


def prober_paths(container: str) -> dict[str, str]:
    """The status-server paths of a container's probes and hooks, by probe kind."""
    paths = {kind: f"/app-health/{container}/{suffix}" for kind, suffix in _PROBES}
    paths.update({kind: f"/app-lifecycle/{container}/{suffix}" for kind, suffix in _HOOKS})
    return paths


def _containers(spec: Mapping[str, Any]) -> Iterator[Json]:
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            if isinstance(container, dict) and container.get("name") != PROXY:
                yield container


def _ordered(action: Mapping[str, Any], order: tuple[str, ...]) -> Json:
    out = {key: action[key] for key in order if key in action and action[key] not in (None, "")}
    if "port" in order:
        out.setdefault("port", action.get("port", 0))
    return out


def _prober(handler: Mapping[str, Any] | None, *, with_timeout: bool) -> Json | None:
    if not isinstance(handler, Mapping):
        return None
    prober: Json
    if isinstance(handler.get("httpGet"), Mapping):
        prober = {"httpGet": _ordered(handler["httpGet"], _HTTP_ORDER)}
    elif isinstance(handler.get("tcpSocket"), Mapping):
        prober = {"tcpSocket": _ordered(handler["tcpSocket"], ("port", "host"))}
    elif with_timeout and isinstance(handler.get("grpc"), Mapping):
        prober = {"grpc": _ordered(handler["grpc"], ("port", "service"))}
    else:
        return None
    if with_timeout and handler.get("timeoutSeconds"):
        prober["timeoutSeconds"] = handler["timeoutSeconds"]
    return prober


def _resolve_port(prober: Json, ports: Mapping[str, int], status_port: int) -> Json | None:
    if "grpc" in prober:
        return prober
    action = prober.get("httpGet") or prober.get("tcpSocket")
    assert action is not None
    port = action.get("port")
    if isinstance(port, str):
        if port not in ports:
            return None
        action["port"] = ports[port]
    elif port == status_port:
        return None
    return prober


def app_probers(spec: Mapping[str, Any], status_port: int) -> str:
    """``ISTIO_KUBE_APP_PROBERS`` for a Pod spec (``""`` when no probe is rewritten)."""
    out: Json = {}
    for container in _containers(spec):
        paths = prober_paths(str(container.get("name")))
        ports = {
            p["name"]: p.get("containerPort", 0)
            for p in container.get("ports") or []
            if isinstance(p, Mapping) and p.get("name")
        }
        for kind, _ in _PROBES:
            prober = _prober(container.get(kind), with_timeout=True)
            if prober is not None and (found := _resolve_port(prober, ports, status_port)):
                out[paths[kind]] = found
        lifecycle = container.get("lifecycle")
        if isinstance(lifecycle, Mapping):
            for kind, _ in _HOOKS:
                prober = _prober(lifecycle.get(kind), with_timeout=False)
                if prober is not None and (found := _resolve_port(prober, ports, status_port)):
                    out[paths[kind]] = found
    if not out:
        return ""
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def _rewritten(handler: Any, path: str, port: int, *, probe: bool) -> Any:
    if not isinstance(handler, Mapping):
        return handler
    kinds = ("httpGet", "tcpSocket", "grpc") if probe else ("httpGet", "tcpSocket")
    kind = next((k for k in kinds if isinstance(handler.get(k), Mapping)), None)
    if kind is None:
        return handler
    out = copy_json(dict(handler))
    http = dict(out["httpGet"]) if kind == "httpGet" else {}
    out.pop(kind, None)
    http["path"] = path
    http["port"] = port
    if http.get("scheme") == "HTTPS":
        http["scheme"] = "HTTP"
    out["httpGet"] = http
    return out


def rewrite_probes(spec: Json, status_port: int) -> None:
    """Point every application probe and HTTP/TCP hook of ``spec`` at ``status_port`` (in
    place)."""
    for container in _containers(spec):
        paths = prober_paths(str(container.get("name")))
        for kind, _ in _PROBES:
            if kind in container:
                container[kind] = _rewritten(container[kind], paths[kind], status_port, probe=True)
        lifecycle = container.get("lifecycle")
        if isinstance(lifecycle, dict):
            for kind, _ in _HOOKS:
                if kind in lifecycle:
                    lifecycle[kind] = _rewritten(
                        lifecycle[kind], paths[kind], status_port, probe=False
                    )


def merge_probers(existing: str, new: str) -> str:
    """Probers of a re-injected Pod: the new ones with the previous ones laid over them."""
    try:
        old = json.loads(existing)
        fresh = json.loads(new)
    except (ValueError, RecursionError):
        return existing
    if not isinstance(old, dict) or not isinstance(fresh, dict):
        return existing
    fresh.update(old)
    return json.dumps(fresh, sort_keys=True, separators=(",", ":"))
