"""``istio-sdk agent``: one-shot certificate fetch against a CA running in another thread."""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from istio_sdk.citadel import CertificateAuthority, CitadelServer, CitadelServerOptions, JwtRule
from istio_sdk.cli import main


@pytest.fixture
def ca_in_thread(ca: CertificateAuthority, ec_issuer: Any) -> Iterator[CitadelServer]:
    loop = asyncio.new_event_loop()
    server = CitadelServer(
        CitadelServerOptions(jwt_rule=JwtRule.from_json(ec_issuer.rule())), ca=ca
    )
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield server
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_agent_once_writes_certificate(
    ca_in_thread: CitadelServer,
    ec_issuer: Any,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "root.pem").write_text(ca_in_thread.root_pem)
    (tmp_path / "token").write_text(ec_issuer.token("prod", "cli"))
    out = tmp_path / "certs"
    code = main(
        [
            "agent",
            "--once",
            f"--ca-address=127.0.0.1:{ca_in_thread.port}",
            f"--ca-root={tmp_path / 'root.pem'}",
            f"--token-file={tmp_path / 'token'}",
            "--ttl=3600",
            f"--output-dir={out}",
        ]
    )
    assert code == 0
    assert "spiffe://cluster.local/ns/prod/sa/cli" in capsys.readouterr().out
    leaf = x509.load_pem_x509_certificate((out / "cert-chain.pem").read_bytes())
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(hours=1)


def test_agent_errors_are_reported(
    ca_in_thread: CitadelServer, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "root.pem").write_text(ca_in_thread.root_pem)
    (tmp_path / "token").write_text("not-a-valid-token")
    base = [
        "agent",
        "--once",
        f"--ca-address=127.0.0.1:{ca_in_thread.port}",
        f"--ca-root={tmp_path / 'root.pem'}",
    ]
    assert main([*base, f"--token-file={tmp_path / 'token'}", f"--output-dir={tmp_path}"]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert main([*base, f"--token-file={tmp_path / 'token'}"]) == 2
    assert "--output-dir" in capsys.readouterr().err
    assert main(["agent", "--ca-address=nope", f"--ca-root={tmp_path / 'root.pem'}"]) == 2
    assert main(["agent", f"--ca-root={tmp_path / 'missing.pem'}"]) == 2


async def test_agent_serves_sds_until_terminated(
    ca: CertificateAuthority, ec_issuer: Any, tmp_path: pathlib.Path
) -> None:
    import signal
    import subprocess
    import sys

    from grpclib.exceptions import GRPCError, StreamTerminatedError

    from istio_sdk._grpc import create_channel
    from istio_sdk.api.envoy.service.discovery.v3 import DiscoveryRequest
    from istio_sdk.api.envoy.service.secret.v3 import SecretDiscoveryServiceStub

    options = CitadelServerOptions(jwt_rule=JwtRule.from_json(ec_issuer.rule()))
    async with CitadelServer(options, ca=ca) as server:
        (tmp_path / "root.pem").write_text(server.root_pem)
        (tmp_path / "token").write_text(ec_issuer.token("prod", "sds"))
        sock = tmp_path / "sds.sock"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from istio_sdk.cli import main; sys.exit(main())",
            "agent",
            f"--ca-address=127.0.0.1:{server.port}",
            f"--ca-root={tmp_path / 'root.pem'}",
            f"--token-file={tmp_path / 'token'}",
            f"--sds-socket={sock}",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            response = None
            for _ in range(600):  # until the agent has a certificate (bounded, not timed)
                if sock.exists():
                    channel = create_channel(path=str(sock))
                    try:
                        response = await SecretDiscoveryServiceStub(channel).fetch_secrets(
                            DiscoveryRequest(resource_names=["ROOTCA"]), timeout=5
                        )
                        break
                    except (GRPCError, OSError, StreamTerminatedError):  # not ready yet
                        pass
                    finally:
                        channel.close()
                await asyncio.sleep(0.05)
            assert response is not None
            assert len(response.resources) == 1
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 30)
        assert code == 0
        assert server.stats().signed >= 1
