"""``istio-sdk serve ... --ca-port --ca-dir --jwt-rule`` runs the CA beside Pilot."""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import signal
import sys
from typing import Any

from istio_sdk.citadel import CitadelClient, Identity

WAIT = 60.0  # upper bound for the subprocess to come up; never asserted on


async def test_serve_runs_the_ca(ec_issuer: Any, tmp_path: pathlib.Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    ca_dir = tmp_path / "ca"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from istio_sdk.cli import main; sys.exit(main())",
        "serve",
        f"--config={config}",
        "--xds-port=0",
        "--ca-port=0",
        f"--ca-dir={ca_dir}",
        f"--jwt-rule={json.dumps(ec_issuer.rule())}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        port = None
        while port is None:
            line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
            assert line, "serve exited before the CA listened"
            match = re.search(r"Citadel CA \(TLS\) listening on 127\.0\.0\.1:(\d+)", line)
            port = int(match.group(1)) if match else None
        root = (ca_dir / "root-cert.pem").read_text()
        async with CitadelClient("127.0.0.1", port, root_cert_pem=root) as client:
            bundle = await client.request_certificate(token=ec_issuer.token("prod", "served"))
        assert bundle.identity == Identity("prod", "served")
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), WAIT)
    assert code == 0
