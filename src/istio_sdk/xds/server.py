"""Server side of the xDS protocols as a sans-I/O state object (State of the World and delta).

Everything that moves a stream's protocol state lives in this module, and it does not know which
server it serves (Pilot's ADS, Citadel's SDS, Galley's MCP all use it). :class:`ServerSession`
holds one stream: per type URL the subscribed names (wildcard or named, with the legacy rule that
a first LDS/CDS request naming nothing means wildcard), what was sent (nonce, version, the
resources the client now holds), what the client ACKed or NACKed (with the reason), and whether
the next response must go out even if nothing changed.

Requests go in through :meth:`ServerSession.receive`, which classifies them (initial, ACK, NACK,
stale, subscription change). Responses come out of :meth:`ServerSession.plan`, the one place that
decides what a push holds: it selects the subscribed names from a snapshot, narrows a push to the
changed names where the protocol allows it, keeps clusters the client still holds until the
types that point at them are updated (make-before-break), skips what the client already has, and
records the result as sent. Every state change goes through :data:`SERVER_TRANSITIONS`; an illegal
one raises :class:`~istio_sdk.xds.errors.XdsProtocolError` naming the state.

The MCP flavour (``mode="mcp"``, Galley's ``istio.mcp.v1alpha1`` streams) keys types by
collection name and takes ``RequestResources``: every collection is a whole-state set, a
request naming an unserved collection raises :class:`~istio_sdk.xds.errors.
UnknownCollectionError`, an ACK or NACK must carry the nonce of the one push still outstanding
(anything else is stale), at most one push per collection is outstanding (its answer re-arms the
collection, and :meth:`ServerSession.plan` then sends the newest state, unless that is what was
pushed last: a NACKed version is never re-sent), nonces are decimal from ``"1"``, and a
collection whose latest request set ``incremental`` gets only the resources that changed since
its last ACK plus the names removed. :data:`MCP_TRANSITIONS` is its table.

Resources in a snapshot are "handles": a version string, or any object with a ``version``
attribute (Pilot passes its serialized resources). A :class:`Push` carries the handles to send,
so the caller only turns them into bytes.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Generic, Literal, Protocol, TypeVar

import attrs

from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from istio_sdk.api.istio.mcp.v1alpha1 import RequestResources
from istio_sdk.xds.errors import UnknownCollectionError, XdsProtocolError, next_state
from istio_sdk.xds.types import CLUSTER, in_push_order, is_full_state, is_legacy_wildcard

# Subscribed name sets, shared by every session whose subscription is equal: a thousand
# proxies asking for the same thousand clusters hold one set (and one copy of each name), not a
# thousand. Keyed by hash; on the rare collision of unequal sets the newcomer keeps its own.
_NAME_SETS: weakref.WeakValueDictionary[int, frozenset[str]] = weakref.WeakValueDictionary()


def _shared_names(names: Collection[str]) -> frozenset[str]:
    """``names`` as a frozen set, the same object as any live equal subscription's."""
    if not names:
        return _NO_NAMES
    fresh = names if isinstance(names, frozenset) else frozenset(names)
    key = hash(fresh)
    known = _NAME_SETS.get(key)
    if known is not None and known == fresh:
        return known
    if known is None:
        _NAME_SETS[key] = fresh
    return fresh


_NO_NAMES: frozenset[str] = frozenset()

Mode = Literal["sotw", "delta", "mcp"]
WILDCARD = "*"


class Versioned(Protocol):
    """A resource handle: anything with a content ``version``."""

    @property
    def version(self) -> str: ...


R = TypeVar("R", bound="str | Versioned")


def version_of(handle: str | Versioned) -> str:
    """The version of a handle (a plain string is its own version)."""
    return handle if isinstance(handle, str) else handle.version


def _same(held: str | Versioned | None, handle: str | Versioned) -> bool:
    # The very object sent last time (the common case), else the same version.
    return held is handle or (held is not None and version_of(held) == version_of(handle))


