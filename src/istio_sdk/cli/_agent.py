"""``istio-sdk agent``: the Citadel agent: get a workload certificate, keep it fresh, serve SDS.

``--once`` fetches one certificate, writes the PEM files and exits (handy in init containers
and scripts); otherwise the agent runs until interrupted, renewing at half the lifetime and
serving SDS on ``--sds-socket`` or ``--sds-port``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import signal

from istio_sdk.cli._address import parse_address
from istio_sdk.cli._command import Command, CommandError

DEFAULT_CA_ADDRESS = "127.0.0.1:15012"


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca-address",
        default=DEFAULT_CA_ADDRESS,
        metavar="HOST:PORT",
        help=f"the Citadel CA (default {DEFAULT_CA_ADDRESS})",
    )
    parser.add_argument(
        "--ca-root", required=True, metavar="FILE", help="PEM root certificate of the CA"
    )
    parser.add_argument(
        "--ca-server-name",
        metavar="NAME",
        help="name to check in the CA's certificate (default: the CA host)",
    )
    parser.add_argument(
        "--token-file", metavar="FILE", help="service account token (JWT), re-read per request"
    )
    parser.add_argument(
        "--key-algorithm",
        default="ECDSA_P256",
        choices=["RSA_2048", "RSA_3072", "RSA_4096", "ECDSA_P256", "ECDSA_P384"],
        help="workload key type (default ECDSA_P256)",
    )
    parser.add_argument(
        "--ttl", type=int, default=0, metavar="SECONDS", help="requested lifetime (0: CA default)"
    )
    parser.add_argument("--output-dir", metavar="DIR", help="write cert-chain.pem, key.pem, ...")
    parser.add_argument("--sds-socket", metavar="PATH", help="serve SDS on this Unix socket")
    parser.add_argument("--sds-port", type=int, metavar="PORT", help="serve SDS on 127.0.0.1:PORT")
    parser.add_argument(
        "--once", action="store_true", help="fetch one certificate, write files and exit"
    )


def _read_root(path: str) -> str:
    """The PEM text of ``--ca-root``, checked to hold a certificate (else a one-line error)."""
    import ssl

    try:
        root_pem = pathlib.Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CommandError(f"cannot read --ca-root {path}: {reason}") from exc
    try:
        ssl.create_default_context(cadata=root_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise CommandError(f"--ca-root {path} holds no PEM certificate ({exc})") from None
    return root_pem


def _run(args: argparse.Namespace) -> int:
    from istio_sdk.citadel.agent import AgentOptions, CitadelAgent
    from istio_sdk.citadel.errors import CitadelError
    from istio_sdk.citadel.keys import KeyAlgorithm

    host, port = parse_address("--ca-address", args.ca_address)
    root_pem = _read_root(args.ca_root)
    if args.once and args.output_dir is None:
        raise CommandError("--once needs --output-dir to write the certificate to")
    options = AgentOptions(
        ca_host=host,
        ca_port=port,
        ca_root_pem=root_pem,
        ca_server_name=args.ca_server_name,
        token_file=args.token_file,
        key_algorithm=KeyAlgorithm(args.key_algorithm),
        ttl_seconds=args.ttl,
        output_dir=args.output_dir,
        sds_socket_path=args.sds_socket,
        sds_port=args.sds_port,
    )
    agent = CitadelAgent(options)

    async def once() -> int:
        try:
            bundle = await agent.refresh_once()
        finally:
            await agent.stop()
        print(f"{bundle.identity} valid until {bundle.not_after.isoformat()} -> {args.output_dir}")
        return 0

    async def forever() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        async with agent:
            print(f"istio-sdk agent: requesting certificates from {host}:{port}", flush=True)
            await stop.wait()
        return 0

    try:
        return asyncio.run(once() if args.once else forever())
    except CitadelError as exc:
        raise CommandError(str(exc), exit_code=1) from exc


COMMAND = Command(
    name="agent",
    help="run the Citadel agent: workload certificates, rotation, SDS",
    run=_run,
    configure=_configure,
    description=__doc__ or "",
)
