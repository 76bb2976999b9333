"""ProxyConfig as pilot-agent resolves it: defaults, then mesh config, ``PROXY_CONFIG``, annotation.

pilot-agent starts from Istio's default ProxyConfig, applies the ``defaultConfig`` of the mesh
config file (gateways mount it), then the ``PROXY_CONFIG`` environment variable (the injector
writes it for sidecars), then the Pod's ``proxy.istio.io/config`` annotation. Each layer
replaces the fields it names and leaves the others alone; ``proxyMetadata`` maps are merged
key by key. Finally ``proxy.istio.io/discoveryAddress`` and ``status.sidecar.istio.io/port``
annotations override their fields.

Unlike pilot-agent, which retries with unknown fields allowed, an unknown field is an error
here: a misspelt field would otherwise be dropped without a word.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import betterproto2

from istio_sdk import protojson
from istio_sdk.api.istio.mesh.v1alpha1 import AuthenticationPolicy, ProxyConfig
from istio_sdk.config import ConfigError
from istio_sdk.proxy.bootstrap._errors import BootstrapError

__all__ = [
    "DISCOVERY_ADDRESS_ANNOTATION",
    "PROXY_CONFIG_ANNOTATION",
    "STATUS_PORT_ANNOTATION",
    "apply_proxy_config_annotations",
    "apply_proxy_config_text",
    "default_proxy_config",
    "merge_proxy_config",
    "parse_overlay",
    "resolve_proxy_config",
]

PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"
DISCOVERY_ADDRESS_ANNOTATION = "sidecar.istio.io/discoveryAddress"
STATUS_PORT_ANNOTATION = "status.sidecar.istio.io/port"

# Text larger than this is refused before parsing (an annotation is at most 256 KiB in
# Kubernetes; a mesh config file is far smaller in practice).
MAX_TEXT = 1 << 20


def default_proxy_config() -> ProxyConfig:
    """Istio's built-in ProxyConfig (``mesh.DefaultProxyConfig``), a fresh copy each call."""
    return ProxyConfig(
        config_path="./etc/istio/proxy",
        service_cluster="istio-proxy",
        drain_duration=datetime.timedelta(seconds=45),
        termination_drain_duration=datetime.timedelta(seconds=5),
        proxy_admin_port=15000,
        control_plane_auth_policy=AuthenticationPolicy.MUTUAL_TLS,
        discovery_address="istiod.istio-system.svc:15012",
        binary_path="/usr/local/bin/envoy",
        stat_name_length=189,
        status_port=15020,
    )


def _field_names(cls: type[betterproto2.Message]) -> dict[str, str]:
    """JSON name and proto name -> attribute name, for the top-level fields of ``cls``."""
    names: dict[str, str] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        names[field.name] = field.name
        names[protojson.json_name(field.name)] = field.name
    return names


_PROXY_CONFIG_FIELDS = _field_names(ProxyConfig)
_ONEOF_GROUPS: dict[str, tuple[str, ...]] = {
    field.name: tuple(f.name for f in group)
    for group in ProxyConfig._betterproto.oneof_field_by_group.values()
    for field in group
}


def parse_overlay(value: object, source: str) -> tuple[ProxyConfig, frozenset[str]]:
    """A ProxyConfig from its JSON/YAML value, and the attribute names the value sets.

    ``value`` is what YAML or JSON parsing produced (a mapping, or None for empty text).
    Go-style durations (``10s``, ``1m30s``) are accepted, as Istio does.
    """
    if value is None:
        return ProxyConfig(), frozenset()
    if not isinstance(value, Mapping):
        raise BootstrapError(source, f"expected a mapping of ProxyConfig fields, got {value!r:.80}")
    try:
        parsed = protojson.message_from_json(ProxyConfig, dict(value), lenient=True)
    except protojson.ProtoJsonError as exc:
        raise BootstrapError(source, str(exc)) from None
    present = frozenset(
        _PROXY_CONFIG_FIELDS[key] for key, item in value.items() if item is not None
    )
    return parsed, present


def merge_proxy_config(
    base: ProxyConfig, overlay: ProxyConfig, present: frozenset[str]
) -> ProxyConfig:
    """``base`` with the fields named in ``present`` replaced by ``overlay``'s.

    ``proxy_metadata`` is merged (the overlay's keys win); setting one member of a oneof
    (``serviceCluster`` / ``tracingServiceName``) clears the other.
    """
    merged = ProxyConfig().parse(bytes(base))
    for name in sorted(present):
        value: Any = getattr(overlay, name)
        if name == "proxy_metadata":
            value = {**base.proxy_metadata, **overlay.proxy_metadata}
        for other in _ONEOF_GROUPS.get(name, ()):
            if other != name:
                setattr(merged, other, None)
        setattr(merged, name, value)
    return merged


