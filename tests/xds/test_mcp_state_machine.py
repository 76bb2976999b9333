"""MCP on the protocol core: a sink session and a source session back to back, any order.

Sibling of ``test_state_machine.py`` (ADS and SDS): the same core, its ``"mcp"`` flavour. One
collection is full-state, one incremental. Rules change config, deliver requests and pushes in
FIFO order, ACK or NACK, inject a request with a stale nonce, and break the stream. Invariants:
at most one push per collection is ever outstanding; nonces are decimal and rise on a stream; a
NACKed state is never pushed again; once the queues are empty the source's last push is the
newest config, and where the sink ACKed it the sink holds exactly that config.
"""

from __future__ import annotations

from collections import deque

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from istio_sdk.api.istio.mcp.v1alpha1 import RequestResources
from istio_sdk.xds import Push, RequestKind, ServerSession
from istio_sdk.xds.sink import SinkSession

FULL = "istio/networking/v1alpha3/virtualservices"
INCREMENTAL = "istio/networking/v1alpha3/gateways"
COLLECTIONS = [FULL, INCREMENTAL]
NAMES = ["ns/a", "ns/b", "ns/c"]


class McpStream(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.sink = SinkSession(COLLECTIONS, node_id="pilot", incremental=[INCREMENTAL])
        self.world: dict[str, dict[str, str]] = {c: {} for c in COLLECTIONS}
        self.generation = 0
        self.connect()
        for request in self.sink.initial_requests():
            self.to_source.append(request)

    def connect(self) -> None:
        self.source: ServerSession[str] = ServerSession("mcp", collections=COLLECTIONS)
        self.to_source: deque[RequestResources] = deque()
        self.to_sink: deque[Push[str]] = deque()
        self.outstanding = dict.fromkeys(COLLECTIONS, 0)
        self.last_nonce = 0
        self.sent_nonces: list[str] = []
        self.nacked_state: dict[str, dict[str, str] | None] = dict.fromkeys(COLLECTIONS)
        self.last_answer: dict[str, RequestKind | None] = dict.fromkeys(COLLECTIONS)

    def emit(self, pushes: list[Push[str]]) -> None:
        for push in pushes:
            coll = push.type_url
            self.outstanding[coll] += 1
            assert self.outstanding[coll] <= 1, f"two pushes of {coll} outstanding"
            assert int(push.nonce) > self.last_nonce, "nonces must rise on a stream"
            self.last_nonce = int(push.nonce)
            self.sent_nonces.append(push.nonce)
            assert push.incremental == (coll == INCREMENTAL)
            status = self.source.status(coll)
            assert status is not None
            target = dict(status.held)
            assert target != self.nacked_state[coll], "a NACKed state was pushed again"
            self.to_sink.append(push)

    # -- rules ---------------------------------------------------------------------------
    @rule(coll=st.sampled_from(COLLECTIONS), name=st.sampled_from(NAMES), delete=st.booleans())
    def change_config(self, coll: str, name: str, delete: bool) -> None:
        self.generation += 1
        if delete:
            self.world[coll].pop(name, None)
        else:
            self.world[coll][name] = f"v{self.generation}"
        self.emit(self.source.plan(self.world, self.generation, types=[coll]))

    @rule()
    def deliver_request(self) -> None:
        if not self.to_source:
            return
        request = self.to_source.popleft()
        result = self.source.receive(request)
        if result.kind in (RequestKind.ACK, RequestKind.NACK):
            self.outstanding[result.type_url] -= 1
            self.last_answer[result.type_url] = result.kind
            status = self.source.status(result.type_url)
            assert status is not None
            if result.kind is RequestKind.NACK:
                self.nacked_state[result.type_url] = dict(status.held)
        if result.needs_push:
            self.emit(self.source.plan(self.world, self.generation, types=[result.type_url]))

    @rule(accept=st.booleans())
    def deliver_push(self, accept: bool) -> None:
        if not self.to_sink:
            return
        push = self.to_sink.popleft()
        update = self.sink.receive(
            collection=push.type_url,
            nonce=push.nonce,
            version=push.version_info,
            incremental=push.incremental,
            resources=push.resources,
            removed=push.removed,
        )
        assert update.rejection is None
        self.to_source.append(self.sink.ack(update) if accept else self.sink.nack(update, "no"))

    @rule(coll=st.sampled_from(COLLECTIONS), pick=st.integers(0, 10))
    def stale_request(self, coll: str, pick: int) -> None:
        # A nonce that is not the outstanding one: an old one, or one never sent.
        status = self.source.status(coll)
        pending = status.sent_nonce if status and status.state.value == "SENT" else None
        old = [n for n in self.sent_nonces if n != pending]
        nonce = old[pick % len(old)] if old and pick < 8 else "999999"
        request = RequestResources(collection=coll, response_nonce=nonce)
        result = self.source.receive(request)
        assert result.kind is RequestKind.STALE and not result.needs_push

    @rule()
    def reconnect(self) -> None:
        self.connect()
        for request in self.sink.initial_requests():
            self.to_source.append(request)

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def newest_state_wins_when_quiet(self) -> None:
        if self.to_source or self.to_sink:
            return
        for coll in COLLECTIONS:
            status = self.source.status(coll)
            assert status is not None
            assert dict(status.held) == self.world[coll], (coll, status.held, self.world)
            if self.last_answer[coll] is RequestKind.ACK:
                assert dict(self.sink.held(coll)) == self.world[coll]


TestMcpStateMachine = McpStream.TestCase
TestMcpStateMachine.settings = settings(stateful_step_count=50)
