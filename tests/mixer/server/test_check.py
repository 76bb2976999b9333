"""Check through the gRPC wire: verdicts, validity, referenced attributes, namespaces."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from support.mixer_server import DENY_REVIEWS as DENY
from support.mixer_server import apply_yaml, legacy, referenced, serve

from istio_sdk.config import ConfigStore

DENY_REVIEWS = DENY.replace('== "reviews"', '== "reviews" && request.headers["x-user"] != "admin"')


def lists_store(config: str) -> ConfigStore:
    """``config`` plus a blacklist in Mixer's legacy per-adapter and per-template kinds."""
    store = ConfigStore()
    apply_yaml(store, config)
    store.apply(
        legacy(
            "listchecker",
            "badversions",
            {"overrides": ["v0", "v1-beta"], "blacklist": True, "cachingInterval": "20s"},
        )
    )
    store.apply(legacy("listentry", "version", {"value": 'source.labels["version"]'}))
    return store


LISTS = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: internal, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params:
    entryType: IP_ADDRESSES
    overrides: ["10.0.0.0/8"]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: sourceip, namespace: istio-system}
spec:
  compiledTemplate: listentry
  params:
    value: source.ip | ip("0.0.0.0")
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: internalonly, namespace: istio-system}
spec:
  match: destination.service.name == "ratings"
  actions:
  - handler: internal
    instances: [sourceip]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: noold, namespace: istio-system}
spec:
  match: destination.service.name == "details"
  actions:
  - handler: badversions.listchecker
    instances: [version.listentry]
"""


async def test_a_deny_rule_denies_what_it_matches_and_says_which_attributes_it_read() -> None:
    async with serve(DENY_REVIEWS) as (_, proxy):
        response = await proxy.check(
            {"destination.service.name": "reviews", "request.headers": {"x-user": "bob"}}
        )
        precondition = response.precondition
        assert precondition is not None and precondition.status is not None
        assert precondition.status.code == Status.PERMISSION_DENIED.value
        assert precondition.status.message == "deny.handler.istio-system:closed"
        assert precondition.valid_duration == datetime.timedelta(seconds=5)  # denier's default
        assert precondition.valid_use_count == 1000
        assert referenced(precondition.referenced_attributes) == {
            ("context.reporter.kind", "", "ABSENCE"),
            ("destination.namespace", "", "ABSENCE"),
            ("destination.service.name", "", "EXACT"),
            ("request.headers", "x-user", "EXACT"),
        }

        allowed = await proxy.check(
            {"destination.service.name": "reviews", "request.headers": {"x-user": "admin"}}
        )
        assert allowed.precondition is not None and allowed.precondition.status is not None
        assert allowed.precondition.status.code == Status.OK.value

        other = await proxy.check({"destination.service.name": "ratings"})
        assert other.precondition is not None and other.precondition.status is not None
        assert other.precondition.status.code == Status.OK.value
        # nobody said anything: Mixer's defaults
        assert other.precondition.valid_duration == datetime.timedelta(minutes=1)
        assert other.precondition.valid_use_count == 10000
        # the && stopped at the service name: the header was never read
        assert referenced(other.precondition.referenced_attributes) == {
            ("context.reporter.kind", "", "ABSENCE"),
            ("destination.namespace", "", "ABSENCE"),
            ("destination.service.name", "", "EXACT"),
        }


async def test_a_missing_attribute_in_a_match_means_no_match_and_is_referenced_as_absent() -> None:
    async with serve(DENY_REVIEWS) as (_, proxy):
        response = await proxy.check({"request.headers": {"x-user": "bob"}})
        assert response.precondition is not None and response.precondition.status is not None
        assert response.precondition.status.code == Status.OK.value
        assert ("destination.service.name", "", "ABSENCE") in referenced(
            response.precondition.referenced_attributes
        )


async def test_list_whitelist_and_legacy_blacklist() -> None:
    async with serve(store=lists_store(LISTS)) as (server, proxy):
        assert server.problems == ()
        inside = await proxy.check(
            {"destination.service.name": "ratings", "source.ip": ipaddress.ip_address("10.1.2.3")}
        )
        outside = await proxy.check(
            {"destination.service.name": "ratings", "source.ip": ipaddress.ip_address("8.8.8.8")}
        )
        assert inside.precondition is not None and inside.precondition.status is not None
        assert inside.precondition.status.code == Status.OK.value
        assert inside.precondition.valid_duration == datetime.timedelta(seconds=300)
        assert outside.precondition is not None and outside.precondition.status is not None
        assert outside.precondition.status.code == Status.PERMISSION_DENIED.value
        assert outside.precondition.status.message == (
            "internal.handler.istio-system:8.8.8.8 is not whitelisted"
        )

        old = await proxy.check(
            {"destination.service.name": "details", "source.labels": {"version": "v0"}}
        )
        new = await proxy.check(
            {"destination.service.name": "details", "source.labels": {"version": "v2"}}
        )
        assert old.precondition is not None and old.precondition.status is not None
        assert old.precondition.status.code == Status.PERMISSION_DENIED.value
        assert old.precondition.status.message == (
            "badversions.listchecker.istio-system:v0 is blacklisted"
        )
        assert old.precondition.valid_duration == datetime.timedelta(seconds=20)
        assert new.precondition is not None and new.precondition.status is not None
        assert new.precondition.status.code == Status.OK.value


NAMESPACED = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: closed, namespace: bookinfo}
spec:
  compiledAdapter: denier
  params: {status: {code: 9, message: bookinfo is closed}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: bookinfo}
spec:
  compiledTemplate: checknothing
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: closeall, namespace: bookinfo}
spec:
  actions:
  - handler: closed
    instances: [nothing]
"""


