"""The proto3 JSON we write is what Google's runtime reads: json_format parses it into
xds-protos' Bootstrap, and that message equals the one decoded from our binary encoding."""

from __future__ import annotations

import pytest
from proxy.bootstrap.canonical import load_pb2, parse
from proxy.bootstrap.golden_cases import CASES
from proxy.bootstrap.pods import DUAL_STACK, PODS, TELEMETRY

from istio_sdk.api.envoy.config.bootstrap.v3 import Bootstrap
from istio_sdk.proxy.bootstrap import bootstrap_to_json

pytest.importorskip("envoy.config.bootstrap.v3.bootstrap_pb2", reason="needs xds-protos")

_SAMPLES: dict[str, Bootstrap] = {name: pod.bootstrap() for name, pod in PODS.items()}
_SAMPLES["dual-stack"] = DUAL_STACK.bootstrap()
_SAMPLES["telemetry"] = TELEMETRY.bootstrap()
_SAMPLES.update({f"golden-{case.name}": case.build() for case in CASES[:8]})


@pytest.mark.parametrize("name", sorted(_SAMPLES))
def test_json_and_binary_agree_in_googles_runtime(name: str) -> None:
    ours = _SAMPLES[name]
    from_json = parse(bootstrap_to_json(ours))  # json_format.Parse, unknown fields refused
    from_binary = load_pb2().FromString(bytes(ours))
    assert from_json == from_binary
    assert from_json.static_resources.clusters[3].name == "xds-grpc"
    # Typed configs inside Anys were resolved by json_format, not kept opaque.
    listener = from_json.static_resources.listeners[0]
    assert (
        listener.filter_chains[0].filters[0].typed_config.type_url.endswith("HttpConnectionManager")
    )