def _parse_text(text: str, source: str) -> object:
    from istio_sdk.config._yaml import parse_documents

    if len(text) > MAX_TEXT:
        raise BootstrapError(source, f"{len(text)} characters, more than the limit of {MAX_TEXT}")
    try:
        documents = parse_documents(text, source)
    except ConfigError as exc:
        raise BootstrapError(source, exc.problem.message) from None
    if len(documents) > 1:
        raise BootstrapError(source, f"expected one YAML document, found {len(documents)}")
    return documents[0].value if documents else None


def apply_proxy_config_text(base: ProxyConfig, text: str, source: str) -> ProxyConfig:
    """``base`` with the ProxyConfig YAML/JSON ``text`` laid over it (one layer of
    :func:`resolve_proxy_config`); :class:`BootstrapError` names ``source`` when it is bad."""
    overlay, present = parse_overlay(_parse_text(text, source), source)
    return merge_proxy_config(base, overlay, present)


def resolve_proxy_config(
    *,
    mesh_config: str | None = None,
    proxy_config_env: str | None = None,
    annotations: Mapping[str, str] | None = None,
    service_cluster: str = "istio-proxy",
) -> ProxyConfig:
    """The effective ProxyConfig of a proxy, as pilot-agent computes it.

    ``mesh_config`` is the text of the mesh config file (its ``defaultConfig`` is used),
    ``proxy_config_env`` the value of ``PROXY_CONFIG``, ``annotations`` the Pod's annotations
    (``proxy.istio.io/config`` and the two field overrides). ``service_cluster`` is
    pilot-agent's ``--serviceCluster``, used when the result names no cluster. Raises
    :class:`BootstrapError` naming the layer that is malformed or sets an unknown field.
    """
    annotations = annotations or {}
    config = default_proxy_config()
    if mesh_config:
        mesh = _parse_text(mesh_config, "mesh config file")
        if mesh is not None and not isinstance(mesh, Mapping):
            raise BootstrapError("mesh config file", "expected a mapping of MeshConfig fields")
        default = (mesh or {}).get("defaultConfig")
        if default is not None:
            overlay, present = parse_overlay(default, "mesh config file: defaultConfig")
            config = merge_proxy_config(config, overlay, present)
    if proxy_config_env:
        config = apply_proxy_config_text(
            config, proxy_config_env, "environment variable PROXY_CONFIG"
        )
    annotation = annotations.get(PROXY_CONFIG_ANNOTATION)
    if annotation:
        config = apply_proxy_config_text(
            config, annotation, f"annotation {PROXY_CONFIG_ANNOTATION}"
        )
    if config.tracing_service_name is None and not config.service_cluster:
        config.service_cluster = service_cluster
    _check_ports(config)
    return apply_proxy_config_annotations(config, annotations)


def _check_ports(config: ProxyConfig) -> None:
    """Ports the layers set must be ports: the bootstrap writes them as Envoy port values."""
    for name, json_name in (("status_port", "statusPort"), ("proxy_admin_port", "proxyAdminPort")):
        port = getattr(config, name)
        if not 0 <= port <= 65535:
            raise BootstrapError(f"ProxyConfig {json_name}", f"port {port} is out of range")


def apply_proxy_config_annotations(
    config: ProxyConfig, annotations: Mapping[str, str]
) -> ProxyConfig:
    """Apply the discovery-address and status-port annotations to ``config`` (in place)."""
    if DISCOVERY_ADDRESS_ANNOTATION in annotations:
        config.discovery_address = annotations[DISCOVERY_ADDRESS_ANNOTATION]
    if STATUS_PORT_ANNOTATION in annotations:
        raw = annotations[STATUS_PORT_ANNOTATION]
        source = f"annotation {STATUS_PORT_ANNOTATION}"
        config.status_port = _port(raw, source, allow_zero=True)
    return config


def _port(raw: str, source: str, *, allow_zero: bool = False) -> int:
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise BootstrapError(source, f"expected a port number, got {raw!r:.80}")
    port = int(text)
    if port > 65535 or (port == 0 and not allow_zero):
        raise BootstrapError(source, f"port {port} is out of range")
    return port
