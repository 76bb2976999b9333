"""``serve``'s CA flags: --ca-port, --ca-dir, --jwt-rule give a Mesh a working CA."""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import pytest

from istio_sdk import Mesh
from istio_sdk.citadel import CitadelClient, Identity
from istio_sdk.cli._ca_flags import add_ca_arguments, ca_options
from istio_sdk.cli._command import CommandError


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_ca_arguments(parser)
    return parser.parse_args(list(argv))


async def test_flags_give_the_mesh_a_ca_with_files_and_jwt_rule(
    ec_issuer: Any, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "rule.json").write_text(json.dumps(ec_issuer.rule()))
    args = _parse(
        "--ca-port=0", f"--ca-dir={tmp_path / 'ca'}", f"--jwt-rule=@{tmp_path / 'rule.json'}"
    )
    options = ca_options(args)
    assert options is not None
    async with Mesh(xds_port=0, ca_port=args.ca_port, ca_options=options) as mesh:
        assert mesh.citadel is not None and mesh.ca_port
        root = mesh.citadel.root_pem
        assert (tmp_path / "ca" / "root-cert.pem").read_text() == root
        async with CitadelClient("127.0.0.1", mesh.ca_port, root_cert_pem=root) as client:
            bundle = await client.request_certificate(token=ec_issuer.token("prod", "x"))
        assert bundle.identity == Identity("prod", "x")


def test_no_ca_port_means_no_ca_and_bad_flags_are_errors(tmp_path: pathlib.Path) -> None:
    assert ca_options(_parse()) is None
    with pytest.raises(CommandError, match="need --ca-port"):
        ca_options(_parse(f"--ca-dir={tmp_path}"))
    with pytest.raises(CommandError, match="need --ca-port"):
        ca_options(_parse("--ca-monitoring-port=0"))
    with pytest.raises(CommandError, match="issuer"):
        ca_options(_parse("--ca-port=0", '--jwt-rule={"jwksUri": "x"}'))
    with pytest.raises(CommandError, match="not JSON"):
        ca_options(_parse("--ca-port=0", "--jwt-rule={"))
    with pytest.raises(CommandError, match="No such file"):
        ca_options(_parse("--ca-port=0", f"--jwt-rule=@{tmp_path / 'missing'}"))


def test_ca_options_without_a_ca_port_are_refused() -> None:
    from istio_sdk.citadel import CitadelServerOptions

    with pytest.raises(ValueError, match="ca_port"):
        Mesh(ca_options=CitadelServerOptions())
    assert Mesh().citadel is None


async def test_a_taken_ca_monitoring_port_is_named_and_nothing_keeps_running() -> None:
    import socket

    from istio_sdk import MeshListenError
    from istio_sdk.citadel import CitadelServerOptions

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        options = CitadelServerOptions(monitoring_port=port)
        mesh = Mesh(xds_port=0, ca_port=0, ca_options=options)
        with pytest.raises(MeshListenError, match=f"127.0.0.1:{port} for the CA's metrics"):
            await mesh.start()
    # The CA and xDS had listened before the metrics port failed; both are closed again.
    for started in (mesh.ca_port, mesh.xds_port):
        assert started
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", started), timeout=5).close()
