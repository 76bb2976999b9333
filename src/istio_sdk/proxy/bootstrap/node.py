"""The Envoy node pilot-agent writes: id, cluster, locality and the metadata istiod reads.

Metadata comes from the Pod's environment as pilot-agent reads it: every ``ISTIO_META_NAME``
becomes key ``NAME``; every ``ISTIO_METAJSON_*`` holds a JSON object whose keys are added;
``POD_NAME``, ``POD_NAMESPACE`` and ``SERVICE_ACCOUNT`` become ``NAME``, ``NAMESPACE`` and
``SERVICE_ACCOUNT``; ``ISTIO_METAJSON_LABELS`` also becomes ``LABELS`` and ``STATIC_LABELS``.
The agent adds what it knows itself: ``PROXY_CONFIG``, ``INSTANCE_IPS``, ``ISTIO_VERSION``,
``PILOT_SAN``, the Envoy ports, ``WORKLOAD_IDENTITY_SOCKET_FILE``, ``METADATA_DISCOVERY``.
Pod labels and annotations from the downward API (``/etc/istio/pod/labels`` and
``annotations``) are ``LABELS`` and ``ANNOTATIONS``.

Keys are written as istiod's ``BootstrapNodeMetadata`` writes them: typed keys first (empty
values left out, booleans as ``"true"``/``"false"``), then every other key from the
environment that the typed set does not hold.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from istio_sdk import protojson
from istio_sdk.api.istio.mesh.v1alpha1 import ProxyConfig, ProxyConfigTracingServiceName
from istio_sdk.pilot.proxy import format_node_id
from istio_sdk.proxy.bootstrap._errors import BootstrapError

__all__ = [
    "ISTIO_VERSION",
    "LOCALITY_LABEL",
    "AgentOptions",
    "BootstrapNode",
    "node_id",
    "node_metadata",
    "parse_downward_api",
    "service_cluster",
]

ISTIO_META_PREFIX = "ISTIO_META_"
ISTIO_METAJSON_PREFIX = "ISTIO_METAJSON_"
LOCALITY_LABEL = "istio-locality"
TOPOLOGY_LOCALITY_LABEL = "topology.istio.io/locality"
POD_TEMPLATE_HASH = "pod-template-hash"
ISTIO_VERSION = "1.32.0"
"""The Istio release whose pilot-agent this module follows (istio/istio master, 1.32), written
as ``ISTIO_VERSION`` unless the environment sets ``ISTIO_META_ISTIO_VERSION``."""

# Keys istiod's BootstrapNodeMetadata types as a Go bool written as a string.
_STRING_BOOL_KEYS = frozenset(
    {
        "ENABLE_SELF_DISCOVERY",
        "DNS_CAPTURE",
        "DNS_AUTO_ALLOCATE",
        "ENABLE_HBONE",
        "DISABLE_HBONE_SEND",
        "EXIT_ON_ZERO_ACTIVE_CONNECTIONS",
        "INBOUND_LISTENER_EXACT_BALANCE",
        "OUTBOUND_LISTENER_EXACT_BALANCE",
        "METADATA_DISCOVERY",
        "ENVOY_SKIP_DEPRECATED_LOGS",
    }
)
# Keys typed as strings (or string maps / lists) in BootstrapNodeMetadata.
_STRING_KEYS = frozenset(
    {
        "ISTIO_VERSION", "ISTIO_REVISION", "NAMESPACE", "NODE_NAME", "WORKLOAD_NAME",
        "INTERCEPTION_MODE", "SERVICE_ACCOUNT", "HTTP_PROXY_PORT", "MESH_ID", "CLUSTER_ID",
        "NETWORK", "TLS_SERVER_CERT_CHAIN", "TLS_SERVER_KEY", "TLS_SERVER_ROOT_CERT",
        "TLS_CLIENT_CERT_CHAIN", "TLS_CLIENT_KEY", "TLS_CLIENT_ROOT_CERT", "BASE",
        "IDLE_TIMEOUT", "HTTP10", "GENERATOR", "DNS_PROXY_ADDR", "AUTO_REGISTER_GROUP",
        "WORKLOAD_ENTRY", "UNPRIVILEGED_POD", "STS_PORT", "CLOUDRUN_ADDR",
        "WORKLOAD_IDENTITY_SOCKET_FILE", "NAME", "OWNER", "OUTLIER_LOG_PATH",
        "APP_CONTAINERS", "ISTIO_PROXY_SHA",
    }
)  # fmt: skip
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class AgentOptions:
    """What pilot-agent decides beside ProxyConfig: identity, ports, paths.

    :func:`~istio_sdk.proxy.bootstrap.agent_options_from_env` fills it from a Pod's
    environment the way pilot-agent does; tests and embedders can build it directly.
    """

    node_id: str
    instance_ips: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    pilot_san: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    outlier_log_path: str = ""
    envoy_status_port: int = 15021
    envoy_prometheus_port: int = 15090
    envoy_secure_metrics_port: int = 0
    envoy_secure_merged_metrics_port: int = 0
    sts_port: int = 0
    exit_on_zero_active_connections: bool = False
    metadata_discovery: bool | None = None
    envoy_skip_deprecated_logs: bool = False
    workload_identity_socket_file: str = "socket"
    istio_version: str = ISTIO_VERSION
    compliance_policy: str = ""
    log_as_json: bool = False
    credential_socket_exists: bool = False
    custom_credentials_file_exists: bool = False


@attrs.frozen
class BootstrapNode:
    """The node section of a bootstrap, before it becomes an Envoy ``Node`` message."""

    id: str
    metadata: Mapping[str, Any]
    """Metadata as JSON values (what ``node.metadata`` holds as a Struct)."""
    region: str = ""
    zone: str = ""
    sub_zone: str = ""

    @property
    def type(self) -> str:
        """The proxy type, first field of the id (``sidecar``, ``router``, ``waypoint``)."""
        return self.id.split("~", 1)[0]


node_id = format_node_id  # the one formatter lives with the parser, in istio_sdk.pilot.proxy


def parse_downward_api(text: str, source: str) -> dict[str, str]:
    """Parse a downward-API file (``key="quoted value"`` per line) into a mapping.

    Values are Go-quoted strings; a line without ``=`` is skipped, as pilot-agent does.
    """
    result: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if "=" not in line:
            continue
        key, quoted = line.split("=", 1)
        try:
            value = json.loads(quoted)
        except (ValueError, RecursionError):  # RecursionError: the decoder's depth guard
            value = None
        if not isinstance(value, str) or not quoted.startswith('"'):
            raise BootstrapError(
                f"{source}:{number}", f"value of {key!r:.80} is not a quoted string"
            )
        result[key] = value
    return result


def _string_bool(value: object, source: str) -> bool:
    text = value if isinstance(value, str) else json.dumps(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BootstrapError(source, f"expected true or false, got {text!r:.80}")


def _raw_metadata(env: Mapping[str, str], proxy_config: ProxyConfig) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key, value in proxy_config.proxy_metadata.items():
        if key.startswith(ISTIO_META_PREFIX):
            raw[key[len(ISTIO_META_PREFIX) :]] = value
    for name in sorted(env):
        if name.startswith(ISTIO_META_PREFIX):
            raw[name[len(ISTIO_META_PREFIX) :]] = env[name]
    for name in sorted(env):
        if name.startswith(ISTIO_METAJSON_PREFIX):
            raw.update(_json_object(env[name], f"environment variable {name}"))
    if env.get("DNS_PROXY_ADDR"):
        raw["DNS_PROXY_ADDR"] = env["DNS_PROXY_ADDR"]
    return raw


def _json_object(text: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: the decoder's depth guard
        raise BootstrapError(source, f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BootstrapError(source, "expected a JSON object")
    return value


def _string_map(value: object, source: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BootstrapError(source, "expected a JSON object of strings")
    return dict(value)


def _typed_from_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The keys istiod types, read from the raw metadata (checked as istiod would)."""
    typed: dict[str, Any] = {}
    for key, value in raw.items():
        source = f"node metadata {key} (environment variable {ISTIO_META_PREFIX}{key})"
        if key in _STRING_BOOL_KEYS:
            if _string_bool(value, source):
                typed[key] = "true"
        elif key in _STRING_KEYS:
            if not isinstance(value, str):
                raise BootstrapError(source, f"expected a string, got {value!r:.80}")
            if value:
                typed[key] = value
        elif key in ("LABELS", "STATIC_LABELS", "ANNOTATIONS", "PLATFORM_METADATA") and value:
            typed[key] = _string_map(value, source)
        elif key == "POD_PORTS":
            ports = _pod_ports(value, source)
            if ports is not None:
                typed[key] = ports
    return typed


