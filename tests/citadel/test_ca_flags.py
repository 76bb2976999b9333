"""``serve``'s CA flags: --ca-port, --ca-dir, --jwt-rule start a working CA."""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import pytest

from istio_sdk.citadel import CitadelClient, Identity
from istio_sdk.cli._ca_flags import add_ca_arguments, start_ca
from istio_sdk.cli._command import CommandError


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_ca_arguments(parser)
    return parser.parse_args(list(argv))


async def test_flags_start_a_ca_with_files_and_jwt_rule(
    ec_issuer: Any, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rule.json").write_text(json.dumps(ec_issuer.rule()))
    args = _parse(
        "--ca-port=0", f"--ca-dir={tmp_path / 'ca'}", f"--jwt-rule=@{tmp_path / 'rule.json'}"
    )
    server = await start_ca(args, "127.0.0.1")
    assert server is not None
    try:
        assert f"127.0.0.1:{server.port}" in capsys.readouterr().out
        assert (tmp_path / "ca" / "root-cert.pem").read_text() == server.root_pem
        async with CitadelClient("127.0.0.1", server.port, root_cert_pem=server.root_pem) as c:
            bundle = await c.request_certificate(token=ec_issuer.token("prod", "x"))
        assert bundle.identity == Identity("prod", "x")
    finally:
        await server.stop()


async def test_no_ca_port_means_no_ca_and_bad_flags_are_errors(tmp_path: pathlib.Path) -> None:
    assert await start_ca(_parse(), "127.0.0.1") is None
    with pytest.raises(CommandError, match="need --ca-port"):
        await start_ca(_parse(f"--ca-dir={tmp_path}"), "127.0.0.1")
    with pytest.raises(CommandError, match="issuer"):
        await start_ca(_parse("--ca-port=0", '--jwt-rule={"jwksUri": "x"}'), "127.0.0.1")
    with pytest.raises(CommandError, match="not JSON"):
        await start_ca(_parse("--ca-port=0", "--jwt-rule={"), "127.0.0.1")
    with pytest.raises(CommandError, match="No such file"):
        await start_ca(_parse("--ca-port=0", f"--jwt-rule=@{tmp_path / 'missing'}"), "127.0.0.1")
