"""AuthorizationPolicy, PeerAuthentication and RequestAuthentication verdicts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.semantic import Case, check_case

PREFIX = "invalid policy x.shop: "
SELECTOR = {"matchLabels": {"app": "a"}}


def rules(*items: dict[str, Any]) -> dict[str, Any]:
    return {"selector": SELECTOR, "rules": list(items)}


AUTHORIZATION = [
    Case("allow nothing", {"selector": SELECTOR}),
    Case("allow all", {"rules": [{}]}),
    Case(
        "deny without rules",
        {"action": "DENY"},
        error=("spec.rules", PREFIX + "DENY action without `rules` is meaningless"),
    ),
    Case(
        "custom without provider",
        {"action": "CUSTOM", "rules": [{}]},
        error=("spec.provider.name", PREFIX + "`provider.name` must not be empty"),
    ),
    Case(
        "provider with ALLOW",
        {"provider": {"name": "ext"}, "rules": [{}]},
        error=(
            "spec.provider",
            PREFIX + "`provider` must not be with non CUSTOM action, found ALLOW",
        ),
    ),
    Case(
        "custom with principals",
        {
            "action": "CUSTOM",
            "provider": {"name": "ext"},
            "rules": [{"from": [{"source": {"principals": ["p"]}}]}],
        },
        error=(
            "spec.rules[0].from[0].source.principals",
            PREFIX + "From.Principals is currently not supported with CUSTOM action",
        ),
    ),
    Case(
        "empty source",
        rules({"from": [{"source": {}}]}),
        error=(
            "spec.rules[0].from[0].source",
            PREFIX + "`from.source` must not be empty, found at rule 0",
        ),
    ),
    Case(
        "empty operation",
        rules({"to": [{"operation": {}}]}),
        error=(
            "spec.rules[0].to[0].operation",
            PREFIX + "`to.operation` must not be empty, found at rule 0",
        ),
    ),
    Case(
        "bad ip block",
        rules({"from": [{"source": {"ipBlocks": ["10.0.0.0/40"]}}]}),
        error=("spec.rules[0].from[0].source.ipBlocks", PREFIX + "bad CIDR range (10.0.0.0/40)"),
    ),
    Case(
        "bad port",
        rules({"to": [{"operation": {"ports": ["99999"]}}]}),
        error=("spec.rules[0].to[0].operation.ports", PREFIX + "bad port (99999)"),
    ),
    Case(
        "principals are free text",
        rules({"from": [{"source": {"principals": ["anything at all"]}}]}),
    ),
    Case(
        "service accounts with namespaces",
        rules({"from": [{"source": {"serviceAccounts": ["ns/sa"], "namespaces": ["ns"]}}]}),
        error=(
            "spec.rules[0].from[0].source",
            PREFIX + "cannot set serviceAccounts with namespaces or principals",
        ),
    ),
    Case(
        "service account wildcard",
        rules({"from": [{"source": {"serviceAccounts": ["ns/*"]}}]}),
        error=(
            "spec.rules[0].from[0].source.serviceAccounts",
            PREFIX + "wildcard not allowed, found in ServiceAccounts",
        ),
    ),
    Case(
        "trust domain with a slash",
        rules({"from": [{"source": {"trustDomains": ["a/b"]}}]}),
        error=(
            "spec.rules[0].from[0].source.trustDomains",
            PREFIX + "trust domain must not contain '/'",
        ),
    ),
    Case(
        "path template not last",
        rules({"to": [{"operation": {"paths": ["/a/{**}/b/{*}"]}}]}),
        error=(
            "spec.rules[0].to[0].operation.paths",
            "found in Paths. {**} is not the last operator",
        ),
    ),
    Case("path template", rules({"to": [{"operation": {"paths": ["/a/{*}/b/{**}"]}}]})),
    Case(
        "unknown when key",
        rules({"when": [{"key": "source.colour", "values": ["red"]}]}),
        error=(
            "spec.rules[0].when[0].values",
            PREFIX + "invalid `value` for `key` source.colour: unknown attribute: source.colour",
        ),
    ),
    Case(
        "destination.labels key",
        rules({"when": [{"key": "destination.labels[app]", "values": ["a"]}]}),
        error=(
            "spec.rules[0].when[0].values",
            "attribute destination.labels[app] is replaced by the workload selector",
        ),
    ),
    Case(
        "when without values",
        rules({"when": [{"key": "source.ip"}]}),
        error=(
            "spec.rules[0].when[0]",
            PREFIX + "at least one of `values` or `notValues` must be set for key source.ip",
        ),
    ),
    Case("header key", rules({"when": [{"key": "request.headers[x-a]", "values": ["1"]}]})),
    Case(
        "header key without brackets",
        rules({"when": [{"key": "request.headers", "values": ["1"]}]}),
        error=(
            "spec.rules[0].when[0].values",
            "bad key (request.headers): should have format a[b]",
        ),
    ),
    Case(
        "deny with only HTTP attributes",
        {
            "action": "DENY",
            "selector": SELECTOR,
            "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}],
        },
        warning=(
            "spec.rules[0]",
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope",
        ),
    ),
    Case(
        "selector and targetRef",
        {
            "selector": SELECTOR,
            "targetRef": {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g"},
        },
        error=("spec", PREFIX + "only one of targetRefs or workloadSelector can be set"),
    ),
    Case(
        "targetRef to a Pod",
        {"targetRef": {"kind": "Pod", "name": "p"}},
        error=("spec.targetRef", PREFIX + "targetRef must be to one of"),
    ),
    Case(
        "selector wildcard",
        {"selector": {"matchLabels": {"app": "*"}}},
        error=(
            "spec.selector.matchLabels.app",
            PREFIX + 'wildcard is not supported in selector: "app=*"',
        ),
    ),
    Case("dry run", {"action": "DENY", "rules": [{}]}, annotations={"istio.io/dry-run": "true"}),
    Case(
        "dry run not a bool",
        {"rules": [{}]},
        annotations={"istio.io/dry-run": "yes"},
        error=(
            'metadata.annotations["istio.io/dry-run"]',
            "shop/x has annotation istio.io/dry-run with invalid value (yes)",
        ),
    ),
    Case(
        "dry run on CUSTOM",
        {"action": "CUSTOM", "provider": {"name": "e"}, "rules": [{}]},
        annotations={"istio.io/dry-run": "true"},
        error=(
            'metadata.annotations["istio.io/dry-run"]',
            "the annotation istio.io/dry-run currently only supports "
            "action ALLOW/DENY, found action CUSTOM",
        ),
    ),
]

PEER = [
    Case("strict", {"mtls": {"mode": "STRICT"}}),
    Case(
        "port level without selector",
        {"portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        error=(
            "spec.portLevelMtls",
            "mesh/namespace peer authentication cannot have port level mTLS",
        ),
    ),
    Case("port level", {"selector": SELECTOR, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}),
    Case(
        "empty port level map",  # Istio's rule too; only the written spec still shows it
        {"selector": SELECTOR, "portLevelMtls": {}},
        error=("spec.portLevelMtls", "must have at least 1 entries"),
    ),
]

JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "e": "AQAB",
                "n": (
                    "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5p"
                    "cM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTO"
                    "Q5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75"
                    "IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLq"
                    "HpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"
                ),
            }
        ]
    }
)
PRIVATE_JWKS = json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]})

REQUEST = [
    Case("issuer", {"jwtRules": [{"issuer": "https://a", "jwksUri": "https://a/keys"}]}),
    Case("jwksUri alone", {"jwtRules": [{"jwksUri": "https://a/keys"}]}),
    Case(
        "neither",
        {"jwtRules": [{"audiences": ["a"]}]},
        error=("spec.jwtRules[0]", "issuer or jwksUri must be non-empty string"),
    ),
    Case(
        "jwksUri scheme",
        {"jwtRules": [{"issuer": "a", "jwksUri": "ftp://a/keys"}]},
        error=("spec.jwtRules[0].jwksUri", 'URI scheme "ftp" is not supported'),
    ),
    Case("inline jwks", {"jwtRules": [{"issuer": "a", "jwks": JWKS}]}),
    Case(
        "jwks not JSON",
        {"jwtRules": [{"issuer": "a", "jwks": "{not json"}]},
        error=("spec.jwtRules[0].jwks", "jwks parse error:"),
    ),
    Case(
        "jwks bad key",
        {"jwtRules": [{"issuer": "a", "jwks": json.dumps({"keys": [{"kty": "RSA"}]})}]},
        error=("spec.jwtRules[0].jwks", "jwks parse error:"),
    ),
    Case(
        "private jwks",
        {"jwtRules": [{"issuer": "a", "jwks": PRIVATE_JWKS}]},
        warning=("spec.jwtRules[0].jwks", "jwks key at index 0 contains private key material"),
    ),
    Case(
        "empty header name",
        {"jwtRules": [{"issuer": "a", "fromHeaders": [{"prefix": "Bearer "}]}]},
        error=(
            "spec.jwtRules[0].fromHeaders[0].name",
            "location header name must be non-empty string",
        ),
    ),
    Case(
        "output header",
        {
            "jwtRules": [
                {"issuer": "a", "outputClaimToHeaders": [{"header": "x a", "claim": "sub"}]}
            ]
        },
        error=(
            "spec.jwtRules[0].outputClaimToHeaders[0].header",
            "header name x a is not a valid header name",
        ),
    ),
    Case(
        "timeout",
        {"jwtRules": [{"issuer": "a", "jwksUri": "https://a", "timeout": "0.0001s"}]},
        error=("spec.jwtRules[0].timeout", "duration must be greater than 1ms"),
    ),
]


@pytest.mark.parametrize("case", AUTHORIZATION, ids=lambda c: c.id)
def test_authorization_policy_verdicts(case: Case) -> None:
    check_case("AuthorizationPolicy", case)


@pytest.mark.parametrize("case", PEER, ids=lambda c: c.id)
def test_peer_authentication_verdicts(case: Case) -> None:
    check_case("PeerAuthentication", case)


@pytest.mark.parametrize("case", REQUEST, ids=lambda c: c.id)
def test_request_authentication_verdicts(case: Case) -> None:
    check_case("RequestAuthentication", case)
