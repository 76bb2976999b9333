"""Test helpers for code built on istio-sdk: Hypothesis strategies for every generated message,
and :mod:`istio_sdk.testing.kube_api`, a Kubernetes API server for tests (imported on its own).

Needs Hypothesis (installed with the ``test`` extra)::

    from hypothesis import given
    from istio_sdk.testing import messages
    from istio_sdk.api.envoy.config.cluster.v3 import Cluster

    @given(messages(Cluster))
    def test_round_trip(cluster: Cluster) -> None:
        assert Cluster.parse(bytes(cluster)) == cluster
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from istio_sdk.testing.strategies import (
        all_message_types as all_message_types,
    )
    from istio_sdk.testing.strategies import (
        full_name as full_name,
    )
    from istio_sdk.testing.strategies import (
        message_class as message_class,
    )
    from istio_sdk.testing.strategies import (
        messages as messages,
    )

__all__ = ["all_message_types", "full_name", "message_class", "messages"]


def __getattr__(name: str) -> Any:
    # Hypothesis is imported on first use: the pytest plugin (istio_sdk.testing.pytest_plugin)
    # lives in this package and must load in projects without it.
    if name in __all__:
        from istio_sdk.testing import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'istio_sdk.testing' has no attribute {name!r}")
