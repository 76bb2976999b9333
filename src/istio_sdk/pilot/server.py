"""The discovery server: ADS (State of the World and delta) over grpclib, for many proxies.

The server is a thin loop: it decodes requests, lets the stream's
:class:`istio_sdk.xds.ServerSession` classify them and plan the responses, reads the resources
from the :class:`~istio_sdk.pilot.cache.SnapshotCache` and sends their bytes. Translation writes
the cache (:class:`~istio_sdk.pilot.publisher.SnapshotWriter`) when a push is applied, once per
proxy scope.

Config changes arrive as :class:`PushRequest` values through :meth:`DiscoveryServer.push`; a
:class:`~istio_sdk.pilot.debounce.Debouncer` merges them (100 ms quiet period, at most 10 s, like
istiod's ``PILOT_DEBOUNCE_AFTER`` and ``PILOT_DEBOUNCE_MAX``) and they are pushed only to the
proxies and types they affect. Per-proxy state (what each proxy ACKed or NACKed, with the reason)
is readable through :meth:`DiscoveryServer.syncz`; counters are in :attr:`DiscoveryServer.metrics`
and, over HTTP (:meth:`DiscoveryServer.start_debug_http`), at ``/metrics`` (Prometheus text),
``/debug/syncz`` and ``/debug/metrics`` (JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Callable, Collection, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import attrs
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Server, Stream

from istio_sdk._grpc import GrpcSettings, create_server
from istio_sdk._http import MonitoringHttpServer, json_body, metrics_route
from istio_sdk._net import bound_port
from istio_sdk.api.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from istio_sdk.codec import load_codec
from istio_sdk.pilot._raw import EncodedMessage
from istio_sdk.pilot.cache import CachedResource, SnapshotCache
from istio_sdk.pilot.debounce import Debouncer
from istio_sdk.pilot.metrics import LatencyHistogram, ServerMetrics
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.publisher import GenerationFailure, ResourceGenerator, SnapshotWriter
from istio_sdk.pilot.push_request import PushRequest
from istio_sdk.pilot.static import StaticGenerator
from istio_sdk.xds import wire
from istio_sdk.xds._logsafe import WarningBudget, peer_text
from istio_sdk.xds.errors import XdsProtocolError
from istio_sdk.xds.server import Push, RequestKind, ServerSession
from istio_sdk.xds.types import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    is_known,
    resource_type,
)

__all__ = [
    "DiscoveryServer",
    "LatencyHistogram",
    "ProxyEvent",
    "ProxyStatus",
    "PushRequest",
    "ResourceGenerator",
    "ServerMetrics",
    "StaticGenerator",
]

log = logging.getLogger("istio_sdk.pilot.server")

SOTW_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


@attrs.frozen
class ProxyEvent:
    """An ACK or NACK from one proxy, as passed to listeners."""

    proxy_id: str
    connection_id: str
    type_url: str
    kind: Literal["ack", "nack"]
    version: str
    nonce: str
    reason: str = ""
    latency: float | None = None  # seconds from the config change to this answer


@attrs.frozen
class ProxyStatus:
    """What one connected proxy has, per type: the view behind ``/debug/syncz``."""

    proxy_id: str
    connection_id: str
    mode: str
    peer: str
    connected_at: float
    types: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return attrs.asdict(self)


_T = TypeVar("_T")


@attrs.frozen
class _ScopeJob:
    """One scope to write in a push round, with what its proxies want (read on the loop)."""

    scope: Hashable
    proxy: ProxyInfo
    wanted: Mapping[str, frozenset[str] | None]
    who: str


def _scope_wanted(members: list[_Connection]) -> dict[str, frozenset[str] | None]:
    """The union of what the scope's proxies subscribed to, per type (``None``: all)."""
    wanted: dict[str, frozenset[str] | None] = {}
    for conn in members:
        for url in conn.session.subscribed_types():
            if url in wanted:
                have = wanted[url]
                if have is None:
                    continue  # someone in the scope wants everything already
                names = conn.session.wanted(url)
                if names is have:
                    continue  # the usual case: sessions share equal subscriptions
                if names is None or not names <= have:
                    wanted[url] = None if names is None else have | names
            else:
                wanted[url] = conn.session.wanted(url)
    return wanted


