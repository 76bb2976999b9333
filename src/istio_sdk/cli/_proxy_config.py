"""``istio-sdk proxy-config KIND --xds ADDR --node ID``: what an xDS server sends a proxy.

Connects to the ADS server as the given node, subscribes the way Envoy does (all listeners and
clusters, then the route configurations the listeners name and the endpoints of EDS clusters),
waits until the answers settle and prints the resources as JSON or YAML, like
``istioctl proxy-config``. When a cluster's endpoints or a listener's route configuration never
arrived, a warning line on stderr names them (see :mod:`istio_sdk.pilot.consistency`).
``KIND`` is ``clusters``, ``listeners``, ``routes``, ``endpoints`` or ``all``. Proxyless gRPC
nodes (``--grpc``) subscribe to listeners by name: pass the targets (``HOST:PORT``) with
``--listener``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from istio_sdk.cli._command import Command, CommandError

KINDS = ("clusters", "listeners", "routes", "endpoints", "all")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="which resources to print")
    parser.add_argument("--xds", required=True, metavar="HOST:PORT", help="the ADS server")
    parser.add_argument(
        "--node",
        required=True,
        metavar="ID",
        help="node id, e.g. sidecar~10.0.0.1~app-0.default~default.svc.cluster.local",
    )
    parser.add_argument(
        "--grpc", action="store_true", help="identify as a proxyless gRPC client (GENERATOR)"
    )
    parser.add_argument(
        "--listener",
        action="append",
        default=[],
        metavar="NAME",
        help="listener to ask for by name (repeatable; gRPC targets HOST:PORT)",
    )
    parser.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="node label"
    )
    parser.add_argument("--delta", action="store_true", help="use delta (incremental) xDS")
    parser.add_argument("-o", "--output", choices=("json", "yaml"), default="json")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="give up after this"
    )


def _node(args: argparse.Namespace) -> Any:
    from istio_sdk.api.envoy.config.core.v3 import Node
    from istio_sdk.api.google.protobuf import Struct
    from istio_sdk.pilot.proxy import parse_node_id

    labels: dict[str, str] = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--label wants KEY=VALUE, got {item!r}")
        labels[key] = value
    parsed = parse_node_id(args.node)
    meta: dict[str, Any] = {"NAMESPACE": parsed.namespace or "default", "LABELS": labels}
    if parsed.ip_addresses:
        meta["INSTANCE_IPS"] = ",".join(parsed.ip_addresses)
    if args.grpc:
        meta["GENERATOR"] = "grpc"
    return Node(id=args.node, metadata=Struct.from_dict(meta), user_agent_name="istio-sdk")


def referenced_routes(listeners: dict[str, Any]) -> set[str]:
    """Route configuration names the listeners' HTTP connection managers load over RDS."""
    from istio_sdk.pilot.consistency import rds_route_names

    return set().union(*(rds_route_names(listener) for listener in listeners.values()))


def eds_clusters(clusters: dict[str, Any]) -> set[str]:
    """ClusterLoadAssignment names of the EDS clusters (``service_name`` or the cluster name)."""
    from istio_sdk.pilot.consistency import eds_service_names

    return set().union(*(eds_service_names(cluster) for cluster in clusters.values()))


def consistency_warning(resources: dict[str, dict[str, Any]]) -> str | None:
    """One line naming every dangling EDS or RDS name in what the server sent, or None."""
    from istio_sdk import xds
    from istio_sdk.pilot.consistency import check_consistency

    by_url = {
        xds.LISTENER: resources.get("listeners", {}),
        xds.CLUSTER: resources.get("clusters", {}),
    }
    if "routes" in resources:
        by_url[xds.ROUTE] = resources["routes"]
    if "endpoints" in resources:
        by_url[xds.ENDPOINT] = resources["endpoints"]
    problems = check_consistency(by_url)
    if not problems:
        return None
    return (
        f"istio-sdk proxy-config: warning: the config is inconsistent ({len(problems)} "
        f"dangling name{'s' if len(problems) != 1 else ''}): " + "; ".join(map(str, problems))
    )


