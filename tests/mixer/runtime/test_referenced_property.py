"""A Check's answer depends only on the attributes it says it read.

This is what makes the proxy's check cache correct: it reuses an answer for any request that
agrees with the cached one on the EXACT attributes (same values, map keys included) and lacks
the ABSENCE ones. Here: take any bag, check it, build a second bag that differs everywhere the
first answer did not look, and the second answer must be the same. (As in Mixer, reading a key
of a map that is present records the key, not the map: the second bag keeps such a map.)
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from istio_sdk.config import load_resources
from istio_sdk.mixer.adapters import build_handler
from istio_sdk.mixer.runtime import Dispatcher, build_routing
from istio_sdk.mixer.runtime.referenced import ABSENCE, EXACT

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: closed}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: denyreviews, namespace: istio-system}
spec:
  match: destination.service.name == "reviews" && request.headers["x-user"] != "admin"
  actions: [{handler: deny, instances: [nothing]}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: closed, namespace: bookinfo}
spec: {compiledAdapter: denier, params: {status: {code: 9, message: bookinfo}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: bookinfo}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: closeratings, namespace: bookinfo}
spec:
  match: (request.headers["x-canary"] | "no") == "yes"
  actions: [{handler: closed, instances: [nothing]}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: internal, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params: {entryType: IP_ADDRESSES, overrides: ["10.0.0.0/8"], cachingInterval: 7s}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: sourceip, namespace: istio-system}
spec: {compiledTemplate: listentry, params: {value: source.ip | ip("10.0.0.1")}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: internalonly, namespace: istio-system}
spec:
  match: match(destination.service.name, "rat*") || source.labels["app"] == "legacy"
  actions: [{handler: internal, instances: [sourceip]}]
"""

_ROUTING = build_routing(load_resources(CONFIG))
assert not _ROUTING.problems, _ROUTING.problems


async def _handlers() -> dict[str, Any]:
    return {
        name: await build_handler(config.adapter, name, config.params)
        for name, config in _ROUTING.handlers.items()
    }


_LOOP = asyncio.new_event_loop()  # one loop for every example: a loop per call costs more
_DISPATCHER = Dispatcher(_ROUTING, _LOOP.run_until_complete(_handlers()))


def teardown_module() -> None:
    _LOOP.close()


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


_MAPS = st.dictionaries(
    st.sampled_from(["x-user", "x-canary", "app"]),
    st.sampled_from(["admin", "yes", "legacy"]),
    max_size=3,
)
_ATTRIBUTES: Mapping[str, st.SearchStrategy[Any]] = {
    "destination.service.name": st.sampled_from(["reviews", "ratings", "details"]),
    "destination.namespace": st.sampled_from(["bookinfo", "other"]),
    "source.namespace": st.sampled_from(["bookinfo", "other"]),
    "context.reporter.kind": st.sampled_from(["inbound", "outbound"]),
    "request.headers": _MAPS,
    "source.labels": _MAPS,
    "source.ip": st.sampled_from(["10.1.2.3", "8.8.8.8", "10.255.0.1"]).map(ipaddress.ip_address),
}


@st.composite
def bags(draw: st.DrawFn) -> dict[str, Any]:
    drawn = {name: draw(_maybe(values)) for name, values in _ATTRIBUTES.items()}
    return {name: value for name, value in drawn.items() if value is not None}


def _agreeing(first: Mapping[str, Any], other: dict[str, Any], refs: Mapping[Any, Any]) -> dict:
    """``other`` changed to agree with ``first`` wherever ``refs`` says the answer looked."""
    bag = {name: dict(v) if isinstance(v, Mapping) else v for name, v in other.items()}
    for (name, key), condition in refs.items():
        if key is None and condition == EXACT:
            bag[name] = first[name]
        elif key is None and condition == ABSENCE:
            bag.pop(name, None)
        elif condition == EXACT:
            bag.setdefault(name, {})[key] = first[name][key]
        else:
            # Mixer records a map key's absence but not the map's presence: an answer read
            # from a present map holds for requests that carry that map (proxies always send
            # request.headers), not for ones without it, where indexing fails
            bag.setdefault(name, {}).pop(key, None)
    return bag


@settings(max_examples=max(200, settings().max_examples))  # cheap examples
@given(first=bags(), other=bags())
@example(  # the reporter kind decides which namespace's rules apply
    first={"destination.namespace": "bookinfo", "request.headers": {"x-canary": "yes"}},
    other={"context.reporter.kind": "outbound"},
)
def test_an_answer_holds_for_every_bag_that_agrees_on_its_referenced_attributes(
    first: dict[str, Any], other: dict[str, Any]
) -> None:
    answer = _LOOP.run_until_complete(_DISPATCHER.check(first))
    second_bag = _agreeing(first, other, answer.referenced)
    second = _LOOP.run_until_complete(_DISPATCHER.check(second_bag))
    assert (second.status, second.valid_duration, second.valid_use_count) == (
        answer.status,
        answer.valid_duration,
        answer.valid_use_count,
    ), (first, second_bag, answer.referenced)
