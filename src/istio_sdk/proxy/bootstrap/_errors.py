"""The one error type of bootstrap generation: bad input, named by where it came from."""

from __future__ import annotations


class BootstrapError(ValueError):
    """Input that cannot make an Envoy bootstrap.

    ``source`` names where the bad value came from (``environment variable ENVOY_STATUS_PORT``,
    ``annotation proxy.istio.io/config``, ``mesh config file``, ...) and ``problem`` says what
    is wrong with it.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
