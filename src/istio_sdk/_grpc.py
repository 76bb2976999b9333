"""The one place that configures grpclib servers and channels for every component.

grpclib leaves h2's default of 100 concurrent streams per connection in place and has no
setting for it: a client that opens stream 101 on one connection waits silently. Proxies,
agents and load generators multiplex many calls over one connection, so every server in this
project is built here, with the limit raised, keepalive on, window sizes and a maximum message
size applied the same way everywhere.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ctypes
import ctypes.util
import gc
import ssl
import struct
import weakref
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import attrs
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.protocol import H2Protocol
from grpclib.server import Server
from grpclib.server import Stream as ServerStream
from h2.settings import SettingCodes

if TYPE_CHECKING:
    from asyncio import BaseTransport

    from grpclib._typing import IServable

__all__ = [
    "EncodedMessage",
    "GrpcSettings",
    "LimitedProtoCodec",
    "TlsAcceptStats",
    "create_channel",
    "create_server",
    "recv_request_message",
    "tls_accept_stats",
]

_MiB = 1024 * 1024


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class GrpcSettings:
    """Limits shared by servers and channels.

    Defaults follow istiod's gRPC server where it has one: 30 s keepalive pings with a 10 s
    timeout, 1 MiB windows; streams per connection are raised well above h2's 100.
    """

    max_concurrent_streams: int = attrs.field(default=4096, validator=_positive)
    """Streams a peer may open at once on one connection (server side)."""
    max_message_bytes: int = attrs.field(default=16 * _MiB, validator=_positive)
    """Largest message accepted or sent; larger ones fail with RESOURCE_EXHAUSTED."""
    keepalive_time: float | None = attrs.field(default=30.0, validator=_positive)
    """Seconds between keepalive pings on an idle connection; None turns pings off."""
    keepalive_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Seconds to wait for a ping's answer before the connection is closed."""
    connection_window_bytes: int = attrs.field(default=1 * _MiB, validator=_positive)
    stream_window_bytes: int = attrs.field(default=1 * _MiB, validator=_positive)
    tls_handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Seconds an accepted connection may take to finish its TLS handshake (server side);
    then it is closed. asyncio's own default is 60 s."""
    max_pending_tls_handshakes: int = attrs.field(default=256, validator=_positive)
    """Accepted connections that may be inside their TLS handshake at once (server side);
    each one beyond that closes the one that has waited longest, at once."""

    def configuration(self) -> Configuration:
        """The grpclib ``Configuration`` these settings stand for."""
        return Configuration(
            _keepalive_time=self.keepalive_time,
            _keepalive_timeout=self.keepalive_timeout,
            _keepalive_permit_without_calls=True,
            http2_connection_window_size=max(self.connection_window_bytes, 65535),
            http2_stream_window_size=max(self.stream_window_bytes, 65535),
        )


class LimitedProtoCodec(ProtoCodec):
    """grpclib's protobuf codec with a size limit in both directions.

    Works for betterproto2 messages (``SerializeToString``/``FromString``) and for the
    official runtime's alike.
    """

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes

    def encode(self, message: Any, message_type: Any) -> bytes:
        data: bytes = super().encode(message, message_type)
        if len(data) > self.max_message_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"message of {len(data)} bytes exceeds the limit of {self.max_message_bytes}",
            )
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        if len(data) > self.max_message_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"received message of {len(data)} bytes exceeds the limit of "
                f"{self.max_message_bytes}",
            )
        return super().decode(data, message_type)


