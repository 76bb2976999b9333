"""Client and server sessions wired back to back, driven in any order by Hypothesis.

One machine drives two streams at once: an ADS stream (CDS, EDS, LDS) and an SDS stream (the
``default`` and ``ROOTCA`` secrets), both on the shared protocol core. Requests and responses
travel through two FIFO queues per stream. Rules subscribe, unsubscribe, change config (which
makes the server push), deliver messages, ACK or NACK, and break a stream (reconnect).
Invariants: the client never answers a nonce the server did not send on the current stream;
versions pushed per type never go backwards; once a stream's queues are empty the server's view
of every subscription equals the client's (none is lost), and what the client holds matches the
server's record of what it sent.
"""

from __future__ import annotations

from collections import deque

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from istio_sdk.xds import CLUSTER, ENDPOINT, LISTENER, SECRET, ClientSession, Push, ServerSession
from istio_sdk.xds.server import RequestKind

ADS_TYPES = [CLUSTER, ENDPOINT, LISTENER]
ADS_NAMES = ["a", "b", "c", "d"]
SDS_TYPES = [SECRET]
SDS_NAMES = ["default", "ROOTCA", "other"]

stream_st = st.integers(0, 1)  # 0: ADS, 1: SDS
index_st = st.integers(0, 3)
names_st = st.one_of(st.none(), st.sets(st.integers(0, 3), max_size=3))


class Stream:
    """One stream: a client session, a server session, the two queues and the server's world."""

    def __init__(self, mode: str, types: list[str], names: list[str]) -> None:
        self.mode = mode
        self.types = types
        self.names = names
        self.client = ClientSession(
            Node(id="sidecar~10.0.0.1~p.ns~ns.svc.cluster.local"),
            mode=mode,  # type: ignore[arg-type]
        )
        self.world: dict[str, dict[str, str]] = {t: {} for t in types}
        self.connect()

    def connect(self) -> None:
        self.server: ServerSession[str] = ServerSession(self.mode)  # type: ignore[arg-type]
        self.to_server: deque[DiscoveryRequest | DeltaDiscoveryRequest] = deque()
        self.to_client: deque[Push[str]] = deque()
        self.sent_nonces: set[str] = set()
        self.last_version: dict[str, int] = {}
        self.latest_nonce: dict[str, str] = {}
        self.nacked: set[str] = set()

    def type_url(self, index: int) -> str:
        return self.types[index % len(self.types)]

    def name_set(self, indexes: set[int] | None) -> set[str] | None:
        return None if indexes is None else {self.names[i % len(self.names)] for i in indexes}

    def send(self, request: DiscoveryRequest | DeltaDiscoveryRequest | None) -> None:
        if request is None:
            return
        assert request.response_nonce == "" or request.response_nonce in self.sent_nonces, (
            f"client answered nonce {request.response_nonce!r} never sent on this stream"
        )
        self.to_server.append(request)

    def emit(self, pushes: list[Push[str]]) -> None:
        for push in pushes:
            version = int(push.version_info)
            assert version >= self.last_version.get(push.type_url, -1), "version went back"
            self.last_version[push.type_url] = version
            self.sent_nonces.add(push.nonce)
            self.latest_nonce[push.type_url] = push.nonce
            self.to_client.append(push)

    @property
    def quiet(self) -> bool:
        return not self.to_server and not self.to_client


