"""Envoy's own rules for bootstraps: xds-protos parses them and protoc-gen-validate passes them.

The sidecar, gateway and router Pods of ``tests/proxy/bootstrap/pods.py`` and every Istio
golden case are validated the way ``test_envoy_validate`` validates Pilot's resources: the
bootstrap, then every ``Any`` inside it (HTTP connection managers, compressors, TLS contexts,
tracer configs, the overload manager's monitor). Runs in ``nox -s envoy_validate``.
"""

from __future__ import annotations

from collections import Counter

import pytest
from pilot.envoy_validate.test_envoy_validate import validate_deep
from proxy.bootstrap.canonical import load_pb2
from proxy.bootstrap.golden_cases import CASES, GoldenCase
from proxy.bootstrap.pods import DUAL_STACK, PODS, TELEMETRY, Pod

from istio_sdk.api.envoy.config.bootstrap.v3 import Bootstrap
from istio_sdk.api.google.protobuf import Any

load_pb2()

pytestmark = pytest.mark.filterwarnings("ignore:label\\(\\) is deprecated:DeprecationWarning")

_BOOTSTRAP_URL = Any.pack(Bootstrap()).type_url


@pytest.mark.parametrize("pod", PODS.values(), ids=list(PODS))
def test_pod_bootstraps_pass_envoy_validation(pod: Pod) -> None:
    seen: Counter[str] = Counter()
    validate_deep(_BOOTSTRAP_URL, bytes(pod.bootstrap()), seen)
    # The Anys were opened and validated too, not only the outer message.
    hcm = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    assert seen[hcm] == 2  # the prometheus and readiness listeners
    assert seen["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] >= 2
    assert seen["envoy.extensions.filters.http.compressor.v3.Compressor"] == 3


def test_optional_listeners_and_clusters_pass_envoy_validation() -> None:
    """Dual stack, PROXY protocol on 15021, the mTLS metrics listeners, the local cluster
    for zone-aware routing and a Lightstep tracer."""
    seen: Counter[str] = Counter()
    validate_deep(_BOOTSTRAP_URL, bytes(DUAL_STACK.bootstrap()), seen)
    assert seen["envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"] == 1
    assert seen["envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"] == 2
    assert seen["envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"] == 1
    assert seen["envoy.config.trace.v3.LightstepConfig"] == 1


def test_telemetry_clusters_and_sinks_pass_envoy_validation() -> None:
    """ISTIO_MUTUAL and SIMPLE TLS to telemetry services, keepalive, statsd and LRS."""
    seen: Counter[str] = Counter()
    validate_deep(_BOOTSTRAP_URL, bytes(TELEMETRY.bootstrap()), seen)
    assert seen["envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"] == 3
    assert seen["envoy.config.metrics.v3.MetricsServiceConfig"] == 1
    assert seen["envoy.config.metrics.v3.StatsdSink"] == 1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden_inputs_pass_envoy_validation(case: GoldenCase) -> None:
    assert validate_deep(_BOOTSTRAP_URL, bytes(case.build())) >= 10


def test_validation_catches_a_broken_bootstrap() -> None:
    """The harness can fail: a listener port above 65535 breaks Envoy's rules."""
    broken = PODS["sidecar"].bootstrap()
    assert broken.static_resources is not None
    address = broken.static_resources.listeners[0].address
    assert address is not None and address.socket_address is not None
    address.socket_address.port_value = 70000
    with pytest.raises(AssertionError, match="port_value"):
        validate_deep(_BOOTSTRAP_URL, bytes(broken))
