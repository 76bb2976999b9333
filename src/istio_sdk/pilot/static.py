"""A resource generator over a fixed set of resources, the same for every proxy.

Useful for tests, benchmarks and as a tiny xDS server: :meth:`StaticGenerator.set` and
:meth:`StaticGenerator.remove` change the set and return the :class:`PushRequest` describing the
change, to hand to :meth:`DiscoveryServer.push`. Every proxy shares one scope, so the server
writes one snapshot for all of them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

import betterproto2

from istio_sdk.pilot.push_context import ProxyInfo
from istio_sdk.pilot.push_request import PushRequest
from istio_sdk.xds.types import resource_name, type_url_of

__all__ = ["StaticGenerator"]


class StaticGenerator:
    """A ``ResourceGenerator`` over a fixed set of resources, the same for every proxy."""

    def __init__(self, resources: Iterable[betterproto2.Message] = ()) -> None:
        self._by_type: dict[str, dict[str, betterproto2.Message]] = {}
        self.set(*resources)

    def set(self, *messages: betterproto2.Message) -> PushRequest:
        """Add or replace resources (keyed by type URL and name)."""
        changed: dict[str, set[str]] = {}
        for message in messages:
            url = type_url_of(message)
            name = resource_name(message)
            self._by_type.setdefault(url, {})[name] = message
            changed.setdefault(url, set()).add(name)
        return PushRequest(types=changed, changed=changed, reason="static resources set")

    def remove(self, type_url: str, *names: str) -> PushRequest:
        """Delete resources of ``type_url`` by name (unknown names are ignored)."""
        table = self._by_type.get(type_url, {})
        for name in names:
            table.pop(name, None)
        return PushRequest(
            types={type_url}, changed={type_url: set(names)}, reason="static resources removed"
        )

    def resources(self, type_url: str) -> dict[str, betterproto2.Message]:
        """A copy of the resources of ``type_url``."""
        return dict(self._by_type.get(type_url, {}))

    def scope_key(self, proxy: ProxyInfo) -> Hashable:
        """Every proxy sees the same resources: one scope."""
        return "static"

    def generate(
        self, proxy: ProxyInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, betterproto2.Message]:
        """Every resource (wildcard) or the named ones that exist."""
        table = self._by_type.get(type_url, {})
        if names is None:
            return dict(table)
        return {n: table[n] for n in names if n in table}
