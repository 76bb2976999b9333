"""The live part of ``istio-sdk demo``: the whole mesh over the bundled bookinfo, with traffic.

A :class:`~istio_sdk.Mesh` (Pilot, Citadel, Mixer on free ports) loads the bundled example
folder (STRICT mutual TLS, ISTIO_MUTUAL destination rules with subsets v1..v3). bookinfo's
services run as proxyless grpcio workloads (:mod:`istio_sdk.testing.grpc_workload`) with
certificates Citadel issued; ``productpage`` is the client. The demo then shifts reviews
traffic v1 -> v2 -> v3 by VirtualService, waiting for the mesh to converge and for the first
call that shows each change, while a Mixer denier rule refuses productpage's calls to
details (the Check before the call says no) and an AuthorizationPolicy makes the ratings
server refuse productpage (grpcio enforces the RBAC filter Pilot sends it). A rich table
shows requests per version, denials and certificate serials; a summary follows. Any failure
is a one-line :class:`~istio_sdk.cli._command.CommandError`; every process and server is
stopped on the way out.
"""

from __future__ import annotations

import asyncio
import collections
import pathlib
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from istio_sdk.cli._command import CommandError

if TYPE_CHECKING:
    from istio_sdk.mesh import Mesh
    from istio_sdk.testing.grpc_workload import (
        GrpcCallResult,
        GrpcClient,
        GrpcServer,
        GrpcWorkloads,
    )

NAMESPACE = "bookinfo"
VERSIONS = ("v1", "v2", "v3")

