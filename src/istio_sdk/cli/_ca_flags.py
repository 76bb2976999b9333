"""The CA flags of ``istio-sdk serve``: ``--ca-port``, ``--ca-dir``, ``--jwt-rule`` and
``--ca-monitoring-port``.

``serve`` calls :func:`add_ca_arguments` when it builds its parser and :func:`ca_options` to
turn the parsed flags into :class:`~istio_sdk.citadel.CitadelServerOptions`; the
:class:`~istio_sdk.Mesh` then runs the CA beside Pilot over TLS, with the CA files in
``--ca-dir`` (a self-signed root is created there when the folder holds none) and, with
``--ca-monitoring-port``, its Prometheus ``/metrics`` on a port of its own.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import TYPE_CHECKING

from istio_sdk.cli._command import CommandError

if TYPE_CHECKING:
    from istio_sdk.citadel import CitadelServerOptions


def add_ca_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--ca-port``, ``--ca-dir``, ``--jwt-rule`` and ``--ca-monitoring-port`` to
    ``parser``."""
    parser.add_argument(
        "--ca-port",
        type=int,
        metavar="PORT",
        help="also run the Citadel CA (CreateCertificate over TLS) on this port (0: any free)",
    )
    parser.add_argument(
        "--ca-dir",
        metavar="DIR",
        help="CA files (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); "
        "a self-signed root is created there if absent (default: in memory)",
    )
    parser.add_argument(
        "--jwt-rule",
        metavar="JSON",
        help='Istio JWT_RULE for the CA, e.g. \'{"issuer": ..., "jwksUri": ..., '
        '"audiences": ["istio-ca"]}\'; "@FILE" reads it from a file',
    )
    parser.add_argument(
        "--ca-monitoring-port",
        type=int,
        metavar="PORT",
        help="serve the CA's Prometheus metrics at http://HOST:PORT/metrics "
        "(Istio's citadel_server_* names; 0: any free port)",
    )


def _jwt_rule_text(value: str) -> str:
    if not value.startswith("@"):
        return value
    try:
        return pathlib.Path(value[1:]).read_text()
    except OSError as exc:
        raise CommandError(f"--jwt-rule {value}: {exc.strerror}") from exc


def ca_options(args: argparse.Namespace) -> CitadelServerOptions | None:
    """The CA's options when ``--ca-port`` was given, else ``None`` (flag errors raise
    :class:`CommandError`)."""
    if getattr(args, "ca_port", None) is None:
        if (
            getattr(args, "ca_dir", None)
            or getattr(args, "jwt_rule", None)
            or getattr(args, "ca_monitoring_port", None) is not None
        ):
            raise CommandError("--ca-dir, --jwt-rule and --ca-monitoring-port need --ca-port")
        return None
    from istio_sdk.citadel import CitadelError, CitadelServerOptions, JwtRule

    try:
        rule = JwtRule.from_json(_jwt_rule_text(args.jwt_rule)) if args.jwt_rule else None
    except (CitadelError, json.JSONDecodeError) as exc:
        raise CommandError(f"--jwt-rule: {exc}") from exc
    return CitadelServerOptions(
        ca_dir=args.ca_dir, jwt_rule=rule, monitoring_port=args.ca_monitoring_port
    )
