"""Istio host matching and visibility: wildcard hosts, ``namespace/host`` pairs, ``exportTo``,
and ``namespace/name`` gateway references."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["exported_to", "gateway_ref", "host_matches", "split_namespaced_host"]


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: ``*`` matches all, ``*.x.com`` matches subdomains of x.com."""
    if pattern in ("*", host):
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) or (host.startswith("*.") and host.endswith(pattern[1:]))
    return False


def split_namespaced_host(host: str, own_namespace: str) -> tuple[str, str]:
    """Split a ``namespace/dnsName`` host (Sidecar egress, Gateway server) into its two parts.

    A host without ``/`` applies to every namespace (``*``); the namespace ``.`` stands for
    ``own_namespace``, the namespace of the config that lists the host.
    """
    ns, _, pattern = host.partition("/")
    if not pattern:
        return "*", ns
    if ns == ".":
        return own_namespace, pattern
    return ns, pattern


def exported_to(export_to: Iterable[str], owner_namespace: str, namespace: str) -> bool:
    """Whether config in ``owner_namespace`` with this ``exportTo`` is visible in ``namespace``.

    No ``exportTo`` or ``*`` exports everywhere; ``.`` means the owner's own namespace.
    """
    targets = list(export_to)
    if not targets or "*" in targets:
        return True
    if "." in targets and owner_namespace == namespace:
        return True
    return namespace in targets


def gateway_ref(ref: str, namespace: str) -> str:
    """A VirtualService's gateway reference as ``NAMESPACE/NAME`` (``mesh`` stays ``mesh``; a
    bare name is in ``namespace``, the namespace of the config that lists it)."""
    if ref == "mesh" or "/" in ref:
        return ref
    return f"{namespace}/{ref}"
