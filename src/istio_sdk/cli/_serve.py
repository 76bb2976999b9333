"""``istio-sdk serve --config DIR``: run the control plane over a folder of Istio YAML.

Loads every YAML/JSON file below ``--config`` and refuses to start when one has a problem (one
line naming the file, exit status 1). Then starts Pilot's discovery server (ADS, plaintext;
port 15010 unless ``--xds-port`` says otherwise) on 127.0.0.1 unless ``--host`` says otherwise,
follows changes to the files (inotify, or polling when it is unavailable), and pushes what
changed to connected proxies. ``--debug-port`` serves Pilot's Prometheus metrics at
``/metrics`` (Istio's ``pilot_*`` names) and its state at ``/debug/syncz`` and
``/debug/metrics`` (JSON). With ``--ca-port`` Citadel's CA runs beside it, and with
``--ca-monitoring-port`` the CA's metrics are at ``/metrics`` on that port. It prints where it
listens and logs pushes and NACKs; a file broken later is logged and the last good config keeps
being served. With ``--kubeconfig PATH`` or ``--in-cluster`` it also (or, without
``--config``, only) follows the objects of a Kubernetes API server, and ``--write-status``
writes Istio's status back from the one replica holding a Lease (``_kube_flags``). Stop it
with Ctrl-C or SIGTERM.

This module only turns flags into a :class:`~istio_sdk.Mesh`; the mesh wires the components.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import pathlib
import signal
from typing import TYPE_CHECKING

from istio_sdk.cli._ca_flags import add_ca_arguments, ca_options
from istio_sdk.cli._command import Command, CommandError
from istio_sdk.cli._kube_flags import add_kube_arguments, add_kubernetes, wants_kubernetes

if TYPE_CHECKING:
    from istio_sdk.citadel import CitadelServerOptions

DEFAULT_XDS_PORT = 15010  # istio_sdk.mesh.DEFAULT_XDS_PORT, without importing the mesh for --help


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="DIR",
        help="folder of Istio YAML/JSON (recursive); needed unless --kubeconfig/--in-cluster",
    )
    parser.add_argument(
        "--xds-port",
        type=int,
        default=DEFAULT_XDS_PORT,
        metavar="PORT",
        help=f"plaintext xDS (ADS) port (default {DEFAULT_XDS_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--debug-port",
        type=int,
        metavar="PORT",
        help="serve Pilot's Prometheus /metrics, and /debug/syncz and /debug/metrics (JSON), "
        "on this port (Istio: 15014; 0 picks a free one)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often the config folder is scanned when inotify is unavailable (default 1.0)",
    )
    parser.add_argument(
        "--debounce-after",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="quiet period before a push (default 0.1, like PILOT_DEBOUNCE_AFTER)",
    )
    parser.add_argument(
        "--debounce-max",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest a push waits for the config to settle (default 10)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_ca_arguments(parser)  # --ca-port, --ca-dir, --jwt-rule, --ca-monitoring-port (Citadel)
    add_kube_arguments(parser)  # --kubeconfig, --in-cluster, --write-status, ... (the API server)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _run(args: argparse.Namespace) -> int:
    if args.config is None and not wants_kubernetes(args):
        raise CommandError("--config DIR (or --kubeconfig PATH, or --in-cluster) is required")
    root = pathlib.Path(args.config or ".")
    if args.config is not None and not root.is_dir():
        raise CommandError(f"--config {args.config}: no such folder")
    if args.poll_interval <= 0:
        raise CommandError("--poll-interval must be positive")
    options = ca_options(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("hpack", "h2", "grpclib", "asyncio", "watchfiles", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return asyncio.run(_serve(args, root, options))


async def _serve(
    args: argparse.Namespace, root: pathlib.Path, options: CitadelServerOptions | None
) -> int:
    from istio_sdk.config import ConfigError
    from istio_sdk.mesh import Mesh

    refused: tuple[type[Exception], ...] = (OSError, ValueError)
    if options is not None:  # the CA (and cryptography) only load when asked for
        from istio_sdk.citadel import CitadelError

        refused = (*refused, CitadelError)

    settings = {
        "host": args.host,
        "xds_port": args.xds_port,
        "debug_port": args.debug_port,
        "debounce_after": args.debounce_after,
        "debounce_max": args.debounce_max,
        "ca_port": args.ca_port,
        "ca_options": options,
    }
    try:
        if args.config is None:
            mesh = Mesh(**settings)
        else:
            mesh = Mesh.from_directory(root, interval=args.poll_interval, strict=True, **settings)
    except refused as exc:
        raise CommandError(_one_line(str(exc))) from exc
    if wants_kubernetes(args):
        add_kubernetes(mesh, args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await mesh.start()
    except ConfigError as exc:
        message = f"invalid config: {_one_line(str(exc))}"
        others = sum(len(p) for source in mesh.sources for p in source.errors.values()) - 1
        if others > 0:
            message += f" (and {others} more; `istio-sdk validate -f {root}` lists them)"
        raise CommandError(message, exit_code=1) from exc
    except OSError as exc:
        raise CommandError(_one_line(str(exc))) from exc
    try:
        where = [str(root)] if args.config is not None else []
        if wants_kubernetes(args):
            where.append("the in-cluster API server" if args.in_cluster else args.kubeconfig)
        print(
            f"istio-sdk serve: xDS (ADS, plaintext) listening on "
            f"{args.host}:{mesh.xds_port}, config from {' and '.join(where)} "
            f"({len(mesh.store)} resources)",
            flush=True,
        )
        if mesh.debug_port is not None:
            debug = f"http://{args.host}:{mesh.debug_port}"
            print(
                f"istio-sdk serve: Pilot metrics on {debug}/metrics, debug on {debug}/debug/syncz",
                flush=True,
            )
        if mesh.citadel is not None:
            print(
                f"istio-sdk serve: Citadel CA (TLS) listening on {args.host}:{mesh.ca_port}, "
                f"trust domain {mesh.citadel.ca.trust_domain}, "
                f"CA files in {args.ca_dir or 'memory'}",
                flush=True,
            )
            if mesh.ca_monitoring_port is not None:
                print(
                    f"istio-sdk serve: Citadel metrics on "
                    f"http://{args.host}:{mesh.ca_monitoring_port}/metrics",
                    flush=True,
                )
        await stop.wait()
    finally:
        await mesh.stop()
    return 0


COMMAND = Command(
    name="serve",
    help="run the control plane (Pilot xDS, optionally the CA) over a folder of Istio YAML",
    run=_run,
    configure=_configure,
    description=__doc__ or "",
)
