"""Envoy bootstraps as pilot-agent writes them, for sidecars, gateways and routers.

- :func:`bootstrap_for_pod`: a Pod's environment, annotations, labels and mesh config in,
  a typed ``envoy.config.bootstrap.v3.Bootstrap`` out (the whole pilot-agent chain);
- :func:`resolve_proxy_config`: the effective ProxyConfig (defaults, mesh config file,
  ``PROXY_CONFIG``, ``proxy.istio.io/config``);
- :func:`node_metadata` and :func:`build_bootstrap`: the two steps, for callers that hold the
  pieces themselves;
- :func:`bootstrap_to_json`: proto3 JSON as Envoy reads it.

Bad input raises :class:`BootstrapError` naming where the value came from. See
``docs/bootstrap.md``.
"""

from __future__ import annotations

from typing import Any

from istio_sdk.proxy.bootstrap._errors import BootstrapError
from istio_sdk.proxy.bootstrap.agent import (
    ProxyRole,
    agent_options_from_env,
    bootstrap_for_pod,
    pilot_san,
)
from istio_sdk.proxy.bootstrap.build import SDS_CLUSTER, XDS_CLUSTER, build_bootstrap, runtime_flags
from istio_sdk.proxy.bootstrap.node import (
    AgentOptions,
    BootstrapNode,
    node_id,
    node_metadata,
    parse_downward_api,
)
from istio_sdk.proxy.bootstrap.proxy_config import (
    PROXY_CONFIG_ANNOTATION,
    default_proxy_config,
    resolve_proxy_config,
)

__all__ = [
    "PROXY_CONFIG_ANNOTATION",
    "SDS_CLUSTER",
    "XDS_CLUSTER",
    "AgentOptions",
    "BootstrapError",
    "BootstrapNode",
    "ProxyRole",
    "agent_options_from_env",
    "bootstrap_for_pod",
    "bootstrap_to_json",
    "build_bootstrap",
    "default_proxy_config",
    "node_id",
    "node_metadata",
    "parse_downward_api",
    "pilot_san",
    "resolve_proxy_config",
    "runtime_flags",
]


def bootstrap_to_json(message: Any, *, indent: int | None = 2) -> str:
    """The bootstrap as proto3 JSON text (what Envoy's ``-c FILE`` reads)."""
    from istio_sdk import protojson

    return protojson.message_to_json_text(message, indent=indent)
