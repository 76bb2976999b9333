"""``istio-sdk serve ... --ca-port --ca-dir --jwt-rule`` runs the CA beside Pilot, and
``--debug-port`` / ``--ca-monitoring-port`` serve both servers' ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import re
import signal
import sys
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from istio_sdk.citadel import CitadelClient, Identity

WAIT = 60.0  # upper bound for the subprocess to come up; never asserted on


async def test_serve_runs_the_ca_and_both_metrics_endpoints(
    ec_issuer: Any, tmp_path: pathlib.Path
) -> None:
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
        "--debug-port=0",
        "--ca-port=0",
        "--ca-monitoring-port=0",
        f"--ca-dir={ca_dir}",
        f"--jwt-rule={json.dumps(ec_issuer.rule())}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    patterns = {
        "ca": r"Citadel CA \(TLS\) listening on 127\.0\.0\.1:(\d+)",
        "pilot_metrics": r"Pilot metrics on (http://127\.0\.0\.1:\d+/metrics)",
        "ca_metrics": r"Citadel metrics on (http://127\.0\.0\.1:\d+/metrics)",
    }
    found: dict[str, str] = {}
    try:
        assert process.stdout is not None
        while len(found) < len(patterns):
            line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
            assert line, f"serve exited before printing {set(patterns) - set(found)}"
            for key, pattern in patterns.items():
                if match := re.search(pattern, line):
                    found[key] = match.group(1)
        root = (ca_dir / "root-cert.pem").read_text()
        async with CitadelClient("127.0.0.1", int(found["ca"]), root_cert_pem=root) as client:
            bundle = await client.request_certificate(token=ec_issuer.token("prod", "served"))
        assert bundle.identity == Identity("prod", "served")
        async with httpx.AsyncClient(timeout=WAIT) as http:
            pilot = await http.get(found["pilot_metrics"])
            ca = await http.get(found["ca_metrics"])
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), WAIT)
    assert code == 0
    for response in (pilot, ca):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert list(text_string_to_metric_families(response.text))  # parses
    pilot_lines = pilot.text.splitlines()
    assert "pilot_xds 0.0" in pilot_lines
    assert "# TYPE pilot_xds_pushes counter" in pilot_lines
    ca_lines = ca.text.splitlines()
    assert "citadel_server_csr_count 1.0" in ca_lines
    assert "citadel_server_success_cert_issuance_count 1.0" in ca_lines
