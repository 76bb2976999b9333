"""A Pod's environment to a bootstrap, the way pilot-agent reads it (``pilot-agent proxy TYPE``).

:func:`agent_options_from_env` reads what pilot-agent reads from its environment
(``POD_NAME``, ``POD_NAMESPACE``, ``INSTANCE_IP``, ``ENVOY_STATUS_PORT``, ...);
:func:`bootstrap_for_pod` runs the whole chain: ProxyConfig from the mesh config file,
``PROXY_CONFIG`` and the ``proxy.istio.io/config`` annotation, then the node, then the
bootstrap. Every bad value raises :class:`BootstrapError` naming the variable, annotation or
file it came from.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping

from istio_sdk.api.envoy.config.bootstrap.v3 import Bootstrap
from istio_sdk.api.istio.mesh.v1alpha1 import AuthenticationPolicy, ProxyConfig
from istio_sdk.proxy.bootstrap._errors import BootstrapError
from istio_sdk.proxy.bootstrap.build import build_bootstrap
from istio_sdk.proxy.bootstrap.node import (
    ISTIO_VERSION,
    AgentOptions,
    node_id,
    node_metadata,
)
from istio_sdk.proxy.bootstrap.proxy_config import resolve_proxy_config

__all__ = ["ProxyRole", "agent_options_from_env", "bootstrap_for_pod", "pilot_san"]


class ProxyRole(enum.Enum):
    """What the proxy is. Gateways run ``pilot-agent proxy router``: their node type is
    ``router``, like any standalone router; the role only documents intent."""

    SIDECAR = "sidecar"
    GATEWAY = "gateway"
    ROUTER = "router"
    WAYPOINT = "waypoint"

    @property
    def node_type(self) -> str:
        """The first field of the node id."""
        return "router" if self is ProxyRole.GATEWAY else self.value


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise BootstrapError(f"environment variable {name}", f"expected true or false, got {raw!r:.80}")


def _env_port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise BootstrapError(
            f"environment variable {name}", f"expected a port number, got {raw!r:.80}"
        )
    return int(text)


def pilot_san(proxy_config: ProxyConfig) -> tuple[str, ...]:
    """``PILOT_SAN``: the discovery host (``localhost`` means ``istiod.istio-system.svc``),
    none when the control plane is not reached over mTLS."""
    if proxy_config.control_plane_auth_policy != AuthenticationPolicy.MUTUAL_TLS:
        return ()
    host = proxy_config.discovery_address.split(":", 1)[0]
    return ("istiod.istio-system.svc" if host == "localhost" else host,)


def agent_options_from_env(
    env: Mapping[str, str],
    proxy_config: ProxyConfig,
    role: ProxyRole = ProxyRole.SIDECAR,
    *,
    instance_ips: tuple[str, ...] | None = None,
    dns_domain: str = "",
    outlier_log_path: str = "",
) -> AgentOptions:
    """What pilot-agent decides from its environment.

    ``instance_ips`` default to ``INSTANCE_IP`` (pilot-agent adds the host's private
    addresses; here pass them explicitly). The node id is ``TYPE~IP~POD.NS~DOMAIN``.
    """
    if instance_ips is None:
        raw_ip = env.get("INSTANCE_IP", "")
        if raw_ip:
            try:
                ipaddress.ip_address(raw_ip)
            except ValueError:
                raise BootstrapError(
                    "environment variable INSTANCE_IP", f"{raw_ip!r:.80} is not an IP address"
                ) from None
        instance_ips = (raw_ip,) if raw_ip else ()
    pod = env.get("POD_NAME", "")
    namespace = env.get("POD_NAMESPACE", "")
    first_ip = instance_ips[0] if instance_ips else ""
    peer_discovery = env.get("PEER_METADATA_DISCOVERY")
    return AgentOptions(
        node_id=node_id(role.node_type, first_ip, pod, namespace, dns_domain),
        instance_ips=instance_ips,
        pilot_san=pilot_san(proxy_config),
        outlier_log_path=outlier_log_path,
        envoy_status_port=_env_port(env, "ENVOY_STATUS_PORT", 15021),
        envoy_prometheus_port=_env_port(env, "ENVOY_PROMETHEUS_PORT", 15090),
        envoy_secure_metrics_port=_env_port(env, "ENVOY_SECURE_METRICS_PORT", 0),
        envoy_secure_merged_metrics_port=_env_port(env, "ENVOY_SECURE_MERGED_METRICS_PORT", 0),
        exit_on_zero_active_connections=_env_bool(env, "EXIT_ON_ZERO_ACTIVE_CONNECTIONS", False),
        metadata_discovery=None
        if peer_discovery is None
        else _env_bool(env, "PEER_METADATA_DISCOVERY", False),
        envoy_skip_deprecated_logs=_env_bool(env, "ENVOY_SKIP_DEPRECATED_LOGS", True),
        workload_identity_socket_file=env.get("WORKLOAD_IDENTITY_SOCKET_FILE") or "socket",
        istio_version=ISTIO_VERSION,
        compliance_policy=env.get("COMPLIANCE_POLICY", ""),
    )


def bootstrap_for_pod(
    env: Mapping[str, str],
    role: ProxyRole = ProxyRole.SIDECAR,
    *,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    mesh_config: str | None = None,
    instance_ips: tuple[str, ...] | None = None,
    service_cluster: str = "istio-proxy",
    dns_domain: str = "",
    outlier_log_path: str = "",
    log_as_json: bool = False,
) -> Bootstrap:
    """The bootstrap pilot-agent would write in a Pod with this environment.

    ``env`` is the istio-proxy container's environment, ``annotations`` and ``labels`` the
    Pod's (pilot-agent reads them from the downward API files), ``mesh_config`` the text of
    the mesh config file. ``service_cluster``, ``dns_domain`` and ``outlier_log_path`` are
    pilot-agent's ``--serviceCluster``, ``--domain`` and ``--outlierLogPath``.
    ``ISTIO_DELTA_XDS`` (default true) picks delta ADS, ``ISTIO_DUAL_STACK`` enables
    dual-stack listeners and ``ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL`` accepts PROXY
    protocol on the readiness port, as in pilot-agent.
    """
    proxy_config = resolve_proxy_config(
        mesh_config=mesh_config,
        proxy_config_env=env.get("PROXY_CONFIG"),
        annotations=annotations,
        service_cluster=service_cluster,
    )
    options = agent_options_from_env(
        env,
        proxy_config,
        role,
        instance_ips=instance_ips,
        dns_domain=dns_domain,
        outlier_log_path=outlier_log_path,
    )
    if log_as_json:
        import attrs

        options = attrs.evolve(options, log_as_json=True)
    node = node_metadata(env, proxy_config, options, annotations=annotations, labels=labels)
    return build_bootstrap(
        node,
        proxy_config,
        options,
        annotations=node.metadata.get("ANNOTATIONS") or {},
        env=env,
        delta_xds=_env_bool(env, "ISTIO_DELTA_XDS", True),
        dual_stack=_env_bool(env, "ISTIO_DUAL_STACK", False),
        status_port_proxy_protocol=_env_bool(env, "ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL", False),
    )
