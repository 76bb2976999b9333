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

from istio_sdk.testing.strategies import all_message_types, full_name, message_class, messages

__all__ = ["all_message_types", "full_name", "message_class", "messages"]
