"""The test Kubernetes API server, started fresh for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from istio_sdk.testing.kube_api import KubeApiServer


@pytest.fixture
async def api() -> AsyncIterator[KubeApiServer]:
    server = KubeApiServer()
    await server.start()
    yield server
    await server.stop()
