"""Istio's cluster names: ``outbound|PORT|SUBSET|HOST`` and ``inbound|PORT||``.

The one place that spells them: translators name clusters with these functions, and change
computation uses them to name the clusters (and ClusterLoadAssignments) a change touches.
"""

from __future__ import annotations

__all__ = ["inbound_cluster_name", "outbound_cluster_name", "parse_cluster_name"]


def outbound_cluster_name(port: int, subset: str, hostname: str) -> str:
    """Istio's outbound cluster name: ``outbound|PORT|SUBSET|HOST``."""
    return f"outbound|{port}|{subset}|{hostname}"


def inbound_cluster_name(port: int) -> str:
    """Istio's inbound cluster name: ``inbound|PORT||``."""
    return f"inbound|{port}||"


def parse_cluster_name(name: str) -> tuple[str, int, str, str] | None:
    """Split ``direction|PORT|SUBSET|HOST``; None when ``name`` is not in that form."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] not in ("outbound", "inbound"):
        return None
    try:
        port = int(parts[1])
    except ValueError:
        return None
    return parts[0], port, parts[2], parts[3]
