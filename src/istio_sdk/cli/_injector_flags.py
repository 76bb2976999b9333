"""The sidecar-injector flags of ``istio-sdk serve``: ``--injector-port`` and friends.

``serve`` calls :func:`add_injector_arguments` when it builds its parser and
:func:`injector_setup` to turn the parsed flags into the injector's settings and serving
certificate; the :class:`~istio_sdk.Mesh` then runs the mutating webhook beside Pilot over
HTTPS (``/inject``). ``--injector-cert``/``--injector-key`` serve a certificate from files
(what a Kubernetes Secret mounts); without them a self-signed certificate is made for
``localhost``, ``127.0.0.1``, the listening host and ``istio-sidecar-injector.istio-system.svc``,
and ``--injector-ca-out FILE`` writes its PEM for the webhook configuration's ``caBundle``.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import TYPE_CHECKING

from istio_sdk.cli._command import CommandError

if TYPE_CHECKING:
    from istio_sdk._webhook_tls import WebhookCertificate
    from istio_sdk.proxy.inject import InjectSettings


def add_injector_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the injector's flags to ``parser``."""
    parser.add_argument(
        "--injector-port",
        type=int,
        metavar="PORT",
        help="also run the sidecar injector webhook (HTTPS, /inject) on this port (0: any free)",
    )
    parser.add_argument("--injector-cert", metavar="FILE", help="the injector's certificate chain")
    parser.add_argument("--injector-key", metavar="FILE", help="the injector's private key")
    parser.add_argument(
        "--injector-ca-out",
        metavar="FILE",
        help="write the self-signed certificate's PEM here (the webhook's caBundle)",
    )
    parser.add_argument(
        "--injector-values", metavar="FILE", help="Helm values for the injection templates"
    )
    parser.add_argument(
        "--injector-mesh-config", metavar="FILE", help="mesh config for the injection templates"
    )
    parser.add_argument(
        "--injector-native-sidecars",
        action="store_true",
        help="inject istio-proxy as a Kubernetes native sidecar",
    )


def _text(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            data = file.read((8 << 20) + 1)
    except OSError as exc:
        raise CommandError(f"{flag} {path}: {exc.strerror}") from None
    if len(data) > 8 << 20:
        raise CommandError(f"{flag} {path}: larger than 8 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{flag} {path}: not UTF-8 text") from None


def injector_setup(
    args: argparse.Namespace,
) -> tuple[InjectSettings, WebhookCertificate] | None:
    """The injector's settings and certificate from the flags (None without
    ``--injector-port``)."""
    if args.injector_port is None:
        flags = ("injector_cert", "injector_key", "injector_ca_out", "injector_values")
        for flag in (*flags, "injector_mesh_config"):
            if getattr(args, flag) is not None:
                raise CommandError(f"--{flag.replace('_', '-')} needs --injector-port")
        return None
    from istio_sdk._webhook_tls import load_certificate, self_signed_certificate
    from istio_sdk.proxy.inject import InjectionError
    from istio_sdk.proxy.inject.documents import load_settings

    try:
        settings = load_settings(
            values_text=_text(args.injector_values, "--injector-values"),
            values_source=args.injector_values or "values",
            mesh_text=_text(args.injector_mesh_config, "--injector-mesh-config"),
            mesh_source=args.injector_mesh_config or "mesh config",
            native_sidecars=args.injector_native_sidecars,
        )
    except InjectionError as exc:
        raise CommandError(str(exc)) from None
    if (args.injector_cert is None) != (args.injector_key is None):
        raise CommandError("--injector-cert and --injector-key go together")
    if args.injector_cert is not None:
        try:
            certificate = load_certificate(
                pathlib.Path(args.injector_cert), pathlib.Path(args.injector_key)
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    else:
        hosts = ["localhost", "127.0.0.1", "istio-sidecar-injector.istio-system.svc"]
        if args.host not in hosts:
            hosts.append(args.host)
        certificate = self_signed_certificate(hosts)
        if args.injector_ca_out is not None:
            try:
                pathlib.Path(args.injector_ca_out).write_text(certificate.chain_pem)
            except OSError as exc:
                raise CommandError(
                    f"--injector-ca-out {args.injector_ca_out}: {exc.strerror}"
                ) from None
    return settings, certificate
