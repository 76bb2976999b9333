"""Helpers for the semantic validation tables: one resource in, what ``validate`` says out."""

from __future__ import annotations

import json
from typing import Any

import attrs

import istio_sdk

GROUP_VERSION = {
    "VirtualService": "networking.istio.io/v1",
    "DestinationRule": "networking.istio.io/v1",
    "Gateway": "networking.istio.io/v1",
    "ServiceEntry": "networking.istio.io/v1",
    "Sidecar": "networking.istio.io/v1",
    "WorkloadEntry": "networking.istio.io/v1",
    "WorkloadGroup": "networking.istio.io/v1",
    "EnvoyFilter": "networking.istio.io/v1alpha3",
    "ProxyConfig": "networking.istio.io/v1beta1",
    "AuthorizationPolicy": "security.istio.io/v1",
    "PeerAuthentication": "security.istio.io/v1",
    "RequestAuthentication": "security.istio.io/v1",
    "Telemetry": "telemetry.istio.io/v1",
    "WasmPlugin": "extensions.istio.io/v1alpha1",
    "TrafficExtension": "extensions.istio.io/v1alpha1",
    "Policy": "authentication.istio.io/v1alpha1",
    "MeshPolicy": "authentication.istio.io/v1alpha1",
    "ServiceRole": "rbac.istio.io/v1alpha1",
    "ServiceRoleBinding": "rbac.istio.io/v1alpha1",
    "RbacConfig": "rbac.istio.io/v1alpha1",
    "ClusterRbacConfig": "rbac.istio.io/v1alpha1",
}
CLUSTER_SCOPED = {"MeshPolicy", "ClusterRbacConfig"}


@attrs.frozen
class Case:
    """One verdict of Istio's: ``error``/``warning`` are (path, text in the message), or None."""

    id: str
    spec: dict[str, Any]
    error: tuple[str, str] | None = None
    warning: tuple[str, str] | None = None
    name: str = "x"
    labels: dict[str, str] = attrs.field(factory=dict)
    annotations: dict[str, str] = attrs.field(factory=dict)


def findings(
    kind: str,
    spec: dict[str, Any] | None,
    *,
    name: str = "x",
    namespace: str = "shop",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> list[tuple[str, str, str]]:
    """``(level, path, message)`` for every problem ``validate`` finds in one resource."""
    metadata: dict[str, Any] = {"name": name}
    if kind not in CLUSTER_SCOPED:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    document: dict[str, Any] = {
        "apiVersion": GROUP_VERSION[kind],
        "kind": kind,
        "metadata": metadata,
    }
    if spec is not None:
        document["spec"] = spec
    return [(p.level, p.path, p.message) for p in istio_sdk.validate(json.dumps(document))]


def check_case(kind: str, case: Case) -> None:
    """Assert Istio's verdict: valid or not, and the error or warning at its field."""
    found = findings(
        kind, case.spec, name=case.name, labels=case.labels, annotations=case.annotations
    )
    errors = [(path, message) for level, path, message in found if level == "error"]
    warnings = [(path, message) for level, path, message in found if level == "warning"]
    if case.error is None:
        assert errors == [], f"{case.id}: Istio accepts this"
    else:
        path, text = case.error
        assert any(p == path and text in m for p, m in errors), (
            f"{case.id}: expected an error at {path} saying {text!r}, got {errors}"
        )
    if case.warning is not None:
        path, text = case.warning
        assert any(p == path and text in m for p, m in warnings), (
            f"{case.id}: expected a warning at {path} saying {text!r}, got {warnings}"
        )