class EncodedMessage:
    """Bytes that are already a serialized protobuf message.

    grpclib's protobuf codec calls ``SerializeToString`` to send and ``FromString`` to
    receive; this type makes both the identity, so responses assembled from cached bytes go
    out without re-encoding, and clients can read envelopes without a full decode.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        """The encoded bytes."""
        return self.data

    @classmethod
    def FromString(cls, data: bytes) -> EncodedMessage:
        """Wrap received bytes without decoding them."""
        return cls(bytes(data))

    def __len__(self) -> int:
        return len(self.data)


_GRPC_MESSAGE_HEADER = struct.Struct(">?I")


async def recv_request_message(stream: ServerStream[Any, Any]) -> Any:
    """The next request message of a server ``stream``, or None at its end; malformed framing
    raises ``GRPCError`` instead of escaping as an assertion.

    grpclib's own ``recv_message`` reads (and acknowledges, so the peer may keep sending) as
    many bytes as the 5-byte gRPC prefix announces before any size check, and asserts on a
    stream that ends early. Here a prefix announcing more than the codec's limit is refused
    before its body is read (RESOURCE_EXHAUSTED), and a short body is INVALID_ARGUMENT.
    """
    inner = stream._stream
    try:
        header = await inner.recv_data(_GRPC_MESSAGE_HEADER.size)
    except AssertionError:
        raise GRPCError(Status.INVALID_ARGUMENT, "truncated gRPC message prefix") from None
    if not header:
        return None
    compressed, length = _GRPC_MESSAGE_HEADER.unpack(header)
    if compressed:
        raise GRPCError(Status.UNIMPLEMENTED, "compressed messages are not supported")
    codec = stream._codec
    limit = codec.max_message_bytes if isinstance(codec, LimitedProtoCodec) else None
    if limit is not None and length > limit:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"announced message of {length} bytes exceeds the limit of {limit}",
        )
    try:
        body = await inner.recv_data(length)
    except AssertionError:
        raise GRPCError(
            Status.INVALID_ARGUMENT, f"the stream ended inside a message of {length} bytes"
        ) from None
    message = codec.decode(body, stream._recv_type)
    (message,) = await stream._dispatch.recv_message(message)
    return message


class _StreamLimitProtocol(H2Protocol):
    max_concurrent_streams: int = 100
    transport: BaseTransport | None = None

    def connection_made(self, transport: BaseTransport) -> None:
        super().connection_made(transport)
        self.transport = transport
        h2_conn = self.connection._connection
        h2_conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.max_concurrent_streams})
        self.connection.flush()


def _load_malloc_trim() -> Callable[[int], int] | None:
    # glibc keeps freed heap pages after a burst of connections (each TLS handshake holds a
    # 256 KiB read buffer); malloc_trim hands them back to the system.
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_malloc_trim = _load_malloc_trim()
_TRIM_DELAY_SECONDS = 1.0


class _TlsHandshakeGate(asyncio.Protocol):
    """An accepted TCP connection until its TLS handshake is over, then grpclib's protocol.

    asyncio wraps every accepted connection in TLS at once, with a 256 KiB read buffer and a
    60 s handshake timeout, and builds grpclib's (large) HTTP/2 protocol for it up front. A
    peer that connects and never finishes TLS thus holds about 290 KiB for a minute, and
    nothing bounds how many do. Here the server accepts plain TCP, counts the connections
    still in their handshake (over the limit, the one waiting longest is closed), runs the
    handshake with ``start_tls`` under its own timeout, and only then builds the HTTP/2
    protocol.
    """

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        # Application data that arrives with the end of the handshake, before the HTTP/2
        # protocol takes over the transport.
        self._early = bytearray()
        self._eof = False

    def connection_made(self, transport: BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        # No plain bytes reach this protocol: they are the peer's TLS records, start_tls reads
        # them (it resumes reading once its TLS protocol owns the transport).
        transport.pause_reading()
        self._server._admit(self)
        self._task = asyncio.get_running_loop().create_task(
            self._handshake(transport), name="grpc-tls-handshake"
        )

    async def _handshake(self, transport: asyncio.Transport) -> None:
        server = self._server
        loop = asyncio.get_running_loop()
        assert server._tls_context is not None
        try:
            tls = await loop.start_tls(
                transport,
                self,
                server._tls_context,
                server_side=True,
                ssl_handshake_timeout=server._settings.tls_handshake_timeout,
            )
        except Exception:  # a timeout, a TLS alert, a reset: the peer is gone either way
            self.abort()
            server._handshake_over(self, ok=False)
            return
        except asyncio.CancelledError:
            self.abort()
            server._handshake_over(self, ok=False)
            raise
        server._handshake_over(self, ok=True)
        if tls is None or tls.is_closing():
            return
        protocol = server._h2_protocol()
        tls.set_protocol(protocol)
        protocol.connection_made(tls)
        if self._early:
            protocol.data_received(bytes(self._early))
            self._early.clear()
        if self._eof:
            protocol.eof_received()

    def abort(self) -> None:
        """Close the connection now and free its TLS read buffer."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        transport = self._transport
        if transport is None:
            return
        tls_protocol = transport.get_protocol()
        transport.abort()
        if isinstance(tls_protocol, asyncio.sslproto.SSLProtocol):
            # asyncio's TLS protocol and its transport reference each other, so its 256 KiB
            # read buffer would wait for the cyclic garbage collector; the socket is closed
            # and no longer read, so drop the buffer now (private names, hence the getattr).
            for name in ("_ssl_buffer_view", "_ssl_buffer"):
                if getattr(tls_protocol, name, None) is not None:
                    setattr(tls_protocol, name, None)

    def data_received(self, data: bytes) -> None:
        self._early += data

    def eof_received(self) -> bool | None:
        self._eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


