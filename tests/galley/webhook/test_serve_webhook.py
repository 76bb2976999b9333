"""``istio-sdk serve --webhook-port`` runs the validating webhook beside Pilot over HTTPS, with a
certificate from files, from the mesh's Citadel, or self-signed (``--webhook-ca-out``)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import re
import signal
import ssl
import sys
import time
from typing import Any

import httpx
import pytest

from istio_sdk import Mesh
from istio_sdk._webhook_tls import self_signed_certificate
from istio_sdk.cli import main

WAIT = 60.0  # upper bound for the subprocess to come up; never asserted on

GATEWAY = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "gw", "namespace": "default"},
    "spec": {
        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]
    },
}


def _review(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": uid, "operation": "CREATE", "namespace": "default", "object": obj},
    }


async def _serve(*flags: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from istio_sdk.cli import main; sys.exit(main())",
        "serve",
        "--xds-port=0",
        "--webhook-port=0",
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
        if not line:
            _, err = await process.communicate()
            raise AssertionError(f"serve exited before listening: {err.decode()[-2000:]}")
        if match := re.search(r"validating webhook \(HTTPS\) listening on (https://\S+)", line):
            return process, match.group(1)


async def _stop(process: asyncio.subprocess.Process) -> int:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), WAIT)


async def test_serve_answers_with_a_self_signed_certificate(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    bundle = tmp_path / "ca.pem"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    served = self_signed_certificate(("127.0.0.1",))
    cert.write_text(served.chain_pem)
    key.write_bytes(served.key_pem)
    answers = []
    for flags, trust in (
        ([f"--webhook-ca-out={bundle}"], bundle),
        ([f"--webhook-cert={cert}", f"--webhook-key={key}"], cert),
    ):
        process, url = await _serve(f"--config={config}", *flags)
        try:
            context = ssl.create_default_context(cadata=trust.read_text())
            async with httpx.AsyncClient(verify=context, timeout=WAIT) as client:
                good = await client.post(url, json=_review(GATEWAY, "ok"))
                bad = {**GATEWAY, "spec": {"servers": [{"port": {"number": 80}}]}}
                denied = await client.post(url, json=_review(bad, "bad"))
        finally:
            code = await _stop(process)
        assert code == 0
        answers.append((good.json()["response"], denied.json()["response"]))
    for good_answer, denied_answer in answers:
        assert good_answer == {"uid": "ok", "allowed": True}
        assert denied_answer["uid"] == "bad" and denied_answer["allowed"] is False
        assert "spec.servers[0].port" in denied_answer["status"]["message"]


async def test_the_mesh_citadel_signs_the_webhook_certificate_and_stop_closes_it() -> None:
    async with Mesh(xds_port=0, ca_port=0, webhook_port=0) as mesh:
        assert mesh.citadel is not None and mesh.webhook is not None
        assert mesh.webhook_ca_bundle == mesh.citadel.ca.root_pem
        context = ssl.create_default_context(cadata=mesh.citadel.ca.root_pem)
        async with httpx.AsyncClient(verify=context, timeout=10) as client:
            response = await client.post(
                f"https://127.0.0.1:{mesh.webhook_port}/admitpilot",
                json=_review(GATEWAY, "from-citadel"),
            )
        _, writer = await asyncio.open_connection("127.0.0.1", mesh.webhook_port, ssl=context)
        expires = ssl.cert_time_to_seconds(writer.get_extra_info("peercert")["notAfter"])
        writer.close()
    # not a workload certificate's 24 hours: nothing renews the webhook's certificate
    assert expires - time.time() > 30 * 24 * 3600
    assert response.json()["response"] == {"uid": "from-citadel", "allowed": True}
    with pytest.raises(OSError):  # a stopped mesh leaves the webhook's port closed
        await asyncio.open_connection("127.0.0.1", mesh.webhook_port)


def test_webhook_flags_are_checked_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    base = ["serve", f"--config={config}", "--xds-port=0"]
    assert main([*base, f"--webhook-cert={tmp_path / 'c.pem'}"]) == 2
    assert "--webhook-cert needs --webhook-port" in capsys.readouterr().err
    cert = tmp_path / "cert.pem"
    cert.write_text(self_signed_certificate().chain_pem)
    assert main([*base, "--webhook-port=0", f"--webhook-cert={cert}"]) == 2
    assert "--webhook-cert and --webhook-key go together" in capsys.readouterr().err
    other = tmp_path / "key.pem"
    other.write_bytes(self_signed_certificate().key_pem)
    assert (
        main([*base, "--webhook-port=0", f"--webhook-cert={cert}", f"--webhook-key={other}"]) == 2
    )
    assert "does not match the certificate" in capsys.readouterr().err
    assert main([*base, "--webhook-port=0", f"--webhook-ca-out={tmp_path}/no/such/ca.pem"]) == 2
    assert "--webhook-ca-out" in capsys.readouterr().err
