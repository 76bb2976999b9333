"""Push requests are values: their proxy selection is data, and merging is a union."""

from __future__ import annotations

import functools
import operator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.config import load_resources
from istio_sdk.pilot.config_entry import ConfigKey
from istio_sdk.pilot.push_context import (
    ChangeSet,
    ProxyInfo,
    ProxyType,
    PushContext,
    compute_changes,
)
from istio_sdk.pilot.push_request import AffectedBy, AnyOf, PushRequest

SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}]
"""

NAMESPACES = ("a", "b", "c")
PROXIES = tuple(
    ProxyInfo(f"{kind.value}~10.0.0.{i}~p{i}.{ns}~{ns}.svc.cluster.local", type=kind, namespace=ns)
    for i, (ns, kind) in enumerate(
        (ns, kind) for ns in NAMESPACES for kind in (ProxyType.SIDECAR, ProxyType.ROUTER)
    )
)
IDS = tuple(p.id for p in PROXIES)
CONTEXT = PushContext.build()


def _change(namespaces: frozenset[str], gateways: bool) -> AffectedBy:
    change = ChangeSet(
        configs=frozenset({ConfigKey("Sidecar", ns, "default") for ns in namespaces}),
        services=frozenset(),
        endpoint_services=frozenset(),
        hosts=frozenset(),
        sidecar_namespaces=namespaces,
        gateways_changed=gateways,
    )
    return AffectedBy(change, CONTEXT)


ids = st.frozensets(st.sampled_from(IDS))
changes = st.builds(_change, st.frozensets(st.sampled_from(NAMESPACES), min_size=1), st.booleans())
selections = (
    st.none()
    | ids
    | changes
    | st.lists(ids | changes, max_size=3).map(lambda parts: AnyOf(tuple(parts)))
)
requests = st.builds(PushRequest, proxies=selections)


def selected(request: PushRequest) -> frozenset[str]:
    return frozenset(p.id for p in PROXIES if request.selects(p))


@given(requests, requests, requests)
def test_merging_selects_the_union_in_any_order_and_grouping(
    a: PushRequest, b: PushRequest, c: PushRequest
) -> None:
    assert selected(a.merge(b)) == selected(a) | selected(b)
    assert selected(a.merge(b)) == selected(b.merge(a))
    assert selected(a.merge(b).merge(c)) == selected(a.merge(b.merge(c)))
    merged = functools.reduce(PushRequest.merge, (a, b, c))
    assert selected(merged) == functools.reduce(operator.or_, map(selected, (a, b, c)))
    # A merged request is still plain data: None, one id set, or AnyOf of ids and changes.
    proxies = merged.proxies
    if isinstance(proxies, AnyOf):
        assert sum(isinstance(part, frozenset) for part in proxies.selectors) <= 1
    else:
        assert proxies is None or isinstance(proxies, (frozenset, AffectedBy))


def test_selections_are_sets_of_ids_changes_or_any_of_them() -> None:
    web, db = PROXIES[0], PROXIES[2]
    request = PushRequest(proxies={web.id})
    assert request.proxies == frozenset({web.id})
    assert request.selects(web) and not request.selects(db)
    assert PushRequest(proxies=frozenset()).selects(web) is False
    assert PushRequest().selects(web)
    merged = request.merge(PushRequest(proxies=frozenset({db.id})))
    assert merged.proxies == frozenset({web.id, db.id})  # ids merge into one set
    assert request.merge(PushRequest()).proxies is None  # one side selects everyone
    in_b = _change(frozenset({"b"}), gateways=False)
    both = request.merge(PushRequest(proxies=in_b))
    assert both.proxies == AnyOf((frozenset({web.id}), in_b))
    assert [p.namespace for p in PROXIES if both.selects(p)] == ["a", "b", "b"]
    assert both == PushRequest(proxies=AnyOf((frozenset({web.id}), in_b)))  # compares as data
    assert AnyOf((AnyOf((in_b,)), frozenset({"x"}))).selectors == (in_b, frozenset({"x"}))


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (lambda proxy: True, "not a function"),
        (PushRequest.selects, "not a function"),
        ("sidecar~10.0.0.1~web.a~a.svc.cluster.local", "not str"),
        (["p1"], "not list"),
        ({"p1", 2}, "proxy ids are strings, not int"),
        (AnyOf, "not a function"),
        (42, "not int"),
    ],
)
def test_anything_but_data_is_a_type_error(selection: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        PushRequest(proxies=selection)


def test_any_of_refuses_functions_and_strings() -> None:
    with pytest.raises(TypeError, match="not a function"):
        AnyOf((frozenset(), lambda proxy: True))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tuple of selections, not str"):
        AnyOf("p1")  # type: ignore[arg-type]


def test_a_config_change_selects_proxies_as_data() -> None:
    before = PushContext.build()
    after = PushContext.build(load_resources(SERVICE_ENTRY))
    change = compute_changes(before, after)
    request = PushRequest(types=change.type_urls, proxies=AffectedBy(change, after))
    assert request == PushRequest(types=change.type_urls, proxies=AffectedBy(change, after))
    assert request.selects(ProxyInfo("x", namespace="default"))
    merged = request.merge(request)
    assert merged.proxies == AnyOf((AffectedBy(change, after), AffectedBy(change, after)))
