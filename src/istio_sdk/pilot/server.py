"""The discovery server: ADS (State of the World and delta) over grpclib, for many proxies.

The server is a thin loop around :class:`istio_sdk.xds.ServerSession`: it decodes requests,
lets the session classify them, asks a :class:`ResourceGenerator` what a proxy should get, and
sends responses assembled from the :class:`~istio_sdk.pilot.cache.ResourceCache`'s bytes.

Config changes arrive as :class:`PushRequest` values through :meth:`DiscoveryServer.push`; they
are debounced (100 ms quiet period, at most 10 s, like istiod's ``PILOT_DEBOUNCE_AFTER`` and
``PILOT_DEBOUNCE_MAX``) and pushed only to the proxies and types they affect. Per-proxy state
(what each proxy ACKed or NACKed, with the reason) is readable through :meth:`~DiscoveryServer.
syncz` and over HTTP (:meth:`~DiscoveryServer.start_debug_http`), with counters in
:attr:`~DiscoveryServer.metrics`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal, Protocol

import attrs
import betterproto2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Server, Stream

from istio_sdk._grpc import GrpcSettings, create_server
from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from istio_sdk.pilot._raw import EncodedMessage
from istio_sdk.pilot.cache import CachedResource, ResourceCache
from istio_sdk.pilot.push_context import ProxyInfo
from istio_sdk.xds import wire
from istio_sdk.xds.errors import XdsProtocolError
from istio_sdk.xds.server import Push, RequestKind, ServerSession, ServerTypeState
from istio_sdk.xds.types import (
    CLUSTER,
    is_full_state,
    is_known,
    resource_name,
    resource_type,
    type_url_of,
)

__all__ = [
    "DiscoveryServer",
    "LatencyHistogram",
    "ProxyEvent",
    "PushRequest",
    "ResourceGenerator",
    "ServerMetrics",
    "StaticGenerator",
]

log = logging.getLogger("istio_sdk.pilot.server")

SOTW_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


class ResourceGenerator(Protocol):
    """What the server asks for resources: the seam to translation.

    ``generate`` returns, for one proxy and type URL, resource name -> message. ``names`` is
    ``None`` for a wildcard subscription (everything the proxy may see), else the names wanted;
    returning fewer names means those do not exist. Return the *same object* for the same
    resource to every proxy (within one config generation) so it is serialized only once.
    """

    def generate(
        self, proxy: ProxyInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, betterproto2.Message]: ...


def _frozen_types(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


def _frozen_names(value: Mapping[str, Iterable[str]] | None) -> dict[str, frozenset[str]] | None:
    if value is None:
        return None
    return {k: frozenset(v) for k, v in value.items()}


@attrs.frozen
class PushRequest:
    """A reason to push: which types, which resource names, which proxies.

    ``types`` ``None`` means every type. ``changed`` maps a type URL to the names that changed
    (``None``: unknown, treat all as changed); a proxy watching none of them is not pushed.
    ``proxies`` selects the affected proxies (``None``: all).
    """

    types: frozenset[str] | None = attrs.field(default=None, converter=_frozen_types)
    changed: dict[str, frozenset[str]] | None = attrs.field(default=None, converter=_frozen_names)
    proxies: Callable[[ProxyInfo], bool] | None = attrs.field(default=None, eq=False)
    reason: str = ""

    def merge(self, other: PushRequest) -> PushRequest:
        """One request covering both (what debouncing does to a burst of changes)."""
        types = None if self.types is None or other.types is None else self.types | other.types
        changed: dict[str, frozenset[str]] | None
        if self.changed is None or other.changed is None:
            changed = None
        else:
            changed = dict(self.changed)
            for url, names in other.changed.items():
                changed[url] = changed.get(url, frozenset()) | names
            # A type changed in one request without names lists everything as changed.
            for req in (self, other):
                assert req.changed is not None
                for url in req.types or ():
                    if url not in req.changed:
                        changed = None
                        break
                if changed is None:
                    break
        proxies: Callable[[ProxyInfo], bool] | None
        if self.proxies is None or other.proxies is None:
            proxies = None
        else:
            a, b = self.proxies, other.proxies
            proxies = lambda p: a(p) or b(p)  # noqa: E731
        reason = "; ".join(r for r in (self.reason, other.reason) if r)
        return PushRequest(types, changed, proxies, reason)


_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@attrs.define
class LatencyHistogram:
    """Cumulative histogram of seconds (Prometheus-style buckets, plus sum and count)."""

    buckets: tuple[float, ...] = _BUCKETS
    counts: list[int] = attrs.field(factory=lambda: [0] * (len(_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        """Record one observation."""
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.count += 1

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (0 when empty)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return float("inf")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``le`` buckets (cumulative), sum and count."""
        cumulative = list(itertools.accumulate(self.counts))
        les = [str(b) for b in self.buckets] + ["+Inf"]
        return {
            "buckets": dict(zip(les, cumulative, strict=True)),
            "sum": self.total,
            "count": self.count,
        }


