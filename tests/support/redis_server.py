"""A real Redis for the Mixer tests: ``redis-server`` on 127.0.0.1, a free port, no disk.

The adapter and server tests' ``redis_server`` and ``fresh_redis`` fixtures start it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import attrs
import pytest


@attrs.define
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restart(self) -> None:
        """Start a new, empty redis-server on the same port (after :meth:`stop`)."""
        self.process = _spawn(self.port)
        if not _answers(self.port, self.process):
            self.stop()
            pytest.fail(f"redis-server did not restart on port {self.port}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _answers(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def start_redis() -> RedisServer:
    for _ in range(5):  # another process may take the free port before redis binds it
        port = _free_port()
        server = RedisServer(port, _spawn(port))
        if _answers(port, server.process):
            return server
        server.stop()
    pytest.fail("redis-server did not start")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server per test module, flushed by the tests that need a clean slate."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own (for tests that stop it)."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()
