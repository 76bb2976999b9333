"""The one error type of pilot-agent's configuration: bad input, named by where it came from."""

from __future__ import annotations


class AgentConfigError(ValueError):
    """Agent input that cannot be used (``ISTIO_KUBE_APP_PROBERS``,
    ``ISTIO_PROMETHEUS_ANNOTATIONS``, Envoy options, ...).

    ``source`` names where the bad value came from and ``problem`` says what is wrong with it.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