class _Server(Server):
    """grpclib's Server with the per-connection stream limit raised, closing what it accepted.

    grpclib's ``close()`` stops listening and cancels running handlers, but connections that
    were already accepted stay open and keep answering new calls. A stopped server must not
    answer, so ``close()`` here also closes every accepted connection; clients then see the
    connection drop and reconnect (and are refused) instead of talking to a server that was
    stopped.
    """

    def __init__(
        self, handlers: Collection[IServable], settings: GrpcSettings, codec: ProtoCodec
    ) -> None:
        super().__init__(handlers, codec=codec, config=settings.configuration())
        self._settings = settings
        self._stream_limit = settings.max_concurrent_streams
        # Open connections only: a closed connection's protocol is dropped with its transport.
        self._protocols: weakref.WeakSet[_StreamLimitProtocol] = weakref.WeakSet()
        self._tls_context: ssl.SSLContext | None = None
        # Insertion-ordered: the first key is the connection that has waited longest.
        self._handshaking: dict[_TlsHandshakeGate, None] = {}
        self._trim_handle: asyncio.TimerHandle | None = None
        self.tls_stats = TlsAcceptStats()

    async def start(self, *args: Any, ssl: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        """grpclib's ``start``; with ``ssl``, TLS runs behind the handshake gate."""
        self._tls_context = ssl
        await super().start(*args, **kwargs)

    def _protocol_factory(self) -> H2Protocol:
        if self._tls_context is not None:
            # The listener speaks plain TCP; the gate adds TLS (typed as grpclib expects).
            return _TlsHandshakeGate(self)  # type: ignore[return-value]
        return self._h2_protocol()

    def _admit(self, gate: _TlsHandshakeGate) -> None:
        # Over the limit, the connection that has waited longest goes: a flood of stalled
        # connections can then delay a real client only by opening the whole limit's worth
        # within that client's own (millisecond) handshake, never lock it out.
        while len(self._handshaking) >= self._settings.max_pending_tls_handshakes:
            oldest = next(iter(self._handshaking))
            self._handshaking.pop(oldest)
            self.tls_stats.evicted += 1
            oldest.abort()
        self._handshaking[gate] = None
        self.tls_stats.pending = len(self._handshaking)

    def _handshake_over(self, gate: _TlsHandshakeGate, *, ok: bool) -> None:
        evicted = gate not in self._handshaking
        self._handshaking.pop(gate, None)
        self.tls_stats.pending = len(self._handshaking)
        if ok:
            self.tls_stats.completed += 1
            return
        if not evicted:
            self.tls_stats.failed += 1
        if self._trim_handle is None:
            self._trim_handle = asyncio.get_running_loop().call_later(
                _TRIM_DELAY_SECONDS, self._trim
            )

    def _trim(self) -> None:
        # After failed handshakes (at most once a second): collect the TLS objects that only
        # the cyclic collector frees, then give the freed heap back to the system.
        self._trim_handle = None
        gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)

    def _h2_protocol(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        protocol.__class__ = _StreamLimitProtocol
        assert isinstance(protocol, _StreamLimitProtocol)
        protocol.max_concurrent_streams = self._stream_limit
        self._protocols.add(protocol)
        return protocol

    def close(self) -> None:
        super().close()
        if self._trim_handle is not None:
            self._trim_handle.cancel()
            self._trim_handle = None
        for gate in list(self._handshaking):
            gate.abort()
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.close()


@attrs.define
class TlsAcceptStats:
    """What a TLS server's handshake gate did with the connections it accepted."""

    pending: int = 0
    """Connections inside their TLS handshake now."""
    completed: int = 0
    failed: int = 0
    """Handshakes that failed, timed out or were cut by the peer."""
    evicted: int = 0
    """Pending handshakes closed early because the limit was reached (oldest first)."""


def tls_accept_stats(server: Server) -> TlsAcceptStats | None:
    """The handshake gate's counters of a server made by :func:`create_server` (None for
    another server)."""
    return server.tls_stats if isinstance(server, _Server) else None


def create_server(handlers: Collection[IServable], settings: GrpcSettings | None = None) -> Server:
    """A grpclib server for ``handlers`` (generated ``XxxBase`` subclasses), configured.

    Start it as usual: ``await server.start(host, port, ssl=context)``.
    """
    settings = settings or GrpcSettings()
    return _Server(handlers, settings, LimitedProtoCodec(settings.max_message_bytes))


def create_channel(
    host: str | None = None,
    port: int | None = None,
    *,
    path: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    settings: GrpcSettings | None = None,
) -> Channel:
    """A grpclib channel to ``host:port`` (or a Unix socket ``path``), configured.

    Pass the channel to a generated ``XxxStub``. ``ssl_context`` turns TLS on.
    """
    settings = settings or GrpcSettings()
    return Channel(
        host,
        port,
        path=path,
        ssl=ssl_context,
        config=settings.configuration(),
        codec=LimitedProtoCodec(settings.max_message_bytes),
    )
