"""Consistency of a set of xDS resources: every name one resource points at exists.

Envoy warms a cluster of type EDS until its ClusterLoadAssignment arrives and a listener whose
HTTP connection manager loads routes over RDS until that RouteConfiguration arrives; a name that
never arrives leaves the proxy waiting forever. :func:`check_consistency` finds such dangling
names and returns them as typed :class:`SnapshotProblem` values. A reference is checked only when
the resources include its target type at all (a proxy that never asked for endpoints has none).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping

import attrs
import betterproto2

from istio_sdk.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, TYPE_PREFIX, unpack

__all__ = [
    "ProblemKind",
    "SnapshotProblem",
    "check_consistency",
    "eds_service_names",
    "rds_route_names",
]

HCM_TYPE_URL = (
    TYPE_PREFIX + "envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)


class ProblemKind(enum.Enum):
    """What is dangling."""

    MISSING_ENDPOINTS = "missing-endpoints"  # an EDS cluster's ClusterLoadAssignment
    MISSING_ROUTE = "missing-route"  # a listener's RDS RouteConfiguration


@attrs.frozen
class SnapshotProblem:
    """``referrer`` (a cluster or listener) names ``name``, which the resources lack."""

    kind: ProblemKind
    name: str
    referrer: str

    def __str__(self) -> str:
        if self.kind is ProblemKind.MISSING_ENDPOINTS:
            return f"cluster {self.referrer!r} uses endpoints {self.name!r}, which are missing"
        return (
            f"listener {self.referrer!r} uses route configuration {self.name!r}, which is missing"
        )


def eds_service_names(cluster: betterproto2.Message) -> set[str]:
    """The ClusterLoadAssignment name an EDS cluster loads (empty for other cluster types)."""
    from istio_sdk.api.envoy.config.cluster.v3 import ClusterDiscoveryType

    if getattr(cluster, "type", None) != ClusterDiscoveryType.EDS:
        return set()
    cfg = getattr(cluster, "eds_cluster_config", None)
    service = getattr(cfg, "service_name", "") if cfg is not None else ""
    return {service or str(getattr(cluster, "name", ""))}


def rds_route_names(listener: betterproto2.Message) -> set[str]:
    """Route configuration names a listener's HTTP connection managers load over RDS."""
    anys: list[betterproto2.Message] = []
    api = getattr(listener, "api_listener", None)
    if api is not None and getattr(api, "api_listener", None) is not None:
        anys.append(api.api_listener)
    chains = list(getattr(listener, "filter_chains", []))
    default = getattr(listener, "default_filter_chain", None)
    if default is not None:
        chains.append(default)
    for chain in chains:
        anys.extend(f.typed_config for f in chain.filters if f.typed_config is not None)
    names: set[str] = set()
    for packed in anys:
        if getattr(packed, "type_url", "") != HCM_TYPE_URL:
            continue
        manager = unpack(packed)
        rds = getattr(manager, "rds", None)
        if rds is not None and rds.route_config_name:
            names.add(rds.route_config_name)
    return names


def _dangling(
    referrers: Mapping[str, betterproto2.Message],
    targets: Iterable[str],
    refs: Callable[[betterproto2.Message], set[str]],
    kind: ProblemKind,
) -> list[SnapshotProblem]:
    have = set(targets)
    out = []
    for name in sorted(referrers):
        for ref in sorted(refs(referrers[name])):
            if ref not in have:
                out.append(SnapshotProblem(kind, ref, name))
    return out


def check_consistency(
    resources: Mapping[str, Mapping[str, betterproto2.Message]],
) -> tuple[SnapshotProblem, ...]:
    """Dangling references in ``resources`` (type URL -> name -> message), sorted."""
    problems: list[SnapshotProblem] = []
    if ENDPOINT in resources:
        problems += _dangling(
            resources.get(CLUSTER, {}),
            resources[ENDPOINT],
            eds_service_names,
            ProblemKind.MISSING_ENDPOINTS,
        )
    if ROUTE in resources:
        problems += _dangling(
            resources.get(LISTENER, {}),
            resources[ROUTE],
            rds_route_names,
            ProblemKind.MISSING_ROUTE,
        )
    return tuple(problems)
