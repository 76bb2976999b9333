"""Mesh over a ConfigStore, and the ``serve`` / ``proxy-config`` commands end to end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from istio_sdk import Mesh, PilotClient, xds
from istio_sdk.cli import main
from istio_sdk.config import ConfigStore, load_resources
from istio_sdk.pilot.client import sidecar_node

CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"
NODE_ID = "sidecar~10.0.0.5~app-0.default~default.svc.cluster.local"


def service_entry(*addresses: str) -> str:
    endpoints = "\n".join(f"  - address: {a}" for a in addresses)
    return f"""\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports:
  - {{number: 9080, name: http, protocol: HTTP}}
  resolution: STATIC
  endpoints:
{endpoints}
"""


def addresses(cla: object) -> set[str]:
    out = set()
    for group in cla.endpoints:  # type: ignore[attr-defined]
        for lb in group.lb_endpoints:
            out.add(lb.endpoint.address.socket_address.address)
    return out


async def test_mesh_pushes_store_changes_endpoints_only() -> None:
    store = ConfigStore(load_resources(service_entry("10.1.0.1")))
    async with Mesh(store, xds_port=0, debounce_after=0.01) as mesh:
        node = sidecar_node("10.0.0.5", "app-0", "default")
        async with PilotClient(f"127.0.0.1:{mesh.xds_port}", node=node) as client:
            client.subscribe(xds.CLUSTER)
            client.subscribe(xds.ENDPOINT, [CLUSTER])
            await client.wait_for(xds.CLUSTER, [CLUSTER])
            await client.wait_for(xds.ENDPOINT, [CLUSTER])
            cds_before = mesh.discovery.metrics.pushes_by_type.get(xds.CLUSTER, 0)
            for resource in load_resources(service_entry("10.1.0.1", "10.1.0.9")):
                store.apply(resource)
            await client.wait_for(
                xds.ENDPOINT, predicate=lambda s: addresses(s[CLUSTER]) == {"10.1.0.1", "10.1.0.9"}
            )
            # An endpoint-only change pushes EDS alone.
            assert mesh.discovery.metrics.pushes_by_type.get(xds.CLUSTER, 0) == cds_before
            store.delete("ServiceEntry", "reviews", "default")
            await client.wait_for(xds.CLUSTER, predicate=lambda s: CLUSTER not in s)


@contextlib.contextmanager
def serving(config: pathlib.Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from istio_sdk.cli import main; sys.exit(main())",
            "serve",
            "--config",
            str(config),
            "--xds-port",
            "0",
            "--poll-interval",
            "0.2",
            "--debounce-after",
            "0.02",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        address = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "listening on" in line and "istio-sdk serve" in line:
                address = line.split("listening on ", 1)[1].split(",", 1)[0]
                break
        assert address, "serve never said where it listens"
        yield address, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def proxy_config(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["proxy-config", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_serve_follows_files_and_proxy_config_prints_it(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "reviews.yaml").write_text(service_entry("10.1.0.1"))
    with serving(tmp_path) as (address, proc):
        out = proxy_config(capsys, "endpoints", "--xds", address, "--node", NODE_ID)
        assert '"address": "10.1.0.1"' in out and CLUSTER in out
        out = proxy_config(capsys, "clusters", "--xds", address, "--node", NODE_ID, "-o", "yaml")
        assert f"name: {CLUSTER}" in out
        (tmp_path / "reviews.yaml").write_text(service_entry("10.1.0.7"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = proxy_config(capsys, "endpoints", "--xds", address, "--node", NODE_ID)
            if '"address": "10.1.0.7"' in out:
                break
            time.sleep(0.2)
        assert '"address": "10.1.0.7"' in out
        # A broken file is reported and the last good config keeps being served.
        (tmp_path / "broken.yaml").write_text("kind: VirtualService\nspec: [not, a, map]\n")
        time.sleep(1.0)
        out = proxy_config(capsys, "endpoints", "--xds", address, "--node", NODE_ID)
        assert '"address": "10.1.0.7"' in out
        assert proc.poll() is None
    assert proc.returncode == 0
    assert proc.stdout is not None
    log = proc.stdout.read()
    assert "push round" in log
    assert "broken.yaml" in log


def test_proxy_config_reports_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["proxy-config", "clusters", "--xds", "127.0.0.1:1", "--node", NODE_ID, "--timeout", "0.5"]
    )
    assert code == 1
    assert "--xds 127.0.0.1:1: cannot connect" in capsys.readouterr().err


def test_serve_refuses_a_missing_folder(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(tmp_path / "nope"), "--xds-port", "0"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_proxy_config_warns_about_dangling_names(capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import timedelta

    from istio_sdk.api.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
    from istio_sdk.api.envoy.config.endpoint.v3 import ClusterLoadAssignment
    from istio_sdk.api.envoy.config.listener.v3 import Filter, FilterChain, Listener
    from istio_sdk.api.envoy.extensions.filters.network.http_connection_manager.v3 import (
        HttpConnectionManager,
        Rds,
    )
    from istio_sdk.pilot.server import DiscoveryServer, StaticGenerator

    def eds(name: str) -> Cluster:
        return Cluster(
            name=name, type=ClusterDiscoveryType.EDS, connect_timeout=timedelta(seconds=1)
        )

    manager = HttpConnectionManager(stat_prefix="l", rds=Rds(route_config_name="no-such-route"))
    listener = Listener(
        name="l",
        filter_chains=[FilterChain(filters=[Filter(name="hcm", typed_config=xds.pack(manager))])],
    )
    generator = StaticGenerator(
        [eds("has-endpoints"), eds("lonely"), ClusterLoadAssignment(cluster_name="has-endpoints")]
    )
    generator.set(listener)
    ready = threading.Event()
    stop: list[Callable[[], None]] = []
    port: list[int] = []

    async def serve() -> None:
        async with DiscoveryServer(generator) as server:
            port.append(server.port)
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            stop.append(lambda: loop.call_soon_threadsafe(done.set))
            ready.set()
            await done.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        capsys.readouterr()
        args = ["proxy-config", "all", "--xds", f"127.0.0.1:{port[0]}", "--node", NODE_ID]
        args += ["--timeout", "5"]
        assert main(args) == 0
        err = capsys.readouterr().err.strip().splitlines()
    finally:
        if stop:
            stop[0]()
        thread.join(10)
    (line,) = [e for e in err if "warning" in e]
    assert "2 dangling names" in line
    assert "'lonely'" in line and "'no-such-route'" in line and "'has-endpoints'" not in line


async def test_a_mesh_whose_xds_port_is_taken_fails_cleanly_and_stops_again() -> None:
    import socket

    from istio_sdk import MeshListenError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mesh = Mesh(xds_port=port, debug_port=0)
        with pytest.raises(MeshListenError, match=f"127.0.0.1:{port} for xDS"):
            await mesh.start()
    await mesh.stop()  # stopping again is harmless
    mesh.xds_port = 0
    async with mesh:
        assert mesh.discovery.port and mesh.debug_port
