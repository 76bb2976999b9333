"""A client session and a server session wired back to back, driven in any order by Hypothesis.

Requests and responses travel through two FIFO queues (one ADS stream). Rules subscribe,
unsubscribe, change config (which makes the server push), deliver messages, ACK or NACK, and
break the stream (reconnect). Invariants: the client never answers a nonce the server did not
send on the current stream; versions pushed per type never go backwards; once both queues are
empty the server's view of every subscription equals the client's (none is lost), and what the
client holds matches the server's record of what it sent.
"""

from __future__ import annotations

from collections import deque

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from istio_sdk.api.envoy.config.core.v3 import Node
from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from istio_sdk.xds import CLUSTER, ENDPOINT, LISTENER, ClientSession, Push, ServerSession
from istio_sdk.xds.server import RequestKind

TYPES = [CLUSTER, ENDPOINT, LISTENER]
NAMES = ["a", "b", "c", "d"]

types_st = st.sampled_from(TYPES)
names_st = st.one_of(st.none(), st.sets(st.sampled_from(NAMES), max_size=3))


class AdsPair(RuleBasedStateMachine):
    mode = "sotw"

    @initialize()
    def setup(self) -> None:
        self.client = ClientSession(
            Node(id="sidecar~10.0.0.1~p.ns~ns.svc.cluster.local"), mode=self.mode
        )  # type: ignore[arg-type]
        self.server = ServerSession(self.mode)  # type: ignore[arg-type]
        self.to_server: deque[DiscoveryRequest | DeltaDiscoveryRequest] = deque()
        self.to_client: deque[Push] = deque()
        self.world: dict[str, dict[str, str]] = {t: {} for t in TYPES}
        self.generation = 0
        self.sent_nonces: set[str] = set()
        self.last_version: dict[str, int] = {}
        self.nacked: set[str] = set()

    # -- helpers -----------------------------------------------------------------------
    def _send(self, request: DiscoveryRequest | DeltaDiscoveryRequest | None) -> None:
        if request is None:
            return
        assert request.response_nonce == "" or request.response_nonce in self.sent_nonces, (
            f"client answered nonce {request.response_nonce!r} never sent on this stream"
        )
        self.to_server.append(request)

    def _emit(self, pushes: list[Push]) -> None:
        for push in pushes:
            version = int(push.version_info)
            assert version >= self.last_version.get(push.type_url, -1), "version went back"
            self.last_version[push.type_url] = version
            self.sent_nonces.add(push.nonce)
            self.to_client.append(push)

    # -- rules -------------------------------------------------------------------------
    @rule(type_url=types_st, names=names_st)
    def subscribe(self, type_url: str, names: set[str] | None) -> None:
        self._send(self.client.subscribe(type_url, names))

    @rule(type_url=types_st, names=names_st)
    def unsubscribe(self, type_url: str, names: set[str] | None) -> None:
        self._send(self.client.unsubscribe(type_url, names))

    @rule(type_url=types_st, name=st.sampled_from(NAMES), delete=st.booleans())
    def change_config(self, type_url: str, name: str, delete: bool) -> None:
        self.generation += 1
        table = self.world[type_url]
        if delete:
            table.pop(name, None)
        else:
            table[name] = f"v{self.generation}"
        self._emit(self.server.plan(self.world, self.generation, changed={type_url: {name}}))

    @rule(cluster=st.sampled_from(NAMES))
    def drop_cluster_and_repoint(self, cluster: str) -> None:
        # A change touching several types at once exercises make-before-break ordering.
        self.generation += 1
        self.world[CLUSTER].pop(cluster, None)
        self.world[LISTENER]["l"] = f"v{self.generation}"
        pushes = self.server.plan(self.world, self.generation)
        order = [p.type_url for p in pushes]
        if LISTENER in order:
            after = [p for p in pushes[order.index(LISTENER) :] if p.type_url == CLUSTER]
            # A cluster push after the listener may only be the final clean-up: it is last
            # and brings nothing the listener could depend on.
            for push in after:
                assert push is pushes[-1]
                assert {n for n, _ in push.resources} <= set(self.world[CLUSTER])
                if self.mode == "delta":
                    assert push.resources == ()
        if order.count(CLUSTER) == 2 and self.mode == "sotw":
            first = dict(pushes[order.index(CLUSTER)].resources)
            assert cluster in first  # the stale cluster survives until the end
        self._emit(pushes)

    @precondition(lambda self: bool(self.to_server))
    @rule()
    def deliver_request(self) -> None:
        request = self.to_server.popleft()
        result = self.server.receive(request)
        if result.kind in (RequestKind.ACK, RequestKind.NACK):
            assert result.nonce in self.sent_nonces
        if result.needs_push:
            self._emit(self.server.plan(self.world, self.generation, types=[result.type_url]))

    @precondition(lambda self: bool(self.to_client))
    @rule(accept=st.booleans())
    def deliver_response(self, accept: bool) -> None:
        push = self.to_client.popleft()
        if self.mode == "delta":
            update = self.client.receive_delta(
                type_url=push.type_url,
                system_version_info=push.version_info,
                nonce=push.nonce,
                resources={n: (v, v) for n, v in push.resources},
                removed=push.removed,
            )
        else:
            update = self.client.receive_sotw(
                type_url=push.type_url,
                version_info=push.version_info,
                nonce=push.nonce,
                resources={n: v for n, v in push.resources},
            )
        if accept:
            self._send(self.client.ack(update))
        else:
            self.nacked.add(push.type_url)
            self._send(self.client.nack(update, "rejected by test"))

    @rule()
    def reconnect(self) -> None:
        self.to_server.clear()
        self.to_client.clear()
        self.sent_nonces.clear()
        self.last_version.clear()
        self.nacked.clear()
        self.server = ServerSession(self.mode)  # type: ignore[arg-type]
        for request in self.client.reconnect():
            self._send(request)

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def subscriptions_agree_when_quiet(self) -> None:
        if self.to_server or self.to_client:
            return
        for type_url in TYPES:
            client_names = self.client.subscribed_names(type_url)
            status = self.server.status(type_url)
            if status is None:
                assert not client_names, f"server never heard of {type_url} {client_names}"
                continue
            server_names = frozenset(status.names | ({"*"} if status.wildcard else frozenset()))
            assert server_names == client_names, (type_url, server_names, client_names)

    @invariant()
    def held_resources_agree_when_quiet(self) -> None:
        if self.to_server or self.to_client:
            return
        for type_url in TYPES:
            status = self.server.status(type_url)
            if status is None or type_url in self.nacked:
                continue
            if self.mode == "sotw" and type_url == ENDPOINT:
                continue  # SotW EDS responses carry a subset: absence is not deletion
            held = self.client.held_versions(type_url)
            if self.mode == "delta":
                assert held == status.held, (type_url, held, status.held)
            else:
                assert set(held) == set(status.held), (type_url, held, status.held)


class DeltaAdsPair(AdsPair):
    mode = "delta"


TestSotwStateMachine = AdsPair.TestCase
TestDeltaStateMachine = DeltaAdsPair.TestCase
TestSotwStateMachine.settings = settings(stateful_step_count=40)
TestDeltaStateMachine.settings = settings(stateful_step_count=40)
