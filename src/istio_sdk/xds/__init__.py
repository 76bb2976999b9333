"""xDS protocol core, sans-I/O: resource types, ``Any`` packing, client and server ADS state.

Nothing here opens a socket or needs an event loop. :class:`ClientSession` is the client half of
ADS (what is subscribed, what to ACK or NACK, how to resubscribe after a reconnect);
:class:`ServerSession` is one server stream (who watches what, what was sent and acknowledged,
what to push next, in make-before-break order). Both speak State of the World and delta.
:mod:`istio_sdk.xds.wire` encodes the envelopes around already-serialized resources.
"""

from istio_sdk.xds.client import CLIENT_TRANSITIONS, ClientSession, ClientTypeState, Update
from istio_sdk.xds.errors import (
    MalformedMessageError,
    UnknownTypeUrlError,
    XdsError,
    XdsProtocolError,
)
from istio_sdk.xds.server import (
    SERVER_TRANSITIONS,
    Push,
    RequestKind,
    RequestResult,
    ServerSession,
    ServerTypeState,
    TypeStatus,
)
from istio_sdk.xds.types import (
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SCOPED_ROUTE,
    SECRET,
    VIRTUAL_HOST,
    ResourceType,
    in_push_order,
    is_full_state,
    is_known,
    is_legacy_wildcard,
    known_type_urls,
    message_class,
    pack,
    resolve_type_url,
    resource_name,
    resource_type,
    type_url_of,
    unpack,
    unpack_bytes,
)

__all__ = [
    "CLIENT_TRANSITIONS",
    "CLUSTER",
    "ENDPOINT",
    "EXTENSION_CONFIG",
    "LISTENER",
    "PUSH_ORDER",
    "ROUTE",
    "SCOPED_ROUTE",
    "SECRET",
    "SERVER_TRANSITIONS",
    "VIRTUAL_HOST",
    "ClientSession",
    "ClientTypeState",
    "MalformedMessageError",
    "Push",
    "RequestKind",
    "RequestResult",
    "ResourceType",
    "ServerSession",
    "ServerTypeState",
    "TypeStatus",
    "UnknownTypeUrlError",
    "Update",
    "XdsError",
    "XdsProtocolError",
    "in_push_order",
    "is_full_state",
    "is_known",
    "is_legacy_wildcard",
    "known_type_urls",
    "message_class",
    "pack",
    "resolve_type_url",
    "resource_name",
    "resource_type",
    "type_url_of",
    "unpack",
    "unpack_bytes",
]
