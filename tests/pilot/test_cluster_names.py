"""Istio's cluster names (istio_sdk.pilot.cluster_names)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.pilot.cluster_names import (
    inbound_cluster_name,
    outbound_cluster_name,
    parse_cluster_name,
)

_part = st.text(st.characters(blacklist_characters="|"), max_size=30)


def test_the_names_istio_uses() -> None:
    assert outbound_cluster_name(9080, "v1", "reviews.bookinfo.svc.cluster.local") == (
        "outbound|9080|v1|reviews.bookinfo.svc.cluster.local"
    )
    assert outbound_cluster_name(80, "", "a.example") == "outbound|80||a.example"
    assert inbound_cluster_name(8080) == "inbound|8080||"


@given(st.integers(0, 65535), _part, _part)
def test_outbound_names_parse_back(port: int, subset: str, host: str) -> None:
    assert parse_cluster_name(outbound_cluster_name(port, subset, host)) == (
        "outbound",
        port,
        subset,
        host,
    )


@pytest.mark.parametrize(
    "name", ["BlackHoleCluster", "outbound|x||a", "outbound|80|a", "sideways|80||a", "a|b|c|d|e"]
)
def test_other_names_are_not_parsed(name: str) -> None:
    assert parse_cluster_name(name) is None