class _Connection:
    _ids = itertools.count(1)

    def __init__(self, stream: Stream[Any, Any], mode: Literal["sotw", "delta"]) -> None:
        self.id = f"conn-{next(self._ids)}"
        self.stream = stream
        self.mode = mode
        self.session: ServerSession[CachedResource] = ServerSession(mode)
        self.proxy: ProxyInfo | None = None
        self.scope: Hashable = None
        self.lock = asyncio.Lock()
        self.connected_at = time.time()
        self.alive = True
        # type_url -> (nonce, change time) of the latest push, for config-to-ACK latency
        self.awaiting: dict[str, tuple[str, float]] = {}
        self.nack_logged: set[tuple[str, str]] = set()
        self.warnings = WarningBudget(log)
        peer = stream.peer.addr() if stream.peer is not None else None
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"

    def who(self) -> str:
        name = peer_text(self.proxy.id) if self.proxy else "?"
        return f"{name} ({self.id}, {self.peer})"


def _load_xds_codecs() -> None:
    # The four types every proxy asks for and the envelopes; other types load when first used.
    for type_url in (LISTENER, ROUTE, CLUSTER, ENDPOINT):
        load_codec(resource_type(type_url).message_class())
    for envelope in (DiscoveryResponse, DeltaDiscoveryResponse):
        load_codec(envelope)


class _AdsService:
    """grpclib handlers for both ADS methods; responses go out as pre-encoded bytes."""

    def __init__(self, server: DiscoveryServer) -> None:
        self._server = server

    def __mapping__(self) -> dict[str, Handler]:
        return {
            SOTW_METHOD: Handler(
                self._sotw, Cardinality.STREAM_STREAM, DiscoveryRequest, EncodedMessage
            ),
            DELTA_METHOD: Handler(
                self._delta, Cardinality.STREAM_STREAM, DeltaDiscoveryRequest, EncodedMessage
            ),
        }

    async def _sotw(self, stream: Stream[Any, Any]) -> None:
        await self._server._serve_stream(stream, "sotw")

    async def _delta(self, stream: Stream[Any, Any]) -> None:
        await self._server._serve_stream(stream, "delta")