class ServerTypeState(enum.Enum):
    """Where one type stands on one stream, from the server's side."""

    UNSUBSCRIBED = "UNSUBSCRIBED"
    REQUESTED = "REQUESTED"  # asked for, nothing sent yet
    SENT = "SENT"  # a response is out, its ACK/NACK not yet seen
    ACKED = "ACKED"
    NACKED = "NACKED"


class RequestKind(enum.Enum):
    """How :meth:`ServerSession.receive` classified a request."""

    INITIAL = "INITIAL"
    SUBSCRIPTION = "SUBSCRIPTION"  # names changed, no ACK/NACK carried
    ACK = "ACK"
    NACK = "NACK"
    STALE = "STALE"  # answers a superseded nonce: ignored entirely


class ServerEvent(enum.Enum):
    """What can happen to one type on a stream: a classified request, or a response sent."""

    INITIAL = "INITIAL"
    SUBSCRIPTION = "SUBSCRIPTION"
    ACK = "ACK"
    NACK = "NACK"
    STALE = "STALE"
    SEND = "SEND"


_S, _E = ServerTypeState, ServerEvent

# (state, event) -> new state; events missing for a state are protocol errors.
SERVER_TRANSITIONS: dict[tuple[ServerTypeState, ServerEvent], ServerTypeState] = {
    (_S.UNSUBSCRIBED, _E.INITIAL): _S.REQUESTED,
    (_S.REQUESTED, _E.SUBSCRIPTION): _S.REQUESTED,
    (_S.REQUESTED, _E.STALE): _S.REQUESTED,
    (_S.REQUESTED, _E.SEND): _S.SENT,
    (_S.SENT, _E.ACK): _S.ACKED,
    (_S.SENT, _E.NACK): _S.NACKED,
    (_S.SENT, _E.STALE): _S.SENT,
    (_S.SENT, _E.SUBSCRIPTION): _S.SENT,
    (_S.SENT, _E.SEND): _S.SENT,
    (_S.ACKED, _E.SUBSCRIPTION): _S.ACKED,
    (_S.ACKED, _E.STALE): _S.ACKED,
    (_S.ACKED, _E.ACK): _S.ACKED,  # delta acks each nonce
    (_S.ACKED, _E.NACK): _S.NACKED,
    (_S.ACKED, _E.SEND): _S.SENT,
    (_S.NACKED, _E.SUBSCRIPTION): _S.NACKED,
    (_S.NACKED, _E.STALE): _S.NACKED,
    (_S.NACKED, _E.ACK): _S.ACKED,
    (_S.NACKED, _E.NACK): _S.NACKED,
    (_S.NACKED, _E.SEND): _S.SENT,
}

# MCP keeps at most one push per collection outstanding: no second SEND before the answer, and
# once answered a repeated nonce is stale (never a second ACK).
MCP_TRANSITIONS: dict[tuple[ServerTypeState, ServerEvent], ServerTypeState] = {
    # a nonce before any request of the collection answers nothing sent on this stream
    (_S.UNSUBSCRIBED, _E.STALE): _S.UNSUBSCRIBED,
    **{
        move: new
        for move, new in SERVER_TRANSITIONS.items()
        if move
        not in (
            (_S.SENT, _E.SEND),
            (_S.ACKED, _E.ACK),
            (_S.ACKED, _E.NACK),
            (_S.NACKED, _E.ACK),
            (_S.NACKED, _E.NACK),
        )
    },
}


@attrs.frozen
class RequestResult:
    """What a request meant and whether the type now needs a push."""

    kind: RequestKind
    type_url: str
    nonce: str = ""
    version: str = ""  # the version ACKed or NACKed
    error_message: str = ""
    subscribed: frozenset[str] = frozenset()  # names newly subscribed
    unsubscribed: frozenset[str] = frozenset()
    needs_push: bool = False


