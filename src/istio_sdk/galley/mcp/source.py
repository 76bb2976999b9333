"""Galley's MCP source: the ``ResourceSource`` service over a ConfigStore, and dial-out to sinks.

:class:`McpSource` keeps an :class:`~istio_sdk.galley.mcp.snapshot.McpSnapshot` of its store
(rebuilt off the event loop after each burst of changes; only changed resources are encoded
again) and serves it to every stream. Each stream is a thin loop around the protocol core,
:class:`istio_sdk.xds.ServerSession` in its ``"mcp"`` flavour, which decides what every request
means and what to push: this module only reads requests, hands them over, and writes the
pre-encoded ``Resources`` it is told to. A request for a collection it does not serve ends the
stream with ``INVALID_ARGUMENT`` (``unsupported collection "x"``), as Galley's did; a malformed
request does too. No stream's failure touches another.

:meth:`McpSource.dial` is Galley's sink mode (``--sinkAddress``): the source dials a
``ResourceSink``, opens the stream with the trigger ``Resources{collection:
"$triggerCollection"}`` (whose NACK it ignores), then serves the sink's requests the same way,
reconnecting with backoff whenever the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import attrs
from grpclib.const import Cardinality, Handler, Status
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
from istio_sdk.api.istio.mcp.v1alpha1 import RequestResources
from istio_sdk.config import ConfigStore
from istio_sdk.galley.mcp.collections import DEFAULT_COLLECTIONS, collection
from istio_sdk.galley.mcp.snapshot import McpResource, McpSnapshot, build_snapshot
from istio_sdk.xds import RequestKind, ServerSession, UnknownCollectionError, XdsProtocolError
from istio_sdk.xds._logsafe import WarningBudget, peer_text
from istio_sdk.xds.wire import encode_mcp_resources

__all__ = ["SOURCE_METHOD", "TRIGGER_COLLECTION", "McpSource", "SourceStats"]

log = logging.getLogger("istio_sdk.galley.mcp")

SOURCE_METHOD = "/istio.mcp.v1alpha1.ResourceSource/EstablishResourceStream"
SINK_METHOD = "/istio.mcp.v1alpha1.ResourceSink/EstablishResourceStream"
TRIGGER_COLLECTION = "$triggerCollection"
DEFAULT_GALLEY_PORT = 9901


@attrs.frozen
class SourceStats:
    """Counters of an :class:`McpSource` (streams open now; the rest since it started)."""

    streams: int
    pushes: int
    acks: int
    nacks: int
    stale: int
    rejected_streams: int
    generation: int


def peer_address(stream: Stream[Any, Any]) -> str:
    """``host:port`` of the peer of a server ``stream``."""
    address = stream.peer.addr()
    return f"{address[0]}:{address[1]}" if address else "?"


class _SourceService:
    def __init__(self, source: McpSource) -> None:
        self._source = source

    def __mapping__(self) -> dict[str, Handler]:
        return {
            SOURCE_METHOD: Handler(
                self._establish, Cardinality.STREAM_STREAM, RequestResources, EncodedMessage
            )
        }

    async def _establish(self, stream: Stream[Any, Any]) -> None:
        async def send(data: bytes) -> None:
            await stream.send_message(EncodedMessage(data))

        def recv() -> Awaitable[RequestResources | None]:
            return recv_request_message(stream)

        source = self._source
        source._handler_started()
        try:
            await source.serve_stream(recv, send, peer_address(stream))
        except GRPCError as exc:
            # Written here, so stop() knows when every status is out before it closes.
            await stream.send_trailing_metadata(status=exc.status, status_message=exc.message)
        finally:
            source._handler_done()


class McpSource:
    """Serve ``store`` over MCP: the collections ``collections`` (default: Galley 1.3's 56).

    ``incremental=False`` answers every request with full state, as Galley 1.3 did (it enabled
    incremental for no collection); by default a sink that asks for incremental pushes of a
    collection gets them. ``rebuild_delay`` is how long a burst of store changes may last before
    the snapshot is rebuilt once.
    """

    def __init__(
        self,
        store: ConfigStore,
        *,
        collections: Collection[str] = DEFAULT_COLLECTIONS,
        incremental: bool = True,
        rebuild_delay: float = 0.01,
        grpc_settings: GrpcSettings | None = None,
    ) -> None:
        for name in collections:
            collection(name)  # a name Galley 1.3 never served is a programming error
        self.store = store
        self.collections = frozenset(collections)
        self.incremental = incremental
        self.rebuild_delay = rebuild_delay
        self._grpc_settings = grpc_settings
        self._snapshot = McpSnapshot(0, {})
        self._generation = 0
        self._watchers: set[asyncio.Queue[tuple[str, object]]] = set()
        self._counts: Counter[str] = Counter()
        self._open_streams = 0
        self._handlers = 0  # server streams whose status is not yet written
        self._idle = asyncio.Event()
        self._idle.set()
        self._unsubscribe: Callable[[], None] | None = None
        self._rebuild_task: asyncio.Task[None] | None = None
        self._dirty = False
        self._grpc: Server | None = None
        self._dialers: set[asyncio.Task[None]] = set()
        self._started = False
        self._stream_ids = itertools.count(1)
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int | None = None) -> int:
        """Build the first snapshot and, unless ``port`` is None, listen on ``host:port``
        (0: a free port); returns the port (0 when not listening)."""
        if not self._started:
            self._started = True
            await self._rebuild()
            self._unsubscribe = self.store.subscribe(lambda _event: self._mark_dirty())
        if port is not None:
            if self._grpc is not None:
                raise RuntimeError("McpSource is already listening")
            server = create_server([_SourceService(self)], self._grpc_settings)
            await server.start(host, port)
            self._grpc = server
            self.port = bound_port(server)
            log.info("MCP source listening on %s:%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop dialing, close every stream and stop following the store."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [*self._dialers, *([self._rebuild_task] if self._rebuild_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._dialers.clear()
        self._rebuild_task = None
        for queue in list(self._watchers):
            queue.put_nowait(("shutdown", None))
        # Each stream ends with UNAVAILABLE (as Galley's did) before the connections close.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._idle.wait()
        server, self._grpc = self._grpc, None
        if server is not None:
            server.close()
            await server.wait_closed()
        self._started = False

    async def __aenter__(self) -> McpSource:
        await self.start(port=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _handler_started(self) -> None:
        self._handlers += 1
        self._idle.clear()

    def _handler_done(self) -> None:
        self._handlers -= 1
        if not self._handlers:
            self._idle.set()

    # -- observation -----------------------------------------------------------------------
    @property
    def snapshot(self) -> McpSnapshot:
        """The snapshot every stream is served from now."""
        return self._snapshot

    def stats(self) -> SourceStats:
        c = self._counts
        return SourceStats(
            streams=self._open_streams,
            pushes=c["pushes"],
            acks=c["acks"],
            nacks=c["nacks"],
            stale=c["stale"],
            rejected_streams=c["rejected"],
            generation=self._snapshot.generation,
        )

    # -- the snapshot ----------------------------------------------------------------------
    def _mark_dirty(self) -> None:
        self._dirty = True
        if self._rebuild_task is None or self._rebuild_task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: the next start() or change picks it up
            self._rebuild_task = loop.create_task(self._rebuild_soon())

    async def _rebuild_soon(self) -> None:
        while self._dirty:
            await asyncio.sleep(self.rebuild_delay)
            await self._rebuild()

    async def _rebuild(self) -> None:
        self._dirty = False
        resources = self.store.list()  # immutable resources: safe to encode in a thread
        self._generation += 1
        snapshot, changed = await asyncio.to_thread(
            build_snapshot, resources, self.collections, self._generation, self._snapshot
        )
        self._snapshot = snapshot
        if changed:
            for queue in list(self._watchers):
                queue.put_nowait(("snapshot", changed))

    # -- streams ---------------------------------------------------------------------------
    async def serve_stream(
        self,
        recv: Callable[[], Awaitable[RequestResources | None]],
        send: Callable[[bytes], Awaitable[None]],
        peer: str = "",
    ) -> None:
        """Serve one MCP stream: requests from ``recv`` (None at the end), pushes to ``send``.

        Raises ``GRPCError`` (``INVALID_ARGUMENT``) when the peer asks for a collection this
        source does not serve or breaks the protocol.
        """
        who = f"{peer_text(peer)} (stream {next(self._stream_ids)})"
        queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

        async def read() -> None:
            try:
                while (request := await recv()) is not None:
                    queue.put_nowait(("request", request))
            except (StreamTerminatedError, ConnectionError, asyncio.CancelledError):
                pass
            except GRPCError as exc:
                queue.put_nowait(("error", exc))
            except Exception as exc:  # the request did not decode
                queue.put_nowait(
                    ("error", GRPCError(Status.INVALID_ARGUMENT, f"malformed request: {exc}"))
                )
            finally:
                queue.put_nowait(("closed", None))

        session: ServerSession[McpResource] = ServerSession(
            "mcp", collections=self.collections, incremental=self.incremental
        )
        warnings = WarningBudget(log)
        self._watchers.add(queue)
        self._open_streams += 1
        reader = asyncio.create_task(read())
        try:
            while True:
                kind, item = await queue.get()
                if kind == "closed":
                    return
                if kind == "shutdown":
                    raise GRPCError(Status.UNAVAILABLE, "server canceled watch")
                if kind == "error":
                    assert isinstance(item, GRPCError)
                    self._counts["rejected"] += 1
                    raise item
                if kind == "request":
                    assert isinstance(item, RequestResources)
                    types = self._receive(session, item, who, warnings)
                else:
                    assert isinstance(item, frozenset)
                    types = item
                if not types:
                    continue
                snapshot = self._snapshot
                for push in session.plan(snapshot.collections, snapshot.generation, types=types):
                    self._counts["pushes"] += 1
                    await send(
                        encode_mcp_resources(
                            system_version_info=push.version_info,
                            collection=push.type_url,
                            nonce=push.nonce,
                            resources=[r.data for r in push.items],
                            removed_resources=push.removed,
                            incremental=push.incremental,
                        )
                    )
        finally:
            self._open_streams -= 1
            self._watchers.discard(queue)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    def _receive(
        self,
        session: ServerSession[McpResource],
        request: RequestResources,
        who: str,
        warnings: WarningBudget,
    ) -> Collection[str]:
        """Hand ``request`` to the session; the collections that may now need a push."""
        if request.collection == TRIGGER_COLLECTION:
            return ()  # the sink's NACK of the dial-out trigger
        try:
            result = session.receive(request)
        except UnknownCollectionError as exc:
            self._counts["rejected"] += 1
            log.warning("MCP stream %s: %s", who, exc)
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        except XdsProtocolError as exc:
            self._counts["rejected"] += 1
            raise GRPCError(Status.INVALID_ARGUMENT, peer_text(exc, 500)) from None
        if result.kind is RequestKind.ACK:
            self._counts["acks"] += 1
        elif result.kind is RequestKind.NACK:
            self._counts["nacks"] += 1
            warnings.warn(
                "MCP NACK",
                "MCP NACK from %s for %s version %s: %s",
                who,
                result.type_url,
                result.version,
                peer_text(result.error_message, 500),
            )
        elif result.kind is RequestKind.STALE:
            self._counts["stale"] += 1
            warnings.warn(
                "MCP stale nonce",
                "MCP stream %s: ignoring %s with stale nonce %s",
                who,
                result.type_url,
                peer_text(result.nonce),
            )
        return (result.type_url,) if result.needs_push else ()

    # -- dial-out (Galley's sink mode) -----------------------------------------------------
    def dial(
        self,
        host: str,
        port: int,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 5.0,
    ) -> None:
        """Keep a stream open to the ``ResourceSink`` at ``host:port`` until :meth:`stop`."""
        check_backoff(backoff_initial, backoff_max, 0.5)
        if not self._started:
            raise RuntimeError("start() the source before dialing sinks")
        task = asyncio.get_running_loop().create_task(
            self._dial_loop(host, port, backoff_initial, backoff_max)
        )
        self._dialers.add(task)
        task.add_done_callback(self._dialers.discard)

    async def _dial_loop(self, host: str, port: int, initial: float, maximum: float) -> None:
        attempt = 0
        while True:
            served = await self._dial_once(host, port)
            attempt = 0 if served else attempt + 1
            await asyncio.sleep(backoff_delay(attempt, initial, maximum))

    async def _dial_once(self, host: str, port: int) -> bool:
        """One stream to a sink; whether any request came back (then retry promptly)."""
        answered = False
        channel = create_channel(host, port, settings=self._grpc_settings)
        try:
            async with channel.request(
                SINK_METHOD, Cardinality.STREAM_STREAM, EncodedMessage, RequestResources
            ) as stream:
                await stream.send_message(
                    EncodedMessage(
                        encode_mcp_resources(
                            system_version_info="",
                            collection=TRIGGER_COLLECTION,
                            nonce="",
                            resources=(),
                        )
                    )
                )

                async def recv() -> RequestResources | None:
                    nonlocal answered
                    message: RequestResources | None = await stream.recv_message()
                    answered = answered or message is not None
                    return message

                async def send(data: bytes) -> None:
                    await stream.send_message(EncodedMessage(data))

                await self.serve_stream(recv, send, f"sink {host}:{port}")
                await stream.end()
        except (GRPCError, StreamTerminatedError, OSError) as exc:
            log.info("MCP sink %s:%d: %s", host, port, peer_text(exc))
        finally:
            channel.close()
        return answered
