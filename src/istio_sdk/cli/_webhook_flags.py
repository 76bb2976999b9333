"""The validating-webhook flags of ``istio-sdk serve``: ``--webhook-port`` and friends.

``serve`` calls :func:`add_webhook_arguments` when it builds its parser, :func:`webhook_kwargs`
to turn the parsed flags into the :class:`~istio_sdk.Mesh`'s arguments and, once the mesh is
built, :func:`write_webhook_ca`. The mesh then runs Galley's validating webhook beside Pilot
over HTTPS (``/validate``, ``/admitpilot``, ``/admitmixer``). ``--webhook-cert``/
``--webhook-key`` serve a certificate from files (what a Kubernetes Secret mounts); without
them our Citadel signs one when ``--ca-port`` runs it, else it is self-signed, and
``--webhook-ca-out FILE`` writes the PEM to trust (the webhook configuration's ``caBundle``).
"""

from __future__ import annotations

import argparse
import pathlib
from typing import TYPE_CHECKING, Any

from istio_sdk.cli._command import CommandError

if TYPE_CHECKING:
    from istio_sdk.mesh import Mesh


def add_webhook_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the validating webhook's flags to ``parser``."""
    parser.add_argument(
        "--webhook-port",
        type=int,
        metavar="PORT",
        help="also run Galley's validating webhook (HTTPS, /validate) on this port (0: any free)",
    )
    parser.add_argument("--webhook-cert", metavar="FILE", help="the webhook's certificate chain")
    parser.add_argument("--webhook-key", metavar="FILE", help="the webhook's private key")
    parser.add_argument(
        "--webhook-ca-out",
        metavar="FILE",
        help="write the PEM that verifies the webhook's certificate here (its caBundle)",
    )


def webhook_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The Mesh's ``webhook_port`` and ``webhook_certificate`` from the flags ({} without
    ``--webhook-port``)."""
    if args.webhook_port is None:
        for flag in ("webhook_cert", "webhook_key", "webhook_ca_out"):
            if getattr(args, flag) is not None:
                raise CommandError(f"--{flag.replace('_', '-')} needs --webhook-port")
        return {}
    if (args.webhook_cert is None) != (args.webhook_key is None):
        raise CommandError("--webhook-cert and --webhook-key go together")
    if args.webhook_cert is None:
        return {"webhook_port": args.webhook_port}
    if args.webhook_ca_out is not None:
        raise CommandError("--webhook-ca-out is for a certificate made here, not --webhook-cert")
    from istio_sdk._webhook_tls import load_certificate

    try:
        certificate = load_certificate(
            pathlib.Path(args.webhook_cert), pathlib.Path(args.webhook_key)
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return {"webhook_port": args.webhook_port, "webhook_certificate": certificate}


def write_webhook_ca(args: argparse.Namespace, mesh: Mesh) -> None:
    """Write the PEM that verifies the webhook where ``--webhook-ca-out`` says."""
    if args.webhook_ca_out is None or mesh.webhook_ca_bundle is None:
        return
    try:
        pathlib.Path(args.webhook_ca_out).write_text(mesh.webhook_ca_bundle)
    except OSError as exc:
        raise CommandError(f"--webhook-ca-out {args.webhook_ca_out}: {exc.strerror}") from None
