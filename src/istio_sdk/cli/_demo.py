"""``istio-sdk demo``: load, validate and summarise the bundled example mesh (or a folder),
then run it live (see :mod:`istio_sdk.cli._demo_live`) unless ``--summary-only``.

The summary lists every kind with its count, the hosts VirtualServices route and where to,
the gateways with their ports, the destination rules with their subsets and TLS mode, the
service entries, and the security and telemetry policies. Exit 0 when everything is valid.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import pathlib
import sys
from collections.abc import Iterable, Sequence
from importlib import resources as importlib_resources
from typing import Any

from istio_sdk.cli._command import Command, CommandError


def bundled_examples() -> pathlib.Path:
    """The example mesh shipped inside the package (``istio_sdk/examples``)."""
    path = pathlib.Path(str(importlib_resources.files("istio_sdk") / "examples"))
    if not path.is_dir():
        raise CommandError(f"bundled examples are missing ({path})", exit_code=1)
    return path


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (
            indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _ident(resource: Any) -> str:
    ns = resource.metadata.namespace
    return f"{ns}/{resource.metadata.name}" if ns else resource.metadata.name


def _destination(dest: Any) -> str:
    text = str(dest.host)
    if dest.subset:
        text += f" ({dest.subset})"
    if dest.port is not None and dest.port.number:
        text += f":{dest.port.number}"
    return text


def _virtual_service_lines(items: Iterable[Any]) -> list[str]:
    rows = [("VIRTUALSERVICE", "HOSTS", "GATEWAYS", "ROUTES TO")]
    for vs in items:
        spec = vs.spec
        targets: list[str] = []
        for route in spec.http:
            if route.redirect is not None:
                targets.append(f"redirect {route.redirect.uri}")
            for dest in route.route:
                weight = f" {dest.weight}%" if dest.weight else ""
                targets.append(_destination(dest.destination) + weight)
        seen = list(dict.fromkeys(targets))
        rows.append(
            (
                _ident(vs),
                ", ".join(spec.hosts),
                ", ".join(spec.gateways) or "mesh",
                ", ".join(seen),
            )
        )
    return _table(rows)


def _gateway_lines(items: Iterable[Any]) -> list[str]:
    rows = [("GATEWAY", "SELECTOR", "PORTS", "HOSTS")]
    for gw in items:
        selector = ", ".join(f"{k}={v}" for k, v in sorted(gw.spec.selector.items()))
        ports = []
        hosts: list[str] = []
        for server in gw.spec.servers:
            if server.port is not None:
                ports.append(f"{server.port.number}/{server.port.protocol}")
            hosts.extend(server.hosts)
        rows.append((_ident(gw), selector, " ".join(ports), ", ".join(dict.fromkeys(hosts))))
    return _table(rows)


def _duration(value: datetime.timedelta) -> str:
    """Istio's way of writing a duration: ``5m``, ``1h30m``, ``2.5s``."""
    seconds = value.total_seconds()
    hours, rest = divmod(int(seconds), 3600)
    minutes, whole = divmod(rest, 60)
    fraction = seconds - int(seconds)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if whole or fraction or not (hours or minutes):
        parts.append(f"{whole + fraction:g}s")
    return "".join(parts)


def _load_balancer(policy: Any) -> str:
    lb = policy.load_balancer if policy is not None else None
    if lb is None:
        return "-"
    if lb.consistent_hash is not None:
        return "consistent hash"
    return str(lb.simple.name) if lb.simple is not None else "-"


def _destination_rule_lines(items: Iterable[Any]) -> list[str]:
    rows = [("DESTINATIONRULE", "HOST", "SUBSETS", "LOAD BALANCER", "TLS", "OUTLIER DETECTION")]
    for dr in items:
        policy = dr.spec.traffic_policy
        tls = "-"
        outlier = "-"
        if policy is not None:
            if policy.tls is not None:
                tls = policy.tls.mode.name
            detection = policy.outlier_detection
            if detection is not None and detection.base_ejection_time is not None:
                outlier = f"eject for {_duration(detection.base_ejection_time)}"
            elif detection is not None:
                outlier = "on"
        subsets = ", ".join(s.name for s in dr.spec.subsets) or "-"
        rows.append((_ident(dr), dr.spec.host, subsets, _load_balancer(policy), tls, outlier))
    return _table(rows)


