"""Running real grpcio xDS clients and servers against our Pilot, for the proof tests.

grpcio reads its xDS bootstrap from ``GRPC_XDS_BOOTSTRAP`` once per process, so every client
or server with its own bootstrap runs in a subprocess: :func:`xds_bootstrap` builds the JSON,
:func:`start_python` writes a script and starts it with that bootstrap, :func:`stop_process`
ends it (closing stdin first, killing it only if it lingers).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import socket
import sys
from typing import Any

SERVER_LISTENER_TEMPLATE = "xds.istio.io/grpc/lds/inbound/%s"
"""Istio's ``server_listener_resource_name_template`` for xDS-enabled gRPC servers."""


def xds_bootstrap(
    xds_port: int,
    node_id: str,
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    certificate_providers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A gRPC xDS bootstrap pointing at our discovery server on 127.0.0.1:``xds_port``.

    The node asks for the ``grpc`` generator in ``namespace``; ``certificate_providers`` (for
    example :func:`istio_sdk.citadel.files.file_watcher_provider_config`) enables mTLS.
    """
    metadata: dict[str, Any] = {"GENERATOR": "grpc", "NAMESPACE": namespace}
    if labels:
        metadata["LABELS"] = labels
    bootstrap: dict[str, Any] = {
        "xds_servers": [
            {
                "server_uri": f"127.0.0.1:{xds_port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": node_id, "cluster": "proof", "metadata": metadata},
        "server_listener_resource_name_template": SERVER_LISTENER_TEMPLATE,
    }
    if certificate_providers:
        bootstrap["certificate_providers"] = certificate_providers
    return bootstrap


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers that must know theirs first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def start_python(
    directory: pathlib.Path,
    name: str,
    script: str,
    bootstrap: dict[str, Any] | None,
    *args: str,
) -> asyncio.subprocess.Process:
    """Run ``script`` (saved as ``directory/NAME.py``) with its own xDS bootstrap.

    stdin and stdout are pipes; other ``GRPC_*`` variables of this process are not inherited.
    """
    path = directory / f"{name}.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    if bootstrap is not None:
        config = directory / f"{name}-bootstrap.json"
        config.write_text(json.dumps(bootstrap))
        env["GRPC_XDS_BOOTSTRAP"] = str(config)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(directory),
    )


async def stop_process(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """Close the process's stdin (its cue to exit) and wait; kill it if it does not exit."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), timeout=grace)
    except TimeoutError:
        process.kill()
        await process.wait()
