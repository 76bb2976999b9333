"""Istio 1.3's default attribute vocabulary: the ``istioproxy`` and ``kubernetes`` manifests.

They are the two ``attributemanifest`` resources 1.3's Helm chart installs in istio-system
(install/kubernetes/helm/istio/charts/mixer/templates/config.yaml). Mixer merges every manifest
of every namespace into one vocabulary; :data:`DEFAULT_MANIFEST` is that merge for a default
install. ``source.port``, ``target.*`` and ``destination.service`` are in the global dictionary
but in neither manifest, so expressions cannot name them by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from istio_sdk.api.istio.policy.v1beta1 import ValueType

__all__ = ["DEFAULT_MANIFEST", "ISTIO_PROXY_MANIFEST", "KUBERNETES_MANIFEST", "merge_manifests"]

Manifest = Mapping[str, ValueType]


def merge_manifests(*manifests: Mapping[str, ValueType]) -> Mapping[str, ValueType]:
    """One read-only vocabulary from several manifests (a later one wins on a repeated name)."""
    merged: dict[str, ValueType] = {}
    for manifest in manifests:
        merged.update(manifest)
    return MappingProxyType(merged)


# the 64 attributes Envoy's Mixer filter produces
ISTIO_PROXY_MANIFEST: Mapping[str, ValueType] = MappingProxyType(
    {
        "origin.ip": ValueType.IP_ADDRESS,
        "origin.uid": ValueType.STRING,
        "origin.user": ValueType.STRING,
        "request.headers": ValueType.STRING_MAP,
        "request.id": ValueType.STRING,
        "request.host": ValueType.STRING,
        "request.method": ValueType.STRING,
        "request.path": ValueType.STRING,
        "request.url_path": ValueType.STRING,
        "request.query_params": ValueType.STRING_MAP,
        "request.reason": ValueType.STRING,
        "request.referer": ValueType.STRING,
        "request.scheme": ValueType.STRING,
        "request.total_size": ValueType.INT64,
        "request.size": ValueType.INT64,
        "request.time": ValueType.TIMESTAMP,
        "request.useragent": ValueType.STRING,
        "response.code": ValueType.INT64,
        "response.duration": ValueType.DURATION,
        "response.headers": ValueType.STRING_MAP,
        "response.total_size": ValueType.INT64,
        "response.size": ValueType.INT64,
        "response.time": ValueType.TIMESTAMP,
        "response.grpc_status": ValueType.STRING,
        "response.grpc_message": ValueType.STRING,
        "source.uid": ValueType.STRING,
        "source.user": ValueType.STRING,
        "source.principal": ValueType.STRING,
        "destination.uid": ValueType.STRING,
        "destination.principal": ValueType.STRING,
        "destination.port": ValueType.INT64,
        "connection.event": ValueType.STRING,
        "connection.id": ValueType.STRING,
        "connection.received.bytes": ValueType.INT64,
        "connection.received.bytes_total": ValueType.INT64,
        "connection.sent.bytes": ValueType.INT64,
        "connection.sent.bytes_total": ValueType.INT64,
        "connection.duration": ValueType.DURATION,
        "connection.mtls": ValueType.BOOL,
        "connection.requested_server_name": ValueType.STRING,
        "context.protocol": ValueType.STRING,
        "context.proxy_error_code": ValueType.STRING,
        "context.timestamp": ValueType.TIMESTAMP,
        "context.time": ValueType.TIMESTAMP,
        "context.reporter.local": ValueType.BOOL,
        "context.reporter.kind": ValueType.STRING,
        "context.reporter.uid": ValueType.STRING,
        "api.service": ValueType.STRING,
        "api.version": ValueType.STRING,
        "api.operation": ValueType.STRING,
        "api.protocol": ValueType.STRING,
        "request.auth.principal": ValueType.STRING,
        "request.auth.audiences": ValueType.STRING,
        "request.auth.presenter": ValueType.STRING,
        "request.auth.claims": ValueType.STRING_MAP,
        "request.auth.raw_claims": ValueType.STRING,
        "request.api_key": ValueType.STRING,
        "rbac.permissive.response_code": ValueType.STRING,
        "rbac.permissive.effective_policy_id": ValueType.STRING,
        "check.error_code": ValueType.INT64,
        "check.error_message": ValueType.STRING,
        "check.cache_hit": ValueType.BOOL,
        "quota.cache_hit": ValueType.BOOL,
        "context.proxy_version": ValueType.STRING,
    }
)

# the 26 attributes the kubernetesenv adapter derives from the workloads
KUBERNETES_MANIFEST: Mapping[str, ValueType] = MappingProxyType(
    {
        "source.ip": ValueType.IP_ADDRESS,
        "source.labels": ValueType.STRING_MAP,
        "source.metadata": ValueType.STRING_MAP,
        "source.name": ValueType.STRING,
        "source.namespace": ValueType.STRING,
        "source.owner": ValueType.STRING,
        "source.serviceAccount": ValueType.STRING,
        "source.services": ValueType.STRING,
        "source.workload.uid": ValueType.STRING,
        "source.workload.name": ValueType.STRING,
        "source.workload.namespace": ValueType.STRING,
        "destination.ip": ValueType.IP_ADDRESS,
        "destination.labels": ValueType.STRING_MAP,
        "destination.metadata": ValueType.STRING_MAP,
        "destination.owner": ValueType.STRING,
        "destination.name": ValueType.STRING,
        "destination.container.name": ValueType.STRING,
        "destination.namespace": ValueType.STRING,
        "destination.service.uid": ValueType.STRING,
        "destination.service.name": ValueType.STRING,
        "destination.service.namespace": ValueType.STRING,
        "destination.service.host": ValueType.STRING,
        "destination.serviceAccount": ValueType.STRING,
        "destination.workload.uid": ValueType.STRING,
        "destination.workload.name": ValueType.STRING,
        "destination.workload.namespace": ValueType.STRING,
    }
)

DEFAULT_MANIFEST: Mapping[str, ValueType] = merge_manifests(
    ISTIO_PROXY_MANIFEST, KUBERNETES_MANIFEST
)