def _service_entry_lines(items: Iterable[Any]) -> list[str]:
    rows = [("SERVICEENTRY", "HOSTS", "LOCATION", "RESOLUTION", "PORTS")]
    for se in items:
        spec = se.spec
        ports = " ".join(f"{p.number}/{p.protocol}" for p in spec.ports)
        rows.append(
            (
                _ident(se),
                ", ".join(spec.hosts),
                spec.location.name,
                spec.resolution.name,
                ports,
            )
        )
    return _table(rows)


def summarize(resources: Sequence[Any]) -> list[str]:
    """Human-readable summary lines of a set of resources (see the module docstring)."""
    by_kind: dict[str, list[Any]] = collections.defaultdict(list)
    versions: dict[str, set[str]] = collections.defaultdict(set)
    for resource in resources:
        # the store's kind: a Gateway API Gateway is not Istio's Gateway
        kind = resource.key[0]
        by_kind[kind].append(resource)
        versions[kind].add(resource.api_version)
    lines = ["Kinds:"]
    rows = [("KIND", "API VERSION", "COUNT")]
    for kind in sorted(by_kind, key=str.lower):
        rows.append((kind, ", ".join(sorted(versions[kind])), str(len(by_kind[kind]))))
    lines += _table(rows)
    namespaces = sorted({r.metadata.namespace for r in resources if r.metadata.namespace})
    lines.append(f"  {len(resources)} resources in namespaces: {', '.join(namespaces)}")
    sections = (
        ("Gateways:", "Gateway", _gateway_lines),
        ("Routing:", "VirtualService", _virtual_service_lines),
        ("Destination rules:", "DestinationRule", _destination_rule_lines),
        ("Service entries:", "ServiceEntry", _service_entry_lines),
    )
    for title, kind, render in sections:
        if by_kind.get(kind):
            lines += ["", title, *render(by_kind[kind])]
    policies = [
        f"  {r.kind} {_ident(r)}"
        for kind in (
            "PeerAuthentication",
            "RequestAuthentication",
            "AuthorizationPolicy",
            "Sidecar",
            "Telemetry",
            "EnvoyFilter",
            "WorkloadEntry",
        )
        for r in by_kind.get(kind, ())
    ]
    if policies:
        lines += ["", "Policies and workloads:", *policies]
    legacy = [r for r in resources if r.kind in ("rule", "handler", "instance")]
    if legacy:
        lines += ["", "Istio 1.3 Mixer config:"]
        lines += [f"  {r.kind} {_ident(r)}" for r in legacy]
    return lines


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--path",
        type=pathlib.Path,
        default=None,
        help="summarise this folder instead of the bundled examples",
    )
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="only load, validate and summarise (no mesh, no traffic)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long the live traffic runs (default 20)",
    )


def _run(args: argparse.Namespace) -> int:
    from istio_sdk.config._io import config_files
    from istio_sdk.config._validate import validate_text

    folder = bundled_examples() if args.path is None else args.path
    if not folder.is_dir():
        raise CommandError(f"{folder}: not a folder")
    files = config_files(folder)
    resources: list[Any] = []
    problems: list[Any] = []
    for path in files:
        loaded, found = validate_text(path.read_text(encoding="utf-8"), str(path))
        resources += loaded
        problems += found
    label = "bundled example mesh" if args.path is None else "folder"
    print(f"istio-sdk demo: {label} {folder}")
    errors = sum(1 for problem in problems if problem.is_error)
    verdict = "all valid" if not errors else f"{errors} problem(s)"
    if len(problems) > errors:  # Istio's warnings never make a resource invalid
        verdict += f", {len(problems) - errors} warning(s)"
    print(f"Loaded {len(resources)} resources from {len(files)} files; validation: {verdict}")
    for problem in problems:
        print(f"  {'problem' if problem.is_error else 'warning'}: {problem}")
    if resources:
        print()
        print("\n".join(summarize(resources)))
    if errors:
        return 1
    if args.summary_only:
        return 0
    if not 0 < args.duration <= 3600:
        raise CommandError("--duration must be between 0 and 3600 seconds")
    import asyncio

    from istio_sdk.cli._demo_live import run_live

    print()
    sys.stdout.flush()
    return asyncio.run(run_live(folder, args.duration))


COMMAND = Command(
    name="demo",
    help="the bundled bookinfo mesh, summarised, then live with gRPC traffic",
    description=(
        "Load, validate and summarise the example mesh bundled with istio-sdk, then run it: "
        "Pilot, Citadel and Mixer with bookinfo as proxyless gRPC workloads over mTLS, "
        "reviews traffic shifted v1 -> v2 -> v3, calls denied by policy."
    ),
    run=_run,
    configure=_configure,
)
