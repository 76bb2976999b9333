"""The one error type of sidecar injection: input that cannot be injected, and why."""

from __future__ import annotations


class InjectionError(ValueError):
    """A Pod, workload, annotation, values or mesh setting that injection cannot use.

    ``source`` names where the bad value came from (``annotation
    traffic.sidecar.istio.io/excludeOutboundPorts``, ``values global.proxy.statusPort``,
    ``document 2: spec.template``, ...) and ``problem`` says what is wrong with it.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}" if source else problem)
        self.source = source
        self.problem = problem
