"""``istio-sdk iptables``: istio-iptables, with its flags, defaults and environment variables.

``--dry-run`` prints the ``iptables-restore`` input (IPv4, then IPv6 when enabled); otherwise the
rules are applied with ``iptables-restore``/``ip6tables-restore``, and ``--cleanup`` removes
them. Bad flags and values exit 2 with one line; a failure to apply exits 1 and leaves no rules.
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Literal

from istio_sdk.cli._command import Command, CommandError


def _configure(parser: argparse.ArgumentParser) -> None:
    from istio_sdk.proxy.iptables._options import OPTIONS

    for option in OPTIONS:
        names = [f"--{option.name}"] + ([f"-{option.short}"] if option.short else [])
        env = f" (env {', '.join(option.env)})" if option.env else ""
        if option.boolean:
            extra = ["--cleanup"] if option.name == "cleanup-only" else []
            parser.add_argument(
                *names,
                *extra,
                dest=option.name,
                nargs="?",
                const="true",
                default=None,
                metavar="BOOL",
                help=option.help + env,
            )
        else:
            parser.add_argument(
                *names, dest=option.name, default=None, metavar="VALUE", help=option.help + env
            )
    # Istio's logging flags, which the sidecar injector passes to istio-init: accepted, unused.
    parser.add_argument("--log_output_level", metavar="LEVELS", help="accepted; not used")
    parser.add_argument("--log_as_json", action="store_true", help="accepted; not used")
    parser.add_argument(
        "--ipv6",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write IPv6 rules or not, instead of deciding from the local addresses",
    )
    parser.add_argument(
        "--resolv-conf",
        type=pathlib.Path,
        default=pathlib.Path("/etc/resolv.conf"),
        metavar="FILE",
        help="where --redirect-dns finds the DNS servers (default /etc/resolv.conf)",
    )


def _run(args: argparse.Namespace) -> int:
    from istio_sdk.proxy.iptables import IptablesConfigError, IptablesError, build_rules
    from istio_sdk.proxy.iptables._apply import apply_rules, cleanup_rules
    from istio_sdk.proxy.iptables._host import enter_network_namespace
    from istio_sdk.proxy.iptables._options import OPTIONS, config_from_options

    values = {option.name: getattr(args, option.name) for option in OPTIONS}
    try:
        namespace = values["network-namespace"] or os.environ.get("NETWORK_NAMESPACE", "")
        if namespace:
            enter_network_namespace(namespace)  # before the local addresses are read
        config, settings = config_from_options(values, ipv6=args.ipv6, resolv_conf=args.resolv_conf)
    except IptablesConfigError as exc:
        raise CommandError(str(exc)) from None
    if settings.skip_rule_apply:
        return 0
    rules = build_rules(config)
    if settings.dry_run:
        versions: list[tuple[Literal[4, 6], str]] = [(4, "iptables-restore")]
        if config.enable_ipv6:
            versions.append((6, "ip6tables-restore"))
        for version, tool in versions:
            text = rules.restore(version)
            if settings.cleanup_only:
                text = rules.cleanup_restore(version)
            print(f"# {tool} --noflush")
            print(text, end="")
        return 0
    try:
        if settings.cleanup_only:
            report = cleanup_rules(config, iptables_binary=settings.iptables_binary)
        else:
            report = apply_rules(
                config,
                reconcile=settings.reconcile,
                force_apply=settings.force_apply,
                iptables_binary=settings.iptables_binary,
            )
    except IptablesError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    for line in report:
        print(line)
    return 0


COMMAND = Command(
    name="iptables",
    help="istio-iptables: capture a Pod's traffic for its sidecar",
    description=__doc__.split("\n\n", 1)[1] if __doc__ else "",
    configure=_configure,
    run=_run,
)