async def fetch(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Connect, subscribe like Envoy, and return type short name -> name -> message."""
    from istio_sdk import xds
    from istio_sdk.cli._address import check_reachable, parse_address
    from istio_sdk.pilot.client import PilotClient, PilotClientError

    host, port = parse_address("--xds", args.xds)
    await check_reachable("--xds", host, port, timeout=args.timeout)
    client = PilotClient(
        (host, port), node=_node(args), mode="delta" if args.delta else "sotw", backoff_max=1.0
    )
    out: dict[str, dict[str, Any]] = {}
    try:
        async with client:
            client.subscribe(xds.LISTENER, args.listener or None)
            if not args.grpc:
                client.subscribe(xds.CLUSTER)
            listeners = await client.wait_for(xds.LISTENER, timeout=args.timeout)
            routes = referenced_routes(listeners)
            if routes:
                client.subscribe(xds.ROUTE, routes)
            clusters: dict[str, Any] = {}
            if args.grpc:
                # Proxyless clients learn cluster names from routes.
                if routes:
                    rc = await client.wait_for(xds.ROUTE, routes, timeout=args.timeout)
                    wanted = _route_clusters(rc)
                    if wanted:
                        client.subscribe(xds.CLUSTER, wanted)
                        clusters = await client.wait_for(xds.CLUSTER, wanted, timeout=args.timeout)
            else:
                clusters = await client.wait_for(xds.CLUSTER, timeout=args.timeout)
            endpoints = eds_clusters(clusters)
            if endpoints:
                client.subscribe(xds.ENDPOINT, endpoints)
                await client.wait_for(xds.ENDPOINT, timeout=args.timeout)
            if routes:
                await client.wait_for(xds.ROUTE, timeout=args.timeout)
            await asyncio.sleep(0.1)  # let responses already in flight land
            out["listeners"] = client.resources(xds.LISTENER)
            out["clusters"] = client.resources(xds.CLUSTER)
            out["routes"] = client.resources(xds.ROUTE)
            out["endpoints"] = client.resources(xds.ENDPOINT)
    except PilotClientError as exc:
        raise CommandError(str(exc), exit_code=1) from exc
    return out


def _route_clusters(routes: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for config in routes.values():
        for vhost in config.virtual_hosts:
            for route in vhost.routes:
                action = route.route
                if action is None:
                    continue
                if action.cluster:
                    names.add(action.cluster)
                if action.weighted_clusters is not None:
                    names.update(c.name for c in action.weighted_clusters.clusters)
    return names


def render(resources: dict[str, dict[str, Any]], kind: str, output: str) -> str:
    """The resources of ``kind`` (or all) as JSON or YAML text, proto3 JSON inside."""
    from istio_sdk.protojson import JsonSerializeError, message_to_json

    def one(name: str, message: Any) -> Any:
        try:
            return message_to_json(message)
        except JsonSerializeError as exc:
            # e.g. an Any of a type istio_sdk.api does not generate: say so, keep going.
            print(f"istio-sdk proxy-config: cannot render {name}: {exc}", file=sys.stderr)
            return {"name": name, "error": str(exc)}

    def listing(short: str) -> list[Any]:
        table = resources.get(short, {})
        return [one(n, table[n]) for n in sorted(table)]

    doc: Any
    if kind == "all":
        doc = {k: listing(k) for k in ("listeners", "routes", "clusters", "endpoints")}
    else:
        doc = listing(kind)
    if output == "yaml":
        import yaml

        return str(yaml.safe_dump(doc, sort_keys=False))
    return json.dumps(doc, indent=2) + "\n"


def _run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    resources = asyncio.run(fetch(args))
    warning = consistency_warning(resources)
    if warning is not None:
        print(warning, file=sys.stderr)
    sys.stdout.write(render(resources, args.kind, args.output))
    return 0


COMMAND = Command(
    name="proxy-config",
    help="print the clusters, listeners, routes or endpoints an xDS server sends a node",
    run=_run,
    configure=_configure,
    description=__doc__ or "",
)
