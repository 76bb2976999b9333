"""The one place that configures grpclib servers and channels for every component.

grpclib leaves h2's default of 100 concurrent streams per connection in place and has no
setting for it: a client that opens stream 101 on one connection waits silently. Proxies,
agents and load generators multiplex many calls over one connection, so every server in this
project is built here, with the limit raised, keepalive on, window sizes and a maximum message
size applied the same way everywhere.
"""

from __future__ import annotations

import ssl
import struct
import weakref
from collections.abc import Collection
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
    "GrpcSettings",
    "LimitedProtoCodec",
    "create_channel",
    "create_server",
    "recv_request_message",
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
        self._stream_limit = settings.max_concurrent_streams
        # Open connections only: a closed connection's protocol is dropped with its transport.
        self._protocols: weakref.WeakSet[_StreamLimitProtocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        protocol.__class__ = _StreamLimitProtocol
        assert isinstance(protocol, _StreamLimitProtocol)
        protocol.max_concurrent_streams = self._stream_limit
        self._protocols.add(protocol)
        return protocol

    def close(self) -> None:
        super().close()
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.close()


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