@attrs.define
class ServerMetrics:
    """Counters of what the server did."""

    pushes: int = 0
    push_rounds: int = 0
    pushes_by_type: dict[str, int] = attrs.Factory(dict)
    acks: int = 0
    nacks: int = 0
    stale_requests: int = 0
    unknown_type_requests: int = 0
    malformed_requests: int = 0
    protocol_errors: int = 0
    generator_errors: int = 0
    send_failures: int = 0
    connections_total: int = 0
    config_to_ack: LatencyHistogram = attrs.Factory(LatencyHistogram)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counters."""
        out = attrs.asdict(self, recurse=False)
        out["config_to_ack"] = self.config_to_ack.to_dict()
        out["pushes_by_type"] = dict(self.pushes_by_type)
        return out


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


class StaticGenerator:
    """A :class:`ResourceGenerator` over a fixed set of resources, the same for every proxy.

    Useful for tests, benchmarks and as a tiny xDS server. :meth:`set` and :meth:`remove`
    return the :class:`PushRequest` describing the change; hand it to
    :meth:`DiscoveryServer.push`.
    """

    def __init__(self, resources: Iterable[betterproto2.Message] = ()) -> None:
        self._by_type: dict[str, dict[str, betterproto2.Message]] = {}
        # (type_url, names) -> answer; dropped for a type when it changes, so every proxy
        # asking the same question between changes gets the very same mapping object.
        self._answers: dict[
            tuple[str, frozenset[str] | None], Mapping[str, betterproto2.Message]
        ] = {}
        self.set(*resources)

    def set(self, *messages: betterproto2.Message) -> PushRequest:
        """Add or replace resources (keyed by type URL and name)."""
        changed: dict[str, set[str]] = {}
        for message in messages:
            url = type_url_of(message)
            name = resource_name(message)
            self._by_type.setdefault(url, {})[name] = message
            changed.setdefault(url, set()).add(name)
        self._forget(changed)
        return PushRequest(types=changed, changed=changed, reason="static resources set")

    def remove(self, type_url: str, *names: str) -> PushRequest:
        """Delete resources of ``type_url`` by name (unknown names are ignored)."""
        table = self._by_type.get(type_url, {})
        for name in names:
            table.pop(name, None)
        self._forget({type_url})
        return PushRequest(
            types={type_url}, changed={type_url: set(names)}, reason="static resources removed"
        )

    def resources(self, type_url: str) -> dict[str, betterproto2.Message]:
        """A copy of the resources of ``type_url``."""
        return dict(self._by_type.get(type_url, {}))

    def generate(
        self, proxy: ProxyInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, betterproto2.Message]:
        """Every resource (wildcard) or the named ones that exist."""
        key = (type_url, names)
        answer = self._answers.get(key)
        if answer is None:
            table = self._by_type.get(type_url, {})
            if names is None:
                answer = MappingProxyType(dict(table))
            else:
                answer = MappingProxyType({n: table[n] for n in names if n in table})
            self._answers[key] = answer
        return answer

    def _forget(self, type_urls: Iterable[str]) -> None:
        urls = set(type_urls)
        for key in [k for k in self._answers if k[0] in urls]:
            del self._answers[key]


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


class _Connection:
    _ids = itertools.count(1)

    def __init__(self, stream: Stream[Any, Any], mode: Literal["sotw", "delta"]) -> None:
        self.id = f"conn-{next(self._ids)}"
        self.stream = stream
        self.mode = mode
        self.session = ServerSession(mode)
        self.proxy: ProxyInfo | None = None
        self.lock = asyncio.Lock()
        self.connected_at = time.time()
        self.alive = True
        # type_url -> (nonce, change time) of the latest push, for config-to-ACK latency
        self.awaiting: dict[str, tuple[str, float]] = {}
        self.sent_clusters: dict[str, CachedResource] = {}
        self.nack_logged: set[tuple[str, str]] = set()
        self.unknown_logged: set[str] = set()
        peer = stream.peer.addr() if stream.peer is not None else None
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"


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
        if debounce_after < 0 or debounce_max < debounce_after:
            raise ValueError("need 0 <= debounce_after <= debounce_max")
        self.generator = generator
        self.debounce_after = debounce_after
        self.debounce_max = debounce_max
        self.metrics = ServerMetrics()
        self.cache = ResourceCache()
        self._grpc_settings = grpc_settings
        self._connections: dict[str, _Connection] = {}
        self._generation = 0
        self._listeners: list[Callable[[ProxyEvent], None]] = []
        self._grpc: Server | None = None
        self._http: asyncio.Server | None = None
        self._pending: PushRequest | None = None
        self._first_change = 0.0
        self._last_change = 0.0
        self._debounce_task: asyncio.Task[None] | None = None
        self._round_tasks: set[asyncio.Task[None]] = set()
        # id(generator answer) -> (answer, resolved, versions): generators that hand the same
        # mapping to many proxies (StaticGenerator does) are resolved once per round.
        self._resolved: dict[
            int, tuple[Mapping[str, Any], dict[str, CachedResource], dict[str, str]]
        ] = {}
        self.host = ""
        self.port = 0
        self.debug_port = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for ADS on ``host:port`` (0: an ephemeral port); returns the port."""
        if self._grpc is not None:
            raise RuntimeError("DiscoveryServer is already started")
        self._grpc = create_server([_AdsService(self)], self._grpc_settings)
        await self._grpc.start(host, port)
        inner: Any = self._grpc._server
        sockets = inner.sockets if inner is not None else ()
        self.host = host
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        log.info("discovery server listening on %s:%d", host, self.port)
        return self.port

    async def start_debug_http(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve ``/debug/syncz`` and ``/debug/metrics`` as JSON over HTTP; returns the port."""
        self._http = await asyncio.start_server(self._serve_http, host, port)
        self.debug_port = int(self._http.sockets[0].getsockname()[1])
        return self.debug_port

    async def stop(self) -> None:
        """Stop listening, cancel pending pushes and close every stream."""
        for task in [self._debounce_task, *self._round_tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._debounce_task = None
        if self._http is not None:
            self._http.close()
            await self._http.wait_closed()
            self._http = None
        # End every stream with UNAVAILABLE so clients reconnect elsewhere at once (grpclib's
        # close() drops the connections without a status).
        await asyncio.gather(
            *(self._end_stream(c) for c in list(self._connections.values())),
            return_exceptions=True,
        )
        if self._grpc is not None:
            self._grpc.close()
            await self._grpc.wait_closed()
            self._grpc = None

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
            for url, st in conn.session.types.items():
                if st.state is ServerTypeState.UNSUBSCRIBED:
                    continue
                types[url] = {
                    "state": st.state.value,
                    "wildcard": st.wildcard,
                    "subscribed": len(st.names),
                    "sent_version": st.last_sent.version_info if st.last_sent else "",
                    "sent_nonce": st.last_sent.nonce if st.last_sent else "",
                    "acked_version": st.acked_version,
                    "nacked_version": st.nacked_version,
                    "nack_reason": st.nack_reason,
                    "resources": len(st.client_has),
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
        request = request or PushRequest(reason="full push")
        now = time.monotonic()
        if self._pending is None:
            self._pending = request
            self._first_change = now
        else:
            self._pending = self._pending.merge(request)
        self._last_change = now
        if self._debounce_task is None or self._debounce_task.done():
            self._debounce_task = asyncio.get_running_loop().create_task(self._debounce())

    async def push_now(self, request: PushRequest | None = None) -> None:
        """Push immediately, without debouncing, and wait until every stream was written."""
        await self._push_round(request or PushRequest(reason="full push"), time.monotonic())

    async def _debounce(self) -> None:
        while True:
            now = time.monotonic()
            wake = min(
                self._last_change + self.debounce_after, self._first_change + self.debounce_max
            )
            if now >= wake:
                break
            await asyncio.sleep(wake - now)
        request, started = self._pending, self._first_change
        self._pending = None
        if request is not None:
            task = asyncio.get_running_loop().create_task(self._push_round(request, started))
            self._round_tasks.add(task)
            task.add_done_callback(self._round_tasks.discard)

    async def _push_round(self, request: PushRequest, changed_at: float) -> None:
        self._generation += 1
        targets = [c for c in self._connections.values() if self._affected(c, request)]
        log.info("push round %d (%s) to %d proxies", self._generation, request.reason, len(targets))
        types = request.types
        await asyncio.gather(
            *(self._push_connection(c, types, request.changed, changed_at) for c in targets)
        )
        self.metrics.push_rounds += 1
        self.cache.end_round()
        self._resolved.clear()

    @staticmethod
    def _affected(conn: _Connection, request: PushRequest) -> bool:
        if conn.proxy is None or not conn.alive:
            return False
        if request.proxies is not None and not request.proxies(conn.proxy):
            return False
        if request.changed is None or request.types is None:
            return True
        for url in request.types:
            names = request.changed.get(url)
            if names is None:
                if conn.session.is_subscribed(url):
                    return True
            elif conn.session.watched(url, names):
                return True
        return False

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
            session = conn.session
            wanted = [
                u
                for u in (types if types is not None else list(session.types))
                if session.is_subscribed(u)
            ]
            snapshot: dict[str, dict[str, str]] = {}
            objects: dict[str, dict[str, CachedResource]] = {}
            narrowed: dict[str, frozenset[str]] = {}
            for url in wanted:
                st = session.types[url]
                names: frozenset[str] | None = None if st.wildcard else frozenset(st.names)
                ch = None if changed is None else changed.get(url)
                if ch is not None and not st.force_next and not is_full_state(url):
                    names = ch if names is None else names & ch
                    narrowed[url] = ch
                try:
                    messages = self.generator.generate(conn.proxy, url, names)
                    memo = self._resolved.get(id(messages))
                    if memo is not None and memo[0] is messages:
                        # Same answer object as for another proxy: resolved already.
                        resolved, versions = memo[1], memo[2]
                    else:
                        resolved = {n: self.cache.resolve(n, m) for n, m in messages.items()}
                        versions = {n: r.version for n, r in resolved.items()}
                        if len(self._resolved) > 4096:
                            self._resolved.clear()
                        self._resolved[id(messages)] = (messages, resolved, versions)
                except Exception:
                    self.metrics.generator_errors += 1
                    log.exception(
                        "generating %s for %s failed; keeping its last config",
                        resource_type(url).short_name,
                        conn.proxy.id,
                    )
                    continue
                objects[url] = resolved
                snapshot[url] = versions
            if not snapshot:
                return
            try:
                pushes = session.plan_pushes(
                    snapshot, self._generation, types=list(snapshot), changed=narrowed or None
                )
            except XdsProtocolError:
                self.metrics.protocol_errors += 1
                log.exception("planning a push to %s failed", conn.proxy.id)
                return
            for push in pushes:
                if not await self._send(conn, push, objects.get(push.type_url, {}), changed_at):
                    return

    async def _send(
        self,
        conn: _Connection,
        push: Push,
        objects: Mapping[str, CachedResource],
        changed_at: float,
    ) -> bool:
        chosen: list[CachedResource] = []
        for name, version in push.resources:
            res = objects.get(name)
            if res is None or res.version != version:
                res = conn.sent_clusters.get(name) if push.type_url == CLUSTER else None
            if res is None or res.version != version:
                log.error("no bytes for %s %s@%s; skipping it", push.type_url, name, version)
                continue
            chosen.append(res)
        if push.mode == "delta":
            data = wire.encode_delta_response(
                system_version_info=push.version_info,
                type_url=push.type_url,
                nonce=push.nonce,
                resources=[r.delta_bytes() for r in chosen],
                removed_resources=push.removed,
            )
        else:
            data = wire.encode_discovery_response_framed(
                version_info=push.version_info,
                type_url=push.type_url,
                nonce=push.nonce,
                framed_resources=[r.framed for r in chosen],
            )
        if push.type_url == CLUSTER:
            if push.mode == "delta":
                for name in push.removed:
                    conn.sent_clusters.pop(name, None)
                conn.sent_clusters.update((r.name, r) for r in chosen)
            else:
                conn.sent_clusters = {r.name: r for r in chosen}
        try:
            await conn.stream.send_message(EncodedMessage(data))
        except (StreamTerminatedError, ConnectionError, GRPCError, asyncio.CancelledError) as exc:
            conn.alive = False
            self.metrics.send_failures += 1
            log.warning("proxy %s went away mid-push (%s)", self._who(conn), type(exc).__name__)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False
        except Exception:
            conn.alive = False
            self.metrics.send_failures += 1
            log.exception("sending to %s failed", self._who(conn))
            return False
        self.metrics.pushes += 1
        self.metrics.pushes_by_type[push.type_url] = (
            self.metrics.pushes_by_type.get(push.type_url, 0) + 1
        )
        conn.awaiting[push.type_url] = (push.nonce, changed_at)
        return True

    # -- streams ---------------------------------------------------------------------------
    @staticmethod
    def _who(conn: _Connection) -> str:
        return f"{conn.proxy.id if conn.proxy else '?'} ({conn.id}, {conn.peer})"

    async def _serve_stream(self, stream: Stream[Any, Any], mode: Literal["sotw", "delta"]) -> None:
        conn = _Connection(stream, mode)
        self._connections[conn.id] = conn
        self.metrics.connections_total += 1
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
                    log.warning("malformed request from %s: %s", self._who(conn), exc)
                    raise GRPCError(
                        Status.INVALID_ARGUMENT, f"malformed discovery request: {exc}"
                    ) from None
                if request is None:
                    break
                await self._on_request(conn, request)
        finally:
            conn.alive = False
            self._connections.pop(conn.id, None)
            log.debug("stream %s closed", self._who(conn))

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
            log.info("proxy %s connected (%s)", self._who(conn), conn.mode)
        url = request.type_url
        if not is_known(url):
            self.metrics.unknown_type_requests += 1
            if url not in conn.unknown_logged:
                conn.unknown_logged.add(url)
                log.warning(
                    "%s asked for unknown type URL %r; not answering it", self._who(conn), url
                )
            return
        async with conn.lock:
            try:
                result = conn.session.receive(request)
            except XdsProtocolError as exc:
                self.metrics.protocol_errors += 1
                raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
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
                self.metrics.stale_requests += 1
        if result.needs_push:
            await self._push_connection(conn, [url], None, time.monotonic())

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
            self.metrics.config_to_ack.observe(latency)
        assert conn.proxy is not None
        if kind is RequestKind.ACK:
            self.metrics.acks += 1
            event_kind: Literal["ack", "nack"] = "ack"
        else:
            self.metrics.nacks += 1
            event_kind = "nack"
            key = (url, version)
            if key not in conn.nack_logged:  # one line per version, however stormy the NACKs
                conn.nack_logged.add(key)
                log.warning(
                    "NACK from %s for %s version %s: %s",
                    self._who(conn),
                    resource_type(url).short_name,
                    version,
                    reason,
                )
        event = ProxyEvent(conn.proxy.id, conn.id, url, event_kind, version, nonce, reason, latency)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("push listener failed")

    # -- debug HTTP ------------------------------------------------------------------------
    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            body: dict[str, Any]
            if len(parts) < 2 or parts[0] != "GET":
                status, body = "405 Method Not Allowed", {"error": "only GET is served"}
            elif path == "/debug/syncz":
                status, body = "200 OK", {"generation": self._generation, "proxies": self.syncz()}
            elif path == "/debug/metrics":
                status, body = "200 OK", self.metrics.to_dict()
            else:
                status, body = (
                    "404 Not Found",
                    {
                        "error": f"no such path {path!r}",
                        "paths": ["/debug/syncz", "/debug/metrics"],
                    },
                )
            payload = json.dumps(body, indent=1, sort_keys=True).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ConnectionError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