def _pod_ports(value: object, source: str) -> str | None:
    """``POD_PORTS`` as istiod re-encodes it: a JSON list of ``{name, containerPort,
    protocol}`` objects, held in a string."""
    if not isinstance(value, str):
        raise BootstrapError(source, "expected a JSON list held in a string")
    try:
        ports = json.loads(value)
    except (ValueError, RecursionError) as exc:  # RecursionError: the decoder's depth guard
        raise BootstrapError(source, f"not valid JSON: {exc}") from None
    if not isinstance(ports, list):
        raise BootstrapError(source, "expected a JSON list of ports")
    if not ports:
        return None
    encoded = []
    for port in ports:
        if not isinstance(port, dict):
            raise BootstrapError(source, "expected a JSON object for each port")
        name = port.get("name", "")
        number = port.get("containerPort", 0)
        protocol = port.get("protocol", "")
        if not isinstance(name, str) or not isinstance(protocol, str):
            raise BootstrapError(source, "a port's name and protocol must be strings")
        if isinstance(number, bool) or not isinstance(number, int):
            raise BootstrapError(source, f"containerPort must be an integer, got {number!r:.40}")
        entry: dict[str, Any] = {"name": name} if name else {}
        entry.update(containerPort=number, protocol=protocol)
        encoded.append(entry)
    return json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)


