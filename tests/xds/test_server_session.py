"""ServerSession: classification of requests and planning of pushes, SotW and delta."""

from __future__ import annotations

import pytest

from istio_sdk import xds
from istio_sdk.api.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest
from istio_sdk.api.google.rpc import Status
from istio_sdk.xds import RequestKind

WORLD = {"a": "1", "b": "1", "c": "1"}


def plan_push(
    s: xds.ServerSession[str],
    type_url: str,
    world: dict[str, str],
    generation: int,
    changed: set[str] | None = None,
) -> xds.Push[str] | None:
    """The one push ``plan`` makes for a single type, or None."""
    pushes = s.plan(
        {type_url: world},
        generation,
        types=[type_url],
        changed=None if changed is None else {type_url: changed},
    )
    assert len(pushes) <= 1
    return pushes[0] if pushes else None


def status(s: xds.ServerSession[str], type_url: str) -> xds.TypeStatus:
    st = s.status(type_url)
    assert st is not None
    return st


def test_legacy_empty_first_request_is_wildcard_only_for_lds_and_cds() -> None:
    s: xds.ServerSession[str] = xds.ServerSession()
    assert s.receive(DiscoveryRequest(type_url=xds.CLUSTER)).kind is RequestKind.INITIAL
    assert status(s, xds.CLUSTER).wildcard
    s.receive(DiscoveryRequest(type_url=xds.ENDPOINT))
    assert not status(s, xds.ENDPOINT).wildcard and not status(s, xds.ENDPOINT).names
    push = plan_push(s, xds.CLUSTER, WORLD, 1)
    assert push is not None and dict(push.resources) == WORLD
    push = plan_push(s, xds.ENDPOINT, WORLD, 1)
    assert push is not None and push.resources == ()  # initial answer even when empty


def test_ack_nack_and_stale_nonce() -> None:
    s: xds.ServerSession[str] = xds.ServerSession()
    s.receive(DiscoveryRequest(type_url=xds.ENDPOINT, resource_names=["a"]))
    p1 = plan_push(s, xds.ENDPOINT, WORLD, 1)
    assert p1 is not None
    r = s.receive(
        DiscoveryRequest(
            type_url=xds.ENDPOINT, resource_names=["a"], version_info="1", response_nonce=p1.nonce
        )
    )
    assert r.kind is RequestKind.ACK and r.version == "1" and not r.needs_push
    p2 = plan_push(s, xds.ENDPOINT, {"a": "2"}, 2)
    assert p2 is not None
    p3 = plan_push(s, xds.ENDPOINT, {"a": "3"}, 3)
    assert p3 is not None
    # An answer to p2 arrives after p3 went out: stale, ignored entirely (names too).
    stale = s.receive(
        DiscoveryRequest(type_url=xds.ENDPOINT, resource_names=["a", "b"], response_nonce=p2.nonce)
    )
    assert stale.kind is RequestKind.STALE and status(s, xds.ENDPOINT).names == {"a"}
    nack = s.receive(
        DiscoveryRequest(
            type_url=xds.ENDPOINT,
            resource_names=["a"],
            version_info="1",
            response_nonce=p3.nonce,
            error_detail=Status(code=3, message="bad endpoint"),
        )
    )
    assert nack.kind is RequestKind.NACK and nack.error_message == "bad endpoint"
    st = status(s, xds.ENDPOINT)
    assert (st.acked_version, st.nacked_version, st.nack_reason) == ("1", "3", "bad endpoint")
    assert st.sent_version == "3" and dict(st.held) == {"a": "3"}
    assert st.state is xds.ServerTypeState.NACKED
    # A NACK does not block the next push.
    assert plan_push(s, xds.ENDPOINT, {"a": "4"}, 4) is not None


def test_new_names_need_a_push_and_unchanged_content_does_not() -> None:
    s: xds.ServerSession[str] = xds.ServerSession()
    s.receive(DiscoveryRequest(type_url=xds.ENDPOINT, resource_names=["a"]))
    p = plan_push(s, xds.ENDPOINT, WORLD, 1)
    assert p is not None
    r = s.receive(
        DiscoveryRequest(type_url=xds.ENDPOINT, resource_names=["a", "b"], response_nonce=p.nonce)
    )
    assert r.kind is RequestKind.ACK and r.needs_push and r.subscribed == {"b"}
    p2 = plan_push(s, xds.ENDPOINT, WORLD, 1)
    assert p2 is not None and dict(p2.resources) == {"a": "1", "b": "1"}
    assert plan_push(s, xds.ENDPOINT, WORLD, 2) is None  # nothing changed for this proxy


def test_sotw_eds_pushes_only_changed_resources() -> None:
    s: xds.ServerSession[str] = xds.ServerSession()
    s.receive(DiscoveryRequest(type_url=xds.ENDPOINT, resource_names=["a", "b"]))
    plan_push(s, xds.ENDPOINT, WORLD, 1)
    p = plan_push(s, xds.ENDPOINT, {"b": "2"}, 2, changed={"b"})
    assert p is not None and p.resources == (("b", "2"),)