class XdsStreams(RuleBasedStateMachine):
    mode = "sotw"

    @initialize()
    def setup(self) -> None:
        self.streams = [
            Stream(self.mode, ADS_TYPES, ADS_NAMES),
            Stream(self.mode, SDS_TYPES, SDS_NAMES),
        ]
        self.generation = 0

    # -- rules -------------------------------------------------------------------------
    @rule(which=stream_st, type_index=index_st, names=names_st)
    def subscribe(self, which: int, type_index: int, names: set[int] | None) -> None:
        s = self.streams[which]
        s.send(s.client.subscribe(s.type_url(type_index), s.name_set(names)))

    @rule(which=stream_st, type_index=index_st, names=names_st)
    def unsubscribe(self, which: int, type_index: int, names: set[int] | None) -> None:
        s = self.streams[which]
        s.send(s.client.unsubscribe(s.type_url(type_index), s.name_set(names)))

    @rule(which=stream_st, type_index=index_st, name=index_st, delete=st.booleans())
    def change_config(self, which: int, type_index: int, name: int, delete: bool) -> None:
        s = self.streams[which]
        self.generation += 1
        url = s.type_url(type_index)
        key = s.names[name % len(s.names)]
        table = s.world[url]
        if delete:
            table.pop(key, None)
        else:
            table[key] = f"v{self.generation}"
        s.emit(s.server.plan(s.world, self.generation, changed={url: {key}}))

    @precondition(
        lambda self: (
            self.streams[0].server.is_subscribed(CLUSTER)
            and self.streams[0].server.is_subscribed(LISTENER)
        )
    )
    @rule(pick=index_st)
    def drop_cluster_and_repoint(self, pick: int) -> None:
        # A change touching several types at once exercises make-before-break ordering: drop
        # a cluster the client holds (if any) and change a listener in the same plan.
        s = self.streams[0]
        before = s.server.status(CLUSTER)
        held_before = sorted(before.held) if before is not None else []
        cluster = held_before[pick % len(held_before)] if held_before else ADS_NAMES[pick]
        self.generation += 1
        s.world[CLUSTER].pop(cluster, None)
        s.world[LISTENER]["l"] = f"v{self.generation}"
        pushes = s.server.plan(s.world, self.generation)
        order = [p.type_url for p in pushes]
        if cluster in held_before and LISTENER in order:
            # Make-before-break: the listener push must not find the cluster already gone.
            before_listener = [p for p in pushes[: order.index(LISTENER)] if p.type_url == CLUSTER]
            assert all(cluster not in p.removed for p in before_listener)
            if self.mode == "sotw" and before_listener:
                assert cluster in dict(before_listener[0].resources)

        if LISTENER in order:
            after = [p for p in pushes[order.index(LISTENER) :] if p.type_url == CLUSTER]
            # A cluster push after the listener may only be the final clean-up: it is last
            # and brings nothing the listener could depend on.
            for push in after:
                assert push is pushes[-1]
                assert {n for n, _ in push.resources} <= set(s.world[CLUSTER])
                if self.mode == "delta":
                    assert push.resources == ()
        if order.count(CLUSTER) == 2 and self.mode == "sotw":
            first = dict(pushes[order.index(CLUSTER)].resources)
            assert cluster in first  # the stale cluster survives until the end
        s.emit(pushes)

    @rule(which=stream_st)
    def deliver_request(self, which: int) -> None:
        s = self.streams[which]
        if not s.to_server:
            return
        request = s.to_server.popleft()
        result = s.server.receive(request)
        if result.kind in (RequestKind.ACK, RequestKind.NACK):
            assert result.nonce in s.sent_nonces
        latest = s.latest_nonce.get(request.type_url)
        if self.mode == "sotw" and request.response_nonce and request.response_nonce != latest:
            # Answers a superseded response: nothing in it counts (Envoy's SotW nonce rule).
            assert result.kind is RequestKind.STALE, (result, latest)
        if result.needs_push:
            s.emit(s.server.plan(s.world, self.generation, types=[result.type_url]))

    @precondition(lambda self: any(s.to_client for s in self.streams))
    @rule(which=stream_st, accept=st.booleans())
    def deliver_response(self, which: int, accept: bool) -> None:
        s = self.streams[which]
        if not s.to_client:
            return
        push = s.to_client.popleft()
        if self.mode == "delta":
            update = s.client.receive_delta(
                type_url=push.type_url,
                system_version_info=push.version_info,
                nonce=push.nonce,
                resources={n: (v, v) for n, v in push.resources},
                removed=push.removed,
            )
        else:
            update = s.client.receive_sotw(
                type_url=push.type_url,
                version_info=push.version_info,
                nonce=push.nonce,
                resources={n: v for n, v in push.resources},
            )
        if accept:
            s.send(s.client.ack(update))
        else:
            s.nacked.add(push.type_url)
            s.send(s.client.nack(update, "rejected by test"))

    @rule(which=stream_st)
    def reconnect(self, which: int) -> None:
        s = self.streams[which]
        s.connect()
        for request in s.client.reconnect():
            s.send(request)

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def subscriptions_agree_when_quiet(self) -> None:
        for s in self.streams:
            if not s.quiet:
                continue
            for type_url in s.types:
                client_names = s.client.subscribed_names(type_url)
                status = s.server.status(type_url)
                if status is None:
                    assert not client_names, f"server never heard of {type_url} {client_names}"
                    continue
                server_names = status.names | ({"*"} if status.wildcard else frozenset())
                assert server_names == client_names, (type_url, server_names, client_names)

    @invariant()
    def held_resources_agree_when_quiet(self) -> None:
        for s in self.streams:
            if not s.quiet:
                continue
            for type_url in s.types:
                status = s.server.status(type_url)
                if status is None or type_url in s.nacked:
                    continue
                if self.mode == "sotw" and type_url in (ENDPOINT, SECRET):
                    continue  # SotW EDS/SDS responses carry a subset: absence is not deletion
                held = s.client.held_versions(type_url)
                if self.mode == "delta":
                    assert held == status.held, (type_url, held, status.held)
                else:
                    assert set(held) == set(status.held), (type_url, held, status.held)


class DeltaXdsStreams(XdsStreams):
    mode = "delta"


TestSotwStateMachine = XdsStreams.TestCase
TestDeltaStateMachine = DeltaXdsStreams.TestCase
TestSotwStateMachine.settings = settings(stateful_step_count=50)
TestDeltaStateMachine.settings = settings(stateful_step_count=50)
