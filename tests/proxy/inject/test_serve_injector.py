"""``istio-sdk serve --injector-port`` runs the injector's webhook beside Pilot over HTTPS,
with a certificate from files or a self-signed one written where ``--injector-ca-out`` says."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import pathlib
import re
import signal
import ssl
import sys

import httpx
import pytest
from proxy.inject.golden_cases import TESTDATA, load_documents

from istio_sdk._webhook_tls import self_signed_certificate
from istio_sdk.cli import main
from istio_sdk.proxy.inject.jsonpatch import apply_patch

WAIT = 60.0  # upper bound for the subprocess to come up; never asserted on


def _review(pod: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u1", "namespace": "default", "object": pod},
    }


async def test_serve_answers_admission_reviews(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    values = tmp_path / "values.yaml"
    values.write_text("global:\n  hub: example.com/istio\n  tag: '1.30.0'\n")
    bundle = tmp_path / "ca.pem"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from istio_sdk.cli import main; sys.exit(main())",
        "serve",
        f"--config={config}",
        "--xds-port=0",
        "--injector-port=0",
        f"--injector-ca-out={bundle}",
        f"--injector-values={values}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
            assert line, "serve exited before printing where the injector listens"
            if match := re.search(r"sidecar injector \(HTTPS\) listening on (https://\S+)", line):
                url = match.group(1)
        (obj,) = load_documents((TESTDATA / "hello.yaml").read_text())
        pod = {"apiVersion": "v1", "kind": "Pod", **obj["spec"]["template"]}
        context = ssl.create_default_context(cadata=bundle.read_text())
        async with httpx.AsyncClient(verify=context, timeout=WAIT) as client:
            response = await client.post(url, json=_review(pod))
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), WAIT)
    assert code == 0
    answer = response.json()["response"]
    assert answer["uid"] == "u1" and answer["allowed"] is True
    patched = apply_patch(pod, json.loads(base64.b64decode(answer["patch"])))
    images = {c["name"]: c["image"] for c in patched["spec"]["containers"]}
    assert images["istio-proxy"] == "example.com/istio/proxyv2:1.30.0"


def test_injector_flags_are_checked_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    base = ["serve", f"--config={config}", "--xds-port=0"]
    assert main([*base, f"--injector-cert={tmp_path / 'c.pem'}"]) == 2
    assert "--injector-cert needs --injector-port" in capsys.readouterr().err
    cert = tmp_path / "cert.pem"
    cert.write_text(self_signed_certificate().chain_pem)
    other = tmp_path / "key.pem"
    other.write_bytes(self_signed_certificate().key_pem)
    flags = [*base, "--injector-port=0", f"--injector-cert={cert}", f"--injector-key={other}"]
    assert main(flags) == 2
    assert "does not match the certificate" in capsys.readouterr().err
    values = tmp_path / "values.yaml"
    values.write_text("[not, a, mapping]")
    assert main([*base, "--injector-port=0", f"--injector-values={values}"]) == 2
    assert "expected a mapping" in capsys.readouterr().err