def _locality(labels: Mapping[str, str]) -> str:
    if TOPOLOGY_LOCALITY_LABEL in labels:
        return labels[TOPOLOGY_LOCALITY_LABEL]
    return labels.get(LOCALITY_LABEL, "")


def service_cluster(proxy_config: ProxyConfig, metadata: Mapping[str, Any]) -> str:
    """The node's ``cluster``: ProxyConfig's service cluster or tracing name, else app.namespace."""
    labels: Mapping[str, str] = metadata.get("LABELS") or {}
    namespace = str(metadata.get("NAMESPACE", ""))
    workload = str(metadata.get("WORKLOAD_NAME", ""))

    def or_default(name: str) -> str:
        if name and name != "istio-proxy":
            return name
        for key in ("app", "app.kubernetes.io/name", "service.istio.io/canonical-name"):
            if key in labels:
                return f"{labels[key]}.{namespace}"
        if workload:
            return f"{workload}.{namespace}"
        return f"istio-proxy.{namespace}" if namespace else "istio-proxy"

    tracing = proxy_config.tracing_service_name
    if tracing is None:
        return or_default(proxy_config.service_cluster or "")
    canonical = workload or "istio-proxy"
    for key in ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app"):
        if key in labels:
            canonical = labels[key]
            break
    if tracing == ProxyConfigTracingServiceName.CANONICAL_NAME_ONLY:
        return or_default(canonical)
    if tracing == ProxyConfigTracingServiceName.CANONICAL_NAME_AND_NAMESPACE:
        return f"{canonical}.{namespace}" if namespace else or_default(canonical)
    return or_default("istio-proxy")


def _check_ips(ips: Sequence[str]) -> list[str]:
    unique: list[str] = []
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise BootstrapError("instance IPs", f"{ip!r:.80} is not an IP address") from None
        if ip not in unique:
            unique.append(ip)
    return unique


