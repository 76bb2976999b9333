"""``istio-sdk serve --config DIR``: run the control plane over a folder of Istio YAML.

Loads every YAML/JSON file below ``--config`` and refuses to start when one has a problem (one
line naming the file, exit status 1). Then starts Pilot's discovery server (ADS, plaintext;
port 15010 unless ``--xds-port`` says otherwise) on 127.0.0.1 unless ``--host`` says otherwise,
follows changes to the files (inotify, or polling when it is unavailable), and pushes what
changed to connected proxies. ``--debug-port`` serves Pilot's Prometheus metrics at
``/metrics`` (Istio's ``pilot_*`` names) and its state at ``/debug/syncz`` and
``/debug/metrics`` (JSON). With ``--ca-port`` Citadel's CA runs beside it, and with
``--ca-monitoring-port`` the CA's metrics are at ``/metrics`` on that port. With
``--injector-port`` the sidecar injector's mutating webhook runs beside it over HTTPS
(``/inject``; see :mod:`istio_sdk.cli._injector_flags`). With ``--mixer-port``
Mixer (Istio 1.3's Check and Report) runs over the same config, its prometheus adapter's metrics
at ``/metrics`` on ``--mixer-prometheus-port`` (42422 unless said otherwise). It prints where it
listens and logs pushes and NACKs; a file broken later is logged and the last good config keeps
being served. ``--galley-port`` serves the config over MCP as Istio 1.3's Galley did (its port
was 9901), and ``--config-source HOST:PORT`` (repeatable; Pilot 1.3's ``configSources``) takes
the config from a Galley instead of, or beside, ``--config`` (``fs://DIR`` names a folder).
With ``--kubeconfig PATH`` or ``--in-cluster`` it also (or, without ``--config``, only) follows
the objects of a Kubernetes API server, and ``--write-status`` writes Istio's status back from
the one replica holding a Lease (``_kube_flags``). ``--webhook-port`` runs Galley's validating
webhook over HTTPS (``/validate``; see :mod:`istio_sdk.cli._webhook_flags`). Stop it with
Ctrl-C or SIGTERM.

This module only turns flags into a :class:`~istio_sdk.Mesh`; the mesh wires the components.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import pathlib
import signal
from typing import TYPE_CHECKING, Any

from istio_sdk.cli._ca_flags import add_ca_arguments, ca_options
from istio_sdk.cli._command import Command, CommandError
from istio_sdk.cli._injector_flags import add_injector_arguments, injector_setup
from istio_sdk.cli._kube_flags import add_kube_arguments, add_kubernetes, wants_kubernetes
from istio_sdk.cli._webhook_flags import add_webhook_arguments, webhook_kwargs, write_webhook_ca

if TYPE_CHECKING:
    from istio_sdk.citadel import CitadelServerOptions
    from istio_sdk.mesh import Mesh

DEFAULT_XDS_PORT = 15010  # istio_sdk.mesh.DEFAULT_XDS_PORT, without importing the mesh for --help
DEFAULT_MIXER_PROMETHEUS_PORT = 42422  # istio_sdk.mixer.server.DEFAULT_PROMETHEUS_PORT


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="DIR", help="folder of Istio YAML/JSON (recursive)")
    parser.add_argument(
        "--config-source",
        action="append",
        default=[],
        metavar="HOST:PORT|fs://DIR",
        help="take config from this Galley over MCP (or fs://DIR: a folder); repeatable",
    )
    parser.add_argument(
        "--galley-port",
        type=int,
        metavar="PORT",
        help="serve the config over MCP (Galley's ResourceSource; Istio 1.3: 9901; 0: free)",
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
    add_injector_arguments(parser)  # --injector-port, --injector-cert, ... (sidecar injector)
    add_kube_arguments(parser)  # --kubeconfig, --in-cluster, --write-status, ... (the API server)
    parser.add_argument(
        "--mixer-port",
        type=int,
        metavar="PORT",
        help="run Mixer (istio.mixer.v1 Check and Report) on this port (Istio: 9091; 0 picks a "
        "free one)",
    )
    parser.add_argument(
        "--mixer-prometheus-port",
        type=int,
        default=DEFAULT_MIXER_PROMETHEUS_PORT,
        metavar="PORT",
        help="with --mixer-port: serve the prometheus adapter's /metrics on this port "
        f"(default {DEFAULT_MIXER_PROMETHEUS_PORT}; 0 picks a free one)",
    )
    add_webhook_arguments(parser)  # --webhook-port, --webhook-cert, ... (validating webhook)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _config_sources(args: argparse.Namespace) -> tuple[str | None, list[tuple[str, int]]]:
    """The folder to follow (``--config`` or one ``fs://DIR``) and the Galleys to dial."""
    from istio_sdk.cli._address import parse_address

    folders = [args.config] if args.config else []
    galleys = []
    for value in args.config_source:
        if value.startswith("fs://"):
            folders.append(value[len("fs://") :])
        else:
            galleys.append(parse_address("--config-source", value))
    if len(folders) > 1:
        raise CommandError("one config folder at most (--config or one --config-source fs://)")
    if not folders and not galleys and not wants_kubernetes(args):
        raise CommandError(
            "--config DIR, --config-source HOST:PORT|fs://DIR, --kubeconfig PATH or --in-cluster"
            " is required"
        )
    return (folders[0] if folders else None), galleys


def _run(args: argparse.Namespace) -> int:
    folder, galleys = _config_sources(args)
    root = pathlib.Path(folder) if folder is not None else None
    if root is not None and not root.is_dir():
        raise CommandError(f"--config {folder}: no such folder")
    args.galleys = galleys
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


def _injector_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    setup = injector_setup(args)
    if setup is None:
        return {}
    settings, certificate = setup
    return {
        "injector_port": args.injector_port,
        "injector_settings": settings,
        "injector_certificate": certificate,
    }


async def _serve(
    args: argparse.Namespace, root: pathlib.Path | None, options: CitadelServerOptions | None
) -> int:
    from istio_sdk.config import ConfigError

    refused: tuple[type[Exception], ...] = (OSError, ValueError)
    if options is not None:  # the CA (and cryptography) only load when asked for
        from istio_sdk.citadel import CitadelError

        refused = (*refused, CitadelError)

    try:
        mesh = _mesh(
            root,
            interval=args.poll_interval,
            galley_port=args.galley_port,
            config_sources=args.galleys,
            host=args.host,
            xds_port=args.xds_port,
            debug_port=args.debug_port,
            debounce_after=args.debounce_after,
            debounce_max=args.debounce_max,
            ca_port=args.ca_port,
            ca_options=options,
            **_injector_kwargs(args),
            mixer_port=args.mixer_port,
            mixer_prometheus_port=args.mixer_prometheus_port,
            **webhook_kwargs(args),
        )
    except refused as exc:
        raise CommandError(_one_line(str(exc))) from exc
    if wants_kubernetes(args):
        add_kubernetes(mesh, args)
    write_webhook_ca(args, mesh)
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
        where = [str(root)] if root is not None else []
        where += [f"Galley {h}:{p}" for h, p in args.galleys]
        if wants_kubernetes(args):
            where.append("the in-cluster API server" if args.in_cluster else args.kubeconfig)
        print(
            f"istio-sdk serve: xDS (ADS, plaintext) listening on "
            f"{args.host}:{mesh.xds_port}, config from {' and '.join(where)} "
            f"({len(mesh.store)} resources)",
            flush=True,
        )
        if mesh.mcp_source is not None:
            print(
                f"istio-sdk serve: Galley MCP (ResourceSource) listening on "
                f"{args.host}:{mesh.galley_port}",
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
        if mesh.injector is not None:
            print(
                f"istio-sdk serve: sidecar injector (HTTPS) listening on "
                f"https://{args.host}:{mesh.injector_port}/inject",
                flush=True,
            )
        if mesh.mixer is not None:
            print(
                f"istio-sdk serve: Mixer listening on {args.host}:{mesh.mixer_port}, "
                f"its Prometheus metrics on "
                f"http://{args.host}:{mesh.mixer_prometheus_port}/metrics",
                flush=True,
            )
        if mesh.webhook is not None:
            print(
                f"istio-sdk serve: validating webhook (HTTPS) listening on "
                f"https://{args.host}:{mesh.webhook_port}/validate",
                flush=True,
            )
        await stop.wait()
    finally:
        await mesh.stop()
    return 0


def _mesh(root: pathlib.Path | None, *, interval: float, **kwargs: object) -> Mesh:
    from istio_sdk.mesh import Mesh

    if root is None:
        return Mesh(**kwargs)  # type: ignore[arg-type]
    return Mesh.from_directory(root, interval=interval, strict=True, **kwargs)  # type: ignore[arg-type]


COMMAND = Command(
    name="serve",
    help="run the control plane (Pilot xDS, optionally the CA) over a folder of Istio YAML",
    run=_run,
    configure=_configure,
    description=__doc__ or "",
)
