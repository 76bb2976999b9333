"""Hostile input: huge numbers, NaN, deep nesting, 1 MB strings and regexes RE2 refuses."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.semantic import findings

import istio_sdk
from istio_sdk.api.istio.networking.v1alpha3 import (
    Destination,
    HttpRoute,
    HttpRouteDestination,
    Percent,
    VirtualService,
)
from istio_sdk.config import KINDS, KindInfo, Resource, message_class, semantic
from istio_sdk.protojson import JsonSerializeError, message_to_json
from istio_sdk.testing.strategies import messages

INT32_MAX = 2**31 - 1


def errors(kind: str, spec: dict[str, object]) -> list[tuple[str, str]]:
    return [(path, message) for level, path, message in findings(kind, spec) if level == "error"]


def test_weights_that_wrap_around_int32_add_up_to_zero_as_in_go() -> None:
    route = [
        {"destination": {"host": "a.shop"}, "weight": INT32_MAX},
        {"destination": {"host": "b.shop"}, "weight": INT32_MAX},
        {"destination": {"host": "c.shop"}, "weight": 2},
    ]
    assert ("spec.http[0].route", "total destination weight = 0") in errors(
        "VirtualService", {"hosts": ["a"], "http": [{"route": route}]}
    )


def test_a_port_beyond_uint32_is_refused_by_the_schema_before_istio_looks() -> None:
    spec = {"hosts": ["a.example.com"], "ports": [{"number": 2**40, "name": "http"}]}
    problems = istio_sdk.validate(
        json.dumps(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": {"name": "x", "namespace": "shop"},
                "spec": spec,
            }
        )
    )
    assert problems and all(p.is_error for p in problems)
    assert problems[0].path == "spec.ports[0].number"


def test_nan_percentages_pass_as_they_do_in_go() -> None:
    """Go's NaN < 0 and NaN > 100 are both false: Istio accepts a NaN mirror percentage."""
    spec = VirtualService(
        hosts=["reviews"],
        http=[
            HttpRoute(
                route=[HttpRouteDestination(destination=Destination(host="reviews"))],
                mirror=Destination(host="mirror"),
                mirror_percentage=Percent(value=math.nan),
            )
        ],
    )
    resource = Resource.new(spec, name="r", namespace="shop")
    assert [p for p in istio_sdk.validate(resource) if p.is_error] == []


def test_a_1mb_host_gives_a_short_message() -> None:
    host = "a" * (1 << 20)
    found = errors(
        "VirtualService", {"hosts": [host], "http": [{"route": [{"destination": {"host": "b"}}]}]}
    )
    assert found and all(len(message) < 2000 for _, message in found)
    assert any("too long (max 255)" in message for _, message in found)


def test_a_deeply_nested_access_log_filter_is_an_error_not_a_crash() -> None:
    expression = "(" * 20000 + "1" + ")" * 20000
    found = errors("Telemetry", {"accessLogging": [{"filter": {"expression": expression}}]})
    assert [path for path, _ in found] == ["spec.accessLogging[0].filter.expression"]


def test_a_deeply_nested_inline_jwks_is_a_parse_error() -> None:
    jwks = "[" * 100000 + "]" * 100000
    found = errors("RequestAuthentication", {"jwtRules": [{"issuer": "a", "jwks": jwks}]})
    assert [path for path, _ in found] == ["spec.jwtRules[0].jwks"]
    assert found[0][1].startswith("jwks parse error: ")


def test_regexes_re2_refuses_are_errors_naming_re2() -> None:
    for pattern in ("a(?=b)", "(a)\\1", "a{1001}", "[z-a]"):
        found = errors(
            "VirtualService",
            {
                "hosts": ["a"],
                "http": [
                    {
                        "match": [{"uri": {"regex": pattern}}],
                        "route": [{"destination": {"host": "b"}}],
                    }
                ],
            },
        )
        assert any(
            path == "spec.http[0].match[0].uri" and "Istio uses RE2 style regex-based match" in m
            for path, m in found
        ), (pattern, found)


def test_a_regex_over_1024_characters_is_too_large() -> None:
    found = errors(
        "VirtualService",
        {
            "hosts": ["a"],
            "http": [
                {
                    "match": [{"uri": {"regex": "a" * 1025}}],
                    "route": [{"destination": {"host": "b"}}],
                }
            ],
        },
    )
    assert (
        "spec.http[0].match[0].uri",
        '"uri": regex is too large, max length allowed is 1024',
    ) in found


def test_a_million_destinations_are_not_needed_to_see_every_problem() -> None:
    route = [{"destination": {"host": f"h{i}.shop", "subset": "Bad_Subset"}} for i in range(2000)]
    found = errors("VirtualService", {"hosts": ["a"], "http": [{"route": route}]})
    subset_errors = [p for p, _ in found if p.endswith(".destination.subset")]
    assert len(subset_errors) == 2000
    assert ("spec.http[0].route", "total destination weight = 0") in found


def test_control_characters_in_header_values_and_names() -> None:
    headers = {"request": {"set": {"x-a": "line\nbreak"}, "remove": [":path"]}}
    found = errors(
        "VirtualService",
        {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "b"}}], "headers": headers}]},
    )
    assert (
        'spec.http[0].headers.request.set["x-a"]',
        "header value configuration line\nbreak is invalid",
    ) in found
    assert (
        "spec.http[0].headers.request.remove[0]",
        'invalid header ":path": header cannot have ":" prefix',
    ) in found


@pytest.mark.parametrize(
    "info", [k for k in KINDS if semantic.has_rules(k.group, k.kind)], ids=lambda k: k.kind
)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_spec_of_every_kind_gets_findings_never_an_exception(
    info: KindInfo, data: st.DataObject
) -> None:
    """Generated specs (random strings, numbers, nesting) only ever produce findings."""
    spec = data.draw(messages(message_class(info.spec_type), max_depth=4), label="spec")
    try:
        spec_json = message_to_json(spec)
    except JsonSerializeError:
        return  # values JSON cannot hold never reach the rules (the schema reports them)
    found = semantic.check(info.group, info.kind, spec_json, name="x", namespace="shop")
    assert all(f.level in ("error", "warning") for f in found)
    assert all(f.path.startswith(("spec", "metadata.")) for f in found)
    assert all(len(f.message) < 4096 for f in found)