def test_generation_must_not_go_backwards_and_push_needs_subscription() -> None:
    s: xds.ServerSession[str] = xds.ServerSession()
    assert s.plan({xds.CLUSTER: WORLD}, 1) == []  # nothing subscribed, nothing planned
    s.receive(DiscoveryRequest(type_url=xds.CLUSTER))
    plan_push(s, xds.CLUSTER, WORLD, 5)
    with pytest.raises(xds.XdsProtocolError, match="older"):
        plan_push(s, xds.CLUSTER, WORLD, 4)


def test_make_before_break_keeps_stale_clusters_until_last() -> None:
    s: xds.ServerSession[str] = xds.ServerSession()
    for url in (xds.LISTENER, xds.CLUSTER, xds.ROUTE):
        s.receive(DiscoveryRequest(type_url=url, resource_names=["*"]))
    snap = {xds.CLUSTER: {"old": "1"}, xds.LISTENER: {"l": "1"}, xds.ROUTE: {"r": "1"}}
    s.plan(snap, 1)
    snap2 = {xds.CLUSTER: {"new": "2"}, xds.LISTENER: {"l": "2"}, xds.ROUTE: {"r": "2"}}
    pushes = s.plan(snap2, 2)
    assert [p.type_url for p in pushes] == [xds.CLUSTER, xds.LISTENER, xds.ROUTE, xds.CLUSTER]
    assert dict(pushes[0].resources) == {"old": "1", "new": "2"}
    assert dict(pushes[-1].resources) == {"new": "2"}


def test_delta_initial_versions_removals_and_absent_names() -> None:
    s: xds.ServerSession[str] = xds.ServerSession("delta")
    r = s.receive(
        DeltaDiscoveryRequest(
            type_url=xds.ENDPOINT,
            resource_names_subscribe=["a", "b", "zz"],
            initial_resource_versions={"a": "1", "b": "old"},
        )
    )
    assert r.kind is RequestKind.INITIAL
    p = plan_push(s, xds.ENDPOINT, WORLD, 1)
    assert p is not None
    assert p.resources == (("b", "1"),)  # a is current already
    assert p.removed == ("zz",)  # asked for, does not exist
    ack = s.receive(DeltaDiscoveryRequest(type_url=xds.ENDPOINT, response_nonce=p.nonce))
    assert ack.kind is RequestKind.ACK
    p2 = plan_push(s, xds.ENDPOINT, {"a": "1"}, 2)
    assert p2 is not None and p2.removed == ("b",) and p2.resources == ()
    unsub = s.receive(
        DeltaDiscoveryRequest(type_url=xds.ENDPOINT, resource_names_unsubscribe=["a"])
    )
    assert unsub.kind is RequestKind.SUBSCRIPTION and unsub.unsubscribed == {"a"}
    assert plan_push(s, xds.ENDPOINT, {"a": "9"}, 3) is None


def test_delta_unknown_nonce_is_stale() -> None:
    s: xds.ServerSession[str] = xds.ServerSession("delta")
    s.receive(DeltaDiscoveryRequest(type_url=xds.CLUSTER))
    assert status(s, xds.CLUSTER).wildcard
    r = s.receive(DeltaDiscoveryRequest(type_url=xds.CLUSTER, response_nonce="nope"))
    assert r.kind is RequestKind.STALE


def test_wrong_mode_and_missing_type_url_are_protocol_errors() -> None:
    with pytest.raises(xds.XdsProtocolError, match="delta request on a SotW stream"):
        xds.ServerSession().receive(DeltaDiscoveryRequest(type_url=xds.CLUSTER))
    with pytest.raises(xds.XdsProtocolError, match="type_url"):
        xds.ServerSession().receive(DiscoveryRequest())


def test_transition_table_covers_every_classification_it_uses() -> None:
    states = {s for s, _ in xds.SERVER_TRANSITIONS}
    assert xds.ServerTypeState.UNSUBSCRIBED in states
    assert (xds.ServerTypeState.UNSUBSCRIBED, RequestKind.ACK) not in xds.SERVER_TRANSITIONS


def test_every_state_change_goes_through_the_table() -> None:
    # A push moves REQUESTED/ACKED/NACKED to SENT through the table's SEND entries: drop one
    # and sending becomes a protocol error naming the state.
    for state in (
        xds.ServerTypeState.REQUESTED,
        xds.ServerTypeState.SENT,
        xds.ServerTypeState.ACKED,
        xds.ServerTypeState.NACKED,
    ):
        assert xds.SERVER_TRANSITIONS[(state, xds.ServerEvent.SEND)] is xds.ServerTypeState.SENT
    assert (xds.ServerTypeState.UNSUBSCRIBED, xds.ServerEvent.SEND) not in xds.SERVER_TRANSITIONS