def node_metadata(
    env: Mapping[str, str],
    proxy_config: ProxyConfig,
    options: AgentOptions,
    *,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> BootstrapNode:
    """The node pilot-agent writes for this environment (``bootstrap.GetNodeMetaData``).

    ``annotations`` and ``labels`` are the Pod's, from the downward API files; None means
    the file is absent. Raises :class:`BootstrapError` for malformed ``ISTIO_METAJSON_*``
    values, non-boolean values of boolean keys and invalid IPs.
    """
    raw = _raw_metadata(env, proxy_config)
    typed = _typed_from_raw(raw)
    typed.setdefault("ISTIO_VERSION", options.istio_version)
    typed.pop("INSTANCE_IPS", None)
    ips = _check_ips(options.instance_ips)
    if ips:
        typed["INSTANCE_IPS"] = ",".join(ips)
    if options.sts_port:
        typed["STS_PORT"] = str(options.sts_port)
    for key, port in (
        ("ENVOY_STATUS_PORT", options.envoy_status_port),
        ("ENVOY_PROMETHEUS_PORT", options.envoy_prometheus_port),
        ("ENVOY_SECURE_METRICS_PORT", options.envoy_secure_metrics_port),
        ("ENVOY_SECURE_MERGED_METRICS_PORT", options.envoy_secure_merged_metrics_port),
    ):
        if port:
            typed[key] = port
    for key, flag in (
        ("EXIT_ON_ZERO_ACTIVE_CONNECTIONS", options.exit_on_zero_active_connections),
        ("ENVOY_SKIP_DEPRECATED_LOGS", options.envoy_skip_deprecated_logs),
    ):
        typed.pop(key, None)
        if flag:
            typed[key] = "true"
    typed.pop("METADATA_DISCOVERY", None)
    metadata_discovery = options.metadata_discovery
    typed.pop("WORKLOAD_IDENTITY_SOCKET_FILE", None)
    if options.workload_identity_socket_file:
        typed["WORKLOAD_IDENTITY_SOCKET_FILE"] = options.workload_identity_socket_file
    typed["PROXY_CONFIG"] = protojson.message_to_json(proxy_config)

    # Pod identity from the plain variables (they win over ISTIO_META_ ones).
    for var, key in (
        ("POD_NAME", "NAME"),
        ("POD_NAMESPACE", "NAMESPACE"),
        ("SERVICE_ACCOUNT", "SERVICE_ACCOUNT"),
    ):
        if var in env:
            typed.pop(key, None)
            if env[var]:
                typed[key] = env[var]
    # ISTIO_METAJSON_LABELS is both the labels and the static labels: one shared mapping, so
    # the locality rewrite below shows in both, as it does in pilot-agent.
    pod_labels: dict[str, str] | None = None
    if "ISTIO_METAJSON_LABELS" in env:
        static = _string_map(
            _json_object(
                env["ISTIO_METAJSON_LABELS"], "environment variable ISTIO_METAJSON_LABELS"
            ),
            "environment variable ISTIO_METAJSON_LABELS",
        )
        if static:
            pod_labels = static
            typed["STATIC_LABELS"] = static
    if pod_labels is None and "LABELS" in typed:
        pod_labels = typed["LABELS"]
    if labels is not None:
        merged = dict(typed.get("STATIC_LABELS", {}))
        merged.update((k, v) for k, v in labels.items() if k != POD_TEMPLATE_HASH)
        pod_labels = merged
    if annotations is not None:
        merged_annotations = dict(typed.get("ANNOTATIONS", {}))
        merged_annotations.update(annotations)
        if merged_annotations:
            typed["ANNOTATIONS"] = merged_annotations
        else:
            typed.pop("ANNOTATIONS", None)

    region = zone = sub_zone = ""
    locality = _locality(pod_labels or {})
    if locality:
        sanitized = locality if "/" in locality else locality.replace(".", "/")
        assert pod_labels is not None
        pod_labels[LOCALITY_LABEL] = sanitized
        parts = [*sanitized.split("/", 2), "", ""]
        region, zone, sub_zone = parts[0], parts[1], parts[2]
    if pod_labels:
        typed["LABELS"] = pod_labels
    else:
        typed.pop("LABELS", None)

    if options.pilot_san:
        typed["PILOT_SAN"] = list(options.pilot_san)
    if options.outlier_log_path:
        typed["OUTLIER_LOG_PATH"] = options.outlier_log_path
    if options.credential_socket_exists:
        raw["credential"] = "true"
    if options.custom_credentials_file_exists:
        raw["file-credential"] = "true"
    if metadata_discovery is None:
        metadata_discovery = typed.get("ENABLE_HBONE") == "true"
    typed["METADATA_DISCOVERY"] = "true" if metadata_discovery else "false"

    metadata: dict[str, Any] = dict(typed)
    for key, value in raw.items():
        metadata.setdefault(key, value)
    return BootstrapNode(
        id=options.node_id,
        metadata=metadata,
        region=region,
        zone=zone,
        sub_zone=sub_zone,
    )
