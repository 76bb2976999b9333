"""What the agent's xDS proxy decides about one proxy's ADS stream (sans-I/O).

The proxy (Envoy, or a proxyless client) speaks ADS to the agent; the agent speaks it to Pilot
with its own credentials. Bytes are relayed as they are; :class:`SotwRelay` only reads the
envelopes to decide four things:

- which relayed responses the proxy ACKs or NACKs (fed to
  :class:`~istio_sdk.proxy.agent.readiness.ConfigStatus`, which is readiness' "first config");
- which responses are the agent's own (a type with a handler, such as the DNS proxy's name
  table): those are not forwarded, the handler's verdict is ACKed or NACKed upstream by the
  agent, and they are asked for (wildcard) once the proxy has asked for listeners, as
  pilot-agent does;
- what to send a new upstream after Pilot went away while the proxy stayed connected: the
  node, then the proxy's latest request of every type it subscribed, with the version it last
  accepted and no nonce (a fresh stream);
- nothing else: Pilot's answers to the replayed requests reach the proxy like any push.

Envelope fields are read with the small wire readers of :mod:`istio_sdk.xds.wire`; a response
that does not parse is a protocol error of the upstream (:class:`MalformedMessageError`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import attrs

from istio_sdk.api.envoy.service.discovery.v3 import DiscoveryRequest
from istio_sdk.api.google.rpc import Status
from istio_sdk.proxy.agent.readiness import ConfigStatus
from istio_sdk.xds.errors import MalformedMessageError
from istio_sdk.xds.server import WILDCARD
from istio_sdk.xds.types import LISTENER
from istio_sdk.xds.wire import decode_any, iter_fields

__all__ = ["ResponseEnvelope", "ResponseHandler", "SotwRelay", "peek_response"]

ResponseHandler = Callable[[bytes], str | Awaitable[str | None] | None]
"""Takes the first resource's ``Any.value`` of an intercepted type; returns (or, when it is a
coroutine function, resolves to) ``None`` to ACK or the reason to NACK. An async handler lets
the agent decode and load what it got off the event loop (the DNS proxy's name table)."""

_INTERNAL = 13  # google.rpc.Code.INTERNAL, what pilot-agent NACKs its own types with


@attrs.frozen
class ResponseEnvelope:
    """The parts of a (SotW or delta) discovery response the relay reads."""

    type_url: str
    nonce: str
    version: str
    first_resource: bytes | None


def peek_response(data: bytes, *, delta: bool = False) -> ResponseEnvelope:
    """Type URL (field 4), nonce (5), version (1) and the first resource of a response.

    Delta responses wrap each resource in a ``Resource`` whose ``Any`` is field 2.
    """
    type_url = nonce = version = ""
    first: bytes | None = None
    for number, wire_type, value in iter_fields(data):
        if wire_type != 2 or not isinstance(value, bytes):
            continue
        if number == 4:
            type_url = value.decode("utf-8", "replace")
        elif number == 5:
            nonce = value.decode("utf-8", "replace")
        elif number == 1:
            version = value.decode("utf-8", "replace")
        elif number == 2 and first is None:
            first = value
    if first is not None:
        if delta:
            inner = [v for n, w, v in iter_fields(first) if n == 2 and w == 2]
            first = inner[0] if inner and isinstance(inner[0], bytes) else None
        if first is not None:
            first = decode_any(first).value
    if not type_url:
        raise MalformedMessageError("discovery response without a type_url")
    return ResponseEnvelope(type_url, nonce, version, first)


class SotwRelay:
    """One proxy stream's relay state (State of the World)."""

    def __init__(
        self,
        config_status: ConfigStatus,
        handlers: Mapping[str, ResponseHandler] | None = None,
    ) -> None:
        self.config_status = config_status
        self.handlers = dict(handlers or {})
        self._node: DiscoveryRequest | None = None
        self._latest: dict[str, DiscoveryRequest] = {}
        self._own_requested = False

    def from_proxy(self, request: DiscoveryRequest) -> list[DiscoveryRequest]:
        """The proxy sent ``request``: record it; the extra requests the agent adds after it
        (its own types, once the proxy asked for listeners)."""
        if self._node is None and request.node is not None:
            self._node = request
        type_url = request.type_url
        self.config_status.request_seen(
            type_url, request.response_nonce, rejected=request.error_detail is not None
        )
        self._latest[type_url] = DiscoveryRequest(
            version_info=request.version_info,
            resource_names=list(request.resource_names),
            type_url=type_url,
        )
        if self._own_requested or type_url != LISTENER or not self.handlers:
            return []
        self._own_requested = True
        return [DiscoveryRequest(type_url=url, resource_names=[WILDCARD]) for url in self.handlers]

    def from_upstream(self, envelope: ResponseEnvelope) -> ResponseHandler | None:
        """Pilot sent a response: ``None`` to forward it to the proxy, or the handler of an
        intercepted type, whose verdict :meth:`own_answer` turns into the agent's ACK or NACK
        (it is never forwarded)."""
        handler = self.handlers.get(envelope.type_url)
        if handler is None:
            self.config_status.response_sent(envelope.type_url, envelope.nonce)
        return handler

    @staticmethod
    def own_answer(envelope: ResponseEnvelope, problem: str | None) -> DiscoveryRequest:
        """The agent's ACK (``problem`` ``None``) or NACK of an intercepted response, restating
        the wildcard subscription."""
        return DiscoveryRequest(
            version_info=envelope.version,
            resource_names=[WILDCARD],  # restated: an empty list would unsubscribe
            type_url=envelope.type_url,
            response_nonce=envelope.nonce,
            error_detail=None if problem is None else Status(code=_INTERNAL, message=problem),
        )

    def replay(self) -> list[DiscoveryRequest]:
        """The requests that resume every subscription on a new upstream stream (node first)."""
        out: list[DiscoveryRequest] = []
        for type_url, latest in self._latest.items():
            out.append(
                DiscoveryRequest(
                    version_info=latest.version_info,
                    resource_names=list(latest.resource_names),
                    type_url=type_url,
                )
            )
        if self._own_requested:
            out.extend(
                DiscoveryRequest(type_url=url, resource_names=[WILDCARD]) for url in self.handlers
            )
        if out and self._node is not None:
            out[0].node = self._node.node
        return out
