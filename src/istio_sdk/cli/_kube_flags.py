"""The Kubernetes flags of ``istio-sdk serve``: config from an API server, status written back.

``--kubeconfig PATH`` (or ``--in-cluster``: the Pod's service account) makes the mesh follow
the API server's Istio and Kubernetes objects (:class:`~istio_sdk.config.KubernetesSource`),
beside ``--config`` or alone; ``--watch-namespace`` and ``--label-selector`` narrow what it
reads. ``--write-status`` elects one writer among the replicas through the Lease
``istio-sdk-leader`` in ``--lease-namespace`` and writes Istio's status from it
(:class:`~istio_sdk.config.StatusWriter`).
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import TYPE_CHECKING

from istio_sdk.cli._command import CommandError

if TYPE_CHECKING:
    from istio_sdk.mesh import Mesh

LEASE_NAME = "istio-sdk-leader"


def add_kube_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--kubeconfig``, ``--in-cluster``, ``--watch-namespace``, ``--label-selector``,
    ``--write-status`` and ``--lease-namespace`` to ``parser``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--kubeconfig", metavar="PATH", help="also read config from this cluster's API server"
    )
    group.add_argument(
        "--in-cluster",
        action="store_true",
        help="read config from the API server with the Pod's service account credentials",
    )
    parser.add_argument(
        "--watch-namespace", metavar="NS", help="only read objects of this namespace"
    )
    parser.add_argument(
        "--label-selector", metavar="SELECTOR", help="only read objects matching this selector"
    )
    parser.add_argument(
        "--write-status",
        action="store_true",
        help="write Istio's status (observedGeneration, validationMessages) from the replica "
        f"holding the Lease {LEASE_NAME}",
    )
    parser.add_argument(
        "--lease-namespace",
        default="istio-system",
        metavar="NS",
        help="namespace of the leader election Lease (default istio-system)",
    )


def wants_kubernetes(args: argparse.Namespace) -> bool:
    return bool(args.kubeconfig or args.in_cluster)


def add_kubernetes(mesh: Mesh, args: argparse.Namespace) -> None:
    """Attach the API server source (and the status writer) the flags ask for to ``mesh``."""
    from istio_sdk.config import KubeConfigError, KubernetesSource, LeaderElector, StatusWriter

    try:
        source = KubernetesSource(
            mesh.store,
            kubeconfig=args.kubeconfig,
            in_cluster=args.in_cluster,
            namespace=args.watch_namespace,
            label_selector=args.label_selector,
        )
    except KubeConfigError as exc:
        raise CommandError(" ".join(str(exc).split())) from exc
    status = elector = None
    if args.write_status:
        from lightkube import AsyncClient

        client = AsyncClient(config=source.config, trust_env=False)  # type: ignore[arg-type]
        elector = LeaderElector(
            client,
            name=LEASE_NAME,
            namespace=args.lease_namespace,
            identity=f"{socket.gethostname()}-{os.getpid()}",
        )
        status = StatusWriter(source, elector=elector)
    mesh.add_kubernetes(source, status=status, elector=elector)