class DiscoveryServer:
    """An ADS server (SotW and delta) feeding proxies from a :class:`ResourceGenerator`.

    ``debounce_after`` is the quiet period a burst of changes must end with before a push;
    ``debounce_max`` caps how long a push can be delayed by a steady stream of changes.
    """

    def __init__(
        self,
        generator: ResourceGenerator,
        *,
        debounce_after: float = 0.1,
        debounce_max: float = 10.0,
        grpc_settings: GrpcSettings | None = None,
    ) -> None:
        self._debouncer = Debouncer(debounce_after, debounce_max)
        self.generator = generator
        self.debounce_after = debounce_after
        self.debounce_max = debounce_max
        self.metrics = ServerMetrics()
        self.cache = SnapshotCache()
        self._writer = SnapshotWriter(generator, self.cache)
        self._grpc_settings = grpc_settings
        self._connections: dict[str, _Connection] = {}
        self._generation = 0
        self._listeners: list[Callable[[ProxyEvent], None]] = []
        self._state_listeners: list[Callable[[], None]] = []
        self._grpc: Server | None = None
        self._http: MonitoringHttpServer | None = None
        self._debounce_task: asyncio.Task[None] | None = None
        self._round_tasks: set[asyncio.Task[None]] = set()
        # Translation and snapshot writing run here, one job at a time, never on the event loop
        # that serves the streams (a big mesh takes long to translate).
        self._translation: ThreadPoolExecutor | None = None
        self.host = ""
        self.port = 0
        self.debug_port = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for ADS on ``host:port`` (0: an ephemeral port); returns the port."""
        if self._grpc is not None:
            raise RuntimeError("DiscoveryServer is already started")
        # Codecs load on first use: pay that once (tens of ms for Envoy's packages) here, before
        # any peer is accepted, rather than inside the first push.
        _load_xds_codecs()
        server = create_server([_AdsService(self)], self._grpc_settings)
        await server.start(host, port)  # a port taken raises here, leaving nothing to stop
        self._grpc = server
        self.host = host
        self.port = bound_port(server)
        log.info("discovery server listening on %s:%d", host, self.port)
        return self.port

    async def start_debug_http(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve ``/metrics``, ``/debug/syncz`` and ``/debug/metrics`` over HTTP; the port."""
        self._http = MonitoringHttpServer(
            {
                "/metrics": metrics_route(self.metrics.registry),
                "/debug/syncz": lambda: json_body(
                    {"generation": self._generation, "proxies": self.syncz()}
                ),
                "/debug/metrics": lambda: json_body(self.metrics.to_dict()),
            }
        )
        self.debug_port = await self._http.start(host, port)
        return self.debug_port

    async def stop(self) -> None:
        """Stop listening, cancel pending pushes and close every stream and debug connection.

        Safe to call at any time: before :meth:`start`, after a start that failed, twice.
        """
        for task in [self._debounce_task, *self._round_tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._debounce_task = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        # End every stream with UNAVAILABLE so clients reconnect elsewhere at once (grpclib's
        # close() drops the connections without a status).
        await asyncio.gather(
            *(self._end_stream(c) for c in list(self._connections.values())),
            return_exceptions=True,
        )
        server, self._grpc = self._grpc, None
        if server is not None:
            server.close()
            await server.wait_closed()
        translation, self._translation = self._translation, None
        if translation is not None:
            translation.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    async def _end_stream(conn: _Connection) -> None:
        conn.alive = False
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0), conn.lock:
                await conn.stream.send_trailing_metadata(
                    status=Status.UNAVAILABLE, status_message="discovery server shutting down"
                )

    async def __aenter__(self) -> DiscoveryServer:
        if self._grpc is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- observation -----------------------------------------------------------------------
    def add_listener(self, callback: Callable[[ProxyEvent], None]) -> None:
        """Call ``callback`` for every ACK and NACK (synchronously, keep it short)."""
        self._listeners.append(callback)

    def add_state_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every push round and whenever a stream closes (what a
        waiter for convergence re-checks on; synchronous, keep it short)."""
        self._state_listeners.append(callback)

    def _state_changed(self, _task: object = None) -> None:
        for callback in self._state_listeners:
            try:
                callback()
            except Exception:
                log.exception("state listener failed")

    @property
    def pushes_pending(self) -> bool:
        """True while a queued push waits out its debounce or a push round is being written."""
        if self._debouncer.deadline() is not None:
            return True
        return any(not task.done() for task in self._round_tasks)

    @property
    def generation(self) -> int:
        """The config generation; every push round increments it."""
        return self._generation

    def connection_count(self) -> int:
        """Streams currently open."""
        return len(self._connections)

    def proxies(self) -> list[ProxyStatus]:
        """Per-proxy, per-type state: subscriptions, versions sent, ACKed and NACKed."""
        out = []
        for conn in list(self._connections.values()):
            types: dict[str, dict[str, Any]] = {}
            for url, st in conn.session.statuses(include_held=False).items():
                types[url] = {
                    "state": st.state.value,
                    "wildcard": st.wildcard,
                    "subscribed": len(st.names),
                    "sent_version": st.sent_version,
                    "sent_nonce": st.sent_nonce,
                    "acked_version": st.acked_version,
                    "nacked_version": st.nacked_version,
                    "nack_reason": st.nack_reason,
                    "resources": st.resource_count,
                }
            out.append(
                ProxyStatus(
                    conn.proxy.id if conn.proxy else "",
                    conn.id,
                    conn.mode,
                    conn.peer,
                    conn.connected_at,
                    types,
                )
            )
        return out

    def syncz(self) -> list[dict[str, Any]]:
        """:meth:`proxies` as JSON-ready dicts (what ``/debug/syncz`` returns)."""
        return [p.to_dict() for p in self.proxies()]

    # -- pushes ----------------------------------------------------------------------------
    def push(self, request: PushRequest | None = None) -> None:
        """Queue a push, debounced; ``None`` pushes every type to every proxy."""
        self._debouncer.add(request or PushRequest(reason="full push"), time.monotonic())
        if self._debounce_task is None or self._debounce_task.done():
            self._debounce_task = asyncio.get_running_loop().create_task(self._debounce())

    async def push_now(self, request: PushRequest | None = None) -> None:
        """Push immediately, without debouncing, and wait until every stream was written."""
        now = time.monotonic()
        await self._push_round(request or PushRequest(reason="full push"), now, now)

    async def _debounce(self) -> None:
        while (deadline := self._debouncer.deadline()) is not None:
            now = time.monotonic()
            due = self._debouncer.flush(now)
            if due is None:
                await asyncio.sleep(deadline - now)
                continue
            task = asyncio.get_running_loop().create_task(
                self._push_round(due.request, due.first_change, now)
            )
            self._round_tasks.add(task)
            task.add_done_callback(self._round_tasks.discard)
            task.add_done_callback(self._state_changed)

    async def _push_round(self, request: PushRequest, changed_at: float, flushed: float) -> None:
        self._generation += 1
        generation = self._generation
        targets = [
            c
            for c in self._connections.values()
            if c.proxy is not None
            and c.alive
            and request.selects(c.proxy)
            and c.session.affected(request.types, request.changed)
        ]
        log.info(
            "push round %d (%s) to %d proxies",
            generation,
            peer_text(request.reason, 500),
            len(targets),
        )
        by_scope: dict[Hashable, list[_Connection]] = {}
        for conn in targets:
            by_scope.setdefault(conn.scope, []).append(conn)
        jobs: list[_ScopeJob] = []
        for scope, members in by_scope.items():
            proxy = members[0].proxy
            assert proxy is not None
            jobs.append(_ScopeJob(scope, proxy, _scope_wanted(members), members[0].who()))
        failures = await self._translate(self._write_scopes, jobs, generation, request)
        for job, failure in failures:
            self.metrics.generator_failed()
            log.error(
                "generating %s for %s failed; keeping its last config: %s",
                resource_type(failure.type_url).short_name,
                job.who,
                peer_text(repr(failure.error), 500),
            )
        await asyncio.gather(
            *(self._push_connection(c, request.types, request.changed, changed_at) for c in targets)
        )
        self.metrics.round_done(flushed - changed_at)
        self.cache.retain(c.scope for c in self._connections.values())

    async def _translate(self, fn: Callable[..., _T], /, *args: object) -> _T:
        """Run ``fn(*args)`` in the translation thread and wait for it."""
        if self._translation is None:
            self._translation = ThreadPoolExecutor(1, thread_name_prefix="pilot-translation")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._translation, functools.partial(fn, *args))

    def _write_scopes(
        self, jobs: list[_ScopeJob], generation: int, request: PushRequest
    ) -> list[tuple[_ScopeJob, GenerationFailure]]:
        # In the translation thread: one snapshot per scope, sharing this round's serializations.
        failures: list[tuple[_ScopeJob, GenerationFailure]] = []
        try:
            for job in jobs:
                _, failed = self._writer.write(
                    job.scope,
                    job.proxy,
                    generation,
                    job.wanted,
                    types=request.types,
                    changed=request.changed,
                )
                failures.extend((job, f) for f in failed)
        finally:
            self._writer.end_round()
        return failures

    async def _push_connection(
        self,
        conn: _Connection,
        types: Collection[str] | None,
        changed: Mapping[str, frozenset[str]] | None,
        changed_at: float,
    ) -> None:
        async with conn.lock:
            if not conn.alive or conn.proxy is None:
                return
            snapshot = self.cache.get(conn.scope)
            if snapshot is None:
                return
            try:
                pushes = conn.session.plan(
                    snapshot.resources, self._generation, types=types, changed=changed
                )
            except XdsProtocolError:
                self.metrics.protocol_errors += 1
                log.exception("planning a push to %s failed", conn.who())
                return
            for push in pushes:
                if not await self._send(conn, push, changed_at):
                    return
            if pushes:
                self.metrics.converged(time.monotonic() - changed_at)

    async def _send(self, conn: _Connection, push: Push[CachedResource], changed_at: float) -> bool:
        started = time.perf_counter()
        if push.mode == "delta":
            data = wire.encode_delta_response(
                system_version_info=push.version_info,
                type_url=push.type_url,
                nonce=push.nonce,
                resources=[r.delta_bytes() for r in push.items],
                removed_resources=push.removed,
            )
        else:
            data = wire.encode_discovery_response_framed(
                version_info=push.version_info,
                type_url=push.type_url,
                nonce=push.nonce,
                framed_resources=[r.framed for r in push.items],
            )
        encoded = time.perf_counter()
        try:
            await conn.stream.send_message(EncodedMessage(data))
        except (StreamTerminatedError, ConnectionError, GRPCError, asyncio.CancelledError) as exc:
            conn.alive = False
            self.metrics.send_failed(push.type_url)
            log.warning("proxy %s went away mid-push (%s)", conn.who(), type(exc).__name__)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False
        except Exception:
            conn.alive = False
            self.metrics.send_failed(push.type_url)
            log.exception("sending to %s failed", conn.who())
            return False
        done = time.perf_counter()
        self.metrics.pushed(push.type_url, len(data), done - started, done - encoded)
        conn.awaiting[push.type_url] = (push.nonce, changed_at)
        return True

    # -- streams ---------------------------------------------------------------------------
    async def _serve_stream(self, stream: Stream[Any, Any], mode: Literal["sotw", "delta"]) -> None:
        conn = _Connection(stream, mode)
        self._connections[conn.id] = conn
        self.metrics.connected()
        try:
            while True:
                try:
                    request = await stream.recv_message()
                except (StreamTerminatedError, ConnectionError):
                    break
                except GRPCError:
                    raise
                except Exception as exc:
                    self.metrics.malformed_requests += 1
                    conn.warnings.warn(
                        "malformed request",
                        "malformed request from %s: %s",
                        conn.who(),
                        peer_text(exc),
                    )
                    raise GRPCError(
                        Status.INVALID_ARGUMENT,
                        f"malformed discovery request: {peer_text(exc)}",
                    ) from None
                if request is None:
                    break
                await self._on_request(conn, request)
                # Do not keep the request (an ACK repeats every subscribed name) alive while
                # waiting for the next one: the session keeps what it needs.
                del request
        finally:
            conn.alive = False
            self._connections.pop(conn.id, None)
            self.metrics.disconnected()
            self._state_changed()
            log.debug("stream %s closed", conn.who())

    async def _on_request(
        self, conn: _Connection, request: DiscoveryRequest | DeltaDiscoveryRequest
    ) -> None:
        if conn.proxy is None:
            node = request.node
            if node is None or not node.id:
                self.metrics.protocol_errors += 1
                raise GRPCError(
                    Status.INVALID_ARGUMENT,
                    "the first discovery request of a stream must carry node.id",
                )
            conn.proxy = ProxyInfo.from_node(node)
            conn.scope = self._writer.scope(conn.proxy)
            log.info("proxy %s connected (%s)", conn.who(), conn.mode)
        url = request.type_url
        if not is_known(url):
            self.metrics.unknown_type_requests += 1
            conn.warnings.warn(
                "unknown type URL",
                "%s asked for unknown type URL %s; not answering it",
                conn.who(),
                peer_text(repr(url)),
            )
            return
        async with conn.lock:
            try:
                result = conn.session.receive(request)
            except XdsProtocolError as exc:
                self.metrics.protocol_errors += 1
                raise GRPCError(Status.INVALID_ARGUMENT, peer_text(exc, 500)) from None
            if result.kind is RequestKind.ACK or result.kind is RequestKind.NACK:
                self._answered(
                    conn,
                    kind=result.kind,
                    url=url,
                    nonce=result.nonce,
                    version=result.version,
                    reason=result.error_message,
                )
            elif result.kind is RequestKind.STALE:
                self.metrics.stale(url)
            if not result.needs_push:
                return
            wanted = conn.session.wanted(url)
            current = self.cache.get(conn.scope)
            failures: list[GenerationFailure] = []
            if current is not None and current.covers(url, wanted):
                snapshot = current  # a cache hit costs nothing and stays on the loop
            else:
                snapshot, failures = await self._translate(
                    self._writer.ensure, conn.scope, conn.proxy, self._generation, url, wanted
                )
            for failure in failures:
                self.metrics.generator_failed()
                log.error(
                    "generating %s for %s failed: %s",
                    resource_type(url).short_name,
                    conn.who(),
                    peer_text(repr(failure.error), 500),
                )
            pushes = conn.session.plan(snapshot.resources, self._generation, types=[url])
            now = time.monotonic()
            for push in pushes:
                if not await self._send(conn, push, now):
                    return

    def _answered(
        self,
        conn: _Connection,
        *,
        kind: RequestKind,
        url: str,
        nonce: str,
        version: str,
        reason: str,
    ) -> None:
        latency = None
        waiting = conn.awaiting.get(url)
        if waiting is not None and waiting[0] == nonce:
            latency = time.monotonic() - waiting[1]
            del conn.awaiting[url]
        assert conn.proxy is not None
        if kind is RequestKind.ACK:
            self.metrics.acked(url, latency)
            event_kind: Literal["ack", "nack"] = "ack"
        else:
            self.metrics.nacked(url, latency)
            event_kind = "nack"
            key = (url, reason[:200])
            if key not in conn.nack_logged:  # one line per reason, however stormy the NACKs
                if len(conn.nack_logged) < 100:
                    conn.nack_logged.add(key)
                conn.warnings.warn(
                    "NACK",
                    "NACK from %s for %s version %s: %s",
                    conn.who(),
                    resource_type(url).short_name,
                    peer_text(version),
                    peer_text(reason, 500),
                )
        event = ProxyEvent(conn.proxy.id, conn.id, url, event_kind, version, nonce, reason, latency)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("push listener failed")
