"""A real Redis for the redisquota tests: ``redis-server`` on 127.0.0.1, a free port, no disk."""

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


def _start_redis() -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    for _ in range(5):  # another process may take the free port before redis binds it
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return RedisServer(port, process)
            except OSError:
                time.sleep(0.05)
        server = RedisServer(port, process)
        server.stop()
    pytest.fail("redis-server did not start")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server per test module, flushed by the tests that need a clean slate."""
    server = _start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own (for tests that stop it)."""
    server = _start_redis()
    try:
        yield server
    finally:
        server.stop()
