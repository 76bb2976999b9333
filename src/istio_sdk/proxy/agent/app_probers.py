"""The application probes the injector hands pilot-agent in ``ISTIO_KUBE_APP_PROBERS``.

The injector rewrites each container's liveness, readiness and startup probe to hit the
agent's status port at ``/app-health/CONTAINER/livez|readyz|startupz`` (lifecycle hooks at
``/app-lifecycle/CONTAINER/prestopz|poststartz``) and passes the original probes as one JSON
object keyed by those paths, for example
``{"/app-health/web/livez": {"httpGet": {"path": "/hello", "port": 8080}, "timeoutSeconds": 1}}``.
:func:`parse_app_probers` checks it as pilot-agent does (the path's shape, exactly one of
``httpGet``, ``tcpSocket`` and ``grpc``, an integer port) and returns frozen
:class:`AppProber` values; any other input raises :class:`AgentConfigError`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

import attrs

from istio_sdk.proxy.agent._errors import AgentConfigError, env_json_object

__all__ = [
    "KUBE_APP_PROBERS_ENV",
    "AppProber",
    "ProbeKind",
    "parse_app_probers",
    "prober_paths",
]

KUBE_APP_PROBERS_ENV = "ISTIO_KUBE_APP_PROBERS"
DEFAULT_TIMEOUT_SECONDS = 1  # Kubernetes' default for a probe's timeoutSeconds

_PATH = re.compile(
    r"^/(app-health|app-lifecycle)/[^/]+/(livez|readyz|startupz|prestopz|poststartz)$"
)
_SOURCE = f"environment variable {KUBE_APP_PROBERS_ENV}"


class ProbeKind(enum.Enum):
    """The Kubernetes probe handler a rewritten probe stands for."""

    HTTP = "httpGet"
    TCP = "tcpSocket"
    GRPC = "grpc"


@attrs.frozen
class AppProber:
    """One application probe: what to check, on which port, within how long."""

    kind: ProbeKind
    port: int
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    path: str = "/"
    scheme: str = "HTTP"
    grpc_service: str = ""


def prober_paths(container: str) -> tuple[str, str, str]:
    """The readiness, liveness and startup paths the injector writes for ``container``."""
    return (
        f"/app-health/{container}/readyz",
        f"/app-health/{container}/livez",
        f"/app-health/{container}/startupz",
    )


def _fail(path: str, problem: str) -> AgentConfigError:
    return AgentConfigError(_SOURCE, f"{path[:120]!r}: {problem}")


def _port(path: str, action: Mapping[str, Any]) -> int:
    port = action.get("port")
    # A named port (a string) cannot be resolved by the agent: pilot-agent refuses it too.
    if isinstance(port, bool) or not isinstance(port, int):
        raise _fail(path, f"the port must be an integer, got {port!r:.40}")
    if not 1 <= port <= 65535:
        raise _fail(path, f"port {port} is not in 1-65535")
    return port


def _prober(path: str, raw: Any) -> AppProber:
    if not isinstance(raw, dict):
        raise _fail(path, "a prober must be a JSON object")
    kinds = [kind for kind in ProbeKind if raw.get(kind.value) is not None]
    if len(kinds) != 1:
        raise _fail(path, "invalid prober type, must be one of type httpGet, tcpSocket or gRPC")
    kind = kinds[0]
    action = raw[kind.value]
    if not isinstance(action, dict):
        raise _fail(path, f"{kind.value} must be a JSON object")
    timeout = raw.get("timeoutSeconds", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout <= 3600:
        raise _fail(path, f"timeoutSeconds must be an integer in 0-3600, got {timeout!r:.40}")
    port = _port(path, action)
    fields: dict[str, Any] = {}
    if kind is ProbeKind.HTTP:
        probe_path = action.get("path", "/")
        scheme = action.get("scheme", "HTTP")
        if not isinstance(probe_path, str) or any(c in probe_path for c in "\r\n\0 "):
            raise _fail(path, f"httpGet.path must be a URL path, got {probe_path!r:.60}")
        if scheme not in ("HTTP", "HTTPS"):
            raise _fail(path, f"httpGet.scheme must be HTTP or HTTPS, got {scheme!r:.40}")
        fields["path"] = probe_path if probe_path.startswith("/") else "/" + probe_path
        fields["scheme"] = scheme
    elif kind is ProbeKind.GRPC:
        service = action.get("service") or ""
        if not isinstance(service, str):
            raise _fail(path, f"grpc.service must be a string, got {service!r:.40}")
        fields["grpc_service"] = service
    return AppProber(
        kind=kind, port=port, timeout_seconds=timeout or DEFAULT_TIMEOUT_SECONDS, **fields
    )


def parse_app_probers(text: str | None) -> dict[str, AppProber]:
    """The probers of ``ISTIO_KUBE_APP_PROBERS`` keyed by their status-port path.

    Empty or ``None`` means no probers. Raises :class:`AgentConfigError` for anything
    pilot-agent would refuse to start with.
    """
    if not text:
        return {}
    doc = env_json_object(_SOURCE, text)
    probers: dict[str, AppProber] = {}
    for path, raw in doc.items():
        if not _PATH.match(path):
            raise _fail(path, f"invalid path, must match {_PATH.pattern}")
        probers[path] = _prober(path, raw)
    return probers
