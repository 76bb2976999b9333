"""Fixtures for the Mixer client tests: a fake Mixer on 127.0.0.1, a free port, a clock."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from support.fake_mixer import FakeClock, FakeMixer, RunningMixer

from istio_sdk._grpc import create_server
from istio_sdk._net import bound_port


@pytest.fixture
async def mixer() -> AsyncIterator[RunningMixer]:
    service = FakeMixer()
    server = create_server([service])
    await server.start("127.0.0.1", 0)
    try:
        yield RunningMixer(service, bound_port(server))
    finally:
        if service.stall is not None:
            service.stall.set()
        server.close()
        await server.wait_closed()


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