@attrs.frozen
class Push(Generic[R]):
    """One response to send: the names and handles of its resources, removals, nonce, version.

    ``items`` holds the handles of ``names``, in the same order: what the caller encodes.
    """

    type_url: str
    nonce: str
    version_info: str
    names: tuple[str, ...]
    items: tuple[R, ...]
    removed: tuple[str, ...] = ()
    mode: Mode = "sotw"
    incremental: bool = False  # MCP: only changes since the last ACK, plus ``removed``

    @property
    def resources(self) -> tuple[tuple[str, str], ...]:
        """``(name, version)`` of every resource in the response."""
        return tuple(zip(self.names, (version_of(i) for i in self.items), strict=True))


@attrs.frozen
class TypeStatus:
    """A read-only snapshot of one type on one stream (what debug views such as syncz show).

    ``held`` maps every name the client holds, as far as the server knows, to its version
    (empty when the view was taken with ``include_held=False``); ``resource_count`` is how many
    names that is.
    """

    type_url: str
    state: ServerTypeState
    wildcard: bool
    names: frozenset[str]
    sent_version: str
    sent_nonce: str
    acked_version: str
    acked_nonce: str
    nacked_version: str
    nacked_nonce: str
    nack_reason: str
    generation: int
    held: Mapping[str, str]
    resource_count: int
    incremental: bool = False  # MCP: the latest request asked for incremental pushes

    def watches(self, name: str) -> bool:
        """Whether the client subscribed to ``name`` (explicitly or by wildcard)."""
        return self.wildcard or name in self.names


@attrs.frozen
class _SentRecord:
    nonce: str
    version_info: str
    generation: int


