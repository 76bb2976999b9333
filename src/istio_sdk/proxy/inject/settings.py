"""What the injector is configured with: Helm values, mesh config, revision, native sidecars.

istiod's injector reads the ``values`` and ``mesh`` of its ConfigMaps; the defaults here are
the ``istio-discovery`` chart's (``global.hub: registry.istio.io/testing``, ``tag: latest``,
the proxy's 100m/128Mi requests and 2/1Gi limits, status port 15020, ...) and Istio's default
mesh config (trust domain ``cluster.local``, Prometheus merge on). A values document is merged
over the defaults key by key; a mesh config document's ``defaultConfig`` is layered over
Istio's default ProxyConfig, as istiod does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import attrs

from istio_sdk import protojson
from istio_sdk.api.istio.mesh.v1alpha1 import MeshConfig, ProxyConfig
from istio_sdk.proxy.bootstrap import BootstrapError, default_proxy_config
from istio_sdk.proxy.bootstrap.proxy_config import merge_proxy_config, parse_overlay
from istio_sdk.proxy.inject._errors import InjectionError

__all__ = ["DEFAULT_VALUES", "InjectSettings", "Values", "merge_values"]

DEFAULT_VALUES: Mapping[str, Any] = {
    "revision": "",
    "pilot": {"cni": {"enabled": False, "provider": "default"}, "env": {}},
    "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": True, "injectedAnnotations": {}},
    "gateways": {"securityContext": {}, "seccompProfile": {}},
    "global": {
        "istioNamespace": "istio-system",
        "hub": "registry.istio.io/testing",
        "tag": "latest",
        "variant": "",
        "imagePullPolicy": "",
        "imagePullSecrets": [],
        "logAsJson": False,
        "nativeNftables": False,
        "logging": {"level": "default:info"},
        "proxy": {
            "image": "proxyv2",
            "clusterDomain": "cluster.local",
            "componentLogLevel": "misc:error",
            "excludeInboundPorts": "",
            "includeInboundPorts": "*",
            "includeIPRanges": "*",
            "excludeIPRanges": "",
            "includeOutboundPorts": "",
            "excludeOutboundPorts": "",
            "logLevel": "warning",
            "outlierLogPath": "",
            "privileged": False,
            "seccompProfile": {},
            "readinessFailureThreshold": 4,
            "readinessInitialDelaySeconds": 0,
            "readinessPeriodSeconds": 15,
            "startupProbe": {"enabled": True, "failureThreshold": 600},
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "2000m", "memory": "1024Mi"},
            },
            "statusPort": 15020,
            "tracer": "none",
        },
        "proxy_init": {"image": "proxyv2", "forceApplyIptables": False},
        "caAddress": "",
        "meshID": "",
        "mountMtlsCerts": False,
        "multiCluster": {"clusterName": ""},
        "network": "",
        "pilotCertProvider": "istiod",
        "sds": {"token": {"aud": "istio-ca"}},
        "sts": {"servicePort": 0},
        "caName": "",
        "trustDomain": "",
    },
}


def merge_values(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` merged over ``base``: mappings key by key, anything else replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def go_text(value: object) -> str:
    """A value as a Go template prints it (``fmt.Sprint`` of what YAML/JSON decoding gave)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


@attrs.frozen
class Values:
    """Helm values as the injection templates read them (``values.get("global.proxy.image")``)."""

    tree: Mapping[str, Any]

    def get(self, path: str) -> Any:
        """The value at a dotted path, or None when any step is missing."""
        node: Any = self.tree
        for step in path.split("."):
            if not isinstance(node, Mapping) or step not in node:
                return None
            node = node[step]
        return node

    def text(self, path: str) -> str:
        """The value at ``path`` as the template prints it; ``""`` when unset."""
        value = self.get(path)
        return "" if value is None else go_text(value)

    def truthy(self, path: str) -> bool:
        """Whether the template treats the value as set (non-empty, non-zero, true)."""
        value = self.get(path)
        if isinstance(value, float):
            return value != 0
        return bool(value)

    def integer(self, path: str) -> int:
        """An integer value; :class:`InjectionError` when it is of another type."""
        value = self.get(path)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InjectionError(f"values {path}", f"expected an integer, got {value!r:.80}")
        try:
            number = int(value)
        except ValueError:
            raise InjectionError(
                f"values {path}", f"expected an integer, got {value!r:.80}"
            ) from None
        if isinstance(value, float) and not value.is_integer():
            raise InjectionError(f"values {path}", f"expected an integer, got {value!r}")
        return number


