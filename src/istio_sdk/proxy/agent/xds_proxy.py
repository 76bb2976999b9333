"""The agent's xDS proxy: the proxy's ADS stream, relayed to Pilot with the agent's credentials.

Envoy (or a proxyless client) connects to the agent on a Unix socket (pilot-agent's
``./etc/istio/proxy/XDS``) or a local TCP port; for each of its streams the agent opens one
stream to Pilot (plaintext, or mutual TLS with the workload certificate its Citadel agent
holds: ``ssl_context`` is asked again on every connect, so a rotated certificate is used) and
relays messages both ways as bytes. What the relay decides is in
:class:`~istio_sdk.proxy.agent.xds_relay.SotwRelay`.

When Pilot goes away, a State-of-the-World stream stays open to the proxy: the agent reconnects
upstream with backoff (:func:`istio_sdk._backoff.backoff_delay`) and replays the proxy's
subscriptions, so the proxy sees Pilot's next answers as ordinary pushes. A delta stream is
ended with UNAVAILABLE instead (the proxy resumes it with its own resource versions), as
pilot-agent ends every stream. Counters are in
:class:`~istio_sdk.proxy.agent.agent_metrics.AgentMetrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.server import Server, Stream

from istio_sdk._backoff import backoff_delay, check_backoff
from istio_sdk._grpc import GrpcSettings, create_channel, create_server, recv_request_message
from istio_sdk._net import bound_port, remove_stale_socket
from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from istio_sdk.pilot._raw import EncodedMessage
from istio_sdk.proxy.agent.agent_metrics import AgentMetrics
from istio_sdk.proxy.agent.readiness import ConfigStatus
from istio_sdk.proxy.agent.xds_relay import ResponseHandler, SotwRelay, peek_response
from istio_sdk.xds._logsafe import peer_text
from istio_sdk.xds.errors import XdsError

__all__ = ["XdsProxy"]

log = logging.getLogger("istio_sdk.proxy.agent.xds_proxy")

SOTW_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
_UPSTREAM_ERRORS = (GRPCError, ProtocolError, StreamTerminatedError, ConnectionError, OSError)


async def _next_request(stream: Stream[Any, Any]) -> bytes | None:
    """The proxy's next request as bytes, or ``None`` once its stream is over."""
    try:
        message = await recv_request_message(stream)
    except (StreamTerminatedError, ConnectionError):
        return None
    return None if message is None else bytes(message.data)


async def _verdict(handler: ResponseHandler, value: bytes | None) -> str | None:
    """The handler's ACK (``None``) or NACK reason for a response's first resource, awaited in
    order (a later table never overtakes an earlier one); no resource is ACKed unread. A
    handler that raises NACKs with what it raised (logged), and the stream goes on."""
    if value is None:
        return None
    try:
        result = handler(value)
        if inspect.isawaitable(result):
            return await result
        return result
    except Exception as exc:
        log.exception("the agent's handler of an xDS response failed")
        return f"agent handler failed: {peer_text(exc)}"


class _UpstreamGone(Exception):
    """The upstream stream ended or failed; the caller reconnects."""


