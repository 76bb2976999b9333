"""pilot-agent: what runs beside Envoy in every sidecar and gateway.

- :mod:`~istio_sdk.proxy.agent.status`: the status port (15020: readiness, rewritten app
  probes, merged Prometheus metrics) and the readiness port (15021) without Envoy;
- :mod:`~istio_sdk.proxy.agent.xds_proxy`: the proxy's ADS stream relayed to Pilot with the
  agent's credentials;
- :mod:`~istio_sdk.proxy.agent.envoy`: Envoy's epochs, restarts and drain;
- :mod:`~istio_sdk.proxy.agent.agent`: :class:`PilotAgent`, all of them in one process, with a
  seam for more components (the DNS proxy).

Bad configuration raises :class:`AgentConfigError`. See ``docs/agent.md``.
"""

from __future__ import annotations

from istio_sdk.proxy.agent._errors import AgentConfigError

__all__ = ["AgentConfigError"]
