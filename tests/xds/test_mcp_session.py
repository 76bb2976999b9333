"""The MCP flavour of the protocol core: ServerSession(mode="mcp") and SinkSession."""

from __future__ import annotations

import pytest

from istio_sdk import xds
from istio_sdk.api.google.rpc import Status
from istio_sdk.api.istio.mcp.v1alpha1 import RequestResources
from istio_sdk.xds import RequestKind, UnknownCollectionError, XdsProtocolError
from istio_sdk.xds.sink import INVALID_ARGUMENT, UNIMPLEMENTED, SinkSession

VS = "istio/networking/v1alpha3/virtualservices"
GW = "istio/networking/v1alpha3/gateways"


def session(incremental: bool = True) -> xds.ServerSession[str]:
    return xds.ServerSession("mcp", collections=[VS, GW], incremental=incremental)


def one(s: xds.ServerSession[str], world: dict[str, str], generation: int) -> xds.Push[str] | None:
    pushes = s.plan({VS: world}, generation, types=[VS])
    assert len(pushes) <= 1
    return pushes[0] if pushes else None


def ack(nonce: str, *, incremental: bool = False) -> RequestResources:
    return RequestResources(collection=VS, response_nonce=nonce, incremental=incremental)


def nack(nonce: str, *, incremental: bool = False) -> RequestResources:
    return RequestResources(
        collection=VS,
        response_nonce=nonce,
        incremental=incremental,
        error_detail=Status(code=3, message="bad vs"),
    )


def test_first_request_is_answered_even_when_empty_with_decimal_nonces() -> None:
    s = session()
    assert s.receive(RequestResources(collection=VS)).kind is RequestKind.INITIAL
    push = one(s, {}, 1)
    assert push is not None and push.resources == () and push.nonce == "1"
    s.receive(RequestResources(collection=GW))
    (gw,) = s.plan({}, 1, types=[GW])
    assert gw.nonce == "2"  # one counter per stream, shared by collections


def test_unknown_collection_and_xds_requests_are_refused() -> None:
    s = session()
    with pytest.raises(UnknownCollectionError, match='unsupported collection "nope"'):
        s.receive(RequestResources(collection="nope"))
    with pytest.raises(XdsProtocolError):
        s.receive(RequestResources())
    with pytest.raises(XdsProtocolError):
        xds.ServerSession("sotw").receive(RequestResources(collection=VS))


def test_one_push_outstanding_and_the_newest_state_wins() -> None:
    s = session()
    s.receive(RequestResources(collection=VS))
    first = one(s, {"ns/a": "1"}, 1)
    assert first is not None
    assert one(s, {"ns/a": "2"}, 2) is None  # outstanding: nothing more goes out
    assert one(s, {"ns/a": "3", "ns/b": "3"}, 3) is None
    result = s.receive(ack(first.nonce))
    assert result.kind is RequestKind.ACK and result.needs_push
    newest = one(s, {"ns/a": "3", "ns/b": "3"}, 3)
    assert newest is not None and dict(newest.resources) == {"ns/a": "3", "ns/b": "3"}


def test_a_nacked_version_is_not_resent() -> None:
    s = session()
    s.receive(RequestResources(collection=VS))
    push = one(s, {"ns/a": "1"}, 1)
    assert push is not None
    result = s.receive(nack(push.nonce))
    assert result.kind is RequestKind.NACK and result.error_message == "bad vs"
    assert one(s, {"ns/a": "1"}, 1) is None
    assert one(s, {"ns/a": "1"}, 2) is None  # same content, newer generation: still not
    again = one(s, {"ns/a": "2"}, 3)
    assert again is not None and dict(again.resources) == {"ns/a": "2"}


def test_stale_and_repeated_nonces_are_ignored() -> None:
    s = session()
    s.receive(RequestResources(collection=VS))
    push = one(s, {"ns/a": "1"}, 1)
    assert push is not None
    assert s.receive(ack("99")).kind is RequestKind.STALE
    assert one(s, {"ns/a": "2"}, 2) is None  # still outstanding
    assert s.receive(ack(push.nonce)).kind is RequestKind.ACK
    repeated = s.receive(ack(push.nonce))
    assert repeated.kind is RequestKind.STALE and not repeated.needs_push


