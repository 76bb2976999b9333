"""Citadel's workload identity: a :class:`istio_sdk.spiffe.SpiffeId` that raises Citadel's
:class:`~istio_sdk.citadel.errors.IdentityError`, plus Kubernetes service account user names."""

from __future__ import annotations

import attrs

from istio_sdk.citadel.errors import IdentityError
from istio_sdk.spiffe import (
    DEFAULT_TRUST_DOMAIN,
    SpiffeError,
    SpiffeId,
    parse_spiffe_uri,
    spiffe_uri,
)

__all__ = ["DEFAULT_TRUST_DOMAIN", "Identity"]


@attrs.frozen(order=True)
class Identity:
    """A workload's identity: a Kubernetes service account in a namespace of a trust domain.

    Every part is checked as :class:`istio_sdk.spiffe.SpiffeId` checks it.
    """

    namespace: str
    service_account: str
    trust_domain: str = DEFAULT_TRUST_DOMAIN

    def __attrs_post_init__(self) -> None:
        try:
            SpiffeId(self.namespace, self.service_account, self.trust_domain)
        except SpiffeError as exc:
            raise IdentityError(str(exc)) from None

    @property
    def spiffe_uri(self) -> str:
        """The URI SAN Istio puts in workload certificates."""
        return spiffe_uri(self.trust_domain, self.namespace, self.service_account)

    def __str__(self) -> str:
        return self.spiffe_uri

    @classmethod
    def from_spiffe_uri(cls, uri: str) -> Identity:
        """Parse ``spiffe://<td>/ns/<ns>/sa/<sa>``; raises :class:`IdentityError` otherwise."""
        try:
            parsed = parse_spiffe_uri(uri)
        except SpiffeError as exc:
            raise IdentityError(str(exc)) from None
        return cls(parsed.namespace, parsed.service_account, parsed.trust_domain)

    @classmethod
    def from_service_account_username(
        cls, username: str, trust_domain: str = DEFAULT_TRUST_DOMAIN
    ) -> Identity:
        """Parse Kubernetes' ``system:serviceaccount:<ns>:<sa>`` user name."""
        parts = username.split(":")
        if len(parts) != 4 or parts[0] != "system" or parts[1] != "serviceaccount":
            raise IdentityError(
                f"{username!r} is not a service account user name "
                "(expected system:serviceaccount:<namespace>:<name>)"
            )
        return cls(namespace=parts[2], service_account=parts[3], trust_domain=trust_domain)