@attrs.define
class _TypeState(Generic[R]):
    state: ServerTypeState = ServerTypeState.UNSUBSCRIBED
    wildcard: bool = False
    names: frozenset[str] = frozenset()  # replaced, never mutated: views share it
    last_sent: _SentRecord | None = None
    outstanding: dict[str, _SentRecord] = attrs.Factory(dict)  # nonce -> record (delta)
    acked_version: str = ""
    acked_nonce: str = ""
    nacked_version: str = ""
    nacked_nonce: str = ""
    nack_reason: str = ""
    generation: int = -1
    # name -> handle of what the client holds as far as the server knows (updated when sent;
    # what make-before-break re-sends)
    held: dict[str, R] = attrs.Factory(dict)
    # name -> version a resuming delta client announced it holds (until something is sent)
    announced: dict[str, str] = attrs.Factory(dict)
    # subscribed names that did not exist yet, to report as removed once (delta)
    announce_absent: set[str] = attrs.Factory(set)
    force_next: bool = False
    legacy_wildcard: bool = False  # wildcard by the empty-first-request rule (SotW)
    # MCP: what the sink held at its last ACK (name -> handle or announced version), the base
    # of an incremental push, and whether the latest request asked for incremental pushes
    acked: dict[str, R | str] = attrs.Factory(dict)
    incremental: bool = False
    transitions: Mapping[tuple[ServerTypeState, ServerEvent], ServerTypeState] = SERVER_TRANSITIONS

    def watches(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def move(self, event: ServerEvent, type_url: str) -> None:
        self.state = next_state(
            self.transitions,
            self.state,
            event,
            type_url=type_url,
            illegal="{event} is not valid here",
        )

    def forget_unwatched(self) -> None:
        if not self.wildcard:
            for table in (self.held, self.announced):
                for name in [n for n in table if n not in self.names]:
                    del table[name]

    def holding(self, name: str) -> R | str | None:
        held = self.held.get(name)
        return held if held is not None else self.announced.get(name)

    def holds(self, name: str) -> bool:
        return name in self.held or name in self.announced

    def held_names(self) -> set[str]:
        return set(self.held) | set(self.announced)

    def view(self, type_url: str, include_held: bool = True) -> TypeStatus:
        last = self.last_sent
        held: Mapping[str, str] = _EMPTY
        if include_held:
            held = MappingProxyType(
                {**self.announced, **{n: version_of(h) for n, h in self.held.items()}}
            )
        return TypeStatus(
            type_url=type_url,
            state=self.state,
            wildcard=self.wildcard,
            names=self.names,
            sent_version=last.version_info if last else "",
            sent_nonce=last.nonce if last else "",
            acked_version=self.acked_version,
            acked_nonce=self.acked_nonce,
            nacked_version=self.nacked_version,
            nacked_nonce=self.nacked_nonce,
            nack_reason=self.nack_reason,
            generation=self.generation,
            held=held,
            resource_count=len(self.held_names()) if self.announced else len(self.held),
            incremental=self.incremental,
        )


_EMPTY: Mapping[str, str] = MappingProxyType({})


def _event(kind: RequestKind) -> ServerEvent:
    return ServerEvent(kind.value)


class ServerSession(Generic[R]):
    """One xDS stream's protocol state on the server side.

    ``mode="mcp"`` needs ``collections``, the collections the source serves;
    ``incremental=False`` makes such a source answer every request with full state, as Galley
    1.3 did.
    """

    def __init__(
        self,
        mode: Mode = "sotw",
        *,
        collections: Collection[str] = (),
        incremental: bool = True,
    ) -> None:
        if mode not in ("sotw", "delta", "mcp"):
            raise ValueError(f"mode must be 'sotw', 'delta' or 'mcp', not {mode!r}")
        if collections and mode != "mcp":
            raise ValueError("collections are MCP's; pass mode='mcp'")
        self.mode: Mode = mode
        self._types: dict[str, _TypeState[R]] = {}
        self._nonce = 0
        self._collections = frozenset(collections)
        self._incremental = incremental

    # -- read-only views -------------------------------------------------------------------
    def status(self, type_url: str) -> TypeStatus | None:
        """A snapshot of ``type_url`` on this stream (``None`` if never requested)."""
        st = self._types.get(type_url)
        return None if st is None else st.view(type_url)

    def statuses(self, *, include_held: bool = True) -> dict[str, TypeStatus]:
        """Snapshots of every type the client subscribed to (``include_held``: see TypeStatus)."""
        return {
            url: st.view(url, include_held)
            for url, st in self._types.items()
            if st.state is not ServerTypeState.UNSUBSCRIBED
        }

    def subscribed_types(self) -> tuple[str, ...]:
        """The types the client asked for, in make-before-break order."""
        return tuple(in_push_order(u for u in self._types if self.is_subscribed(u)))

    def is_subscribed(self, type_url: str) -> bool:
        """Whether the client asked for ``type_url`` on this stream."""
        st = self._types.get(type_url)
        return st is not None and st.state is not ServerTypeState.UNSUBSCRIBED

    def wanted(self, type_url: str) -> frozenset[str] | None:
        """The names the client wants of ``type_url``: ``None`` for a wildcard subscription."""
        st = self._types.get(type_url)
        if st is None or st.state is ServerTypeState.UNSUBSCRIBED:
            return frozenset()
        return None if st.wildcard else st.names

    def watched(self, type_url: str, names: Collection[str]) -> bool:
        """Whether any of ``names`` of ``type_url`` matters to this client."""
        st = self._types.get(type_url)
        if st is None or st.state is ServerTypeState.UNSUBSCRIBED:
            return False
        return st.wildcard or any(n in st.names or st.holds(n) for n in names)

    def affected(
        self, types: Collection[str] | None, changed: Mapping[str, Collection[str]] | None
    ) -> bool:
        """Whether a change of ``types`` (``None``: all) and ``changed`` names concerns us.

        ``changed`` maps a type to the names that changed; a type missing from it (or
        ``changed`` ``None``) counts as entirely changed.
        """
        if types is None or changed is None:
            return bool(self.subscribed_types())
        for url in types:
            names = changed.get(url)
            if names is None:
                if self.is_subscribed(url):
                    return True
            elif self.watched(url, names):
                return True
        return False

    # -- requests --------------------------------------------------------------------------
    def receive(
        self, request: DiscoveryRequest | DeltaDiscoveryRequest | RequestResources
    ) -> RequestResult:
        """Classify a request and update the subscription state.

        Raises :class:`~istio_sdk.xds.errors.XdsProtocolError` for a request of another
        protocol than the stream's, and on an MCP stream
        :class:`~istio_sdk.xds.errors.UnknownCollectionError` for an unserved collection.
        """
        if isinstance(request, RequestResources):
            if self.mode != "mcp":
                raise XdsProtocolError(
                    "MCP request on an xDS stream", state=self.mode, event="RECEIVE"
                )
            return self._receive_mcp(request)
        if self.mode == "mcp":
            raise XdsProtocolError("xDS request on an MCP stream", state="mcp", event="RECEIVE")
        if isinstance(request, DeltaDiscoveryRequest):
            if self.mode != "delta":
                raise XdsProtocolError(
                    "delta request on a SotW stream", state="sotw", event="RECEIVE"
                )
            return self._receive_delta(request)
        if self.mode != "sotw":
            raise XdsProtocolError("SotW request on a delta stream", state="delta", event="RECEIVE")
        return self._receive_sotw(request)

    def _receive_sotw(self, req: DiscoveryRequest) -> RequestResult:
        url = req.type_url
        if not url:
            raise XdsProtocolError("request without a type_url", state="-", event="RECEIVE")
        st = self._types.get(url)
        names = set(req.resource_names)
        if st is None or st.state is ServerTypeState.UNSUBSCRIBED:
            # First request for this type on this stream (a nonce from an old stream is moot).
            st = self._types.setdefault(url, _TypeState())
            st.legacy_wildcard = not names and is_legacy_wildcard(url)
            st.wildcard = WILDCARD in names or st.legacy_wildcard
            names.discard(WILDCARD)
            st.names = _shared_names(names)
            st.force_next = True  # the first request is always answered, even if empty
            st.move(ServerEvent.INITIAL, url)
            return RequestResult(
                RequestKind.INITIAL, url, subscribed=frozenset(names), needs_push=True
            )
        last = st.last_sent
        if last is not None and req.response_nonce != last.nonce:
            # Envoy's rule: a request answering an older response carries nothing current.
            st.move(ServerEvent.STALE, url)
            return RequestResult(RequestKind.STALE, url, nonce=req.response_nonce)
        # An empty list keeps a legacy wildcard alive; once the client named anything (or sent
        # "*"), an empty list means it wants nothing.
        if names:
            st.legacy_wildcard = False
        wildcard = WILDCARD in names or (not names and st.legacy_wildcard)
        names.discard(WILDCARD)
        wildcard_added = wildcard and not st.wildcard
        wildcard_removed = st.wildcard and not wildcard
        if names == st.names:
            # The usual ACK: the same names again. Keep the set (and its strings) we have.
            added = removed = _NO_NAMES
        else:
            added = frozenset(names - st.names)
            removed = frozenset(st.names - names)
            st.names = _shared_names(names)
        st.wildcard = wildcard
        if removed or wildcard_removed:
            st.forget_unwatched()
        needs_push = bool(added) or wildcard_added
        if needs_push:
            st.force_next = True
        if last is None or st.state in (ServerTypeState.ACKED, ServerTypeState.NACKED):
            # No response out, or this one was already answered: only the names can change.
            st.move(ServerEvent.SUBSCRIPTION, url)
            return RequestResult(
                RequestKind.SUBSCRIPTION,
                url,
                nonce=req.response_nonce,
                subscribed=added,
                unsubscribed=removed,
                needs_push=needs_push,
            )
        kind = self._answer(st, last, req.error_detail)
        st.move(_event(kind), url)
        return RequestResult(
            kind,
            url,
            nonce=last.nonce,
            version=last.version_info,
            error_message=st.nack_reason if kind is RequestKind.NACK else "",
            subscribed=added,
            unsubscribed=removed,
            needs_push=needs_push,
        )

    def _receive_mcp(self, req: RequestResources) -> RequestResult:
        url = req.collection
        if not url:
            raise XdsProtocolError("request without a collection", state="-", event="RECEIVE")
        if url not in self._collections:
            raise UnknownCollectionError(url)
        incremental = bool(req.incremental) and self._incremental
        st = self._types.get(url)
        if st is None or st.state is ServerTypeState.UNSUBSCRIBED:
            st = self._types.setdefault(url, _TypeState(transitions=MCP_TRANSITIONS))
            if req.response_nonce:
                st.move(ServerEvent.STALE, url)
                return RequestResult(RequestKind.STALE, url, nonce=req.response_nonce)
            st.wildcard = True  # a collection is always taken whole
            st.incremental = incremental
            # A resuming sink's versions are the base of its first incremental push.
            st.acked = dict(req.initial_resource_versions) if incremental else {}
            st.force_next = True  # answered even when empty: the sink learns it is in sync
            st.move(ServerEvent.INITIAL, url)
            return RequestResult(RequestKind.INITIAL, url, needs_push=True)
        st.incremental = incremental  # the latest request decides how the next push looks
        nonce = req.response_nonce
        pending = st.last_sent if st.state is ServerTypeState.SENT else None
        if not nonce:
            # Asked again on the same stream: the whole state once nothing is outstanding.
            st.force_next = True
            if incremental:
                st.acked = dict(req.initial_resource_versions)
            st.move(ServerEvent.SUBSCRIPTION, url)
            return RequestResult(RequestKind.SUBSCRIPTION, url, needs_push=pending is None)
        if pending is None or nonce != pending.nonce:
            st.move(ServerEvent.STALE, url)
            return RequestResult(RequestKind.STALE, url, nonce=nonce)
        kind = self._answer(st, pending, req.error_detail)
        if kind is RequestKind.ACK:
            st.acked = dict(st.held)
        st.move(_event(kind), url)
        # Answered either way: the collection is armed again; plan() sends only what is newer
        # than this push, so a NACKed version is not re-sent.
        return RequestResult(
            kind,
            url,
            nonce=nonce,
            version=pending.version_info,
            error_message=st.nack_reason if kind is RequestKind.NACK else "",
            needs_push=True,
        )

    @staticmethod
    def _answer(st: _TypeState[R], record: _SentRecord, error: object | None) -> RequestKind:
        if error is not None:
            st.nacked_version, st.nacked_nonce = record.version_info, record.nonce
            st.nack_reason = str(getattr(error, "message", ""))
            return RequestKind.NACK
        st.acked_version, st.acked_nonce = record.version_info, record.nonce
        return RequestKind.ACK

    def _receive_delta(self, req: DeltaDiscoveryRequest) -> RequestResult:
        url = req.type_url
        if not url:
            raise XdsProtocolError("request without a type_url", state="-", event="RECEIVE")
        st = self._types.get(url)
        subs = set(req.resource_names_subscribe)
        unsubs = set(req.resource_names_unsubscribe)
        first = st is None or st.state is ServerTypeState.UNSUBSCRIBED
        if st is None or first:
            st = self._types.setdefault(url, _TypeState())
            st.wildcard = WILDCARD in subs or (not subs and is_legacy_wildcard(url))
            st.announced = dict(req.initial_resource_versions)
        wildcard_added = WILDCARD in subs and not st.wildcard
        wildcard_removed = WILDCARD in unsubs and st.wildcard
        if WILDCARD in subs:
            st.wildcard = True
        if WILDCARD in unsubs:
            st.wildcard = False
        subs.discard(WILDCARD)
        unsubs.discard(WILDCARD)
        added = frozenset(subs - st.names)
        if added or (unsubs & st.names):
            st.names = _shared_names((st.names | subs) - unsubs)
        removed = frozenset(unsubs)
        if first or removed or wildcard_removed:
            st.forget_unwatched()
        # Names newly asked for that the client does not hold must be answered, even if only
        # to say they do not exist.
        st.announce_absent |= {n for n in added if not st.holds(n)}
        st.announce_absent -= removed
        needs_push = first or bool(added) or wildcard_added
        if needs_push:
            # A resuming client (initial_resource_versions) only needs the differences; a
            # fresh one gets an answer even if it is empty.
            st.force_next = not (first and st.announced)
        if first:
            st.move(ServerEvent.INITIAL, url)
            return RequestResult(RequestKind.INITIAL, url, subscribed=added, needs_push=True)
        nonce = req.response_nonce
        record = st.outstanding.pop(nonce, None) if nonce else None
        if record is None:
            # No nonce, or an unknown or already-answered one: keep the subscription change,
            # ignore the rest.
            kind = (
                RequestKind.STALE if nonce and not (added or removed) else RequestKind.SUBSCRIPTION
            )
            st.move(_event(kind), url)
            return RequestResult(
                kind,
                url,
                nonce=nonce,
                subscribed=added,
                unsubscribed=removed,
                needs_push=needs_push,
            )
        # Older outstanding nonces are implicitly superseded.
        for other in [n for n, r in st.outstanding.items() if r.generation <= record.generation]:
            del st.outstanding[other]
        kind = self._answer(st, record, req.error_detail)
        st.move(_event(kind), url)
        return RequestResult(
            kind,
            url,
            nonce=nonce,
            version=record.version_info,
            error_message=st.nack_reason if kind is RequestKind.NACK else "",
            subscribed=added,
            unsubscribed=removed,
            needs_push=needs_push,
        )

    # -- pushes ----------------------------------------------------------------------------
    def plan(
        self,
        snapshot: Mapping[str, Mapping[str, R]],
        generation: int,
        *,
        types: Collection[str] | None = None,
        changed: Mapping[str, Collection[str]] | None = None,
    ) -> list[Push[R]]:
        """The responses to send now, in make-before-break order, each recorded as sent.

        ``snapshot`` maps a type URL to every existing resource of the type (name -> handle);
        a type missing from it has no resources. ``generation`` is the config generation the
        snapshot comes from (it must not go backwards). ``types`` limits the push to those
        types (``None``: every subscribed type; types the client did not subscribe to are
        skipped). ``changed`` maps a type to the names that changed: a State-of-the-World push
        of a type that is not full-state (RDS, EDS) then carries only those, and a delta push
        removes only among them.

        A type whose client already holds exactly what the snapshot says is not pushed. When
        clusters disappear and other types follow in the same plan, the first CDS response
        still carries the clusters the client holds and a final CDS response removes them, so
        no listener or route is ever left pointing at a cluster the proxy no longer knows.
        """
        if types is None:
            wanted = list(self.subscribed_types())
        else:
            wanted = in_push_order(t for t in types if self.is_subscribed(t))
        if self.mode == "mcp":
            return [
                push
                for url in wanted
                if (push := self._plan_mcp(url, snapshot.get(url, {}), generation)) is not None
            ]
        pushes: list[Push[R]] = []
        cleanup = False
        for url in wanted:
            available = snapshot.get(url, {})
            names = None if changed is None else changed.get(url)
            keep: frozenset[str] = frozenset()
            if url == CLUSTER and len(wanted) > 1:
                st = self._types[url]
                keep = frozenset(n for n in st.held_names() if n not in available)
                cleanup = cleanup or bool(keep)
            push = self._plan_type(url, available, generation, changed=names, keep=keep)
            if push is not None:
                pushes.append(push)
        if cleanup:
            last = self._plan_type(CLUSTER, snapshot.get(CLUSTER, {}), generation, remove_only=True)
            if last is not None:
                pushes.append(last)
        return pushes

    def _next_nonce(self) -> str:
        self._nonce += 1
        return str(self._nonce) if self.mode == "mcp" else f"{self._nonce:x}"

    def _plan_mcp(self, url: str, available: Mapping[str, R], generation: int) -> Push[R] | None:
        st = self._types[url]
        if st.state is ServerTypeState.SENT:
            return None  # one push outstanding; its answer re-arms the collection
        self._check_generation(st, url, generation)
        held = st.held
        if not st.force_next and (
            len(available) == len(held) and all(_same(held.get(n), h) for n, h in available.items())
        ):
            return None  # what was pushed last (ACKed or NACKed) is still current
        selected = dict(available)
        if st.incremental:
            changed = sorted(n for n, h in selected.items() if not _same(st.acked.get(n), h))
            push = Push(
                url,
                self._next_nonce(),
                str(generation),
                tuple(changed),
                tuple(selected[n] for n in changed),
                tuple(sorted(n for n in st.acked if n not in selected)),
                mode="mcp",
                incremental=True,
            )
        else:
            push = Push(
                url,
                self._next_nonce(),
                str(generation),
                tuple(selected),
                tuple(selected.values()),
                mode="mcp",
            )
        st.held = selected
        self._record_sent(st, push, generation)
        return push

    @staticmethod
    def _check_generation(st: _TypeState[R], type_url: str, generation: int) -> None:
        if generation < st.generation:
            raise XdsProtocolError(
                f"push generation {generation} is older than {st.generation}",
                state=st.state.value,
                event="PUSH",
                type_url=type_url,
            )

    def _plan_type(
        self,
        type_url: str,
        available: Mapping[str, R],
        generation: int,
        *,
        changed: Collection[str] | None = None,
        keep: frozenset[str] = frozenset(),
        remove_only: bool = False,
    ) -> Push[R] | None:
        st = self._types[type_url]
        self._check_generation(st, type_url, generation)
        force = st.force_next
        full = is_full_state(type_url) and self.mode == "sotw"
        narrow = changed is not None and not full and not force
        if changed is not None and narrow:
            # Only the changed names are looked at (cheap when one endpoint set of many moved).
            selected = {n: available[n] for n in changed if n in available and st.watches(n)}
        elif st.wildcard:
            selected = dict(available)
        else:
            selected = {n: available[n] for n in st.names if n in available}
        kept = {
            n
            for n in keep
            if st.watches(n) and n not in selected and (not narrow or n in (changed or ()))
        }
        for name in kept:
            handle = st.held.get(name)
            if handle is not None:
                selected[name] = handle
        if self.mode == "delta":
            return self._plan_delta(
                st,
                type_url=type_url,
                selected=selected,
                kept=kept,
                generation=generation,
                force=force,
                remove_only=remove_only,
                scope=changed if narrow else None,
            )
        if not force:
            held = st.held
            if full:
                if selected == held or (
                    len(selected) == len(held)
                    and all(_same(held.get(n), h) for n, h in selected.items())
                ):
                    return None
            elif all(_same(held.get(n), h) for n, h in selected.items()):
                return None
        push = Push(
            type_url,
            self._next_nonce(),
            str(generation),
            tuple(selected),
            tuple(selected.values()),
        )
        if full:
            st.held = selected  # a fresh dict, built above
        else:
            st.held.update(selected)
        self._record_sent(st, push, generation)
        return push

    def _plan_delta(
        self,
        st: _TypeState[R],
        *,
        type_url: str,
        selected: Mapping[str, R],
        kept: Collection[str],
        generation: int,
        force: bool,
        remove_only: bool,
        scope: Collection[str] | None,
    ) -> Push[R] | None:
        to_send = (
            {}
            if remove_only
            else {n: h for n, h in selected.items() if not _same(st.holding(n), h)}
        )
        removed = {n for n in st.held_names() if n not in selected and n not in kept}
        removed |= {n for n in st.announce_absent if n not in selected}
        if scope is not None:
            # Only the changed names were looked at: silence about the others is no removal.
            removed = {n for n in removed if n in scope}
        if not to_send and not removed and (not force or st.last_sent is not None):
            return None  # a delta stream needs no empty response once anything was sent
        ordered = sorted(to_send)
        push = Push(
            type_url,
            self._next_nonce(),
            str(generation),
            tuple(ordered),
            tuple(to_send[n] for n in ordered),
            tuple(sorted(removed)),
            mode="delta",
        )
        st.announce_absent.clear()
        for n in removed:
            st.held.pop(n, None)
            st.announced.pop(n, None)
        for n in to_send:
            st.announced.pop(n, None)
        st.held.update(to_send)
        self._record_sent(st, push, generation)
        return push

    def _record_sent(self, st: _TypeState[R], push: Push[R], generation: int) -> None:
        rec = _SentRecord(push.nonce, push.version_info, generation)
        st.last_sent = rec
        st.generation = generation
        st.force_next = False
        if self.mode == "delta":
            st.outstanding[push.nonce] = rec
        st.move(ServerEvent.SEND, push.type_url)
