"""The Pilot client: an async ADS client (SotW or delta) for any xDS server.

:class:`PilotClient` connects to istiod, go-control-plane or :class:`~istio_sdk.DiscoveryServer`
over grpclib, identifies as an Istio sidecar or a proxyless gRPC client (see :func:`sidecar_node`
and :func:`grpc_node`), subscribes by type and names, hands out typed resources (a current-state
view and an async iterator of updates), ACKs or NACKs each response through an optional
validation hook, and reconnects with exponential backoff and jitter, resubscribing to everything.
The protocol bookkeeping is :class:`istio_sdk.xds.ClientSession`; this module is the I/O loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
import betterproto2
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from istio_sdk._backoff import backoff_delay, check_backoff
from istio_sdk._grpc import GrpcSettings, create_channel
from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from istio_sdk.api.google.protobuf import Struct
from istio_sdk.pilot._raw import EncodedMessage
from istio_sdk.pilot.proxy import format_node_id
from istio_sdk.xds import wire
from istio_sdk.xds.client import ClientSession, Update
from istio_sdk.xds.errors import XdsError
from istio_sdk.xds.types import is_full_state, resolve_type_url, unpack_bytes

__all__ = [
    "PilotClient",
    "PilotClientError",
    "ResourceUpdate",
    "Validator",
    "grpc_node",
    "sidecar_node",
]

log = logging.getLogger("istio_sdk.pilot.client")

_SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
_DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

Payload = betterproto2.Message | wire.RawAny
Validator = Callable[[str, Mapping[str, Payload]], str | None]
"""``(type_url, resources) -> None`` to ACK, or a reason string to NACK."""


class PilotClientError(Exception):
    """A Pilot client call that cannot succeed (bad address, timeout waiting for resources)."""


def _metadata(fields: Mapping[str, Any]) -> Struct:
    struct: Struct = Struct.from_dict(dict(fields))
    return struct


def sidecar_node(
    ip: str,
    pod: str,
    namespace: str,
    *,
    domain: str = "svc.cluster.local",
    cluster_id: str = "Kubernetes",
    istio_version: str = "1.24.0",
    labels: Mapping[str, str] | None = None,
    mesh_id: str = "cluster.local",
    extra_metadata: Mapping[str, Any] | None = None,
) -> Node:
    """The xDS ``Node`` of an Istio sidecar: id ``sidecar~IP~POD.NS~NS.DOMAIN`` plus metadata.

    Metadata carries what istiod reads: ``NAMESPACE``, ``ISTIO_VERSION``, ``CLUSTER_ID``,
    ``LABELS``, ``INSTANCE_IPS``, ``MESH_ID``, ``NAME``, ``POD_PORTS`` absent.
    """
    meta: dict[str, Any] = {
        "NAMESPACE": namespace,
        "NAME": pod,
        "ISTIO_VERSION": istio_version,
        "CLUSTER_ID": cluster_id,
        "MESH_ID": mesh_id,
        "INSTANCE_IPS": ip,
        "LABELS": dict(labels or {}),
    }
    meta.update(extra_metadata or {})
    return Node(
        id=format_node_id("sidecar", ip, pod, namespace, f"{namespace}.{domain}"),
        cluster=f"{(labels or {}).get('app', pod)}.{namespace}",
        metadata=_metadata(meta),
        user_agent_name="istio-sdk",
    )


def grpc_node(
    ip: str,
    pod: str,
    namespace: str,
    *,
    domain: str = "svc.cluster.local",
    labels: Mapping[str, str] | None = None,
    istio_version: str = "1.24.0",
    cluster_id: str = "Kubernetes",
) -> Node:
    """The ``Node`` of a proxyless gRPC client as Istio's grpc-agent template writes it.

    Same id form as a sidecar, with metadata ``GENERATOR: grpc`` so istiod uses its gRPC
    generator (API listeners named after the dialled ``host:port``).
    """
    return sidecar_node(
        ip,
        pod,
        namespace,
        domain=domain,
        labels=labels,
        istio_version=istio_version,
        cluster_id=cluster_id,
        extra_metadata={"GENERATOR": "grpc"},
    )


@attrs.frozen
class ResourceUpdate:
    """One response as the application sees it, after the validation hook.

    ``resources`` holds the resources the response carried (decoded messages, or
    :class:`~istio_sdk.xds.wire.RawAny` when the client was made with ``decode=False``);
    ``removed`` the names it deleted. ``accepted`` is ``False`` when the client NACKed it, and
    ``error`` then says why.
    """

    type_url: str
    version: str
    nonce: str
    resources: Mapping[str, Payload]
    removed: frozenset[str]
    accepted: bool
    error: str = ""


def _parse_target(target: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(target, tuple):
        return target
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise PilotClientError(f"xDS address must be HOST:PORT, got {target!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class PilotClient:
    """An ADS client. Use as ``async with PilotClient("127.0.0.1:15010", node=...) as c``.

    ``mode`` picks State of the World (``"sotw"``) or delta xDS. ``validator`` decides ACK or
    NACK per response. ``decode=False`` keeps resources as raw ``Any`` bytes (cheap, for load
    tests). Backoff starts at ``backoff_initial`` seconds, doubles per failed attempt up to
    ``backoff_max``, and is spread by ``backoff_jitter`` (a fraction: each delay is drawn from
    ``[d * (1 - backoff_jitter), d]``, never above ``backoff_max``). ``sleep`` is what the
    reconnect loop waits with (injectable so tests can drive it without waiting). ``channel``
    injects a grpclib ``Channel`` (for example over a Unix socket, or with custom TLS) to use
    instead of dialling ``target``; it is reused across reconnects and left open by
    :meth:`close`.
    """

    def __init__(
        self,
        target: str | tuple[str, int],
        *,
        node: Node | None = None,
        mode: Literal["sotw", "delta"] = "sotw",
        validator: Validator | None = None,
        decode: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        backoff_jitter: float = 0.2,
        grpc_settings: GrpcSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        channel: Channel | None = None,
    ) -> None:
        check_backoff(backoff_initial, backoff_max, backoff_jitter)
        self.host, self.port = _parse_target(target)
        self._channel = channel
        self.node = node or sidecar_node("127.0.0.1", "istio-sdk-client", "default")
        self.mode: Literal["sotw", "delta"] = mode
        self.validator = validator
        self.decode = decode
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_jitter = backoff_jitter
        self._sleep = sleep
        self._settings = grpc_settings
        self._session = ClientSession(self.node, mode)
        self._state: dict[str, dict[str, Payload]] = {}
        self._versions: dict[str, str] = {}
        self._outbox: asyncio.Queue[DiscoveryRequest | DeltaDiscoveryRequest] | None = None
        self._subscribers: list[asyncio.Queue[ResourceUpdate | None]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.acks = 0
        self.nacks = 0
        self.last_error = ""

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the connection loop in the background (returns at once)."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Close the stream and stop reconnecting; update iterators end."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for queue in self._subscribers:
            queue.put_nowait(None)

    async def __aenter__(self) -> PilotClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- subscriptions ---------------------------------------------------------------------
    def subscribe(self, type_url: str, names: Iterable[str] | None = None) -> None:
        """Watch ``names`` of ``type_url`` (a URL or short name like ``clusters``; ``None``:
        everything)."""
        url = resolve_type_url(type_url)
        self._enqueue(self._session.subscribe(url, names))

    def unsubscribe(self, type_url: str, names: Iterable[str] | None = None) -> None:
        """Stop watching ``names`` (``None``: all) of ``type_url``; their resources are dropped."""
        url = resolve_type_url(type_url)
        self._enqueue(self._session.unsubscribe(url, names))
        held = self._state.get(url, {})
        keep = self._session.subscribed_names(url)
        if "*" not in keep:
            for name in [n for n in held if n not in keep]:
                del held[name]

    def _enqueue(self, request: DiscoveryRequest | DeltaDiscoveryRequest | None) -> None:
        if request is not None and self._outbox is not None and self.connected.is_set():
            self._outbox.put_nowait(request)

    # -- state -----------------------------------------------------------------------------
    def resources(self, type_url: str) -> dict[str, Payload]:
        """The accepted resources of ``type_url`` now, by name."""
        return dict(self._state.get(resolve_type_url(type_url), {}))

    def version(self, type_url: str) -> str:
        """The version of the last accepted response of ``type_url``."""
        return self._versions.get(resolve_type_url(type_url), "")

    async def updates(self) -> AsyncIterator[ResourceUpdate]:
        """Every response from now on (accepted or not), until :meth:`close`."""
        queue: asyncio.Queue[ResourceUpdate | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            self._subscribers.remove(queue)

    async def wait_for(
        self,
        type_url: str,
        names: Iterable[str] | None = None,
        *,
        predicate: Callable[[dict[str, Payload]], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - a plain deadline is the common case
    ) -> dict[str, Payload]:
        """Wait until ``type_url`` holds ``names`` (or ``predicate`` holds); returns the state.

        With neither, waits for the first accepted response of the type. Raises
        :class:`PilotClientError` on timeout, naming what was missing.
        """
        url = resolve_type_url(type_url)
        wanted = set(names or ())

        def done() -> bool:
            state = self._state.get(url)
            if state is None or url not in self._versions:
                return False
            if not wanted.issubset(state):
                return False
            return predicate is None or predicate(state)

        async def wait() -> None:
            while not done():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            have = sorted(self._state.get(url, {}))
            missing = sorted(wanted - set(have))
            raise PilotClientError(
                f"timed out after {timeout}s waiting for {url}"
                + (f"; missing {missing}" if missing else "; condition not met")
                + (f" (last error: {self.last_error})" if self.last_error else "")
            ) from None
        return dict(self._state[url])

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        first = True
        while not self._closing:
            if not first:
                self.reconnects += 1
            first = False
            channel = self._channel
            if channel is None:
                channel = create_channel(self.host, self.port, settings=self._settings)
            got_response = False
            try:
                got_response = await self._one_stream(channel)
                self.last_error = "stream closed by server"
            except XdsError as exc:
                # The server broke the protocol (or sent bytes that do not decode): start over.
                self.last_error = f"protocol error: {exc}"
                log.warning("ADS stream to %s:%d: %s", self.host, self.port, self.last_error)
            except (
                GRPCError,
                ProtocolError,
                StreamTerminatedError,
                ConnectionError,
                OSError,
            ) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("ADS stream to %s:%d failed: %s", self.host, self.port, self.last_error)
            finally:
                self.connected.clear()
                self._outbox = None
                if channel is not self._channel:  # an injected channel is its owner's to close
                    channel.close()
            if got_response:
                attempt = 0
            delay = backoff_delay(
                attempt, self.backoff_initial, self.backoff_max, jitter=self.backoff_jitter
            )
            attempt += 1
            await self._sleep(delay)

    async def _one_stream(self, channel: Any) -> bool:
        request_type = DeltaDiscoveryRequest if self.mode == "delta" else DiscoveryRequest
        method = _DELTA if self.mode == "delta" else _SOTW
        got_response = False
        async with channel.request(
            method, Cardinality.STREAM_STREAM, request_type, EncodedMessage
        ) as stream:
            await stream.send_request()
            outbox: asyncio.Queue[DiscoveryRequest | DeltaDiscoveryRequest] = asyncio.Queue()
            for request in self._session.reconnect():
                outbox.put_nowait(request)
            self._outbox = outbox
            self.connected.set()
            sender = asyncio.get_running_loop().create_task(self._send_loop(stream, outbox))
            try:
                while True:
                    message = await stream.recv_message()
                    if message is None:
                        break
                    got_response = True
                    reply = self._on_response(message.data)
                    if reply is not None:
                        outbox.put_nowait(reply)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
        return got_response

    @staticmethod
    async def _send_loop(
        stream: Any, outbox: asyncio.Queue[DiscoveryRequest | DeltaDiscoveryRequest]
    ) -> None:
        while True:
            request = await outbox.get()
            await stream.send_message(request)

    def _decode(self, raw: wire.RawAny) -> tuple[str, Payload]:
        if not self.decode:
            return wire.peek_name(raw.value), raw
        message = unpack_bytes(raw.type_url, raw.value)
        name = getattr(message, "cluster_name", "") or getattr(message, "name", "")
        return str(name), message

    def _on_response(self, data: bytes) -> DiscoveryRequest | DeltaDiscoveryRequest | None:
        decode_error = ""
        update: Update[Payload]
        if self.mode == "delta":
            delta = wire.decode_delta_response(data)
            items: dict[str, tuple[str, Payload]] = {}
            for res in delta.resources:
                if res.resource is None:
                    continue
                try:
                    _, payload = self._decode(res.resource)
                except Exception as exc:
                    decode_error = f"cannot decode {res.name}: {exc}"
                    continue
                items[res.name] = (res.version, payload)
            update = self._session.receive_delta(
                type_url=delta.type_url,
                system_version_info=delta.system_version_info,
                nonce=delta.nonce,
                resources=items,
                removed=delta.removed_resources,
            )
        else:
            env = wire.decode_discovery_response(data)
            decoded: dict[str, Payload] = {}
            for raw in env.resources:
                try:
                    name, payload = self._decode(raw)
                except Exception as exc:
                    decode_error = f"cannot decode a {raw.type_url} resource: {exc}"
                    continue
                decoded[name] = payload
            update = self._session.receive_sotw(
                type_url=env.type_url,
                version_info=env.version_info,
                nonce=env.nonce,
                resources=decoded,
            )
        reason = decode_error
        if not reason and self.validator is not None:
            try:
                reason = self.validator(update.type_url, update.resources) or ""
            except Exception as exc:
                reason = f"validator raised {type(exc).__name__}: {exc}"
        url = update.type_url
        reply: DiscoveryRequest | DeltaDiscoveryRequest
        if reason:
            self.nacks += 1
            self.last_error = f"NACKed {url} version {update.version_info}: {reason}"
            log.warning("%s", self.last_error)
            reply = self._session.nack(update, reason)
        else:
            self.acks += 1
            state = self._state.setdefault(url, {})
            if self.mode == "sotw" and is_full_state(url):
                state.clear()
            for name in update.removed:
                state.pop(name, None)
            state.update(update.resources)
            self._versions[url] = update.version_info
            reply = self._session.ack(update)
        event = ResourceUpdate(
            url,
            update.version_info,
            update.nonce,
            update.resources,
            update.removed,
            accepted=not reason,
            error=reason,
        )
        for queue in self._subscribers:
            queue.put_nowait(event)
        self._changed.set()
        return reply

    def __repr__(self) -> str:
        return f"PilotClient({self.host}:{self.port}, node={self.node.id!r}, mode={self.mode})"
