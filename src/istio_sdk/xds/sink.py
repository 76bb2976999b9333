"""The sink side of MCP (``istio.mcp.v1alpha1``), sans-I/O: what to ask for, what a push means.

:class:`SinkSession` is one sink's protocol state across streams: the collections it wants, the
ones it wants incrementally, and per collection the resource versions it holds (what it last
ACKed). On a new stream it asks for every collection with an empty nonce, announcing what it
holds where it wants incremental pushes. :meth:`SinkSession.receive` reads a ``Resources``
envelope (names and versions; the bodies stay with the caller) and says what the collection
looks like once it is applied, or that it must be NACKed: a collection the sink did not ask
for is ``UNIMPLEMENTED`` (so is the dial-out trigger), an incremental push the sink did not ask
for or a name sent twice is ``INVALID_ARGUMENT``. :meth:`SinkSession.ack` commits the new state;
:meth:`SinkSession.nack` keeps the old one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

import attrs

from istio_sdk.api.google.rpc import Status
from istio_sdk.api.istio.mcp.v1alpha1 import RequestResources, SinkNode
from istio_sdk.xds._logsafe import peer_text

__all__ = ["INVALID_ARGUMENT", "UNIMPLEMENTED", "SinkSession", "SinkUpdate"]

INVALID_ARGUMENT = 3  # google.rpc.Code
UNIMPLEMENTED = 12


@attrs.frozen
class SinkUpdate:
    """One received push: what it carried and what the collection is once it is applied.

    ``state`` maps every resource name the sink holds after applying it to its version;
    ``changed`` are the names whose body must be (re)applied, ``removed`` the names to drop.
    ``rejection`` is set when the protocol itself refuses the push: send it, apply nothing.
    """

    collection: str
    nonce: str
    version: str
    incremental: bool
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    state: Mapping[str, str]
    rejection: RequestResources | None = None


class SinkSession:
    """An MCP sink's state: subscriptions and held versions, kept across reconnects.

    ``incremental`` names the collections for which the sink asks for incremental pushes.
    """

    def __init__(
        self,
        collections: Iterable[str],
        *,
        node_id: str = "",
        annotations: Mapping[str, str] | None = None,
        incremental: Iterable[str] = (),
    ) -> None:
        self.collections: tuple[str, ...] = tuple(dict.fromkeys(collections))
        wanted = set(self.collections)
        self.incremental = frozenset(c for c in incremental if c in wanted)
        self._node = SinkNode(id=node_id, annotations=dict(annotations or {}))
        self._held: dict[str, dict[str, str]] = {}

    def held(self, collection: str) -> Mapping[str, str]:
        """Name -> version of what the sink holds of ``collection`` (its last ACKed state)."""
        return MappingProxyType(self._held.get(collection, {}))

    def synced(self) -> bool:
        """Whether every collection was received (and ACKed) at least once."""
        return all(c in self._held for c in self.collections)

    def initial_requests(self) -> list[RequestResources]:
        """The requests opening a stream: one per collection, with an empty nonce."""
        requests = []
        for collection in self.collections:
            incremental = collection in self.incremental
            requests.append(
                RequestResources(
                    sink_node=self._node,
                    collection=collection,
                    incremental=incremental,
                    initial_resource_versions=dict(self._held.get(collection, {}))
                    if incremental
                    else {},
                )
            )
        return requests

    def receive(
        self,
        *,
        collection: str,
        nonce: str,
        version: str,
        incremental: bool,
        resources: Sequence[tuple[str, str]],
        removed: Sequence[str] = (),
    ) -> SinkUpdate:
        """What a ``Resources`` push means; ``resources`` are its ``(name, version)`` pairs."""

        def refuse(code: int, message: str) -> SinkUpdate:
            return SinkUpdate(
                collection,
                nonce,
                version,
                incremental,
                (),
                (),
                self.held(collection),
                self.nack_request(collection, nonce, message, code=code),
            )

        if collection not in self.collections:
            return refuse(UNIMPLEMENTED, f'unsupported collection "{peer_text(collection)}"')
        if incremental and collection not in self.incremental:
            return refuse(INVALID_ARGUMENT, "incremental push for a full-state collection")
        seen: set[str] = set()
        for name, _ in resources:
            if name in seen:
                return refuse(INVALID_ARGUMENT, f'resource "{peer_text(name)}" sent twice')
            seen.add(name)
        held = self._held.get(collection, {})
        if incremental:
            dropped = set(removed)
            state = {n: v for n, v in held.items() if n not in dropped}
            state.update(resources)
            gone = tuple(n for n in removed if n in held)
            changed = tuple(n for n, v in resources if held.get(n) != v)
        else:
            state = dict(resources)
            gone = tuple(n for n in held if n not in state)
            changed = tuple(n for n, v in resources if held.get(n) != v)
        return SinkUpdate(
            collection, nonce, version, incremental, changed, gone, MappingProxyType(state)
        )

    def ack(self, update: SinkUpdate) -> RequestResources:
        """Accept ``update``: the collection is now its ``state``; the ACK to send."""
        if update.rejection is not None:
            raise ValueError("a rejected push cannot be ACKed")
        self._held[update.collection] = dict(update.state)
        return RequestResources(
            sink_node=self._node,
            collection=update.collection,
            response_nonce=update.nonce,
            incremental=update.collection in self.incremental,
        )

    def nack(self, update: SinkUpdate, message: str) -> RequestResources:
        """Refuse ``update`` with ``message`` (``INVALID_ARGUMENT``); the held state stays."""
        return self.nack_request(update.collection, update.nonce, message)

    def nack_request(
        self, collection: str, nonce: str, message: str, *, code: int = INVALID_ARGUMENT
    ) -> RequestResources:
        """The NACK of push ``nonce`` of ``collection`` with ``message``."""
        return RequestResources(
            sink_node=self._node,
            collection=collection,
            response_nonce=nonce,
            incremental=collection in self.incremental,
            error_detail=Status(code=code, message=message),
        )
