"""Envoy's lifecycle with a stand-in executable: the command line, epochs on a bootstrap change,
the parent retired after the parent shutdown time, drain on termination, exit codes."""

from __future__ import annotations

import asyncio
import json
import pathlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from proxy.agent.standin import events, kill_standins, write_standin

from istio_sdk.proxy.agent import AgentConfigError
from istio_sdk.proxy.agent.envoy import EnvoyLifecycle, EnvoyOptions, envoy_args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bootstrap(admin_port: int, marker: str) -> bytes:
    doc = {
        "node": {"id": marker},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
    }
    return json.dumps(doc).encode()


def exists(path: pathlib.Path) -> bool:
    return path.exists()


def admin_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def standin(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("STANDIN_LOG", str(log))
    monkeypatch.delenv("STANDIN_EXIT_AFTER", raising=False)
    yield write_standin(tmp_path)
    kill_standins(log)  # even when a test failed before its lifecycle ended them


@pytest.fixture
def options(standin: pathlib.Path, tmp_path: pathlib.Path) -> EnvoyOptions:
    return EnvoyOptions(
        binary_path=str(standin),
        config_dir=str(tmp_path / "proxy"),
        admin_port=free_port(),
        drain_duration=45,
        parent_shutdown_duration=1,
        termination_drain_duration=1,
    )


@pytest.fixture
async def lifecycle(options: EnvoyOptions) -> AsyncIterator[EnvoyLifecycle]:
    envoy = EnvoyLifecycle(options)
    try:
        yield envoy
    finally:
        await envoy.terminate()


def test_command_line_is_pilot_agents() -> None:
    options = EnvoyOptions(binary_path="envoy", config_dir="/etc/istio/proxy", concurrency=2)
    assert envoy_args(options, 3) == [
        "-c", "/etc/istio/proxy/envoy-rev3.json",
        "--restart-epoch", "3",
        "--drain-time-s", "45",
        "--drain-strategy", "immediate",
        "--parent-shutdown-time-s", "60",
        "--local-address-ip-version", "v4",
        "--file-flush-interval-msec", "1000",
        "--log-format", "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n\t%v",
        "-l", "warning",
        "--component-log-level", "misc:error",
        "--concurrency", "2",
    ]  # fmt: skip
    mixed = EnvoyOptions(binary_path="envoy", config_dir="/x", log_level="debug,upstream:info")
    args = envoy_args(mixed, 0)
    assert args[args.index("-l") + 1] == "debug"
    assert args[args.index("--component-log-level") + 1] == "upstream:info"


@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_bad_durations_are_refused(value: float) -> None:
    with pytest.raises(AgentConfigError, match="drain_duration"):
        EnvoyOptions(binary_path="envoy", config_dir="/x", drain_duration=value)


async def test_epochs_restart_on_a_new_bootstrap_and_the_parent_is_retired(
    lifecycle: EnvoyLifecycle, options: EnvoyOptions, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "events.jsonl"
    assert await lifecycle.update_bootstrap(bootstrap(options.admin_port, "first"))
    await wait_until(lambda: len(events(log)) == 1, "epoch 0 to start")
    # the same bootstrap again changes nothing
    assert not await lifecycle.update_bootstrap(bootstrap(options.admin_port, "first"))
    assert await lifecycle.update_bootstrap(bootstrap(options.admin_port, "second"))
    await wait_until(lambda: len(events(log)) == 2, "epoch 1 to start")
    first, second = events(log)
    assert first["argv"] == envoy_args(options, 0)
    assert second["argv"] == envoy_args(options, 1)
    assert json.loads(str(second["config"]))["node"]["id"] == "second"
    # the parent is still running until the parent shutdown time (1 s) ends it
    await wait_until(lambda: lifecycle.active_epochs == [1], "epoch 0 to be retired")


async def test_terminate_drains_then_ends_every_epoch(
    lifecycle: EnvoyLifecycle, options: EnvoyOptions, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "events.jsonl"
    await lifecycle.update_bootstrap(bootstrap(options.admin_port, "only"))
    runner = asyncio.get_running_loop().create_task(lifecycle.run())
    await wait_until(lambda: len(events(log)) == 1, "epoch 0 to start")
    config = pathlib.Path(options.config_path(0))
    assert exists(config)
    await wait_until(lambda: admin_open(options.admin_port), "the admin port to open")
    await lifecycle.terminate()
    code = await asyncio.wait_for(runner, 10)
    assert code == 0
    drains = [e for e in events(log) if e["event"] == "drain"]
    assert [d["query"] for d in drains] == ["inboundonly&graceful"]
    assert lifecycle.active_epochs == []
    assert not exists(config)  # an epoch's bootstrap goes with it
    # nothing restarts once terminating
    assert not await lifecycle.update_bootstrap(bootstrap(options.admin_port, "late"))


async def test_envoy_exiting_ends_the_run_with_its_code(
    lifecycle: EnvoyLifecycle, options: EnvoyOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_EXIT_AFTER", "0.2")
    monkeypatch.setenv("STANDIN_EXIT_CODE", "3")
    await lifecycle.update_bootstrap(bootstrap(options.admin_port, "crashy"))
    assert await asyncio.wait_for(lifecycle.run(), 10) == 3


async def test_a_missing_binary_is_an_os_error(tmp_path: pathlib.Path) -> None:
    envoy = EnvoyLifecycle(
        EnvoyOptions(binary_path=str(tmp_path / "nope"), config_dir=str(tmp_path))
    )
    with pytest.raises(OSError):
        await envoy.update_bootstrap(b"{}")