class XdsProxy:
    """Relays ADS from local proxies to Pilot at ``pilot_host:pilot_port``.

    ``ssl_context`` returns the TLS context for each upstream connect (``None``: plaintext).
    ``metadata`` goes out with every upstream stream (pilot-agent sends ``ClusterID``).
    ``handlers`` intercept response types the agent consumes itself (the DNS proxy's name
    table); ``config_status`` records ACKs for readiness.
    """

    def __init__(
        self,
        pilot_host: str,
        pilot_port: int,
        *,
        config_status: ConfigStatus | None = None,
        ssl_context: Callable[[], ssl.SSLContext | None] | None = None,
        metadata: Mapping[str, str] | None = None,
        handlers: Mapping[str, ResponseHandler] | None = None,
        metrics: AgentMetrics | None = None,
        grpc_settings: GrpcSettings | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 15.0,
        backoff_jitter: float = 0.5,
    ) -> None:
        check_backoff(backoff_initial, backoff_max, backoff_jitter)
        self.pilot_host = pilot_host
        self.pilot_port = pilot_port
        self.config_status = config_status or ConfigStatus()
        self._ssl_context = ssl_context or (lambda: None)
        # gRPC metadata keys are lowercase on the wire (Go's grpc lowercases "ClusterID" too)
        self.metadata = {k.lower(): v for k, v in (metadata or {"ClusterID": "Kubernetes"}).items()}
        self.handlers: dict[str, ResponseHandler] = dict(handlers or {})
        self.metrics = metrics or AgentMetrics()
        self._settings = grpc_settings or GrpcSettings()
        self.backoff = (backoff_initial, backoff_max, backoff_jitter)
        self._server: Server | None = None
        self._streams: set[Stream[Any, Any]] = set()
        self.upstream_connects = 0
        self.port: int | None = None
        self.path: str | None = None

    def add_handler(self, type_url: str, handler: ResponseHandler) -> None:
        """Consume responses of ``type_url`` in the agent (before :meth:`start`)."""
        self.handlers[type_url] = handler

    def __mapping__(self) -> dict[str, Handler]:
        return {
            SOTW_METHOD: Handler(
                self._sotw, Cardinality.STREAM_STREAM, EncodedMessage, EncodedMessage
            ),
            DELTA_METHOD: Handler(
                self._delta, Cardinality.STREAM_STREAM, EncodedMessage, EncodedMessage
            ),
        }

    async def start(
        self, *, path: str | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Listen on the Unix socket ``path`` (a stale socket file is replaced) or on
        ``host:port``."""
        server = create_server([self], self._settings)
        if path is not None:
            remove_stale_socket(path)
            await server.start(path=path)
            self.path = path
        else:
            await server.start(host, port)
            self.port = bound_port(server)
        self._server = server

    async def close(self) -> None:
        """Stop listening and end every relayed stream."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for stream in list(self._streams):
            with contextlib.suppress(Exception):
                await stream.send_trailing_metadata(
                    status=Status.UNAVAILABLE, status_message="agent shutting down"
                )
        await server.wait_closed()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    # -- the upstream -----------------------------------------------------------------------
    def _channel(self) -> Channel:
        return create_channel(
            self.pilot_host,
            self.pilot_port,
            ssl_context=self._ssl_context(),
            settings=self._settings,
        )

    def _upstream(self, channel: Channel, method: str, request_type: type[Any]) -> Any:
        """One ADS stream to Pilot, with the agent's metadata; responses stay bytes."""
        return channel.request(
            method, Cardinality.STREAM_STREAM, request_type, EncodedMessage, metadata=self.metadata
        )

    def _delay(self, attempt: int) -> float:
        initial, maximum, jitter = self.backoff
        return backoff_delay(attempt, initial, maximum, jitter=jitter)

    # -- State of the World -----------------------------------------------------------------
    async def _sotw(self, stream: Stream[Any, Any]) -> None:
        relay = SotwRelay(self.config_status, self.handlers)
        outbox: asyncio.Queue[DiscoveryRequest] = asyncio.Queue()
        self._streams.add(stream)
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read_proxy(stream, relay, outbox))
        upstream: asyncio.Task[bool] | None = None
        try:
            attempt = 0
            while not reader.done():
                upstream = loop.create_task(self._sotw_upstream(stream, relay, outbox))
                await asyncio.wait({reader, upstream}, return_when=asyncio.FIRST_COMPLETED)
                if not upstream.done():
                    break  # the proxy went away (or sent garbage): its stream ends below
                got_response = False
                try:
                    got_response = upstream.result()
                except (_UpstreamGone, *_UPSTREAM_ERRORS, XdsError) as exc:
                    self.metrics.istiod_connection_failures.inc()
                    log.info(
                        "upstream xDS stream to %s:%d failed: %s",
                        self.pilot_host,
                        self.pilot_port,
                        exc,
                    )
                upstream = None
                if got_response:
                    attempt = 0
                delay = self._delay(attempt)
                attempt += 1
                sleeper = loop.create_task(asyncio.sleep(delay))
                await asyncio.wait({reader, sleeper}, return_when=asyncio.FIRST_COMPLETED)
                sleeper.cancel()
            await reader  # re-raises the proxy's malformed-request error as its stream status
        finally:
            for task in (reader, upstream):
                if task is not None and not task.done():
                    task.cancel()
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            self._streams.discard(stream)

    async def _read_proxy(
        self, stream: Stream[Any, Any], relay: SotwRelay, outbox: asyncio.Queue[DiscoveryRequest]
    ) -> None:
        while (data := await _next_request(stream)) is not None:
            try:
                request = DiscoveryRequest.FromString(data)
            except Exception as exc:  # any decode failure is the proxy's bad request
                raise GRPCError(
                    Status.INVALID_ARGUMENT, f"malformed discovery request: {peer_text(exc)}"
                ) from None
            self.metrics.xds_requests.inc()
            extra = relay.from_proxy(request)
            outbox.put_nowait(request)
            for added in extra:
                outbox.put_nowait(added)

    async def _sotw_upstream(
        self, stream: Stream[Any, Any], relay: SotwRelay, outbox: asyncio.Queue[DiscoveryRequest]
    ) -> bool:
        """One upstream stream; returns whether Pilot answered anything (raises when it fails)."""
        got_response = False
        channel = self._channel()
        try:
            async with self._upstream(channel, SOTW_METHOD, DiscoveryRequest) as upstream:
                await upstream.send_request()
                self.upstream_connects += 1
                replay = relay.replay()
                while not outbox.empty():  # the replay restates everything queued
                    outbox.get_nowait()
                for request in replay:
                    await upstream.send_message(request)
                sender = asyncio.get_running_loop().create_task(self._pump(upstream, outbox))
                try:
                    while True:
                        message = await upstream.recv_message()
                        if message is None:
                            raise _UpstreamGone("stream closed by Pilot")
                        got_response = True
                        envelope = peek_response(message.data)
                        self.metrics.xds_responses.inc()
                        handler = relay.from_upstream(envelope)
                        if handler is not None:
                            problem = await _verdict(handler, envelope.first_resource)
                            outbox.put_nowait(relay.own_answer(envelope, problem))
                            continue
                        await stream.send_message(message)
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await sender
        except _UpstreamGone:
            raise
        except GRPCError as exc:
            if got_response and exc.status is Status.UNAVAILABLE:
                raise _UpstreamGone(f"Pilot ended the stream: {exc.message}") from None
            raise
        finally:
            channel.close()

    @staticmethod
    async def _pump(upstream: Any, outbox: asyncio.Queue[DiscoveryRequest]) -> None:
        while True:
            request = await outbox.get()
            await upstream.send_message(request)

    # -- delta --------------------------------------------------------------------------------
    async def _delta(self, stream: Stream[Any, Any]) -> None:
        self._streams.add(stream)
        channel = self._channel()
        try:
            try:
                async with self._upstream(channel, DELTA_METHOD, EncodedMessage) as upstream:
                    await upstream.send_request()
                    self.upstream_connects += 1
                    up = asyncio.get_running_loop().create_task(self._delta_down(stream, upstream))
                    try:
                        while (data := await _next_request(stream)) is not None:
                            self._delta_request_seen(data)
                            await upstream.send_message(EncodedMessage(data))
                    finally:
                        up.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await up
            except (*_UPSTREAM_ERRORS, XdsError) as exc:
                self.metrics.istiod_connection_failures.inc()
                raise GRPCError(
                    Status.UNAVAILABLE, f"upstream xDS stream failed: {peer_text(exc)}"
                ) from None
        finally:
            channel.close()
            self._streams.discard(stream)

    def _delta_request_seen(self, data: bytes) -> None:
        try:
            request = DeltaDiscoveryRequest.FromString(data)
        except Exception as exc:
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"malformed delta discovery request: {peer_text(exc)}"
            ) from None
        self.metrics.xds_requests.inc()
        self.config_status.request_seen(
            request.type_url, request.response_nonce, rejected=request.error_detail is not None
        )

    async def _delta_down(self, stream: Stream[Any, Any], upstream: Any) -> None:
        while True:
            message = await upstream.recv_message()
            if message is None:
                await stream.send_trailing_metadata(
                    status=Status.UNAVAILABLE, status_message="Pilot closed the stream"
                )
                return
            envelope = peek_response(message.data, delta=True)
            self.metrics.xds_responses.inc()
            self.config_status.response_sent(envelope.type_url, envelope.nonce)
            await stream.send_message(message)
