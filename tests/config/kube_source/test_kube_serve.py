"""``istio-sdk serve --kubeconfig``: config from the API server pushed to proxies, status back."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
from typing import Any

import pytest
from support.kube import service, slice_for, until, vs

from istio_sdk import PilotClient, xds
from istio_sdk.cli import main
from istio_sdk.pilot.client import sidecar_node
from istio_sdk.testing.kube_api import KubeApiServer

CLUSTER = "outbound|9080||reviews.shop.svc.cluster.local"


def addresses(cla: Any) -> set[str]:
    return {
        lb.endpoint.address.socket_address.address
        for group in cla.endpoints
        for lb in group.lb_endpoints
    }


async def test_serve_follows_the_api_server_and_writes_status(tmp_path: pathlib.Path) -> None:
    async with KubeApiServer(tls=True, token="t") as api:
        api.create(service("reviews"))
        api.create(slice_for("reviews", ["10.1.0.1"]))
        bad = vs("broken", "reviews")
        bad["spec"]["http"][0]["route"][0]["destination"] = {}
        api.create(bad)
        api.write_kubeconfig(tmp_path / "kubeconfig")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from istio_sdk.cli import main; sys.exit(main())",
            "serve",
            "--kubeconfig",
            str(tmp_path / "kubeconfig"),
            "--write-status",
            "--xds-port",
            "0",
            "--debounce-after",
            "0.02",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        assert proc.stdout is not None
        try:
            line = ""
            log: list[bytes] = []
            async with asyncio.timeout(60):
                while "istio-sdk serve: xDS" not in line:
                    log.append(await proc.stdout.readline())
                    line = log[-1].decode()
                    assert line, "serve ended before it listened"
            assert str(tmp_path / "kubeconfig") in line
            drain = asyncio.get_running_loop().create_task(_drain(proc.stdout, log))
            address = line.split("listening on ", 1)[1].split(",", 1)[0]
            node = sidecar_node("10.0.0.5", "app-0", "shop")
            async with PilotClient(address, node=node) as client:
                client.subscribe(xds.CLUSTER)
                client.subscribe(xds.ENDPOINT, [CLUSTER])
                await client.wait_for(
                    xds.ENDPOINT, predicate=lambda s: addresses(s[CLUSTER]) == {"10.1.0.1"}
                )
                api.put(slice_for("reviews", ["10.1.0.1", "10.1.0.2"]))
                await client.wait_for(
                    xds.ENDPOINT,
                    predicate=lambda s: addresses(s[CLUSTER]) == {"10.1.0.1", "10.1.0.2"},
                )

            def broken_status() -> Any:
                found = api.get("networking.istio.io/v1", "VirtualService", "broken", "shop")
                return (found or {}).get("status", {}).get("validationMessages")

            await until(broken_status, timeout=30)
            assert broken_status()[0]["type"]["code"] == "IST0106"
            holder = api.get("coordination.k8s.io/v1", "Lease", "istio-sdk-leader", "istio-system")
            assert holder is not None and holder["spec"]["holderIdentity"]
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await proc.wait() == 0
            await drain
            assert b"VirtualService shop/broken" in b"".join(log)  # the rejection is logged
            released = api.get(
                "coordination.k8s.io/v1", "Lease", "istio-sdk-leader", "istio-system"
            )
            assert released is not None and released["spec"]["holderIdentity"] == ""
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _drain(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    while line := await stream.readline():
        into.append(line)


def test_serve_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--xds-port", "0"]) == 2
    assert "--kubeconfig" in capsys.readouterr().err


def test_serve_refuses_a_missing_kubeconfig(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--kubeconfig", str(tmp_path / "nope"), "--xds-port", "0"]) == 2
    assert "no such file" in capsys.readouterr().err
