"""gRPC services of a generated package load on first use, not with its messages.

``codegen/lazy_services.py`` moves each package's ``<Service>Stub`` / ``<Service>Base`` into
``_services.py``: importing a package for its messages must not import grpclib, while the
service names stay importable from the package as before.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_fresh(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def test_messages_import_without_grpclib() -> None:
    code = (
        "import sys\n"
        "from istio_sdk.api.envoy.service.discovery.v3 import DiscoveryRequest\n"
        "print(bytes(DiscoveryRequest(version_info='1')).hex(), 'grpclib' in sys.modules)\n"
    )
    assert run_fresh(code) == "0a0131 False"


def test_service_names_resolve_from_the_package() -> None:
    import betterproto2.grpclib

    from istio_sdk.api.envoy.service.discovery import v3
    from istio_sdk.api.envoy.service.discovery.v3 import (
        AggregatedDiscoveryServiceBase,
        AggregatedDiscoveryServiceStub,
    )

    assert issubclass(AggregatedDiscoveryServiceStub, betterproto2.grpclib.ServiceStub)
    assert issubclass(AggregatedDiscoveryServiceBase, betterproto2.grpclib.ServiceBase)
    assert "AggregatedDiscoveryServiceStub" in v3.__all__
    mapping = AggregatedDiscoveryServiceBase().__mapping__()
    handler = mapping[
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
    ]
    assert handler.request_type is v3.DiscoveryRequest
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchService'"):
        v3.NoSuchService  # noqa: B018
