"""``istio-sdk serve --mixer-port --mixer-prometheus-port`` runs Mixer over the config folder."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import re
import signal
import sys

import httpx
import pytest
from grpclib.const import Status
from support.mixer_server import DENY_REVIEWS, Proxy

from istio_sdk._grpc import create_channel

WAIT = 60.0  # upper bound for the subprocess to come up; never asserted on

CONFIG = (
    DENY_REVIEWS
    + """
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: prometheus, namespace: istio-system}
spec:
  compiledAdapter: prometheus
  params:
    metrics:
    - name: requests_total
      instanceName: requestcount.instance.istio-system
      kind: COUNTER
      labelNames: [destination_service]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcount, namespace: istio-system}
spec:
  compiledTemplate: metric
  params:
    value: "1"
    dimensions:
      destination_service: destination.service.name | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: promhttp, namespace: istio-system}
spec:
  actions:
  - handler: prometheus
    instances: [requestcount]
"""
)


async def test_serve_runs_mixer_and_its_metrics_endpoint(tmp_path: pathlib.Path) -> None:
    (tmp_path / "mixer.yaml").write_text(CONFIG)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from istio_sdk.cli import main; sys.exit(main())",
        "serve",
        f"--config={tmp_path}",
        "--xds-port=0",
        "--mixer-port=0",
        "--mixer-prometheus-port=0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    pattern = r"Mixer listening on 127\.0\.0\.1:(\d+), .* on (http://127\.0\.0\.1:\d+/metrics)"
    try:
        assert process.stdout is not None
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
            assert line, "serve exited before saying where Mixer listens"
            if match := re.search(pattern, line):
                break
        channel = create_channel("127.0.0.1", int(match.group(1)))
        try:
            proxy = Proxy(channel)
            response = await proxy.check({"destination.service.name": "reviews"})
            await proxy.report([{"destination.service.name": "reviews"}])
        finally:
            channel.close()
        async with httpx.AsyncClient(timeout=WAIT) as http:
            metrics = await http.get(match.group(2))
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), WAIT)
    assert code == 0
    assert response.precondition is not None and response.precondition.status is not None
    assert response.precondition.status.code == Status.PERMISSION_DENIED.value
    assert 'istio_requests_total{destination_service="reviews"} 1.0' in metrics.text.splitlines()


async def test_a_taken_mixer_port_is_named_and_nothing_keeps_running() -> None:
    from istio_sdk.mesh import Mesh, MeshListenError

    taken = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    async with taken:
        port = taken.sockets[0].getsockname()[1]
        mesh = Mesh(xds_port=0, mixer_port=port)
        try:
            await mesh.start()
        except MeshListenError as exc:
            assert str(exc).startswith(f"cannot listen on 127.0.0.1:{port} for Mixer: ")
        else:
            await mesh.stop()
            raise AssertionError("the mesh started on a taken port")
        # the xDS server that had started was closed again
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", mesh.discovery.port)