# Security for the gRPC services: the bundled reviews-readers policy speaks HTTP (GET
# /reviews/*); here it allows productpage's gRPC calls. ratings refuses productpage (RBAC in
# the ratings server's listener, enforced by grpcio: PERMISSION_DENIED).
_AUTHORIZATION = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-readers, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/bookinfo/sa/bookinfo-productpage]}}]
    to: [{operation: {paths: [/istio_sdk.testing.Echo/*]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: demo-deny-ratings, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules:
  - from: [{source: {principals: [cluster.local/ns/bookinfo/sa/bookinfo-productpage]}}]
"""

# Mixer 1.3 policy: productpage may not call details (a denier rule, PERMISSION_DENIED).
_MIXER_DENIAL = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: demo-deny-details, namespace: istio-system}
spec:
  compiledAdapter: denier
  params: {status: {code: 7, message: details is closed to productpage}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: demo-deny-details, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: demo-deny-details, namespace: istio-system}
spec:
  match: destination.service.name == "details" && source.name == "productpage"
  actions: [{handler: demo-deny-details, instances: [demo-deny-details]}]
"""


def _reviews_route(subset: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: reviews, namespace: {NAMESPACE}}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]
"""


class _Tally:
    """What the table shows: answers per reviews version, denials, certificate serials."""

    def __init__(self) -> None:
        self.answers: collections.Counter[str] = collections.Counter()
        self.denials: collections.Counter[str] = collections.Counter()
        self.serials: dict[str, str] = {}
        self.identities: set[str] = set()
        self.shifts: list[str] = []
        self.phase = "starting"

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"istio-sdk demo: bookinfo on the mesh ({self.phase})")
        table.add_column("what")
        table.add_column("count / value", justify="right")
        for version in VERSIONS:
            table.add_row(f"reviews {version} answers", str(self.answers[version]))
        for reason, count in sorted(self.denials.items()):
            table.add_row(f"denied by {reason}", str(count))
        for workload, serial in sorted(self.serials.items()):
            table.add_row(f"certificate {workload}", serial)
        return table


def _serial(home: pathlib.Path) -> str:
    from cryptography import x509

    from istio_sdk.citadel.files import CERT_CHAIN_FILE

    certificate = x509.load_pem_x509_certificate((home / "certs" / CERT_CHAIN_FILE).read_bytes())
    return f"{certificate.serial_number:x}"


async def _start_workloads(
    workloads: GrpcWorkloads, tally: _Tally
) -> tuple[dict[str, GrpcServer], GrpcClient]:
    servers: dict[str, GrpcServer] = {}
    # one at a time: servers of one service share their folder (files are read at start)
    for name, version in (
        ("details", "v1"),
        ("ratings", "v1"),
        *(("reviews", v) for v in VERSIONS),
    ):
        server = await workloads.server(
            name,
            NAMESPACE,
            service_account=f"bookinfo-{name}",
            labels={"version": version},
            service_port=9080,
        )
        key = name if name != "reviews" else f"reviews-{version}"
        servers[key] = server
        tally.serials[key] = _serial(workloads.directory / f"{NAMESPACE}-{name}")
    client = await workloads.client(
        "productpage", NAMESPACE, service_account="bookinfo-productpage", labels={"version": "v1"}
    )
    tally.serials["productpage"] = _serial(workloads.directory / f"{NAMESPACE}-productpage")
    return servers, client


async def _call(client: GrpcClient, target: str) -> GrpcCallResult:
    """One call; a call caught by a server draining its connections (grpcio sends GOAWAY when
    its listener is pushed again) is tried again, a few times."""
    for _ in range(4):
        result = await client.call(target, timeout=10)
        if result.error != "UNAVAILABLE":
            break
        await asyncio.sleep(0.1)
    return result


async def _traffic(
    mesh: Mesh,
    client: GrpcClient,
    servers: dict[str, GrpcServer],
    tally: _Tally,
    *,
    duration: float,
    refresh: Callable[[], None],
) -> None:
    from istio_sdk import load_resources

    reviews = servers["reviews-v1"].target
    ports = {servers[f"reviews-{v}"].port: v for v in VERSIONS}
    start = time.monotonic()
    async with mesh.mixer_client(fail_open=False) as mixer:
        for index, version in enumerate(VERSIONS):
            tally.phase = f"reviews -> {version}"
            mesh.apply(*load_resources(_reviews_route(version)))
            await mesh.converged()
            wanted = servers[f"reviews-{version}"].port

            def shifted(result: GrpcCallResult, port: int = wanted) -> bool:
                return result.server_port == port

            first = await client.call_until(reviews, shifted)
            tally.shifts.append(version)
            tally.identities.update(first.peer_identities)
            print(f"shift: reviews traffic now goes to {version}")
            phase_end = start + duration * (index + 1) / len(VERSIONS)
            while True:
                answer = await _call(client, reviews)
                if not answer.ok:
                    raise CommandError(f"a call to reviews failed: {answer.error} {answer.details}")
                tally.answers[ports[answer.server_port]] += 1
                check = await mixer.check(
                    {
                        "source.name": "productpage",
                        "destination.service.name": "details",
                        "context.protocol": "grpc",
                    }
                )
                if check.ok:
                    raise CommandError("Mixer let productpage call details (the rule denies it)")
                if not tally.denials["Mixer rule"]:
                    print(f"denied: productpage -> details by Mixer ({check.message})")
                tally.denials["Mixer rule"] += 1
                ratings = await _call(client, servers["ratings"].target)
                if ratings.error != "PERMISSION_DENIED":
                    raise CommandError(
                        f"ratings answered productpage ({ratings.error or 'ok'}); "
                        "its AuthorizationPolicy denies it"
                    )
                if not tally.denials["AuthorizationPolicy"]:
                    print(
                        f"denied: productpage -> ratings by AuthorizationPolicy ({ratings.details})"
                    )
                tally.denials["AuthorizationPolicy"] += 1
                refresh()
                if time.monotonic() >= phase_end:
                    break
                await asyncio.sleep(0.05)


async def run_live(folder: pathlib.Path, duration: float) -> int:
    """Run the live demo for about ``duration`` seconds; 0 on success."""
    try:
        import grpc  # noqa: F401
        import rich  # noqa: F401
    except ImportError as exc:
        raise CommandError(
            f"the live demo needs grpcio and rich ({exc.name} is missing): "
            "pip install 'istio-sdk[demo]'",
            exit_code=1,
        ) from None
    from istio_sdk.mesh import MeshNotConvergedError

    try:
        return await _live(folder, duration)
    except CommandError:
        raise
    except (OSError, RuntimeError, ValueError, MeshNotConvergedError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CommandError(f"the live demo failed: {reason}", exit_code=1) from None


async def _live(folder: pathlib.Path, duration: float) -> int:
    from rich.console import Console
    from rich.live import Live

    from istio_sdk import Mesh, load_resources
    from istio_sdk.testing.grpc_workload import GrpcWorkloads

    tally = _Tally()
    console = Console()
    mesh = Mesh.from_directory(
        folder,
        watch=False,
        components=["pilot", "citadel", "mixer"],
        free_ports=True,
        debounce_after=0.01,
    )
    with tempfile.TemporaryDirectory(prefix="istio-sdk-demo-") as scratch:
        async with mesh:
            mesh.apply(*load_resources(_AUTHORIZATION), *load_resources(_MIXER_DENIAL))
            workloads = GrpcWorkloads(mesh, scratch)
            try:
                servers, client = await _start_workloads(workloads, tally)
                with Live(tally.table(), console=console, auto_refresh=False) as live:

                    def refresh() -> None:
                        live.update(tally.table(), refresh=True)

                    await _traffic(mesh, client, servers, tally, duration=duration, refresh=refresh)
                    tally.phase = "done"
                    refresh()
            finally:
                await workloads.close()
    print()
    print("Summary:")
    print(f"  reviews versions seen, in order: {' -> '.join(tally.shifts)}")
    counts = ", ".join(f"{v} {tally.answers[v]}" for v in VERSIONS)
    print(f"  reviews answers: {counts}")
    for reason, count in sorted(tally.denials.items()):
        print(f"  denied by {reason}: {count}")
    print(f"  mTLS identities seen by reviews: {', '.join(sorted(tally.identities))}")
    print(f"  certificates issued by Citadel: {len(tally.serials)}")
    print("demo: ok")
    return 0
