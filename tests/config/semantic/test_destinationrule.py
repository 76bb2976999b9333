"""DestinationRule verdicts from Istio's validation tests."""

from __future__ import annotations

from typing import Any

import pytest
from support.semantic import Case, check_case


def dr(**extra: Any) -> dict[str, Any]:
    return {"host": "reviews", **extra}


SUBSETS = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]
OUTLIER = {"consecutive5xxErrors": 5}

CASES = [
    Case("simple", dr(subsets=SUBSETS)),
    Case("short host and *", dr(host="*")),
    Case("bad host", dr(host="*.*.bad"), error=("spec.host", 'domain name "*.bad" invalid')),
    Case(
        "duplicate subset names",
        dr(
            subsets=[
                {"name": "foo", "labels": {"version": "v1"}},
                {"name": "foo", "labels": {"version": "v2"}},
            ]
        ),
        error=("spec.subsets[1].name", "duplicate subset names: foo"),
    ),
    Case(
        "subset name not a label",
        dr(subsets=[{"name": "v.1"}]),
        error=("spec.subsets[0].name", "subset name is invalid: v.1"),
    ),
    Case(
        "subset label value",
        dr(subsets=[{"name": "v1", "labels": {"version": "-v1"}}]),
        error=("spec.subsets[0].labels", 'invalid tag value: "-v1"'),
    ),
    Case(
        "empty traffic policy",
        dr(trafficPolicy={}),
        error=("spec.trafficPolicy", "traffic policy must have at least one field"),
    ),
    Case(
        "empty connection pool",
        dr(trafficPolicy={"connectionPool": {}}),
        error=("spec.trafficPolicy.connectionPool", "connection pool must have at least one field"),
    ),
    Case(
        "pool",
        dr(
            trafficPolicy={
                "connectionPool": {
                    "tcp": {"maxConnections": 7, "idleTimeout": "0s"},
                    "http": {"http2MaxRequests": 11},
                }
            }
        ),
    ),
    Case(
        "negative max retries",
        dr(trafficPolicy={"connectionPool": {"http": {"maxRetries": -1}}}),
        error=(
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "max retries must be non-negative",
        ),
    ),
    Case(
        "upgrade with client protocol",
        dr(
            trafficPolicy={
                "connectionPool": {
                    "http": {"h2UpgradePolicy": "UPGRADE", "useClientProtocol": True}
                }
            }
        ),
        error=(
            "spec.trafficPolicy.connectionPool.http.useClientProtocol",
            "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
        ),
    ),
    Case(
        "h2 keepalive without timeout",
        dr(trafficPolicy={"connectionPool": {"http": {"http2KeepAlive": {"interval": "10s"}}}}),
        error=(
            "spec.trafficPolicy.connectionPool.http.http2KeepAlive",
            "http2 keepalive timeout is required",
        ),
    ),
    Case(
        "outlier percent",
        dr(trafficPolicy={"outlierDetection": {"maxEjectionPercent": 101}}),
        error=(
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "percentage 101 is not in range 0..100",
        ),
    ),
    Case(
        "deprecated consecutiveErrors",
        dr(trafficPolicy={"outlierDetection": {"consecutiveErrors": 5}}),
        warning=(
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "outlier detection consecutive errors is deprecated",
        ),
    ),
    Case(
        "local origin failures without split",
        dr(trafficPolicy={"outlierDetection": {"consecutiveLocalOriginFailures": 5}}),
        error=(
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            "split external local origin errors is set to false",
        ),
    ),
    Case(
        "cookie without name",
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"httpCookie": {"ttl": "1s"}}}}),
        error=(
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
            "name required for HttpCookie",
        ),
    ),
    Case(
        "maglev table not prime",
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "consistentHash": {"httpHeaderName": "x", "maglev": {"tableSize": "1000"}}
                }
            }
        ),
        error=(
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "tableSize must be a prime number for maglev",
        ),
    ),
    Case(
        "maglev table prime",
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "consistentHash": {"httpHeaderName": "x", "maglev": {"tableSize": "65537"}}
                }
            }
        ),
    ),
    Case(
        "deprecated minimumRingSize",
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "consistentHash": {"httpHeaderName": "x", "minimumRingSize": "1024"}
                }
            }
        ),
        warning=(
            "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
            "consistent hash MinimumRingSize is deprecated",
        ),
    ),
    Case(
        "locality weights not 100",
        dr(
            trafficPolicy={
                "outlierDetection": OUTLIER,
                "loadBalancer": {
                    "localityLbSetting": {
                        "distribute": [{"from": "a/b/*", "to": {"a/b/*": 60, "c/*": 30}}]
                    }
                },
            }
        ),
        error=(
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
            "total locality weight 90 != 100",
        ),
    ),
    Case(
        "distribute and failover",
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "localityLbSetting": {
                        "distribute": [{"from": "a", "to": {"b": 100}}],
                        "failover": [{"from": "a", "to": "b"}],
                    }
                }
            }
        ),
        error=(
            "spec.trafficPolicy.loadBalancer.localityLbSetting",
            "can not simultaneously specify 'distribute' and 'failover'",
        ),
    ),
    Case(
        "failover to itself",
        dr(
            trafficPolicy={
                "outlierDetection": OUTLIER,
                "loadBalancer": {"localityLbSetting": {"failover": [{"from": "a", "to": "a"}]}},
            }
        ),
        error=(
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
            "locality lb failover settings must specify different regions",
        ),
    ),
    Case(
        "failover without outlier detection",
        dr(
            trafficPolicy={
                "loadBalancer": {"localityLbSetting": {"failover": [{"from": "a", "to": "b"}]}}
            }
        ),
        warning=(
            "spec.trafficPolicy.loadBalancer.localityLbSetting",
            "outlier detection policy must be provided for failover",
        ),
    ),
    Case(
        "warmup without duration",
        dr(trafficPolicy={"loadBalancer": {"simple": "ROUND_ROBIN", "warmup": {"aggression": 1}}}),
        error=("spec.trafficPolicy.loadBalancer.warmup", "duration is required"),
    ),
    Case("tls istio mutual", dr(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})),
    Case(
        "mutual tls without certificates",
        dr(trafficPolicy={"tls": {"mode": "MUTUAL"}}),
        error=(
            "spec.trafficPolicy.tls.clientCertificate",
            "client certificate required for mutual tls",
        ),
    ),
    Case(
        "mutual tls from a credential",
        dr(trafficPolicy={"tls": {"mode": "MUTUAL", "credentialName": "c"}}),
    ),
    Case(
        "credential and files",
        dr(
            trafficPolicy={
                "tls": {"mode": "SIMPLE", "credentialName": "c", "caCertificates": "/ca.pem"}
            }
        ),
        error=(
            "spec.trafficPolicy.tls",
            "cannot specify client certificates or CA certificate "
            "or CA CRL If credentialName is set",
        ),
    ),
    Case(
        "insecureSkipVerify with a CA",
        dr(
            trafficPolicy={
                "tls": {"mode": "SIMPLE", "insecureSkipVerify": True, "caCertificates": "/ca.pem"}
            }
        ),
        error=(
            "spec.trafficPolicy.tls",
            "cannot specify CaCertificates or CredentialName or "
            "SubjectAltNames when InsecureSkipVerify is set true",
        ),
    ),
    Case(
        "configmap credential of another namespace",
        dr(trafficPolicy={"tls": {"mode": "SIMPLE", "credentialName": "configmap://other/ca"}}),
        error=(
            "spec.trafficPolicy.tls.credentialName",
            'namespace must match the configuration namespace "shop"',
        ),
    ),
    Case(
        "port policy without port",
        dr(trafficPolicy={"portLevelSettings": [{"tls": {"mode": "ISTIO_MUTUAL"}}]}),
        error=("spec.trafficPolicy.portLevelSettings[0]", "portTrafficPolicy must have valid port"),
    ),
    Case(
        "port policy with nothing",
        dr(trafficPolicy={"portLevelSettings": [{"port": {"number": 80}}]}),
        error=(
            "spec.trafficPolicy.portLevelSettings[0]",
            "port traffic policy must have at least one field",
        ),
    ),
    Case(
        "tunnel and proxy protocol",
        dr(
            trafficPolicy={
                "tunnel": {"targetHost": "a.shop", "targetPort": 80},
                "proxyProtocol": {},
            }
        ),
        error=("spec.trafficPolicy", "tunnel and proxyProtocol must not be set together"),
    ),
    Case(
        "tunnel protocol",
        dr(trafficPolicy={"tunnel": {"protocol": "GET", "targetHost": "a.shop", "targetPort": 80}}),
        error=("spec.trafficPolicy.tunnel.protocol", 'tunnel protocol must be "CONNECT" or "POST"'),
    ),
    Case(
        "selector without labels",
        dr(workloadSelector={}),
        warning=("spec.workloadSelector", "workload selector specified without labels"),
    ),
    Case(
        "selector exported elsewhere",
        dr(workloadSelector={"matchLabels": {"app": "a"}}, exportTo=["other"]),
        error=(
            "spec.exportTo",
            "destination rule with workload selector cannot have exportTo beyond current namespace",
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_destination_rule_verdicts(case: Case) -> None:
    check_case("DestinationRule", case)
