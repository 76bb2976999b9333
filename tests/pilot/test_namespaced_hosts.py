"""The ``namespace/dnsName`` host syntax shared by Sidecar egress and Gateway servers."""

from __future__ import annotations

import pytest

from istio_sdk.pilot.hosts import split_namespaced_host


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