def test_incremental_pushes_carry_changes_since_the_last_ack() -> None:
    s = session()
    s.receive(
        RequestResources(
            collection=VS, incremental=True, initial_resource_versions={"ns/a": "1", "ns/x": "1"}
        )
    )
    push = one(s, {"ns/a": "1", "ns/b": "1"}, 1)
    assert push is not None and push.incremental
    assert dict(push.resources) == {"ns/b": "1"} and push.removed == ("ns/x",)
    s.receive(nack(push.nonce, incremental=True))
    # NACKed: the next delta is still against what the sink ACKed (its announced versions)
    push = one(s, {"ns/a": "2", "ns/b": "1"}, 2)
    assert push is not None
    assert push.incremental
    assert dict(push.resources) == {"ns/a": "2", "ns/b": "1"} and push.removed == ("ns/x",)
    s.receive(ack(push.nonce, incremental=True))
    push = one(s, {"ns/b": "1"}, 3)
    assert push is not None and push.resources == () and push.removed == ("ns/a",)


def test_full_state_when_asked_or_when_the_source_disables_incremental() -> None:
    s = session(incremental=False)
    s.receive(RequestResources(collection=VS, incremental=True))
    push = one(s, {"ns/a": "1"}, 1)
    assert push is not None and not push.incremental and dict(push.resources) == {"ns/a": "1"}
    s2 = session()
    s2.receive(RequestResources(collection=VS, incremental=True))
    push = one(s2, {"ns/a": "1"}, 1)
    assert push is not None
    s2.receive(ack(push.nonce, incremental=False))  # the latest request asks for full state
    push = one(s2, {"ns/a": "1", "ns/b": "1"}, 2)
    assert push is not None and not push.incremental and len(push.resources) == 2


def test_the_mcp_table_forbids_a_second_send() -> None:
    assert (xds.ServerTypeState.SENT, xds.ServerEvent.SEND) in xds.SERVER_TRANSITIONS
    assert (xds.ServerTypeState.SENT, xds.ServerEvent.SEND) not in xds.MCP_TRANSITIONS


def test_sink_session_full_state_incremental_and_rejections() -> None:
    sink = SinkSession([VS, GW], node_id="pilot", incremental=[GW])
    first = sink.initial_requests()
    assert [(r.collection, r.incremental, r.response_nonce) for r in first] == [
        (VS, False, ""),
        (GW, True, ""),
    ]
    update = sink.receive(
        collection=VS, nonce="1", version="1", incremental=False, resources=[("ns/a", "1")]
    )
    assert update.changed == ("ns/a",) and update.rejection is None
    assert sink.ack(update).response_nonce == "1"
    update = sink.receive(
        collection=VS, nonce="2", version="2", incremental=False, resources=[("ns/b", "1")]
    )
    assert update.removed == ("ns/a",) and update.changed == ("ns/b",)
    sink.nack(update, "nope")
    assert dict(sink.held(VS)) == {"ns/a": "1"}  # a NACK keeps the last good state
    unknown = sink.receive(collection="$x", nonce="3", version="", incremental=False, resources=[])
    assert unknown.rejection is not None and unknown.rejection.error_detail.code == UNIMPLEMENTED
    inc = sink.receive(collection=VS, nonce="4", version="", incremental=True, resources=[])
    assert inc.rejection is not None and inc.rejection.error_detail.code == INVALID_ARGUMENT
    dup = sink.receive(
        collection=VS,
        nonce="5",
        version="",
        incremental=False,
        resources=[("ns/a", "1"), ("ns/a", "2")],
    )
    assert dup.rejection is not None and "twice" in dup.rejection.error_detail.message
    gw = sink.receive(
        collection=GW, nonce="6", version="", incremental=True, resources=[("ns/g", "1")]
    )
    sink.ack(gw)
    (_, resume) = sink.initial_requests()
    assert resume.initial_resource_versions == {"ns/g": "1"}