def _mesh_from(value: object) -> tuple[MeshConfig, ProxyConfig]:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise InjectionError("mesh config", f"expected a mapping, got {value!r:.80}")
    body = {key: item for key, item in value.items() if key != "defaultConfig"}
    try:
        mesh = protojson.message_from_json(MeshConfig, body, lenient=True)
    except protojson.ProtoJsonError as exc:
        raise InjectionError("mesh config", str(exc)) from None
    proxy = default_proxy_config()
    default = value.get("defaultConfig")
    if default is not None:
        try:
            overlay, present = parse_overlay(default, "mesh config defaultConfig")
        except BootstrapError as exc:
            raise InjectionError(exc.source, exc.problem) from None
        proxy = merge_proxy_config(proxy, overlay, present)
    if not mesh.trust_domain:
        mesh.trust_domain = "cluster.local"
    if mesh.enable_prometheus_merge is None:
        mesh.enable_prometheus_merge = True
    return mesh, proxy


@attrs.frozen
class InjectSettings:
    """The injector's configuration (istiod's ``istio-sidecar-injector`` and ``istio`` maps).

    ``native_sidecars`` puts ``istio-proxy`` among the init containers with
    ``restartPolicy: Always`` (Kubernetes 1.29+ sidecars; istiod turns it on when every node
    runs 1.33 or later); the ``sidecar.istio.io/nativeSidecar`` annotation overrides it per Pod.
    ``default_templates`` are used when a Pod names none in ``inject.istio.io/templates``.
    ``policy`` is the namespace default: ``enabled`` injects unless a Pod opts out.
    """

    values: Values = attrs.field(factory=lambda: Values(DEFAULT_VALUES))
    mesh: MeshConfig = attrs.field(factory=lambda: _mesh_from(None)[0])
    proxy_config: ProxyConfig = attrs.field(factory=default_proxy_config)
    revision: str = ""
    native_sidecars: bool = False
    default_templates: tuple[str, ...] = ("sidecar",)
    policy: str = attrs.field(default="enabled")

    @policy.validator
    def _check_policy(self, _: object, value: str) -> None:
        if value not in ("enabled", "disabled"):
            raise InjectionError("policy", f"expected 'enabled' or 'disabled', got {value!r}")

    @classmethod
    def build(
        cls,
        *,
        values: Mapping[str, Any] | None = None,
        mesh: Mapping[str, Any] | None = None,
        revision: str = "",
        native_sidecars: bool = False,
        default_templates: tuple[str, ...] = ("sidecar",),
        policy: str = "enabled",
    ) -> InjectSettings:
        """Settings from a values document and a mesh config document (both optional)."""
        if values is not None and not isinstance(values, Mapping):
            raise InjectionError("values", f"expected a mapping, got {values!r:.80}")
        tree = merge_values(DEFAULT_VALUES, values or {})
        mesh_config, proxy_config = _mesh_from(mesh)
        return cls(
            values=Values(tree),
            mesh=mesh_config,
            proxy_config=proxy_config,
            revision=revision,
            native_sidecars=native_sidecars,
            default_templates=default_templates,
            policy=policy,
        )

    @property
    def status_port(self) -> int:
        """The mesh's default status port (``defaultConfig.statusPort``)."""
        return int(self.proxy_config.status_port)
