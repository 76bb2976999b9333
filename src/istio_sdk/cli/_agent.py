"""``istio-sdk agent``: pilot-agent: the Citadel agent and SDS, the status and readiness ports,
the xDS proxy and Envoy's lifecycle.

Every part is switched on by its flags:

- ``--ca-root`` (with ``--ca-address``, ``--token-file``): get a workload certificate, keep it
  fresh and serve SDS on ``--sds-socket`` or ``--sds-port``. ``--once`` fetches one
  certificate, writes the PEM files to ``--output-dir`` and exits (handy in init containers);
- ``--status-port`` (pilot-agent's is 15020): ``/healthz/ready``, the rewritten app probes of
  ``ISTIO_KUBE_APP_PROBERS``, ``/stats/prometheus`` merging ``ISTIO_PROMETHEUS_ANNOTATIONS``'
  targets; ``--readiness-port`` (15021) answers readiness when no Envoy runs;
- ``--pilot-address``: the xDS proxy, on ``--xds-socket`` (pilot-agent's
  ``./etc/istio/proxy/XDS``) or ``--xds-port``; TLS to Pilot with ``--xds-root-cert`` (and the
  workload certificate from ``--output-dir`` when the Citadel agent writes one);
- ``--dns-port`` (or ``ISTIO_META_DNS_CAPTURE=true``, then on 15053), with ``--pilot-address``:
  the DNS proxy, answering from the name table the xDS proxy asks Pilot for (NDS) and
  forwarding the rest to ``--dns-upstream`` (default: resolv.conf's servers); ``POD_NAMESPACE``
  and ``--domain`` say which short names it answers;
- ``--envoy-binary`` with ``--bootstrap`` (for example from ``istio-sdk bootstrap -o``): run
  Envoy, restart it as the next epoch when the bootstrap file changes, drain it on SIGTERM,
  and exit with Envoy's code when it exits by itself.

The agent runs until SIGINT/SIGTERM or ``POST /quitquitquit``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import signal
import ssl
from typing import Any

from istio_sdk.cli._address import parse_address
from istio_sdk.cli._command import Command, CommandError

DEFAULT_CA_ADDRESS = "127.0.0.1:15012"


def _configure(parser: argparse.ArgumentParser) -> None:
    citadel = parser.add_argument_group("Citadel agent and SDS")
    citadel.add_argument(
        "--ca-address",
        default=DEFAULT_CA_ADDRESS,
        metavar="HOST:PORT",
        help=f"the Citadel CA (default {DEFAULT_CA_ADDRESS})",
    )
    citadel.add_argument(
        "--ca-root", metavar="FILE", help="PEM root certificate of the CA (turns the agent on)"
    )
    citadel.add_argument(
        "--ca-server-name",
        metavar="NAME",
        help="name to check in the CA's certificate (default: the CA host)",
    )
    citadel.add_argument(
        "--token-file", metavar="FILE", help="service account token (JWT), re-read per request"
    )
    citadel.add_argument(
        "--key-algorithm",
        default="ECDSA_P256",
        choices=["RSA_2048", "RSA_3072", "RSA_4096", "ECDSA_P256", "ECDSA_P384"],
        help="workload key type (default ECDSA_P256)",
    )
    citadel.add_argument(
        "--ttl", type=int, default=0, metavar="SECONDS", help="requested lifetime (0: CA default)"
    )
    citadel.add_argument("--output-dir", metavar="DIR", help="write cert-chain.pem, key.pem, ...")
    citadel.add_argument("--sds-socket", metavar="PATH", help="serve SDS on this Unix socket")
    citadel.add_argument("--sds-port", type=int, metavar="PORT", help="serve SDS on 127.0.0.1:PORT")
    citadel.add_argument(
        "--once", action="store_true", help="fetch one certificate, write files and exit"
    )
    status = parser.add_argument_group("status and readiness")
    status.add_argument(
        "--status-port", type=int, metavar="PORT", help="serve the status port (pilot-agent: 15020)"
    )
    status.add_argument(
        "--readiness-port",
        type=int,
        metavar="PORT",
        help="serve /healthz/ready here when no Envoy runs (pilot-agent: 15021)",
    )
    status.add_argument(
        "--status-host", default="0.0.0.0", metavar="IP", help="address to bind (default 0.0.0.0)"
    )
    xds = parser.add_argument_group("xDS proxy")
    xds.add_argument("--pilot-address", metavar="HOST:PORT", help="relay the proxy's ADS here")
    xds.add_argument("--xds-socket", metavar="PATH", help="listen for the proxy on this socket")
    xds.add_argument("--xds-port", type=int, default=0, metavar="PORT", help="or on 127.0.0.1:PORT")
    xds.add_argument("--xds-root-cert", metavar="FILE", help="TLS to Pilot, trusting this root")
    xds.add_argument(
        "--cluster-id", default="Kubernetes", help="ClusterID sent to Pilot (default Kubernetes)"
    )
    dns = parser.add_argument_group("DNS proxy")
    dns.add_argument(
        "--dns-port",
        type=int,
        metavar="PORT",
        help="run the DNS proxy on 127.0.0.1:PORT, UDP and TCP (ISTIO_META_DNS_CAPTURE: 15053)",
    )
    dns.add_argument(
        "--dns-upstream",
        action="append",
        metavar="IP[:PORT]",
        help="forward other names here (repeatable; default: resolv.conf's nameservers)",
    )
    dns.add_argument(
        "--domain",
        metavar="DOMAIN",
        help="the Pod's DNS domain (default POD_NAMESPACE.svc.cluster.local)",
    )
    envoy = parser.add_argument_group("Envoy")
    envoy.add_argument("--envoy-binary", metavar="PATH", help="run this Envoy (default: none)")
    envoy.add_argument("--bootstrap", metavar="FILE", help="Envoy's bootstrap (watched)")
    envoy.add_argument(
        "--config-dir", default="./etc/istio/proxy", metavar="DIR", help="where epochs' files go"
    )
    envoy.add_argument("--admin-port", type=int, default=15000, metavar="PORT")
    envoy.add_argument("--drain-duration", type=float, default=45.0, metavar="SECONDS")
    envoy.add_argument("--parent-shutdown-duration", type=float, default=60.0, metavar="SECONDS")
    envoy.add_argument(
        "--termination-drain-duration",
        type=float,
        default=float(os.environ.get("TERMINATION_DRAIN_DURATION_SECONDS") or 5),
        metavar="SECONDS",
        help="drain time on SIGTERM (TERMINATION_DRAIN_DURATION_SECONDS, default 5)",
    )


def _read_root(path: str, flag: str = "--ca-root") -> str:
    """The PEM text of a root file, checked to hold a certificate (else a one-line error)."""
    try:
        root_pem = pathlib.Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CommandError(f"cannot read {flag} {path}: {reason}") from exc
    try:
        ssl.create_default_context(cadata=root_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise CommandError(f"{flag} {path} holds no PEM certificate ({exc})") from None
    return root_pem


def _citadel_agent(args: argparse.Namespace) -> Any:
    from istio_sdk.citadel.agent import AgentOptions, CitadelAgent
    from istio_sdk.citadel.keys import KeyAlgorithm

    host, port = parse_address("--ca-address", args.ca_address)
    root_pem = _read_root(args.ca_root)
    return CitadelAgent(
        AgentOptions(
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
    )


def _xds_tls(args: argparse.Namespace) -> Any:
    """The TLS context factory to Pilot (``None``: plaintext)."""
    if args.xds_root_cert is None:
        return None
    from istio_sdk.proxy.agent.xds_tls import workload_tls

    return workload_tls(_read_root(args.xds_root_cert, "--xds-root-cert"), args.output_dir)


def _dns_options(args: argparse.Namespace) -> Any:
    """The DNS proxy's options from the flags and pilot-agent's environment (``None``: off)."""
    from istio_sdk.proxy.agent.agent_dns import DnsOptions

    overrides: dict[str, Any] = {}
    if args.dns_port is not None:
        if not 0 <= args.dns_port < 65536:
            raise CommandError(f"--dns-port {args.dns_port}: must be 0-65535")
        overrides["port"] = args.dns_port
    if args.dns_upstream:
        overrides["upstream"] = tuple(args.dns_upstream)
    if args.domain:
        overrides["domain"] = args.domain
    environ = dict(os.environ)
    if args.dns_port is not None:
        environ["ISTIO_META_DNS_CAPTURE"] = "true"  # the flag turns it on
    options = DnsOptions.from_env(environ, **overrides)
    if options is not None and args.pilot_address is None:
        raise CommandError("the DNS proxy needs --pilot-address (its names come from Pilot)")
    return options


def _pilot_agent(args: argparse.Namespace) -> Any:
    from istio_sdk.proxy.agent import AgentConfigError
    from istio_sdk.proxy.agent.agent import PilotAgent, PilotAgentOptions
    from istio_sdk.proxy.agent.envoy import EnvoyOptions

    if args.envoy_binary is not None and args.bootstrap is None:
        raise CommandError("--envoy-binary needs --bootstrap (istio-sdk bootstrap -o FILE)")
    pilot = parse_address("--pilot-address", args.pilot_address) if args.pilot_address else None
    try:
        envoy = None
        if args.envoy_binary is not None:
            envoy = EnvoyOptions(
                binary_path=args.envoy_binary,
                config_dir=args.config_dir,
                admin_port=args.admin_port,
                drain_duration=args.drain_duration,
                parent_shutdown_duration=args.parent_shutdown_duration,
                termination_drain_duration=args.termination_drain_duration,
            )
        options = PilotAgentOptions(
            host=args.status_host,
            status_port=args.status_port if args.status_port is not None else 15020,
            readiness_port=args.readiness_port,
            app_probers=os.environ.get("ISTIO_KUBE_APP_PROBERS"),
            prometheus_annotations=os.environ.get("ISTIO_PROMETHEUS_ANNOTATIONS"),
            probe_host=os.environ.get("INSTANCE_IP") or "127.0.0.1",
            pilot_address=pilot,
            xds_socket=args.xds_socket,
            xds_port=args.xds_port,
            xds_metadata={"ClusterID": args.cluster_id},
            envoy=envoy,
            bootstrap=args.bootstrap,
            dns=_dns_options(args),
        )
        return PilotAgent(options, xds_ssl_context=_xds_tls(args))
    except AgentConfigError as exc:
        raise CommandError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    from istio_sdk.citadel.errors import CitadelError
    from istio_sdk.proxy.agent import AgentConfigError

    if args.once and (args.ca_root is None or args.output_dir is None):
        raise CommandError("--once needs --ca-root and --output-dir to write the certificate to")
    agent = _citadel_agent(args) if args.ca_root is not None else None
    wants_pilot_agent = any(
        value is not None
        for value in (args.status_port, args.pilot_address, args.envoy_binary, args.dns_port)
    )
    if agent is None and not wants_pilot_agent:
        raise CommandError(
            "nothing to run: give --ca-root, --status-port, --pilot-address, --dns-port"
            " or --envoy-binary"
        )
    pilot_agent = _pilot_agent(args) if wants_pilot_agent and not args.once else None

    async def once() -> int:
        assert agent is not None
        try:
            bundle = await agent.refresh_once()
        finally:
            await agent.stop()
        print(f"{bundle.identity} valid until {bundle.not_after.isoformat()} -> {args.output_dir}")
        return 0

    async def forever() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            stop.set()
            if pilot_agent is not None:
                pilot_agent.request_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal)
        async with contextlib.AsyncExitStack() as stack:
            if agent is not None:
                await stack.enter_async_context(agent)
                host, port = parse_address("--ca-address", args.ca_address)
                print(f"istio-sdk agent: requesting certificates from {host}:{port}", flush=True)
            if pilot_agent is None:
                await stop.wait()
                return 0
            try:
                await pilot_agent.start()
            except (OSError, AgentConfigError) as exc:
                raise CommandError(f"cannot start: {exc}", exit_code=1) from exc
            print(f"istio-sdk agent: {_describe(pilot_agent)}", flush=True)
            return int(await pilot_agent.run())
        return 0

    try:
        return asyncio.run(once() if args.once else forever())
    except CitadelError as exc:
        raise CommandError(str(exc), exit_code=1) from exc


def _describe(pilot_agent: Any) -> str:
    parts = [f"status port {pilot_agent.status.port}"]
    if pilot_agent.readiness_server is not None:
        parts.append(f"readiness port {pilot_agent.readiness_server.port}")
    proxy = pilot_agent.xds_proxy
    if proxy is not None:
        where = proxy.path or f"127.0.0.1:{proxy.port}"
        parts.append(f"xDS proxy on {where} -> {proxy.pilot_host}:{proxy.pilot_port}")
    if pilot_agent.dns is not None:
        host, port = pilot_agent.dns.address
        parts.append(f"DNS proxy on {host}:{port}")
    if pilot_agent.envoy is not None:
        parts.append(f"envoy epochs {pilot_agent.envoy.active_epochs}")
    return ", ".join(parts)


COMMAND = Command(
    name="agent",
    help="run pilot-agent: Citadel agent and SDS, status port, xDS proxy, DNS proxy, Envoy",
    run=_run,
    configure=_configure,
    description=__doc__ or "",
)
