"""VirtualService verdicts, case by case from Istio's validation tests."""

from __future__ import annotations

from typing import Any

import pytest
from support.semantic import Case, check_case, findings


def route(host: str = "reviews.shop.svc.cluster.local", **extra: Any) -> dict[str, Any]:
    return {"route": [{"destination": {"host": host}}], **extra}


def vs(*http: dict[str, Any], hosts: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"hosts": ["reviews"] if hosts is None else hosts, "http": list(http), **extra}


CASES = [
    Case("simple", vs(route())),
    Case(
        "no routes at all",
        {"hosts": ["reviews"]},
        error=("spec", "http, tcp or tls must be provided"),
    ),
    Case(
        "bad host",
        vs(route(), hosts=["*.*.bad"]),
        error=("spec.hosts[0]", 'domain name "*.bad" invalid'),
    ),
    Case("ip host", vs(route(), hosts=["10.0.0.1"])),
    Case("two different hosts", vs(route(), hosts=["a.shop.com", "b.shop.com", "*.other.com"])),
    Case(
        "wildcard host on the mesh",
        vs(route(), hosts=["*"]),
        error=(
            "spec.hosts[0]",
            "wildcard host * is not allowed for virtual services bound to the mesh",
        ),
    ),
    Case("wildcard host on a gateway", vs(route(), hosts=["*"], gateways=["shop/gw"])),
    Case(
        "duplicate hosts",
        vs(route(), hosts=["*.foo.com", "bar.foo.com"]),
        error=("spec.hosts[1]", "duplicate hosts in virtual service: *.foo.com & bar.foo.com"),
    ),
    Case(
        "delegate with gateways",
        {"http": [route()], "gateways": ["shop/gw"]},
        error=("spec.gateways", "delegate virtual service must have no gateways specified"),
    ),
    Case("delegate", {"http": [route()]}),
    Case(
        "gateway name with a bad namespace",
        vs(route(), gateways=["Bad_ns/gw"]),
        error=("spec.gateways[0]", 'invalid value for namespace: "Bad_ns"'),
    ),
    Case(
        "legacy gateway name",
        vs(route(), gateways=["gw.shop"]),
        warning=(
            "spec.gateways[0]",
            (
                'using legacy gatewayName format "gw.shop"; prefer the '
                '<namespace>/<name> format: "shop/gw"'
            ),
        ),
    ),
    Case(
        "negative weight",
        vs(
            {
                "route": [
                    {"destination": {"host": "a.shop"}, "weight": -1},
                    {"destination": {"host": "b.shop"}, "weight": 101},
                ]
            }
        ),
        error=("spec.http[0].route[0].weight", "weight -1 < 0"),
    ),
    Case(
        "all weights zero",
        vs({"route": [{"destination": {"host": "a.shop"}}, {"destination": {"host": "b.shop"}}]}),
        error=("spec.http[0].route", "total destination weight = 0"),
    ),
    Case(
        "one destination of weight 0",
        vs({"route": [{"destination": {"host": "a.shop"}, "weight": 0}]}),
    ),
    Case(
        "weights need not sum to 100 (since Istio 1.15)",
        vs(
            {
                "route": [
                    {"destination": {"host": "a.shop"}, "weight": 30},
                    {"destination": {"host": "b.shop"}, "weight": 30},
                ]
            }
        ),
    ),
    Case(
        "destination host *",
        vs(route("*")),
        error=("spec.http[0].route[0].destination.host", "invalid destination host *"),
    ),
    Case(
        "bad subset name",
        vs({"route": [{"destination": {"host": "a.shop", "subset": "v_1"}}]}),
        error=("spec.http[0].route[0].destination.subset", "subset name is invalid: v_1"),
    ),
    Case(
        "destination port 99999",
        vs({"route": [{"destination": {"host": "a.shop", "port": {"number": 99999}}}]}),
        error=(
            "spec.http[0].route[0].destination.port.number",
            "port number 99999 must be in the range 1..65535",
        ),
    ),
    Case(
        "redirect with a route",
        vs(route(redirect={"uri": "/new"})),
        error=("spec.http[0]", "HTTP route cannot contain both route and redirect"),
    ),
    Case("redirect alone", vs({"redirect": {"uri": "/new", "authority": "b.shop"}})),
    Case(
        "redirect with nothing",
        vs({"redirect": {"redirectCode": 301}}),
        error=("spec.http[0].redirect", "redirect must specify URI, authority, scheme, or port"),
    ),
    Case(
        "redirect code 200",
        vs({"redirect": {"uri": "/x", "redirectCode": 200}}),
        error=(
            "spec.http[0].redirect.redirectCode",
            "200 is not a valid redirect code, must be 3xx",
        ),
    ),
    Case(
        "redirect scheme ftp",
        vs({"redirect": {"scheme": "ftp"}}),
        error=(
            "spec.http[0].redirect.scheme",
            'invalid redirect scheme, must be "http" or "https"',
        ),
    ),
    Case(
        "redirect uri and prefix rewrite",
        vs({"redirect": {"uri": "/a", "prefixRewrite": "/b"}}),
        error=("spec.http[0].redirect", "redirect may only specify one of uri or prefix_rewrite"),
    ),
    Case(
        "no route, redirect or direct response",
        vs({"timeout": "1s"}),
        error=("spec.http[0]", "HTTP route, redirect or direct_response is required"),
    ),
    Case("direct response", vs({"directResponse": {"status": 503, "body": {"string": "down"}}})),
    Case(
        "direct response status 700",
        vs({"directResponse": {"status": 700}}),
        error=("spec.http[0].directResponse.status", "HTTP status 700 is not in range 200-599"),
    ),
    Case(
        "large direct response",
        vs({"directResponse": {"status": 200, "body": {"string": "x" * (100 * 1024 + 1)}}}),
        warning=(
            "spec.http[0].directResponse.body",
            "large direct_responses may impact control plane performance",
        ),
    ),
    Case(
        "direct response over 1 MiB",
        vs({"directResponse": {"status": 200, "body": {"string": "x" * (1024 * 1024 + 1)}}}),
        error=("spec.http[0].directResponse.body", "must be less than 1MB"),
    ),
    Case(
        "rewrite with nothing",
        vs(route(rewrite={})),
        error=(
            "spec.http[0].rewrite",
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority",
        ),
    ),
    Case(
        "rewrite uri and regex",
        vs(route(rewrite={"uri": "/a", "uriRegexRewrite": {"match": "a", "rewrite": "b"}})),
        error=("spec.http[0].rewrite", "rewrite may only contain one of URI or UriRegexRewrite"),
    ),
    Case(
        "rewrite regex RE2 rejects",
        vs(route(rewrite={"uriRegexRewrite": {"match": "a(?=b)", "rewrite": "c"}})),
        error=(
            "spec.http[0].rewrite.uriRegexRewrite.match",
            "Istio uses RE2 style regex-based match",
        ),
    ),
    Case(
        "authority rewritten twice",
        vs(
            route(
                rewrite={"authority": "a.shop"},
                headers={"request": {"set": {":authority": "b.shop"}}},
            )
        ),
        error=(
            'spec.http[0].headers.request.set[":authority"]',
            (
                "authority header cannot be set multiple times: have "
                '"a.shop", attempting to set "b.shop"'
            ),
        ),
    ),
    Case(
        "retries",
        vs(
            route(
                retries={"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,503,gateway-error"}
            )
        ),
    ),
    Case("retries off", vs(route(retries={"attempts": 0}))),
    Case(
        "retries off with a policy",
        vs(route(retries={"perTryTimeout": "2s"})),
        error=(
            "spec.http[0].retries",
            "http retry policy configured when attempts are set to 0 (disabled)",
        ),
    ),
    Case(
        "negative attempts",
        vs(route(retries={"attempts": -1})),
        error=("spec.http[0].retries.attempts", "attempts cannot be negative"),
    ),
    Case(
        "unknown retryOn",
        vs(route(retries={"attempts": 1, "retryOn": "5xx,sometimes"})),
        error=("spec.http[0].retries.retryOn", '"sometimes" is not a valid retryOn policy'),
    ),
    Case(
        "retryOn code Go has no text for",
        vs(route(retries={"attempts": 1, "retryOn": "599"})),
        error=("spec.http[0].retries.retryOn", '"599" is not a valid retryOn policy'),
    ),
    Case("timeout exactly 1ms", vs(route(timeout="0.001s"))),
    Case(
        "timeout under 1ms",
        vs(route(timeout="0.000999s")),
        error=("spec.http[0].timeout", "duration must be greater than 1ms"),
    ),
    Case(
        "timeout with sub-ms precision",
        vs(route(timeout="1.0005s")),
        error=("spec.http[0].timeout", "only durations to ms precision are supported"),
    ),
    Case(
        "fault without abort or delay",
        vs(route(fault={})),
        error=("spec.http[0].fault", "HTTP fault injection must have an abort and/or a delay"),
    ),
    Case(
        "fault percentage over 100",
        vs(route(fault={"delay": {"fixedDelay": "1s", "percentage": {"value": 101}}})),
        error=(
            "spec.http[0].fault.delay.percentage",
            "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]",
        ),
    ),
    Case(
        "fault percentage too small",
        vs(route(fault={"delay": {"fixedDelay": "1s", "percentage": {"value": 0.00001}}})),
        error=(
            "spec.http[0].fault.delay.percentage",
            "is neither 0.0, nor in range [0.0001, 100.0]",
        ),
    ),
    Case(
        "abort http status 100",
        vs(route(fault={"abort": {"httpStatus": 100}})),
        error=("spec.http[0].fault.abort.httpStatus", "HTTP status 100 is not in range 200-599"),
    ),
    Case("abort grpc status", vs(route(fault={"abort": {"grpcStatus": "UNAVAILABLE"}}))),
    Case(
        "abort unknown grpc status",
        vs(route(fault={"abort": {"grpcStatus": "NOPE"}})),
        error=("spec.http[0].fault.abort.grpcStatus", 'gRPC status "NOPE" is not supported'),
    ),
    Case(
        "abort http2 error",
        vs(route(fault={"abort": {"http2Error": "x"}})),
        error=(
            "spec.http[0].fault.abort.http2Error",
            "HTTP/2 abort fault injection not supported yet",
        ),
    ),
    Case(
        "abort without a type",
        vs(route(fault={"abort": {"percentage": {"value": 1}}})),
        warning=("spec.http[0].fault.abort", "abort configured, but error type not set"),
    ),
    Case(
        "fault with a redirect",
        vs({"redirect": {"uri": "/x"}, "fault": {"abort": {"httpStatus": 500}}}),
        error=("spec.http[0]", "HTTP route cannot contain both fault and redirect"),
    ),
    Case("mirror percentage", vs(route(mirror={"host": "m.shop"}, mirrorPercentage={"value": 50}))),
    Case(
        "mirror percentage over 100",
        vs(route(mirror={"host": "m.shop"}, mirrorPercentage={"value": 101})),
        error=(
            "spec.http[0].mirrorPercentage",
            "mirror_percentage must have a max value of 100 (it has 101.000000)",
        ),
    ),
    Case(
        "deprecated mirrorPercent",
        vs(route(mirror={"host": "m.shop"}, mirrorPercent=10)),
        warning=(
            "spec.http[0].mirrorPercent",
            'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
        ),
    ),
    Case(
        "mirror and mirrors",
        vs(route(mirror={"host": "m.shop"}, mirrors=[{"destination": {"host": "n.shop"}}])),
        error=("spec.http[0]", "HTTP route cannot contain both mirror and mirrors"),
    ),
    Case(
        "mirrors percentage over 100",
        vs(route(mirrors=[{"destination": {"host": "n.shop"}, "percentage": {"value": 200}}])),
        error=(
            "spec.http[0].mirrors[0].percentage",
            "mirror percentage must have a max value of 100",
        ),
    ),
    Case(
        "header removal of Host",
        vs(route(headers={"request": {"remove": ["host"]}})),
        error=(
            "spec.http[0].headers.request.remove[0]",
            'invalid header "host": cannot set Host header',
        ),
    ),
    Case(
        "response header with a colon",
        vs(route(headers={"response": {"set": {":status": "200"}}})),
        error=(
            'spec.http[0].headers.response.set[":status"]',
            'invalid header ":status": header cannot have ":" prefix',
        ),
    ),
    Case(
        "header value with a bad substitution",
        vs(route(headers={"request": {"add": {"x-a": "%UPSTREAM"}}})),
        error=(
            "spec.http[0].headers.request.add.x-a".replace(".x-a", '["x-a"]'),
            "Un-terminated variable expression",
        ),
    ),
    Case(
        "cors",
        vs(
            route(
                corsPolicy={
                    "allowOrigins": [{"exact": "https://a"}],
                    "allowMethods": ["GET", "*"],
                    "maxAge": "60s",
                }
            )
        ),
    ),
    Case(
        "cors method",
        vs(route(corsPolicy={"allowOrigins": [{"exact": "https://a"}], "allowMethods": ["FETCH"]})),
        error=("spec.http[0].corsPolicy.allowMethods[0]", '"FETCH" is not a supported HTTP method'),
    ),
    Case(
        "cors maxAge in ms",
        vs(route(corsPolicy={"allowOrigins": [{"exact": "https://a"}], "maxAge": "1.5s"})),
        error=(
            "spec.http[0].corsPolicy.maxAge",
            "max_age duration is accurate only to seconds precision",
        ),
    ),
    Case(
        "cors origin regex",
        vs(route(corsPolicy={"allowOrigins": [{"regex": "(unclosed"}]})),
        error=(
            "spec.http[0].corsPolicy.allowOrigins[0]",
            '"corsPolicy.allowOrigins": invalid RE2 regular expression',
        ),
    ),
    Case(
        "empty prefix match",
        vs(route(match=[{"method": {"prefix": ""}}])),
        error=("spec.http[0].match[0].method", '"method": prefix string match should not be empty'),
    ),
    Case(
        "bad header match regex",
        vs(route(match=[{"headers": {"x-a": {"regex": "a{2,1}"}}}])),
        error=('spec.http[0].match[0].headers["x-a"]', '"headers": invalid RE2 regular expression'),
    ),
    Case(
        "jwt claim route on the mesh",
        vs(route(match=[{"headers": {"@request.auth.claims.group": {"exact": "a"}}}])),
        error=(
            'spec.http[0].match[0].headers["@request.auth.claims.group"]',
            "JWT claim based routing (key: "
            "@request.auth.claims.group) is only supported for gateway",
        ),
    ),
    Case(
        "jwt claim route on a gateway",
        vs(
            route(match=[{"headers": {"@request.auth.claims.group": {"exact": "a"}}}]),
            gateways=["shop/gw"],
        ),
    ),
    Case("match port 0 is unset", vs(route(match=[{"port": 0}]))),
    Case(
        "source namespace",
        vs(route(match=[{"sourceNamespace": "Not_A_Label"}])),
        error=(
            "spec.http[0].match[0].sourceNamespace",
            "sourceNamespace match Not_A_Label is invalid",
        ),
    ),
    Case(
        "root route with a route",
        vs(route(delegate={"name": "d", "namespace": "shop"})),
        error=("spec.http[0].route", "root HTTP route  must not specify route"),
    ),
    Case(
        "delegate route that delegates",
        {"http": [{"delegate": {"name": "d"}}]},
        error=("spec.http[0].delegate", "delegate HTTP route cannot contain delegate"),
    ),
    Case(
        "tls route sni not among the hosts",
        {
            "hosts": ["a.shop.com"],
            "tls": [
                {
                    "match": [{"sniHosts": ["b.shop.com"]}],
                    "route": [{"destination": {"host": "a.shop.com"}}],
                }
            ],
        },
        error=(
            "spec.tls[0].match[0].sniHosts[0]",
            (
                'SNI host "b.shop.com" is not a compatible subset of any of '
                "the virtual service hosts: [a.shop.com]"
            ),
        ),
    ),
    Case(
        "tls route sni under a wildcard host",
        {
            "hosts": ["*.shop.com"],
            "tls": [
                {
                    "match": [{"sniHosts": ["b.shop.com"]}],
                    "route": [{"destination": {"host": "b.shop.com"}}],
                }
            ],
        },
    ),
    Case(
        "tls route without matches",
        {"hosts": ["a.shop.com"], "tls": [{"route": [{"destination": {"host": "a.shop.com"}}]}]},
        error=("spec.tls[0]", "TLS route must have at least one match condition"),
    ),
    Case(
        "tls route with an IP sni",
        {
            "hosts": ["10.0.0.1"],
            "tls": [
                {
                    "match": [{"sniHosts": ["10.0.0.1"]}],
                    "route": [{"destination": {"host": "a.shop"}}],
                }
            ],
        },
        warning=(
            "spec.tls[0].match[0].sniHosts[0]",
            'using an IP address ("10.0.0.1") goes against SNI spec',
        ),
    ),
    Case(
        "tcp route without route",
        {"hosts": ["a.shop"], "tcp": [{"match": [{"port": 5000}]}]},
        error=("spec.tcp[0]", "TCP route is required"),
    ),
    Case(
        "tcp match bad subnet",
        {
            "hosts": ["a.shop"],
            "tcp": [
                {
                    "match": [{"destinationSubnets": ["10.0.0.0/33"]}],
                    "route": [{"destination": {"host": "a.shop"}}],
                }
            ],
        },
        error=(
            "spec.tcp[0].match[0].destinationSubnets[0]",
            "10.0.0.0/33 is not a valid CIDR block",
        ),
    ),
    Case(
        "an internal annotation",
        vs(route()),
        annotations={"internal.istio.io/webhook-always-reject": "yes"},
        error=(
            'metadata.annotations["internal.istio.io/webhook-always-reject"]',
            '"internal.istio.io/webhook-always-reject" annotation found, rejecting',
        ),
    ),
    Case(
        "dry-run on a VirtualService",
        vs(route()),
        annotations={"istio.io/dry-run": "true"},
        error=(
            'metadata.annotations["istio.io/dry-run"]',
            "shop/x has unsupported annotation istio.io/dry-run, please remove the annotation",
        ),
    ),
    Case("exportTo", vs(route(), exportTo=[".", "other"])),
    Case(
        "exportTo * and more",
        vs(route(), exportTo=["*", "other"]),
        error=(
            "spec.exportTo",
            "cannot have both public (*) and non-public exportTo values for a resource",
        ),
    ),
    Case(
        "exportTo . after its namespace",
        vs(route(), exportTo=["shop", "."]),
        error=("spec.exportTo[1]", "duplicate entries in exportTo: . and current namespace shop"),
    ),
    Case(
        "exportTo twice",
        vs(route(), exportTo=[".", "shop"]),
        error=("spec.exportTo[1]", "duplicate entries in exportTo for entry shop"),
    ),
    Case(
        "exportTo ~",
        vs(route(), exportTo=["~"]),
        error=(
            "spec.exportTo[0]",
            "exportTo ~ (none) is not allowed for Istio configuration objects",
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_virtual_service_verdicts(case: Case) -> None:
    check_case("VirtualService", case)


def test_rules_after_a_catch_all_are_unreachable_warnings() -> None:
    spec = vs(
        route(name="all"),
        route(name="late", match=[{"uri": {"prefix": "/a"}}]),
    )
    assert findings("VirtualService", spec) == [
        (
            "warning",
            "spec.http[1]",
            'virtualService rule "late" not used (route without matches defined before)',
        )
    ]


def test_duplicate_and_covered_matches_are_warnings() -> None:
    spec = vs(
        route(match=[{"uri": {"prefix": "/api"}}]),
        route(match=[{"uri": {"prefix": "/api"}, "name": "again"}]),
        route(match=[{"uri": {"prefix": "/api/v1"}}]),
    )
    assert findings("VirtualService", spec) == [
        (
            "warning",
            "spec.http[1].match[0]",
            (
                'virtualService rule #1 match "again" is not used '
                "(duplicate/overlapping match in rule #0)"
            ),
        ),
        (
            "warning",
            "spec.http[1]",
            "virtualService rule #1 not used (all matches used by prior rules)",
        ),
        (
            "warning",
            "spec.http[2].match[0]",
            "virtualService rule #2 match #0 of prefix /api/v1 is not used "
            "(duplicate/overlapping match in rule #0 of prefix /api on #0)",
        ),
    ]


def test_every_problem_of_a_document_is_reported_with_its_path() -> None:
    spec = {
        "hosts": ["*.*.bad"],
        "http": [
            {
                "route": [
                    {"destination": {"host": "a.shop"}, "weight": -5},
                    {"destination": {"host": "b.shop", "port": {"number": 99999}}},
                ]
            },
            {"redirect": {"uri": "/x", "redirectCode": 200}},
        ],
    }
    errors = [
        (path, message)
        for level, path, message in findings("VirtualService", spec)
        if level == "error"
    ]
    assert errors == [
        ("spec.hosts[0]", 'domain name "*.bad" invalid (label "*" invalid)'),
        ("spec.http[0].route[0].weight", "weight -5 < 0"),
        (
            "spec.http[0].route[1].destination.port.number",
            "port number 99999 must be in the range 1..65535",
        ),
        ("spec.http[1].redirect.redirectCode", "200 is not a valid redirect code, must be 3xx"),
    ]
