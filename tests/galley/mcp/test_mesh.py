"""Pilot fed by Galley over MCP: Mesh(galley_port=...) and Mesh(config_sources=...), and the CLI."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys

import pytest
from pilot.test_server_mesh_cli import CLUSTER, addresses, service_entry
from support.mcp import eventually

from istio_sdk import GalleyClient, Mesh, PilotClient, xds
from istio_sdk.cli import main
from istio_sdk.config import ConfigStore, load_resources
from istio_sdk.pilot.client import sidecar_node


async def test_pilot_follows_config_from_galley() -> None:
    upstream = ConfigStore(load_resources(service_entry("10.1.0.1")))
    async with Mesh(upstream, xds_port=0, galley_port=0) as galley:
        assert galley.galley_port
        pilot = Mesh(xds_port=0, config_sources=[("127.0.0.1", galley.galley_port)])
        async with pilot:
            node = sidecar_node("10.0.0.5", "app-0", "default")
            async with PilotClient(f"127.0.0.1:{pilot.xds_port}", node=node) as client:
                client.subscribe(xds.CLUSTER)
                client.subscribe(xds.ENDPOINT, [CLUSTER])
                await client.wait_for(xds.ENDPOINT, [CLUSTER])
                for resource in load_resources(service_entry("10.1.0.1", "10.1.0.9")):
                    upstream.apply(resource)
                await client.wait_for(
                    xds.ENDPOINT,
                    predicate=lambda s: addresses(s[CLUSTER]) == {"10.1.0.1", "10.1.0.9"},
                )


def test_config_source_must_be_an_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config-source", "no-port"]) == 2
    assert "--config-source wants HOST:PORT" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "--config-source" in capsys.readouterr().err


async def test_serve_galley_port_feeds_a_sink(tmp_path: pathlib.Path) -> None:
    (tmp_path / "se.yaml").write_text(service_entry("10.1.0.1"))
    command = [sys.executable, "-c", "import sys; from istio_sdk.cli import main; sys.exit(main())"]
    command += ["serve", "--config-source", f"fs://{tmp_path}", "--xds-port", "0"]
    command += ["--galley-port", "0", "--poll-interval", "0.1"]
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        port = 0
        async with asyncio.timeout(60):
            while not port:
                line = (await proc.stdout.readline()).decode()
                assert line, "serve ended without saying where Galley listens"
                if "Galley MCP (ResourceSource) listening on" in line:
                    port = int(line.rsplit(":", 1)[1])
        mirror = ConfigStore()
        async with GalleyClient(mirror, ("127.0.0.1", port)):
            await eventually(lambda: [r.name for r in mirror.list("ServiceEntry")] == ["reviews"])
            (tmp_path / "se.yaml").unlink()
            await eventually(lambda: mirror.list("ServiceEntry") == [])
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                await proc.wait()
