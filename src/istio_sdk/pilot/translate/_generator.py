"""The translators packaged as a discovery server's resource generator.

:class:`PushContextGenerator` holds the current :class:`PushContext` and answers
``generate(proxy, type_url, names)`` from it (the ``ResourceGenerator`` protocol of
:class:`istio_sdk.pilot.server.DiscoveryServer`). When config or the registry changes, build a
new snapshot and hand it to :meth:`PushContextGenerator.apply`: it swaps the snapshot in and
returns the server's ``PushRequest`` for exactly what changed (only the affected proxies; EDS
alone, for the changed clusters, when only endpoints moved), or ``None`` when nothing did::

    generator = PushContextGenerator(PushContext.build(configs, registry))
    server = DiscoveryServer(generator)
    ...
    request = generator.apply(PushContext.build(new_configs, registry))
    if request is not None:
        server.push(request)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import betterproto2

from istio_sdk.pilot.changes import ChangeSet, compute_changes
from istio_sdk.pilot.name_table import NAME_TABLE_RESOURCE
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.xds.types import ENDPOINT, NAME_TABLE

if TYPE_CHECKING:
    from istio_sdk.pilot.server import PushRequest

__all__ = ["PushContextGenerator"]


class PushContextGenerator:
    """A resource generator over the current push context (swap it with :meth:`apply`)."""

    def __init__(self, context: PushContext | None = None) -> None:
        self._context = context if context is not None else PushContext.build()

    @property
    def context(self) -> PushContext:
        """The snapshot resources are generated from."""
        return self._context

    def generate(
        self, proxy: ProxyInfo, type_url: str, names: Iterable[str] | None
    ) -> Mapping[str, betterproto2.Message]:
        """The resources of ``type_url`` for ``proxy`` (``names`` None: all it may see)."""
        from istio_sdk.pilot.translate import generate

        return generate(self._context, proxy, type_url, names)

    def update(self, context: PushContext) -> ChangeSet:
        """Swap in ``context`` and return what changed relative to the previous snapshot."""
        previous, self._context = self._context, context
        return compute_changes(previous, context)

    def push_request(self, change: ChangeSet) -> PushRequest:
        """The discovery server's push request for ``change`` (against the current snapshot)."""
        from istio_sdk.pilot.push_request import AffectedBy, PushRequest

        context = self._context
        if change.endpoints_only:
            # A headless service's endpoints are in name tables too: NDS goes with EDS then.
            changed = {ENDPOINT: change.changed_clusters(context)}
            if NAME_TABLE in change.type_urls:
                changed[NAME_TABLE] = frozenset({NAME_TABLE_RESOURCE})
            return PushRequest(
                types=change.type_urls,
                changed=changed,
                proxies=AffectedBy(change, context),
                reason="endpoints changed",
            )
        configs = ", ".join(str(k) for k in sorted(change.configs)[:5])
        return PushRequest(
            types=change.type_urls,
            proxies=AffectedBy(change, context),
            reason=f"config changed: {configs}" if configs else "services changed",
        )

    def apply(self, context: PushContext) -> PushRequest | None:
        """Swap in ``context``; the push request for the change, or None if nothing changed."""
        change = self.update(context)
        if change.empty:
            return None
        return self.push_request(change)
