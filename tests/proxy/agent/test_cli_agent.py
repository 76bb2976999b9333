"""``istio-sdk agent`` as pilot-agent, run as a process: status port, app probes, xDS proxy to
our Pilot, a stand-in Envoy restarted on a bootstrap change, drained on SIGTERM, and Envoy's
exit code propagated."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from proxy.agent.standin import events, kill_standins, write_standin
from proxy.agent.test_xds_proxy import cluster

from istio_sdk._grpc import create_channel
from istio_sdk.api.envoy.config.listener.v3 import Listener
from istio_sdk.pilot.client import PilotClient
from istio_sdk.pilot.server import DiscoveryServer, StaticGenerator
from istio_sdk.xds.types import CLUSTER, LISTENER


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def write_bootstrap(path: pathlib.Path, admin_port: int, marker: str) -> None:
    doc = {
        "node": {"id": marker},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
    }
    path.write_text(json.dumps(doc))


async def start_agent(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from istio_sdk.cli import main; sys.exit(main())",
        "agent",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )


async def banner(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if not line:
        assert process.stderr is not None
        raise AssertionError((await process.stderr.read()).decode())
    return line.decode()


async def wait_until_ready(port: int) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        for _ in range(200):
            response = await http.get(f"http://127.0.0.1:{port}/healthz/ready")
            if response.status_code == 200:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"never ready: {response.text}")


@pytest.fixture
async def pilot() -> AsyncIterator[DiscoveryServer]:
    server = DiscoveryServer(StaticGenerator([cluster("a"), Listener(name="l1")]))
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


async def test_the_agent_runs_pilot_agent_end_to_end(
    pilot: DiscoveryServer, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "events.jsonl"
    envoy = write_standin(tmp_path)
    admin_port = free_port()
    bootstrap = tmp_path / "bootstrap.json"
    write_bootstrap(bootstrap, admin_port, "first")
    app = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    app_port = app.sockets[0].getsockname()[1]
    probers = {"/app-health/web/livez": {"tcpSocket": {"port": app_port}}}
    process = await start_agent(
        "--status-port=0",
        "--status-host=127.0.0.1",
        f"--pilot-address=127.0.0.1:{pilot.port}",
        f"--xds-socket={tmp_path / 'XDS'}",
        f"--envoy-binary={envoy}",
        f"--bootstrap={bootstrap}",
        f"--config-dir={tmp_path / 'proxy'}",
        f"--admin-port={admin_port}",
        "--parent-shutdown-duration=1",
        "--termination-drain-duration=1",
        env={"STANDIN_LOG": str(log), "ISTIO_KUBE_APP_PROBERS": json.dumps(probers)},
    )
    try:
        line = await banner(process)
        match = re.search(r"status port (\d+)", line)
        assert match, line
        status_port = int(match.group(1))
        async with httpx.AsyncClient(trust_env=False) as http:
            probe = await http.get(f"http://127.0.0.1:{status_port}/app-health/web/livez")
            assert probe.status_code == 200
            assert (
                await http.get(f"http://127.0.0.1:{status_port}/healthz/ready")
            ).status_code == 503
        client = PilotClient("127.0.0.1:1", channel=create_channel(path=str(tmp_path / "XDS")))
        async with client:
            client.subscribe(CLUSTER)
            client.subscribe(LISTENER)
            await client.wait_for(CLUSTER, ["a"])
            await client.wait_for(LISTENER, ["l1"])
            await wait_until_ready(status_port)
        # a new bootstrap file: the next epoch starts, the parent is retired
        write_bootstrap(bootstrap, admin_port, "second")
        for _ in range(200):
            if [e["epoch"] for e in events(log) if e["event"] == "start"] == [0, 1]:
                break
            await asyncio.sleep(0.05)
        starts = [e for e in events(log) if e["event"] == "start"]
        assert [e["epoch"] for e in starts] == [0, 1]
        assert "--restart-epoch" in starts[1]["argv"]  # type: ignore[operator]
        # the parent outlives its parent shutdown time (1 s) only until the agent ends it
        for _ in range(200):
            if not alive(int(str(starts[0]["pid"]))):
                break
            await asyncio.sleep(0.05)
        assert not alive(int(str(starts[0]["pid"])))
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        drains = [e for e in events(log) if e["event"] == "drain"]
        assert [(d["epoch"], d["query"]) for d in drains] == [(1, "inboundonly&graceful")]
    finally:
        # stand-ins first: they hold the agent's stdout open, which process.wait() waits for
        kill_standins(log)
        if process.returncode is None:
            process.kill()
            await process.wait()
        app.close()


async def test_envoy_exit_code_is_the_agents(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "events.jsonl"
    envoy = write_standin(tmp_path)
    bootstrap = tmp_path / "bootstrap.json"
    write_bootstrap(bootstrap, free_port(), "crashy")
    process = await start_agent(
        "--status-port=0",
        "--status-host=127.0.0.1",
        f"--envoy-binary={envoy}",
        f"--bootstrap={bootstrap}",
        f"--config-dir={tmp_path / 'proxy'}",
        env={"STANDIN_LOG": str(log), "STANDIN_EXIT_AFTER": "0.5", "STANDIN_EXIT_CODE": "7"},
    )
    try:
        assert await asyncio.wait_for(process.wait(), 30) == 7
    finally:
        # stand-ins first: they hold the agent's stdout open, which process.wait() waits for
        kill_standins(log)
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "nothing to run"),
        (("--envoy-binary=/bin/true",), {}, "--envoy-binary needs --bootstrap"),
        (("--status-port=0",), {"ISTIO_KUBE_APP_PROBERS": "{"}, "ISTIO_KUBE_APP_PROBERS: not JSON"),
        (
            ("--status-port=0",),
            {"ISTIO_KUBE_APP_PROBERS": '{"/app-health/a/livez": {"httpGet": {"port": "http"}}}'},
            "the port must be an integer",
        ),
        (
            ("--status-port=0",),
            {"ISTIO_PROMETHEUS_ANNOTATIONS": '{"scrape": "true", "port": "15090"}'},
            "reserved for Istio",
        ),
        (("--pilot-address=nope",), {}, "--pilot-address"),
        (("--dns-port=15053",), {}, "the DNS proxy needs --pilot-address"),
        (("--pilot-address=127.0.0.1:1", "--dns-port=0", "--dns-upstream=nope"), {}, "DNS: upst"),
        (("--pilot-address=127.0.0.1:1", "--dns-port=70000"), {}, "--dns-port 70000"),
        (("--status-port=0",), {"ISTIO_META_DNS_CAPTURE": "true"}, "DNS proxy needs --pilot"),
    ],
)
def test_bad_configuration_is_a_one_line_error(
    args: tuple[str, ...],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from istio_sdk.cli import main

    for name in ("ISTIO_KUBE_APP_PROBERS", "ISTIO_PROMETHEUS_ANNOTATIONS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["agent", *args]) == 2
    text = capsys.readouterr().err
    assert text.startswith("istio-sdk agent: error: ") and text.count("\n") == 1, text
    assert message in text