def test_status_is_a_read_only_snapshot() -> None:
    s: xds.ServerSession[str] = xds.ServerSession()
    s.receive(DiscoveryRequest(type_url=xds.CLUSTER))
    before = status(s, xds.CLUSTER)
    plan_push(s, xds.CLUSTER, WORLD, 1)
    assert before.state is xds.ServerTypeState.REQUESTED and dict(before.held) == {}
    after = status(s, xds.CLUSTER)
    assert after.state is xds.ServerTypeState.SENT and dict(after.held) == WORLD
    cheap = s.statuses(include_held=False)[xds.CLUSTER]
    assert cheap.resource_count == 3 and dict(cheap.held) == {}
    with pytest.raises(TypeError):
        after.held["x"] = "1"  # type: ignore[index]
    assert not hasattr(s, "types")


def test_plan_narrows_to_changed_names_unless_the_type_is_full_state_or_forced() -> None:
    s: xds.ServerSession[str] = xds.ServerSession()
    s.receive(DiscoveryRequest(type_url=xds.CLUSTER))
    s.receive(DiscoveryRequest(type_url=xds.ENDPOINT, resource_names=["a", "b"]))
    first = s.plan({xds.CLUSTER: WORLD, xds.ENDPOINT: WORLD}, 1, changed={xds.ENDPOINT: {"a"}})
    # The first answer of each type is forced: everything subscribed, whatever changed.
    assert {p.type_url: dict(p.resources) for p in first} == {
        xds.CLUSTER: WORLD,
        xds.ENDPOINT: {"a": "1", "b": "1"},
    }
    world2 = {"a": "2", "b": "2", "c": "2"}
    later = s.plan(
        {xds.CLUSTER: world2, xds.ENDPOINT: world2},
        2,
        changed={xds.CLUSTER: {"a"}, xds.ENDPOINT: {"a"}},
    )
    by_type = {p.type_url: dict(p.resources) for p in later}
    assert by_type[xds.ENDPOINT] == {"a": "2"}  # EDS: only the changed name
    assert by_type[xds.CLUSTER] == world2  # CDS is full-state: every cluster, always


def test_make_before_break_resends_the_handles_the_client_holds() -> None:
    s: xds.ServerSession[str] = xds.ServerSession()
    for url in (xds.LISTENER, xds.CLUSTER):
        s.receive(DiscoveryRequest(type_url=url))
    s.plan({xds.CLUSTER: {"old": "1"}, xds.LISTENER: {"l": "1"}}, 1)
    pushes = s.plan({xds.CLUSTER: {"new": "2"}, xds.LISTENER: {"l": "2"}}, 2)
    assert sorted(pushes[0].items) == ["1", "2"]  # the old cluster's handle and the new one
    assert pushes[-1].items == ("2",)


def test_delta_make_before_break_removes_stale_clusters_last() -> None:
    s: xds.ServerSession[str] = xds.ServerSession("delta")
    for url in (xds.LISTENER, xds.CLUSTER):
        s.receive(DeltaDiscoveryRequest(type_url=url, resource_names_subscribe=["*"]))
    s.plan({xds.CLUSTER: {"old": "1"}, xds.LISTENER: {"l": "1"}}, 1)
    pushes = s.plan({xds.CLUSTER: {"new": "2"}, xds.LISTENER: {"l": "2"}}, 2)
    assert [p.type_url for p in pushes] == [xds.CLUSTER, xds.LISTENER, xds.CLUSTER]
    assert (pushes[0].resources, pushes[0].removed) == ((("new", "2"),), ())
    assert (pushes[-1].resources, pushes[-1].removed) == ((), ("old",))


def test_equal_subscriptions_share_one_name_set_and_an_ack_keeps_it() -> None:
    # A thousand proxies subscribed to the same thousand clusters must not hold a thousand
    # copies of the names (the fan-out memory figure), and an ACK repeating the names must
    # not replace the set either.
    names = [f"outbound|80||svc-{i}.ns.svc.cluster.local" for i in range(100)]
    sessions: list[xds.ServerSession[str]] = [xds.ServerSession() for _ in range(3)]
    for s in sessions:
        s.receive(DiscoveryRequest(type_url=xds.ENDPOINT, resource_names=list(names)))
    first = sessions[0].wanted(xds.ENDPOINT)
    assert first == set(names)
    assert all(s.wanted(xds.ENDPOINT) is first for s in sessions)
    s = sessions[1]
    push = plan_push(s, xds.ENDPOINT, {n: "1" for n in names}, 1)
    assert push is not None
    ack = s.receive(
        DiscoveryRequest(
            type_url=xds.ENDPOINT,
            resource_names=list(reversed(names)),
            version_info="1",
            response_nonce=push.nonce,
        )
    )
    assert ack.kind is RequestKind.ACK and not ack.subscribed and not ack.unsubscribed
    assert s.wanted(xds.ENDPOINT) is first
    # A different subscription is its own set, and the others keep theirs.
    s.receive(
        DiscoveryRequest(
            type_url=xds.ENDPOINT, resource_names=names[:10], response_nonce=push.nonce
        )
    )
    assert s.wanted(xds.ENDPOINT) == set(names[:10])
    assert sessions[0].wanted(xds.ENDPOINT) is first
    delta: xds.ServerSession[str] = xds.ServerSession(mode="delta")
    delta.receive(DeltaDiscoveryRequest(type_url=xds.ENDPOINT, resource_names_subscribe=names))
    assert delta.wanted(xds.ENDPOINT) is first
