"""The Pod annotations the injector honours, and the checks it makes on their values.

The checks are istiod's (``pkg/kube/inject/validate.go``): a Pod whose annotation fails one is
refused with the annotation's name and value, before any template runs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping

from istio_sdk.proxy.inject._errors import InjectionError
from istio_sdk.proxy.inject._quantity import is_quantity

__all__ = ["validate_annotations"]

INJECT = "sidecar.istio.io/inject"
STATUS = "sidecar.istio.io/status"
INTERCEPTION_MODE = "sidecar.istio.io/interceptionMode"
STATUS_PORT = "status.sidecar.istio.io/port"
PROXY_CONFIG = "proxy.istio.io/config"
PROXY_OVERRIDES = "proxy.istio.io/overrides"
TEMPLATES = "inject.istio.io/templates"
REWRITE_PROBERS = "sidecar.istio.io/rewriteAppHTTPProbers"
NATIVE_SIDECAR = "sidecar.istio.io/nativeSidecar"
PROMETHEUS_MERGE = "prometheus.istio.io/merge-metrics"

_INTERFACE = re.compile(r"^[a-zA-Z0-9._-]+$")


def _uint32(value: str) -> None:
    if not (value.isascii() and value.isdigit()) or int(value) > 0xFFFFFFFF:
        raise ValueError("expected an unsigned 32-bit integer")


def _port(value: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise ValueError(f"failed parsing port {value!r}")
    return int(text)


def _ports(value: str) -> None:
    text = value.strip()
    if text:
        for part in text.split(","):
            _port(part)


def _cidrs(value: str) -> None:
    if value:
        for part in value.split(","):
            if "%" in part:
                raise ValueError(f"failed parsing cidr {part!r}: a zone is not allowed")
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"failed parsing cidr {part!r}") from None
            if "/" not in part:
                raise ValueError(f"failed parsing cidr {part!r}: no prefix length")


def _include_ranges(value: str) -> None:
    if value != "*":
        _cidrs(value)


def _include_ports(value: str) -> None:
    if value != "*":
        _ports(value)


def _interfaces(value: str) -> None:
    if value:
        for part in value.split(","):
            name = part.strip()
            if not name:
                raise ValueError("empty interface name")
            if len(name) > 15:
                raise ValueError(f"interface name {name!r} too long (max 15 chars)")
            if not _INTERFACE.match(name):
                raise ValueError(f"interface name {name!r} contains invalid characters")


def _interception(value: str) -> None:
    if value not in ("REDIRECT", "TPROXY", "NONE"):
        raise ValueError("interceptionMode invalid, use REDIRECT,TPROXY,NONE")


def _boolean(value: str) -> None:
    parse_go_bool(value)


def _quantity(value: str) -> None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("value contains control characters")
    if not is_quantity(value):
        raise ValueError("quantities must match the regular expression of a Kubernetes quantity")


def parse_go_bool(value: str) -> bool:
    """``strconv.ParseBool``: 1, t, T, TRUE, true, True and their false forms."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"invalid syntax for a boolean: {value!r:.80}")


_LABELS: Mapping[str, str] = {
    "traffic.sidecar.istio.io/includeOutboundIPRanges": "includeIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": "excludeIPRanges",
    "traffic.sidecar.istio.io/includeInboundPorts": "includeInboundPorts",
    "traffic.sidecar.istio.io/excludeInboundPorts": "excludeInboundPorts",
    "traffic.sidecar.istio.io/excludeOutboundPorts": "excludeOutboundPorts",
    STATUS_PORT: "statusPort",
}

_CHECKS: Mapping[str, Callable[[str], object]] = {
    INTERCEPTION_MODE: _interception,
    STATUS_PORT: _port,
    "readiness.status.sidecar.istio.io/initialDelaySeconds": _uint32,
    "readiness.status.sidecar.istio.io/periodSeconds": _uint32,
    "readiness.status.sidecar.istio.io/failureThreshold": _uint32,
    "traffic.sidecar.istio.io/includeOutboundIPRanges": _include_ranges,
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": _cidrs,
    "traffic.sidecar.istio.io/includeInboundPorts": _include_ports,
    "traffic.sidecar.istio.io/excludeInboundPorts": _ports,
    "traffic.sidecar.istio.io/excludeOutboundPorts": _ports,
    "traffic.sidecar.istio.io/excludeInterfaces": _interfaces,
    "traffic.sidecar.istio.io/kubevirtInterfaces": _interfaces,
    "istio.io/reroute-virtual-interfaces": _interfaces,
    PROMETHEUS_MERGE: _boolean,
    "sidecar.istio.io/proxyCPU": _quantity,
    "sidecar.istio.io/proxyMemory": _quantity,
    "sidecar.istio.io/proxyCPULimit": _quantity,
    "sidecar.istio.io/proxyMemoryLimit": _quantity,
}


def validate_annotations(annotations: Mapping[str, str]) -> None:
    """Raise :class:`InjectionError` for the first annotation whose value istiod refuses."""
    for name in sorted(annotations):
        check = _CHECKS.get(name)
        if check is None:
            continue
        value = annotations[name]
        try:
            check(value)
        except ValueError as exc:
            label = f"{_LABELS[name]} invalid: " if name in _LABELS else ""
            raise InjectionError(
                f"annotation {name}", f"invalid value {value!r:.200}: {label}{exc}"
            ) from None
