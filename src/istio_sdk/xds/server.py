"""Server side of ADS as a sans-I/O state object (State of the World and delta).

:class:`ServerSession` holds one stream's state: per type URL the subscribed names (wildcard or
named, with the legacy rule that a first LDS/CDS request naming nothing means wildcard), what was
sent (nonce, version, resource versions), what the client ACKed or NACKed (with the reason), and
which types wait for a push. Requests go in through :meth:`ServerSession.receive`, which classifies
them (initial, ACK, NACK, stale, subscription change); pushes come out of :meth:`plan_push` /
:meth:`plan_pushes` as :class:`Push` values naming the resources (by name and version) to send.
The caller turns a :class:`Push` into bytes; no I/O happens here.

Per type, the legal request kinds by state are the table :data:`SERVER_TRANSITIONS`.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Literal

import attrs

from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from istio_sdk.xds.errors import XdsProtocolError, next_state
from istio_sdk.xds.types import CLUSTER, in_push_order, is_full_state, is_legacy_wildcard

Mode = Literal["sotw", "delta"]
WILDCARD = "*"


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


# (state, kind) -> new state; kinds missing for a state are protocol errors.
SERVER_TRANSITIONS: dict[tuple[ServerTypeState, RequestKind], ServerTypeState] = {
    (ServerTypeState.UNSUBSCRIBED, RequestKind.INITIAL): ServerTypeState.REQUESTED,
    (ServerTypeState.REQUESTED, RequestKind.SUBSCRIPTION): ServerTypeState.REQUESTED,
    (ServerTypeState.REQUESTED, RequestKind.STALE): ServerTypeState.REQUESTED,
    (ServerTypeState.SENT, RequestKind.ACK): ServerTypeState.ACKED,
    (ServerTypeState.SENT, RequestKind.NACK): ServerTypeState.NACKED,
    (ServerTypeState.SENT, RequestKind.STALE): ServerTypeState.SENT,
    (ServerTypeState.SENT, RequestKind.SUBSCRIPTION): ServerTypeState.SENT,
    (ServerTypeState.ACKED, RequestKind.SUBSCRIPTION): ServerTypeState.ACKED,
    (ServerTypeState.ACKED, RequestKind.STALE): ServerTypeState.ACKED,
    (ServerTypeState.ACKED, RequestKind.ACK): ServerTypeState.ACKED,  # delta acks each nonce
    (ServerTypeState.ACKED, RequestKind.NACK): ServerTypeState.NACKED,
    (ServerTypeState.NACKED, RequestKind.SUBSCRIPTION): ServerTypeState.NACKED,
    (ServerTypeState.NACKED, RequestKind.STALE): ServerTypeState.NACKED,
    (ServerTypeState.NACKED, RequestKind.ACK): ServerTypeState.ACKED,
    (ServerTypeState.NACKED, RequestKind.NACK): ServerTypeState.NACKED,
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
class Push:
    """One response to send: resources by (name, version), removals, nonce and version."""

    type_url: str
    nonce: str
    version_info: str
    resources: tuple[tuple[str, str], ...]
    removed: tuple[str, ...] = ()
    mode: Mode = "sotw"


@attrs.frozen
class SentRecord:
    """A response the server sent and has not seen answered."""

    nonce: str
    version_info: str
    generation: int


@attrs.define
class TypeStatus:
    """Per-type bookkeeping, readable by debug views (syncz)."""

    state: ServerTypeState = ServerTypeState.UNSUBSCRIBED
    wildcard: bool = False
    names: set[str] = attrs.Factory(set)
    last_sent: SentRecord | None = None
    outstanding: dict[str, SentRecord] = attrs.Factory(dict)  # nonce -> record (delta)
    acked_version: str = ""
    acked_nonce: str = ""
    nacked_version: str = ""
    nacked_nonce: str = ""
    nack_reason: str = ""
    generation: int = -1
    # name -> version the client holds as far as the server knows (updated when sent)
    client_has: dict[str, str] = attrs.Factory(dict)
    # subscribed names that did not exist yet, to report as removed once (delta)
    announce_absent: set[str] = attrs.Factory(set)
    force_next: bool = False
    legacy_wildcard: bool = False  # wildcard by the empty-first-request rule (SotW)

    def watches(self, name: str) -> bool:
        """Whether the client subscribed to ``name`` (explicitly or by wildcard)."""
        return self.wildcard or name in self.names


def _move(status: TypeStatus, kind: RequestKind, type_url: str) -> None:
    status.state = next_state(
        SERVER_TRANSITIONS,
        status.state,
        kind,
        type_url=type_url,
        illegal="{event} request is not valid here",
    )


class ServerSession:
    """One ADS stream's protocol state on the server side."""

    def __init__(self, mode: Mode = "sotw") -> None:
        if mode not in ("sotw", "delta"):
            raise ValueError(f"mode must be 'sotw' or 'delta', not {mode!r}")
        self.mode: Mode = mode
        self.types: dict[str, TypeStatus] = {}
        self._nonce = 0

    # -- requests --------------------------------------------------------------------------
    def receive(self, request: DiscoveryRequest | DeltaDiscoveryRequest) -> RequestResult:
        """Classify a request and update the subscription state."""
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
        st = self.types.get(url)
        names = set(req.resource_names)
        if st is None or st.state is ServerTypeState.UNSUBSCRIBED:
            # First request for this type on this stream (a nonce from an old stream is moot).
            st = self.types.setdefault(url, TypeStatus())
            st.legacy_wildcard = not names and is_legacy_wildcard(url)
            st.wildcard = WILDCARD in names or st.legacy_wildcard
            names.discard(WILDCARD)
            st.names = names
            st.force_next = True  # the first request is always answered, even if empty
            _move(st, RequestKind.INITIAL, url)
            return RequestResult(
                RequestKind.INITIAL, url, subscribed=frozenset(names), needs_push=True
            )
        last = st.last_sent
        if last is not None and req.response_nonce != last.nonce:
            # Envoy's rule: a request answering an older response carries nothing current.
            _move(st, RequestKind.STALE, url)
            return RequestResult(RequestKind.STALE, url, nonce=req.response_nonce)
        # An empty list keeps a legacy wildcard alive; once the client named anything (or sent
        # "*"), an empty list means it wants nothing.
        if names:
            st.legacy_wildcard = False
        wildcard = WILDCARD in names or (not names and st.legacy_wildcard)
        names.discard(WILDCARD)
        added = frozenset(names - st.names)
        removed = frozenset(st.names - names)
        wildcard_added = wildcard and not st.wildcard
        st.names = names
        st.wildcard = wildcard
        for name in list(st.client_has):
            if not st.watches(name):
                del st.client_has[name]
        needs_push = bool(added) or wildcard_added
        if needs_push:
            st.force_next = True
        if last is None or st.state in (ServerTypeState.ACKED, ServerTypeState.NACKED):
            # No response out, or this one was already answered: only the names can change.
            kind = RequestKind.SUBSCRIPTION
            _move(st, kind, url)
            return RequestResult(
                kind,
                url,
                nonce=req.response_nonce,
                subscribed=added,
                unsubscribed=removed,
                needs_push=needs_push,
            )
        if req.error_detail is not None:
            kind = RequestKind.NACK
            st.nacked_version, st.nacked_nonce = last.version_info, last.nonce
            st.nack_reason = req.error_detail.message
        else:
            kind = RequestKind.ACK
            st.acked_version, st.acked_nonce = last.version_info, last.nonce
        _move(st, kind, url)
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

    def _receive_delta(self, req: DeltaDiscoveryRequest) -> RequestResult:
        url = req.type_url
        if not url:
            raise XdsProtocolError("request without a type_url", state="-", event="RECEIVE")
        st = self.types.get(url)
        subs = set(req.resource_names_subscribe)
        unsubs = set(req.resource_names_unsubscribe)
        first = st is None or st.state is ServerTypeState.UNSUBSCRIBED
        if first:
            st = self.types.setdefault(url, TypeStatus())
            st.wildcard = WILDCARD in subs or (not subs and is_legacy_wildcard(url))
            st.client_has = dict(req.initial_resource_versions)
        assert st is not None
        wildcard_added = WILDCARD in subs and not st.wildcard
        if WILDCARD in subs:
            st.wildcard = True
        if WILDCARD in unsubs:
            st.wildcard = False
        subs.discard(WILDCARD)
        unsubs.discard(WILDCARD)
        added = frozenset(subs - st.names)
        st.names |= subs
        st.names -= unsubs
        removed = frozenset(unsubs)
        for name in list(st.client_has):
            if not st.watches(name):
                del st.client_has[name]
        # Names newly asked for that the client does not hold must be answered, even if only
        # to say they do not exist.
        st.announce_absent |= {n for n in added if n not in st.client_has}
        st.announce_absent -= removed
        needs_push = first or bool(added) or wildcard_added
        if needs_push:
            # A resuming client (initial_resource_versions) only needs the differences; a
            # fresh one gets an answer even if it is empty.
            st.force_next = not (first and st.client_has)
        if first:
            _move(st, RequestKind.INITIAL, url)
            return RequestResult(RequestKind.INITIAL, url, subscribed=added, needs_push=True)
        nonce = req.response_nonce
        if not nonce:
            _move(st, RequestKind.SUBSCRIPTION, url)
            return RequestResult(
                RequestKind.SUBSCRIPTION,
                url,
                subscribed=added,
                unsubscribed=removed,
                needs_push=needs_push,
            )
        record = st.outstanding.pop(nonce, None)
        if record is None:
            # Unknown or already-answered nonce: keep the subscription change, ignore the rest.
            kind = RequestKind.STALE if not (added or removed) else RequestKind.SUBSCRIPTION
            _move(st, kind, url)
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
        if req.error_detail is not None:
            kind = RequestKind.NACK
            st.nacked_version, st.nacked_nonce = record.version_info, nonce
            st.nack_reason = req.error_detail.message
        else:
            kind = RequestKind.ACK
            st.acked_version, st.acked_nonce = record.version_info, nonce
        if st.state is ServerTypeState.REQUESTED:
            st.state = ServerTypeState.SENT
        _move(st, kind, url)
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
    def is_subscribed(self, type_url: str) -> bool:
        """Whether the client asked for ``type_url`` on this stream."""
        st = self.types.get(type_url)
        return st is not None and st.state is not ServerTypeState.UNSUBSCRIBED

    def watched(self, type_url: str, names: Collection[str]) -> bool:
        """Whether any of ``names`` of ``type_url`` matters to this client."""
        st = self.types.get(type_url)
        if st is None or st.state is ServerTypeState.UNSUBSCRIBED:
            return False
        return st.wildcard or any(n in st.names or n in st.client_has for n in names)

    def _next_nonce(self) -> str:
        self._nonce += 1
        return f"{self._nonce:x}"

    def plan_push(
        self,
        type_url: str,
        available: Mapping[str, str],
        generation: int,
        *,
        changed: Collection[str] | None = None,
        force: bool = False,
        keep: Mapping[str, str] | None = None,
        remove_only: bool = False,
    ) -> Push | None:
        """Decide what ``type_url``'s next response to this client holds, and record it sent.

        ``available`` maps every existing resource name of the type to its version;
        ``generation`` is the config generation the push comes from (must not go backwards).
        ``changed`` narrows a SotW push of a type that is not full-state (RDS, EDS) to the
        resources that changed. ``keep`` lists stale resources still to send (make-before-break:
        clusters are removed only in a later push). Returns ``None`` when the client already
        has exactly this (the proxy is not affected).
        """
        st = self.types.get(type_url)
        if st is None or st.state is ServerTypeState.UNSUBSCRIBED:
            raise XdsProtocolError(
                "push of a type the client did not request",
                state="UNSUBSCRIBED",
                event="PUSH",
                type_url=type_url,
            )
        if generation < st.generation:
            raise XdsProtocolError(
                f"push generation {generation} is older than {st.generation}",
                state=st.state.value,
                event="PUSH",
                type_url=type_url,
            )
        force = force or st.force_next
        full = is_full_state(type_url) and self.mode == "sotw"
        if st.wildcard:
            selected = dict(available)
        else:
            selected = {n: available[n] for n in available.keys() & st.names}
        if keep:
            for n, v in keep.items():
                if st.watches(n):
                    selected.setdefault(n, v)
        if changed is not None and not full and not force:
            selected = {n: v for n, v in selected.items() if n in changed}
        if self.mode == "delta":
            return self._plan_delta(
                st,
                type_url=type_url,
                selected=selected,
                generation=generation,
                force=force,
                remove_only=remove_only,
                scope=None if changed is None or full or force else changed,
            )
        to_send = selected
        if not force:
            if full and to_send == st.client_has:
                return None
            if not full and all(st.client_has.get(n) == v for n, v in to_send.items()):
                return None
        version = str(generation)
        push = Push(type_url, self._next_nonce(), version, tuple(to_send.items()))
        if full:
            st.client_has = dict(to_send)
        else:
            st.client_has.update(to_send)
        self._record_sent(st, push, generation)
        return push

    def _plan_delta(
        self,
        st: TypeStatus,
        *,
        type_url: str,
        selected: Mapping[str, str],
        generation: int,
        force: bool,
        remove_only: bool,
        scope: Collection[str] | None,
    ) -> Push | None:
        to_send = (
            {} if remove_only else {n: v for n, v in selected.items() if st.client_has.get(n) != v}
        )
        removed = {n for n in st.client_has if n not in selected}
        removed |= {n for n in st.announce_absent if n not in selected}
        if scope is not None:
            # Only the changed names were looked up: silence about the others is no removal.
            removed = {n for n in removed if n in scope}
        if not to_send and not removed and not force:
            return None
        if not to_send and not removed and st.last_sent is not None:
            return None  # a delta stream needs no empty response once anything was sent
        push = Push(
            type_url,
            self._next_nonce(),
            str(generation),
            tuple(sorted(to_send.items())),
            tuple(sorted(removed)),
            mode="delta",
        )
        st.announce_absent.clear()
        for n in removed:
            st.client_has.pop(n, None)
        st.client_has.update(to_send)
        self._record_sent(st, push, generation)
        return push

    def _record_sent(self, st: TypeStatus, push: Push, generation: int) -> None:
        rec = SentRecord(push.nonce, push.version_info, generation)
        st.last_sent = rec
        st.generation = generation
        st.force_next = False
        if self.mode == "delta":
            st.outstanding[push.nonce] = rec
        if st.state in (ServerTypeState.REQUESTED, ServerTypeState.ACKED, ServerTypeState.NACKED):
            st.state = ServerTypeState.SENT

    def plan_pushes(
        self,
        snapshot: Mapping[str, Mapping[str, str]],
        generation: int,
        *,
        types: Collection[str] | None = None,
        changed: Mapping[str, Collection[str]] | None = None,
    ) -> list[Push]:
        """Pushes for several types in make-before-break order (CDS, EDS, LDS, RDS, ...).

        When the CDS push would drop clusters and other types follow, the first CDS response
        still carries the stale clusters and a last CDS response removes them, so no listener
        or route is ever left pointing at a cluster the proxy no longer knows.
        """
        wanted = in_push_order(
            t for t in (types if types is not None else snapshot) if self.is_subscribed(t)
        )
        pushes: list[Push] = []
        cleanup = False
        for url in wanted:
            available = snapshot.get(url, {})
            ch = None if changed is None else changed.get(url)
            if url == CLUSTER and len(wanted) > 1:
                st = self.types[url]
                stale = {n: v for n, v in st.client_has.items() if n not in available}
                if stale:
                    first = self.plan_push(url, available, generation, changed=ch, keep=stale)
                    if first is not None:
                        pushes.append(first)
                    cleanup = True
                    continue
            push = self.plan_push(url, available, generation, changed=ch)
            if push is not None:
                pushes.append(push)
        if cleanup:
            last = self.plan_push(CLUSTER, snapshot.get(CLUSTER, {}), generation, remove_only=True)
            if last is not None:
                pushes.append(last)
        return pushes
