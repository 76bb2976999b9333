"""``GalleyClient``: an MCP sink that mirrors Galley's collections into a ConfigStore.

The client dials a ``ResourceSource`` (Pilot 1.3's ``configSources[].address``), or with
:meth:`GalleyClient.listen` serves ``ResourceSink`` for a source that dials out. Either way each
stream is a thin loop around :class:`istio_sdk.xds.sink.SinkSession`, the protocol core that
says what to ask for and what a push means. Every push is decoded and validated off the event
loop (:func:`decode_push`): a body that does not decode, is not the collection's type, has a
malformed name or fails :func:`istio_sdk.validate` makes the whole push a NACK whose
``error_detail`` names the resource and the reason, and the store keeps the last good version
(Pilot 1.3 dropped bad objects and ACKed; keeping the last good state is this project's
choice). A good push is applied to the store (new and changed resources, removals) and ACKed.
The client reconnects with backoff whenever a stream ends and, on a new stream, asks again for
everything; what it holds stays in the store meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
import betterproto2
from grpclib.const import Cardinality, Handler
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Server, Stream

from istio_sdk._backoff import backoff_delay, check_backoff
from istio_sdk._grpc import (
    EncodedMessage,
    GrpcSettings,
    create_channel,
    create_server,
    recv_request_message,
)
from istio_sdk._net import bound_port
from istio_sdk.api.istio.mcp.v1alpha1 import RequestResources, Resources
from istio_sdk.config import ConfigStore, NotFoundError, Resource, kind_for, message_class
from istio_sdk.config import validate as validate_resources
from istio_sdk.galley.mcp.collections import PILOT_COLLECTIONS, Collection, collection
from istio_sdk.galley.mcp.source import SINK_METHOD, SOURCE_METHOD, peer_address
from istio_sdk.protojson import message_from_json, message_to_json
from istio_sdk.xds import type_url_of, unpack_bytes
from istio_sdk.xds._logsafe import WarningBudget, peer_text
from istio_sdk.xds.sink import SinkSession, SinkUpdate

__all__ = ["DecodedPush", "GalleyClient", "SinkStats", "decode_push"]

log = logging.getLogger("istio_sdk.galley.mcp")

MAX_REASON = 1000  # characters of error_detail: enough to name the resource and the problem


@attrs.frozen
class DecodedPush:
    """A ``Resources`` push read off the event loop.

    ``resources`` pairs each name with its version and the config resource it decodes to
    (``None`` for a collection without a config kind, and for a resource the sink already
    holds at that version); ``error`` says why the push must be NACKed (the first problem
    found), or is empty.
    """

    collection: str
    nonce: str
    version: str
    incremental: bool
    resources: tuple[tuple[str, str, Resource | None], ...]
    removed: tuple[str, ...]
    error: str = ""


class _BadResource(ValueError):
    pass


def _body(coll: Collection, type_url: str, value: bytes) -> betterproto2.Message:
    try:
        expected = type_url_of(message_class(coll.body_type))
    except KeyError:
        raise _BadResource(f"{coll.body_type} bodies cannot be decoded here") from None
    if type_url != expected:
        raise _BadResource(f"body is {peer_text(type_url)!r}, expected {expected!r}")
    try:
        return unpack_bytes(type_url, value)
    except Exception as exc:
        raise _BadResource(f"body does not decode as {coll.body_type}: {exc}") from None


def _to_resource(coll: Collection, message: Any) -> tuple[str, str, Resource | None]:
    meta = message.metadata
    name = meta.name if meta is not None else ""
    version = meta.version if meta is not None else ""
    if not name:
        raise _BadResource("resource without metadata.name")
    body = message.body
    if body is None:
        raise _BadResource(f"resource {peer_text(name)!r} has no body")
    try:
        spec = _body(coll, body.type_url, body.value)
    except _BadResource as exc:
        raise _BadResource(f"resource {peer_text(name)!r}: {exc}") from None
    if coll.kind is None:
        return name, version, None
    info = kind_for(coll.kind)
    if coll.untyped:
        try:
            spec = message_from_json(info.spec_class(), message_to_json(spec), path="spec")
        except Exception as exc:
            raise _BadResource(f"resource {peer_text(name)!r}: {exc}") from None
    namespace, _, short = name.rpartition("/")
    if info.namespaced != bool(namespace) or "/" in namespace:
        scope = "namespace/name" if info.namespaced else "a name without a namespace"
        raise _BadResource(f"resource {peer_text(name)!r}: a {info.kind} is named as {scope}")
    resource = Resource.new(
        spec,
        name=short,
        namespace=namespace,
        kind=info.kind,
        labels=dict(meta.labels),
        annotations=dict(meta.annotations),
    )
    if meta.create_time is not None:
        created = meta.create_time.isoformat().replace("+00:00", "Z")
        resource = attrs.evolve(
            resource, metadata=attrs.evolve(resource.metadata, creation_timestamp=created)
        )
    problems = validate_resources(resource)
    if problems:
        first = problems[0]
        where = f"{first.path}: " if first.path else ""
        raise _BadResource(f"resource {peer_text(name)!r}: {where}{peer_text(first.message, 300)}")
    return name, version, resource


def decode_push(
    data: bytes,
    wanted: Iterable[str] = (),
    held: Callable[[str], Mapping[str, str]] = lambda _collection: {},
) -> DecodedPush:
    """Read a serialized ``Resources``; bodies of collections not in ``wanted`` are skipped,
    and so are resources at the version ``held(collection)`` says the sink already has (a
    full-state push of 1,000 resources with one change decodes and validates one).

    Raises ``ValueError`` when the envelope itself does not decode.
    """
    try:
        envelope = Resources.parse(data)
    except Exception as exc:
        raise ValueError(f"Resources does not decode: {exc}") from None
    name = envelope.collection
    decoded: list[tuple[str, str, Resource | None]] = []
    error = ""
    if name in set(wanted):
        coll = collection(name)
        have = held(name)
        try:
            for r in envelope.resources:
                meta = r.metadata
                if meta is not None and meta.name and have.get(meta.name) == meta.version:
                    decoded.append((meta.name, meta.version, None))
                else:
                    decoded.append(_to_resource(coll, r))
        except _BadResource as exc:
            error = str(exc)[:MAX_REASON]
    else:
        decoded = [
            (r.metadata.name if r.metadata else "", r.metadata.version if r.metadata else "", None)
            for r in envelope.resources
        ]
    return DecodedPush(
        name,
        envelope.nonce,
        envelope.system_version_info,
        envelope.incremental,
        tuple(decoded),
        tuple(envelope.removed_resources),
        error,
    )


@attrs.frozen
class SinkStats:
    """Counters of a :class:`GalleyClient` since it started."""

    connects: int
    pushes: int
    acks: int
    nacks: int
    last_nack: str


class _SinkService:
    def __init__(self, client: GalleyClient) -> None:
        self._client = client

    def __mapping__(self) -> dict[str, Handler]:
        return {
            SINK_METHOD: Handler(
                self._establish, Cardinality.STREAM_STREAM, EncodedMessage, RequestResources
            )
        }

    async def _establish(self, stream: Stream[Any, Any]) -> None:
        async def recv() -> bytes | None:
            message = await recv_request_message(stream)
            return None if message is None else bytes(message.data)

        await self._client._run_stream(recv, stream.send_message, peer_address(stream))


class GalleyClient:
    """Mirror MCP collections (default: Pilot 1.3's 16) into ``store``.

    ``address`` is ``(host, port)`` of a ``ResourceSource`` to dial (``None``: only
    :meth:`listen`). ``incremental`` names collections to ask incremental pushes for.
    Reconnects wait ``backoff_initial`` doubling up to ``backoff_max`` seconds (with jitter).
    """

    def __init__(
        self,
        store: ConfigStore,
        address: tuple[str, int] | None = None,
        *,
        collections: Iterable[str] = PILOT_COLLECTIONS,
        incremental: Iterable[str] = (),
        node_id: str = "",
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        grpc_settings: GrpcSettings | None = None,
    ) -> None:
        check_backoff(backoff_initial, backoff_max, 0.5)
        self.store = store
        self.address = address
        wanted = list(collections)
        for name in wanted:
            collection(name)  # KeyError for a name Galley 1.3 never served
        self.session = SinkSession(wanted, node_id=node_id, incremental=incremental)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._grpc_settings = grpc_settings
        self._wanted = frozenset(wanted)
        self._synced = asyncio.Event()
        self._counts: Counter[str] = Counter()
        self._last_nack = ""
        self._task: asyncio.Task[None] | None = None
        self._server: Server | None = None
        self._warnings = WarningBudget(log)
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start dialing :attr:`address` (returns at once; see :meth:`wait_synced`)."""
        if self.address is None:
            raise ValueError("GalleyClient has no address to dial; use listen()")
        if self._task is not None:
            raise RuntimeError("GalleyClient is already started")
        self._task = asyncio.get_running_loop().create_task(self._dial_loop(*self.address))

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve ``ResourceSink`` on ``host:port`` for sources that dial out; the port."""
        server = create_server([_SinkService(self)], self._grpc_settings)
        await server.start(host, port)
        self._server = server
        self.port = bound_port(server)
        return self.port

    async def stop(self) -> None:
        """Close the stream and stop reconnecting; the store keeps what it holds."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> GalleyClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_synced(self) -> None:
        """Wait until every collection arrived (and was ACKed) once (bound it with
        ``asyncio.timeout``)."""
        await self._synced.wait()

    def stats(self) -> SinkStats:
        c = self._counts
        return SinkStats(c["connects"], c["pushes"], c["acks"], c["nacks"], self._last_nack)

    # -- streams ---------------------------------------------------------------------------
    async def _dial_loop(self, host: str, port: int) -> None:
        attempt = 0
        while True:
            before = self._counts["pushes"]
            channel = create_channel(host, port, settings=self._grpc_settings)
            try:
                async with channel.request(
                    SOURCE_METHOD, Cardinality.STREAM_STREAM, RequestResources, EncodedMessage
                ) as stream:

                    async def recv() -> bytes | None:
                        message = await stream.recv_message()
                        return None if message is None else bytes(message.data)

                    await self._run_stream(recv, stream.send_message, f"{host}:{port}")
            except (GRPCError, StreamTerminatedError, OSError, ValueError) as exc:
                self._warnings.warn(
                    "MCP source", "MCP source %s:%d: %s", host, port, peer_text(exc, 500)
                )
            finally:
                channel.close()
            attempt = 0 if self._counts["pushes"] > before else attempt + 1
            await asyncio.sleep(backoff_delay(attempt, self.backoff_initial, self.backoff_max))

    async def _run_stream(
        self,
        recv: Callable[[], Awaitable[bytes | None]],
        send: Callable[[RequestResources], Awaitable[None]],
        peer: str,
    ) -> None:
        self._counts["connects"] += 1
        for request in self.session.initial_requests():
            await send(request)
        while (data := await recv()) is not None:
            push = await asyncio.to_thread(decode_push, data, self._wanted, self.session.held)
            self._counts["pushes"] += 1
            update = self.session.receive(
                collection=push.collection,
                nonce=push.nonce,
                version=push.version,
                incremental=push.incremental,
                resources=[(n, v) for n, v, _ in push.resources],
                removed=push.removed,
            )
            if update.rejection is not None:
                if push.collection != "$triggerCollection":
                    self._nacked(peer, push.collection, update.rejection.error_detail)
                await send(update.rejection)
                continue
            error = push.error or self._apply(update, push)
            if error:
                request = self.session.nack(update, error)
                self._nacked(peer, push.collection, request.error_detail)
                await send(request)
                continue
            self._counts["acks"] += 1
            await send(self.session.ack(update))
            if not self._synced.is_set() and self.session.synced():
                self._synced.set()

    def _nacked(self, peer: str, name: str, detail: Any) -> None:
        self._counts["nacks"] += 1
        self._last_nack = str(getattr(detail, "message", ""))
        self._warnings.warn(
            "MCP NACK",
            "MCP sink NACKs %s from %s: %s",
            peer_text(name),
            peer_text(peer),
            peer_text(self._last_nack, 500),
        )

    def _apply(self, update: SinkUpdate, push: DecodedPush) -> str:
        """Bring the store to ``update``'s state; an error message, or ''."""
        kind = collection(update.collection).kind
        if kind is None:
            return ""
        bodies: Mapping[str, Resource | None] = {n: r for n, _, r in push.resources}
        try:
            for name in update.removed:
                namespace, _, short = name.rpartition("/")
                with contextlib.suppress(NotFoundError):
                    self.store.delete(kind_for(kind).store_kind, short, namespace)
            for name in update.changed:
                resource = bodies.get(name)
                if resource is not None:
                    self.store.apply(resource)
        except (ValueError, KeyError) as exc:
            return f"cannot store {update.collection}: {exc}"[:MAX_REASON]
        return ""
