"""SPIFFE URIs and trust domains (istio_sdk.spiffe), and the components that use them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk.citadel import Identity, IdentityError
from istio_sdk.pilot.translate.authn import spiffe_identity
from istio_sdk.spiffe import (
    DEFAULT_TRUST_DOMAIN,
    SpiffeError,
    SpiffeId,
    check_trust_domain,
    is_spiffe_uri,
    parse_spiffe_uri,
    spiffe_uri,
)

_name = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True)
_trust_domain = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?", fullmatch=True)
ids = st.builds(SpiffeId, namespace=_name, service_account=_name, trust_domain=_trust_domain)


def test_the_uri_istio_writes() -> None:
    assert spiffe_uri("cluster.local", "default", "sleep") == (
        "spiffe://cluster.local/ns/default/sa/sleep"
    )
    parsed = parse_spiffe_uri("spiffe://example.org/ns/prod/sa/api-server")
    assert parsed == SpiffeId("prod", "api-server", "example.org")
    assert SpiffeId("a", "b").trust_domain == DEFAULT_TRUST_DOMAIN == "cluster.local"


@given(ids)
def test_format_and_parse_round_trip(spiffe_id: SpiffeId) -> None:
    assert parse_spiffe_uri(spiffe_id.uri) == spiffe_id
    assert str(spiffe_id) == spiffe_id.uri
    assert is_spiffe_uri(spiffe_id.uri)


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "https://cluster.local/ns/a/sa/b",
        "spiffe://cluster.local/ns/a",
        "spiffe://cluster.local/ns/a/sa/b/extra",
        "spiffe://cluster.local/sa/a/ns/b",
        "spiffe:///ns/a/sa/b",
        "spiffe://Cluster.Local/ns/a/sa/b",
        "spiffe://cluster.local/ns/A/sa/b",
        "spiffe://cluster.local/ns/a/sa/",
        "spiffe://cluster.local/ns/a/sa/b\n",
        "spiffe://cluster.local/ns/a%2Fb/sa/c",
        "spiffe://" + "a" * 300 + "/ns/a/sa/b",
    ],
)
def test_malformed_uris_raise_spiffe_error(uri: str) -> None:
    with pytest.raises(SpiffeError):
        parse_spiffe_uri(uri)


def test_a_huge_uri_gives_a_short_error() -> None:
    with pytest.raises(SpiffeError) as caught:
        parse_spiffe_uri("spiffe://" + "x/" * 500_000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("value", ["", "UPPER", "a/b", "-lead", "trail.", "a b"])
def test_bad_trust_domains(value: str) -> None:
    with pytest.raises(SpiffeError, match="trust domain"):
        check_trust_domain(value)


def test_citadel_identity_is_built_on_it() -> None:
    identity = Identity("prod", "web", "example.org")
    assert identity.spiffe_uri == spiffe_uri("example.org", "prod", "web")
    assert Identity.from_spiffe_uri(identity.spiffe_uri) == identity
    # Citadel's own error type, which is also the shared one.
    with pytest.raises(IdentityError) as caught:
        Identity.from_spiffe_uri("spiffe://cluster.local/ns/a")
    assert isinstance(caught.value, SpiffeError)
    with pytest.raises(IdentityError):
        Identity("Bad_Name", "web")


def test_pilot_names_the_same_identities() -> None:
    assert spiffe_identity("td", "ns", "sa") == spiffe_uri("td", "ns", "sa")
    assert spiffe_identity("td", "ns", "spiffe://x/ns/a/sa/b") == "spiffe://x/ns/a/sa/b"
