"""End to end through the CLI: ``istio-sdk serve --config DIR --mixer-port 0`` in a subprocess,
a proxy-shaped MixerClient talking to it, and a config file edited while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import re
import signal
import sys

import httpx
from grpclib.const import Status
from prometheus_client.parser import text_string_to_metric_families
from support.fake_mixer import FakeClock
from support.mixer_e2e import POLICY, inbound, report_bag, with_labels

from istio_sdk import MixerClient

WAIT = 60.0  # upper bound for the subprocess to come up or go; never asserted on
LISTENING = r"Mixer listening on 127\.0\.0\.1:(\d+), .* on (http://127\.0\.0\.1:\d+/metrics)"


async def test_serve_from_a_folder_answers_a_proxy_and_follows_an_edit(
    tmp_path: pathlib.Path,
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "policy.yaml").write_text(POLICY)
    stderr = (tmp_path / "stderr").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from istio_sdk.cli import main; sys.exit(main())",
        "serve",
        f"--config={config}",
        "--xds-port=0",
        "--mixer-port=0",
        "--mixer-prometheus-port=0",
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    clock = FakeClock()
    try:
        assert process.stdout is not None
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), WAIT)).decode()
            assert line, "serve exited before saying where Mixer listens"
            if match := re.search(LISTENING, line):
                break
        async with MixerClient("127.0.0.1", int(match.group(1)), clock=clock) as client:
            denied = await client.check(with_labels(inbound("ratings"), version="v3"))
            assert denied.code is Status.PERMISSION_DENIED
            v2 = with_labels(inbound("reviews"), version="v2")
            assert (await client.check(v2)).ok
            for number in range(3):
                client.report(report_bag("ratings", 200, request__id=f"r{number}"))
            await client.flush()
            assert client.stats.report_requests_sent == 1  # one batch of three

            # the file changes: v2 may no longer call reviews; serve is not restarted
            (config / "policy.yaml").write_text(
                POLICY.replace("overrides: [v1, v2]", "overrides: [v1]")
            )
            deadline = asyncio.get_running_loop().time() + WAIT
            while True:
                clock.advance(61)  # past the verdict's valid_duration: the next check is remote
                result = await client.check(v2)
                assert not result.check_cache_hit
                if result.code is Status.PERMISSION_DENIED:
                    break
                assert asyncio.get_running_loop().time() < deadline, "the edit never applied"
                await asyncio.sleep(0.05)
            assert "v2 is not whitelisted" in result.message
        async with httpx.AsyncClient(timeout=WAIT) as http:
            scraped = (await http.get(match.group(2))).text
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), WAIT)
        stderr.close()
    assert code == 0, (tmp_path / "stderr").read_text()
    (family,) = [f for f in text_string_to_metric_families(scraped) if f.name == "istio_requests"]
    (sample,) = [s for s in family.samples if s.name == "istio_requests_total"]
    assert sample.labels["destination_service"] == "ratings.default.svc.cluster.local"
    assert sample.value == 3
