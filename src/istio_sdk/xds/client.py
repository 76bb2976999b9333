"""Client side of ADS as a sans-I/O state object (State of the World and delta).

:class:`ClientSession` knows, per type URL, what the client subscribed to, which response is
waiting for an ACK or NACK, the last version it accepted and (delta) the version of every
resource it holds. It turns calls (subscribe, a response arrived, ack, nack, the stream broke)
into the requests to send; it never touches a socket. The same object serves both modes:
``ClientSession(mode="sotw")`` builds ``DiscoveryRequest`` and ``mode="delta"`` builds
``DeltaDiscoveryRequest``.

Per type, a response moves the type from ``IDLE`` to ``AWAITING_DECISION``; ACK or NACK moves
it back. The legal moves are the table :data:`CLIENT_TRANSITIONS`; anything else raises
:class:`~istio_sdk.xds.errors.XdsProtocolError` naming the state.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Generic, Literal, TypeVar

import attrs

from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from istio_sdk.api.google.rpc import Status
from istio_sdk.xds.errors import XdsProtocolError, next_state
from istio_sdk.xds.types import is_full_state

Mode = Literal["sotw", "delta"]
WILDCARD = "*"
# gRPC's INVALID_ARGUMENT: what Envoy puts in error_detail when it rejects a response.
_INVALID_ARGUMENT = 3

P = TypeVar("P")


class ClientTypeState(enum.Enum):
    """Where one type's response cycle is."""

    IDLE = "IDLE"
    AWAITING_DECISION = "AWAITING_DECISION"


class ClientEvent(enum.Enum):
    """What can happen to one type on the client side."""

    RECEIVE = "RECEIVE"
    ACK = "ACK"
    NACK = "NACK"


CLIENT_TRANSITIONS: dict[tuple[ClientTypeState, ClientEvent], ClientTypeState] = {
    (ClientTypeState.IDLE, ClientEvent.RECEIVE): ClientTypeState.AWAITING_DECISION,
    # A newer response supersedes one not yet answered; only the newest may be answered.
    (ClientTypeState.AWAITING_DECISION, ClientEvent.RECEIVE): ClientTypeState.AWAITING_DECISION,
    (ClientTypeState.AWAITING_DECISION, ClientEvent.ACK): ClientTypeState.IDLE,
    (ClientTypeState.AWAITING_DECISION, ClientEvent.NACK): ClientTypeState.IDLE,
}


@attrs.frozen
class Update(Generic[P]):
    """One response as the client sees it, waiting for :meth:`ClientSession.ack`/``nack``.

    ``resources`` maps names to whatever payload the caller handed in (decoded messages or raw
    ``Any`` bytes). ``removed`` lists names the response deleted: delta's
    ``removed_resources``, or (SotW, LDS/CDS) names held before and absent now.
    """

    type_url: str
    version_info: str
    nonce: str
    resources: Mapping[str, P]
    removed: frozenset[str]


@attrs.define
class _TypeState:
    wildcard: bool = False
    names: set[str] = attrs.Factory(set)
    state: ClientTypeState = ClientTypeState.IDLE
    pending_nonce: str = ""
    pending_version: str = ""
    answered_nonce: str = ""
    accepted_version: str = ""
    # name -> version of every resource the client holds (delta versions; SotW: response version)
    held: dict[str, str] = attrs.Factory(dict)
    # held before the pending response was applied, to restore on NACK
    held_before: dict[str, str] | None = None
    active: bool = True

    def watches(self, name: str) -> bool:
        return self.wildcard or name in self.names


def _transition(ts: _TypeState, event: ClientEvent, type_url: str) -> None:
    ts.state = next_state(
        CLIENT_TRANSITIONS,
        ts.state,
        event,
        type_url=type_url,
        illegal="cannot {event} with no response awaiting a decision",
    )