@pytest.mark.parametrize(
    ("attributes", "denied"),
    [
        ({"destination.namespace": "bookinfo"}, True),
        ({"destination.namespace": "other"}, False),
        ({}, False),
        # an outbound report's identity is its source
        ({"context.reporter.kind": "outbound", "destination.namespace": "bookinfo"}, False),
        ({"context.reporter.kind": "outbound", "source.namespace": "bookinfo"}, True),
        ({"context.reporter.kind": "inbound", "destination.namespace": "bookinfo"}, True),
    ],
)
async def test_rules_outside_istio_system_apply_to_their_namespace_only(
    attributes: dict[str, object], denied: bool
) -> None:
    async with serve(NAMESPACED) as (_, proxy):
        response = await proxy.check(attributes)
        assert response.precondition is not None and response.precondition.status is not None
        expected = Status.FAILED_PRECONDITION if denied else Status.OK
        assert response.precondition.status.code == expected.value


async def test_an_instance_that_cannot_be_built_fails_the_check_with_internal() -> None:
    config = LISTS.replace('value: source.ip | ip("0.0.0.0")', "value: source.ip")
    async with serve(store=lists_store(config)) as (_, proxy):
        with pytest.raises(GRPCError) as raised:
            await proxy.check({"destination.service.name": "ratings"})
        assert raised.value.status is Status.INTERNAL
        assert "performing check operation failed" in str(raised.value.message)
        assert "lookup failed: 'source.ip'" in str(raised.value.message)
        # and the server goes on serving
        fine = await proxy.check(
            {"destination.service.name": "details", "source.labels": {"version": "v1-beta"}}
        )
        assert fine.precondition is not None and fine.precondition.status is not None
        assert fine.precondition.status.code == Status.PERMISSION_DENIED.value


HEADERS = """
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: headers, namespace: istio-system}
spec:
  match: destination.service.name == "reviews"
  requestHeaderOperations:
  - name: x-user-agent
    values: [request.useragent | "none"]
  - name: x-internal
    operation: REMOVE
  responseHeaderOperations:
  - name: x-served-by
    values:
    - '"mixer"'
    - source.name | ""
    - request.headers["nope"]
    operation: APPEND
"""


async def test_header_operations_of_matching_rules_come_back_as_the_route_directive() -> None:
    async with serve(HEADERS) as (server, proxy):
        assert server.problems == ()
        response = await proxy.check(
            {"destination.service.name": "reviews", "request.useragent": "curl"}
        )
        assert response.precondition is not None
        directive = response.precondition.route_directive
        assert directive is not None
        assert [
            (h.name, h.value, h.operation.name) for h in directive.request_header_operations
        ] == [
            ("x-user-agent", "curl", "REPLACE"),
            ("x-internal", "", "REMOVE"),
        ]
        # empty values and values that cannot be evaluated are left out
        assert [
            (h.name, h.value, h.operation.name) for h in directive.response_header_operations
        ] == [("x-served-by", "mixer", "APPEND")]
        assert response.precondition.valid_use_count == 10000  # nobody else said anything

        other = await proxy.check({"destination.service.name": "ratings"})
        assert other.precondition is not None and other.precondition.route_directive is None


async def test_referenced_words_follow_the_callers_global_word_count() -> None:
    async with serve(DENY_REVIEWS) as (_, proxy):
        bag = {"destination.service.name": "reviews", "request.headers": {"x-user": "bob"}}
        full = await proxy.check(bag)
        none = await proxy.check(bag, global_word_count=0)
        again = await proxy.check(bag)
        refs = [r.precondition.referenced_attributes for r in (full, none, again) if r.precondition]
        assert referenced(refs[0]) == referenced(refs[1]) == referenced(refs[2])
        assert refs[0] is not None and refs[1] is not None
        assert refs[0].words == ["x-user"]  # the names are global words
        assert sorted(refs[1].words) == sorted(  # a caller that knows none gets them all
            [
                "context.reporter.kind",
                "destination.namespace",
                "destination.service.name",
                "request.headers",
                "x-user",
            ]
        )
