"""Hypothesis strategies for valid Istio resources, to property-test config of your own.

Each strategy draws a :class:`~istio_sdk.config.Resource` that :func:`istio_sdk.validate`
accepts (no errors; Istio's warnings, such as a rule after a catch-all, may come), built the
way users write config: DNS-1123 names, short or fully
qualified hosts, route weights that add up to 100, subsets a DestinationRule declares, ports
in range. ``namespace`` and ``hosts`` pin what a test needs fixed::

    from hypothesis import given
    from istio_sdk.testing.resources import virtual_services

    @given(virtual_services(hosts=["reviews"]))
    def test_my_policy_accepts_any_route(vs): ...

:func:`istio_resources` draws any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from istio_sdk.config import Resource

__all__ = [
    "authorization_policies",
    "destination_rules",
    "dns_labels",
    "gateways",
    "hostnames",
    "istio_resources",
    "peer_authentications",
    "service_entries",
    "virtual_services",
]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_NETWORKING = "networking.istio.io/v1beta1"
_SECURITY = "security.istio.io/v1beta1"


def dns_labels(max_size: int = 12) -> st.SearchStrategy[str]:
    """A DNS-1123 label: lower-case letters, digits and inner dashes, starting with a letter."""
    return st.from_regex(rf"\A[a-z]([a-z0-9-]{{0,{max_size - 2}}}[a-z0-9])?\Z", fullmatch=True)


def hostnames() -> st.SearchStrategy[str]:
    """A service host as config names it: ``reviews``, ``reviews.shop`` or a FQDN."""
    short = dns_labels(10)
    return st.one_of(
        short,
        st.builds(lambda a, b: f"{a}.{b}.svc.cluster.local", short, short),
        st.builds(lambda a, b: f"{a}.{b}.com", short, short),
    )


def _ports() -> st.SearchStrategy[int]:
    return st.integers(1, 65535)


def _weights(count: int) -> st.SearchStrategy[list[int]]:
    # ``count`` weights adding up to 100 (Istio's rule for a route with several destinations).
    if count == 1:
        return st.just([100])
    cuts = st.lists(st.integers(0, 100), min_size=count - 1, max_size=count - 1).map(sorted)
    return cuts.map(lambda c: [b - a for a, b in zip([0, *c], [*c, 100], strict=True)])


def _resource(api_version: str, kind: str, name: str, namespace: str, spec: Any) -> Resource:
    return Resource.from_dict(
        {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def _namespace(namespace: str | None) -> st.SearchStrategy[str]:
    return st.just(namespace) if namespace is not None else dns_labels(10)


@st.composite
def _destination(draw: st.DrawFn, host: str) -> dict[str, Any]:
    out: dict[str, Any] = {"host": host}
    if draw(st.booleans()):
        out["subset"] = draw(st.sampled_from(["v1", "v2", "v3"]))
    if draw(st.booleans()):
        out["port"] = {"number": draw(_ports())}
    return out


@st.composite
def _http_route(draw: st.DrawFn, hosts: Sequence[str]) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    weights = draw(_weights(count))
    route: dict[str, Any] = {
        "route": [
            {"destination": draw(_destination(draw(st.sampled_from(hosts)))), "weight": w}
            for w in weights
        ]
    }
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["prefix", "exact"]))
        path = "/" + "/".join(draw(st.lists(dns_labels(8), max_size=3)))
        route["match"] = [{"uri": {kind: path}}]
    if draw(st.booleans()):
        route["timeout"] = f"{draw(st.integers(1, 600))}s"
    if draw(st.booleans()):
        route["retries"] = {"attempts": draw(st.integers(1, 10)), "perTryTimeout": "2s"}
    return route


@st.composite
def virtual_services(
    draw: st.DrawFn, *, namespace: str | None = None, hosts: Sequence[str] | None = None
) -> Resource:
    """A VirtualService with HTTP routes over ``hosts`` (drawn when not given): matches,
    weighted destinations (adding up to 100), subsets, timeouts and retries."""
    chosen = (
        list(hosts) if hosts else draw(st.lists(hostnames(), min_size=1, max_size=3, unique=True))
    )
    spec = {
        "hosts": chosen,
        "http": draw(st.lists(_http_route(chosen), min_size=1, max_size=3)),
    }
    return _resource(
        _NETWORKING, "VirtualService", draw(dns_labels()), draw(_namespace(namespace)), spec
    )


@st.composite
def destination_rules(
    draw: st.DrawFn, *, namespace: str | None = None, host: str | None = None
) -> Resource:
    """A DestinationRule for ``host`` with a load balancer, connection pool, outlier
    detection, TLS mode and ``version``-labelled subsets (``v1``.. ``v3``)."""
    spec: dict[str, Any] = {"host": host or draw(hostnames())}
    policy: dict[str, Any] = {}
    if draw(st.booleans()):
        policy["loadBalancer"] = {
            "simple": draw(st.sampled_from(["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"]))
        }
    if draw(st.booleans()):
        policy["connectionPool"] = {
            "tcp": {"maxConnections": draw(st.integers(1, 10_000)), "connectTimeout": "1s"}
        }
    if draw(st.booleans()):
        policy["outlierDetection"] = {
            "consecutive5xxErrors": draw(st.integers(1, 100)),
            "interval": f"{draw(st.integers(1, 60))}s",
            "baseEjectionTime": "30s",
        }
    if draw(st.booleans()):
        policy["tls"] = {"mode": draw(st.sampled_from(["DISABLE", "ISTIO_MUTUAL"]))}
    if policy:
        spec["trafficPolicy"] = policy
    subsets = draw(st.lists(st.sampled_from(["v1", "v2", "v3"]), unique=True, max_size=3))
    if subsets:
        spec["subsets"] = [{"name": s, "labels": {"version": s}} for s in subsets]
    return _resource(
        _NETWORKING, "DestinationRule", draw(dns_labels()), draw(_namespace(namespace)), spec
    )


@st.composite
def service_entries(draw: st.DrawFn, *, namespace: str | None = None) -> Resource:
    """A ServiceEntry: STATIC with IP endpoints, or DNS for an external host."""
    port = {
        "number": draw(_ports()),
        "name": draw(dns_labels(8)),
        "protocol": draw(st.sampled_from(["HTTP", "HTTP2", "GRPC", "TCP", "HTTPS", "TLS"])),
    }
    spec: dict[str, Any] = {"ports": [port]}
    if draw(st.booleans()):
        spec["hosts"] = [draw(hostnames().filter(lambda h: "." in h))]
        spec["resolution"] = "STATIC"
        octets = st.integers(1, 254)
        spec["endpoints"] = [
            {"address": f"10.{a}.{b}.{c}"}
            for a, b, c in draw(st.lists(st.tuples(octets, octets, octets), min_size=1, max_size=4))
        ]
    else:
        spec["hosts"] = [draw(st.builds(lambda a, b: f"{a}.{b}.com", dns_labels(8), dns_labels(8)))]
        spec["resolution"] = "DNS"
        spec["location"] = "MESH_EXTERNAL"
    return _resource(
        _NETWORKING, "ServiceEntry", draw(dns_labels()), draw(_namespace(namespace)), spec
    )


@st.composite
def gateways(draw: st.DrawFn, *, namespace: str | None = None) -> Resource:
    """A Gateway for ``istio: ingressgateway`` with plain HTTP servers."""
    servers = [
        {
            "port": {"number": number, "name": f"http-{number}", "protocol": "HTTP"},
            "hosts": [draw(st.sampled_from(["*", "*.example.com", "bookinfo.example.com"]))],
        }
        for number in draw(st.lists(_ports(), min_size=1, max_size=3, unique=True))
    ]
    spec = {"selector": {"istio": "ingressgateway"}, "servers": servers}
    return _resource(_NETWORKING, "Gateway", draw(dns_labels()), draw(_namespace(namespace)), spec)


@st.composite
def authorization_policies(draw: st.DrawFn, *, namespace: str | None = None) -> Resource:
    """An AuthorizationPolicy (ALLOW or DENY) from principals in ``cluster.local`` to methods
    and paths of ``app``-labelled workloads."""
    ns = draw(_namespace(namespace))
    rule: dict[str, Any] = {}
    if draw(st.booleans()):
        accounts = draw(st.lists(dns_labels(8), min_size=1, max_size=3))
        rule["from"] = [
            {"source": {"principals": [f"cluster.local/ns/{ns}/sa/{a}" for a in accounts]}}
        ]
    if draw(st.booleans()):
        operation: dict[str, Any] = {
            "methods": draw(
                st.lists(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), min_size=1, unique=True)
            )
        }
        if draw(st.booleans()):
            operation["paths"] = ["/" + draw(dns_labels(8)) + draw(st.sampled_from(["", "*"]))]
        rule["to"] = [{"operation": operation}]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": draw(dns_labels(8))}},
        "action": draw(st.sampled_from(["ALLOW", "DENY"])),
        "rules": [rule],
    }
    return _resource(_SECURITY, "AuthorizationPolicy", draw(dns_labels()), ns, spec)


@st.composite
def peer_authentications(draw: st.DrawFn, *, namespace: str | None = None) -> Resource:
    """A PeerAuthentication: the mutual TLS mode of a namespace or of selected workloads."""
    spec: dict[str, Any] = {
        "mtls": {"mode": draw(st.sampled_from(["STRICT", "PERMISSIVE", "DISABLE"]))}
    }
    if draw(st.booleans()):
        spec["selector"] = {"matchLabels": {"app": draw(dns_labels(8))}}
    return _resource(
        _SECURITY, "PeerAuthentication", draw(dns_labels()), draw(_namespace(namespace)), spec
    )


def istio_resources(*, namespace: str | None = None) -> st.SearchStrategy[Resource]:
    """Any of this module's resources."""
    return st.one_of(
        virtual_services(namespace=namespace),
        destination_rules(namespace=namespace),
        service_entries(namespace=namespace),
        gateways(namespace=namespace),
        authorization_policies(namespace=namespace),
        peer_authentications(namespace=namespace),
    )