class ClientSession:
    """Subscription and ACK state of one ADS client across streams.

    Subscriptions and held resource versions survive :meth:`reconnect`; nonces do not.
    """

    def __init__(self, node: Node | None = None, mode: Mode = "sotw") -> None:
        if mode not in ("sotw", "delta"):
            raise ValueError(f"mode must be 'sotw' or 'delta', not {mode!r}")
        self.mode: Mode = mode
        self.node = node
        self._types: dict[str, _TypeState] = {}
        self._node_sent = False

    # -- views ---------------------------------------------------------------------------
    @property
    def type_urls(self) -> list[str]:
        """Types currently subscribed (wildcard or with names)."""
        return [u for u, t in self._types.items() if t.active]

    def subscribed_names(self, type_url: str) -> frozenset[str]:
        """Names subscribed for ``type_url`` (``"*"`` included for a wildcard)."""
        ts = self._types.get(type_url)
        if ts is None:
            return frozenset()
        return frozenset(ts.names | ({WILDCARD} if ts.wildcard else set()))

    def is_wildcard(self, type_url: str) -> bool:
        """Whether the client subscribed to every resource of ``type_url``."""
        ts = self._types.get(type_url)
        return ts is not None and ts.wildcard

    def state(self, type_url: str) -> ClientTypeState:
        """The response-cycle state of ``type_url``."""
        ts = self._types.get(type_url)
        return ts.state if ts else ClientTypeState.IDLE

    def accepted_version(self, type_url: str) -> str:
        """Version of the last response ACKed for ``type_url``."""
        ts = self._types.get(type_url)
        return ts.accepted_version if ts else ""

    def held_versions(self, type_url: str) -> dict[str, str]:
        """Name -> version of the resources the client holds for ``type_url``."""
        ts = self._types.get(type_url)
        return dict(ts.held) if ts else {}

    # -- subscriptions ---------------------------------------------------------------------
    def subscribe(
        self, type_url: str, names: Iterable[str] | None = None
    ) -> DiscoveryRequest | DeltaDiscoveryRequest | None:
        """Add names (``None`` or ``"*"``: everything) to the subscription of ``type_url``.

        Returns the request to send, or ``None`` when nothing changed.
        """
        wanted = None if names is None else set(names)
        if wanted is not None and not wanted:
            return None  # an empty first request would mean "everything" for LDS/CDS
        ts = self._types.setdefault(type_url, _TypeState(active=False))
        new_wild = wanted is None or WILDCARD in wanted
        added = {n for n in (wanted or ()) if n != WILDCARD} - ts.names
        first = not ts.active
        wildcard_added = new_wild and not ts.wildcard
        ts.active = True
        ts.wildcard = ts.wildcard or new_wild
        ts.names |= added
        if not (first or added or wildcard_added):
            return None
        if self.mode == "delta":
            subs = sorted(added)
            if wildcard_added:
                subs.insert(0, WILDCARD)
            return self._delta_request(type_url, subscribe=subs)
        return self._sotw_request(type_url, ts, ts.answered_nonce)

    def unsubscribe(
        self, type_url: str, names: Iterable[str] | None = None
    ) -> DiscoveryRequest | DeltaDiscoveryRequest | None:
        """Drop names (``None``: all, wildcard included) from ``type_url``'s subscription.

        Resources no longer subscribed are forgotten. Returns the request to send or ``None``.
        """
        ts = self._types.get(type_url)
        if ts is None or not ts.active:
            return None
        if names is None:
            removed = set(ts.names)
            drop_wild = ts.wildcard
        else:
            wanted = set(names)
            removed = ts.names & wanted
            drop_wild = ts.wildcard and WILDCARD in wanted
        if not removed and not drop_wild:
            return None
        ts.names -= removed
        if drop_wild:
            ts.wildcard = False
        for name in list(ts.held):
            if not ts.wildcard and name not in ts.names:
                del ts.held[name]
        if self.mode == "delta":
            unsubs = sorted(removed) + ([WILDCARD] if drop_wild else [])
            req = self._delta_request(type_url, unsubscribe=unsubs)
        else:
            req = self._sotw_request(type_url, ts, ts.answered_nonce)
        if not ts.wildcard and not ts.names:
            ts.active = False
        return req

    # -- responses -------------------------------------------------------------------------
    def receive_sotw(
        self, *, type_url: str, version_info: str, nonce: str, resources: Mapping[str, P]
    ) -> Update[P]:
        """A ``DiscoveryResponse`` arrived; returns the :class:`Update` to decide on."""
        if self.mode != "sotw":
            raise XdsProtocolError(
                "SotW response on a delta session", state="delta", event="RECEIVE"
            )
        ts = self._checked_receive(type_url, nonce)
        resources = {n: p for n, p in resources.items() if ts.watches(n)}
        removed: frozenset[str] = frozenset()
        ts.held_before = dict(ts.held) if ts.held_before is None else ts.held_before
        if is_full_state(type_url):
            removed = frozenset(set(ts.held) - set(resources))
            ts.held = dict.fromkeys(resources, version_info)
        else:
            ts.held.update(dict.fromkeys(resources, version_info))
        ts.pending_nonce = nonce
        ts.pending_version = version_info
        return Update(type_url, version_info, nonce, dict(resources), removed)

    def receive_delta(
        self,
        *,
        type_url: str,
        system_version_info: str,
        nonce: str,
        resources: Mapping[str, tuple[str, P]],
        removed: Iterable[str] = (),
    ) -> Update[P]:
        """A ``DeltaDiscoveryResponse`` arrived; ``resources`` maps name -> (version, payload)."""
        if self.mode != "delta":
            raise XdsProtocolError(
                "delta response on a SotW session", state="sotw", event="RECEIVE"
            )
        ts = self._checked_receive(type_url, nonce)
        ts.held_before = dict(ts.held) if ts.held_before is None else ts.held_before
        # Resources that race with an unsubscribe are not wanted any more: drop them.
        resources = {n: p for n, p in resources.items() if ts.watches(n)}
        gone = frozenset(removed)
        for name in gone:
            ts.held.pop(name, None)
        for name, (version, _) in resources.items():
            ts.held[name] = version
        ts.pending_nonce = nonce
        ts.pending_version = system_version_info
        payloads = {name: payload for name, (_, payload) in resources.items()}
        return Update(type_url, system_version_info, nonce, payloads, gone)

    def _checked_receive(self, type_url: str, nonce: str) -> _TypeState:
        ts = self._types.get(type_url)
        if ts is None:
            raise XdsProtocolError(
                "response for a type never subscribed",
                state="UNSUBSCRIBED",
                event="RECEIVE",
                type_url=type_url,
            )
        if not nonce:
            raise XdsProtocolError(
                "response without a nonce",
                state=ts.state.value,
                event="RECEIVE",
                type_url=type_url,
            )
        _transition(ts, ClientEvent.RECEIVE, type_url)
        return ts

    def ack(self, update: Update[P]) -> DiscoveryRequest | DeltaDiscoveryRequest:
        """Accept ``update`` (the newest response of its type); returns the ACK request."""
        ts = self._answerable(update, ClientEvent.ACK)
        _transition(ts, ClientEvent.ACK, update.type_url)
        ts.answered_nonce = update.nonce
        ts.accepted_version = update.version_info
        ts.held_before = None
        if self.mode == "delta":
            return self._delta_request(update.type_url, nonce=update.nonce)
        return self._sotw_request(update.type_url, ts, update.nonce)

    def nack(self, update: Update[P], reason: str) -> DiscoveryRequest | DeltaDiscoveryRequest:
        """Reject ``update`` with ``reason``; the client keeps what it held before."""
        ts = self._answerable(update, ClientEvent.NACK)
        _transition(ts, ClientEvent.NACK, update.type_url)
        ts.answered_nonce = update.nonce
        if ts.held_before is not None:
            ts.held = ts.held_before
        ts.held_before = None
        status = Status(code=_INVALID_ARGUMENT, message=reason or "rejected")
        if self.mode == "delta":
            return self._delta_request(update.type_url, nonce=update.nonce, error=status)
        return self._sotw_request(update.type_url, ts, update.nonce, error=status)

    def _answerable(self, update: Update[P], event: ClientEvent) -> _TypeState:
        ts = self._types.get(update.type_url)
        if ts is None:
            raise XdsProtocolError(
                "answer for a type never subscribed",
                state="UNSUBSCRIBED",
                event=event.value,
                type_url=update.type_url,
            )
        if ts.state is ClientTypeState.AWAITING_DECISION and update.nonce != ts.pending_nonce:
            raise XdsProtocolError(
                f"nonce {update.nonce!r} was superseded by {ts.pending_nonce!r}",
                state=ts.state.value,
                event=event.value,
                type_url=update.type_url,
            )
        return ts

    # -- streams ---------------------------------------------------------------------------
    def reconnect(self) -> list[DiscoveryRequest | DeltaDiscoveryRequest]:
        """A new stream starts: forget nonces, return the requests that resubscribe everything.

        Delta requests carry ``initial_resource_versions`` so the server sends only what
        changed; SotW requests carry the last accepted version.
        """
        self._node_sent = False
        out: list[DiscoveryRequest | DeltaDiscoveryRequest] = []
        for type_url, ts in self._types.items():
            if ts.state is ClientTypeState.AWAITING_DECISION and ts.held_before is not None:
                ts.held = ts.held_before  # the unanswered response is void
            ts.held_before = None
            ts.state = ClientTypeState.IDLE
            ts.pending_nonce = ts.answered_nonce = ""
            if not ts.active:
                continue
            if self.mode == "delta":
                subs = sorted(ts.names)
                if ts.wildcard:
                    subs.insert(0, WILDCARD)
                out.append(self._delta_request(type_url, subscribe=subs, initial=dict(ts.held)))
            else:
                out.append(self._sotw_request(type_url, ts, ""))
        return out

    # -- request builders ------------------------------------------------------------------
    def _take_node(self) -> Node | None:
        if self._node_sent:
            return None
        self._node_sent = True
        return self.node

    def _sotw_request(
        self, type_url: str, ts: _TypeState, nonce: str, error: Status | None = None
    ) -> DiscoveryRequest:
        # Wildcard is always explicit ("*"), never the legacy empty list, so that an empty
        # list later unambiguously means "nothing".
        names = sorted(ts.names)
        if ts.wildcard:
            names.insert(0, WILDCARD)
        return DiscoveryRequest(
            version_info=ts.accepted_version,
            node=self._take_node(),
            resource_names=names,
            type_url=type_url,
            response_nonce=nonce,
            error_detail=error,
        )

    def _delta_request(
        self,
        type_url: str,
        *,
        subscribe: list[str] | None = None,
        unsubscribe: list[str] | None = None,
        nonce: str = "",
        error: Status | None = None,
        initial: dict[str, str] | None = None,
    ) -> DeltaDiscoveryRequest:
        return DeltaDiscoveryRequest(
            node=self._take_node(),
            type_url=type_url,
            resource_names_subscribe=subscribe or [],
            resource_names_unsubscribe=unsubscribe or [],
            initial_resource_versions=initial or {},
            response_nonce=nonce,
            error_detail=error,
        )
