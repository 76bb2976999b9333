"""Host matching (istio_sdk.pilot.hosts): the ``namespace/dnsName`` syntax of Sidecar egress and
Gateway servers, wildcard hosts, ``exportTo`` and gateway references."""

from __future__ import annotations

import pytest

from istio_sdk.pilot.hosts import exported_to, gateway_ref, host_matches, split_namespaced_host


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("reviews.shop.svc.cluster.local", ("*", "reviews.shop.svc.cluster.local")),
        ("*/*", ("*", "*")),
        ("./*.example.com", ("shop", "*.example.com")),
        ("istio-system/*", ("istio-system", "*")),
        ("~/*", ("~", "*")),
        (".", ("*", ".")),
    ],
)
def test_split_namespaced_host(host: str, expected: tuple[str, str]) -> None:
    assert split_namespaced_host(host, "shop") == expected


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("*", "anything.example.com", True),
        ("a.example.com", "a.example.com", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "*.sub.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "badexample.com", False),
        ("a.example.com", "b.example.com", False),
        ("a.example.com", "*.example.com", False),
    ],
)
def test_host_matches(pattern: str, host: str, matches: bool) -> None:
    assert host_matches(pattern, host) is matches


@pytest.mark.parametrize(
    ("export_to", "owner", "viewer", "visible"),
    [
        ([], "a", "b", True),
        (["*"], "a", "b", True),
        (["."], "a", "a", True),
        (["."], "a", "b", False),
        (["b", "c"], "a", "b", True),
        (["c"], "a", "b", False),
    ],
)
def test_exported_to(export_to: list[str], owner: str, viewer: str, visible: bool) -> None:
    assert exported_to(export_to, owner, viewer) is visible


def test_gateway_ref() -> None:
    assert gateway_ref("mesh", "shop") == "mesh"
    assert gateway_ref("ingress", "shop") == "shop/ingress"
    assert gateway_ref("istio-system/ingress", "shop") == "istio-system/ingress"
