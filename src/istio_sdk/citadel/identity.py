"""SPIFFE workload identities as Istio writes them: ``spiffe://<td>/ns/<ns>/sa/<sa>``."""

from __future__ import annotations

import re

import attrs

from istio_sdk.citadel.errors import IdentityError

DEFAULT_TRUST_DOMAIN = "cluster.local"
SPIFFE_SCHEME = "spiffe://"

# A trust domain is a DNS-like name; namespaces and service accounts follow Kubernetes' DNS
# label / subdomain rules, which keeps every part free of '/' and other URI delimiters.
_TRUST_DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def _check_trust_domain(_inst: object, _attr: object, value: str) -> None:
    if not _TRUST_DOMAIN_RE.fullmatch(value):
        raise IdentityError(f"trust_domain {value!r} is not a valid trust domain name")


def _check_name(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not _NAME_RE.fullmatch(value):
        raise IdentityError(
            f"{attr.name} {value!r} must be a lowercase DNS name (letters, digits, '-', '.')"
        )


@attrs.frozen(order=True)
class Identity:
    """A workload's identity: a Kubernetes service account in a namespace of a trust domain."""

    namespace: str = attrs.field(validator=_check_name)
    service_account: str = attrs.field(validator=_check_name)
    trust_domain: str = attrs.field(default=DEFAULT_TRUST_DOMAIN, validator=_check_trust_domain)

    @property
    def spiffe_uri(self) -> str:
        """The URI SAN Istio puts in workload certificates."""
        return f"{SPIFFE_SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.spiffe_uri

    @classmethod
    def from_spiffe_uri(cls, uri: str) -> Identity:
        """Parse ``spiffe://<td>/ns/<ns>/sa/<sa>``; raises :class:`IdentityError` otherwise."""
        if not uri.startswith(SPIFFE_SCHEME):
            raise IdentityError(f"{uri!r} is not a SPIFFE URI (expected 'spiffe://' prefix)")
        rest = uri[len(SPIFFE_SCHEME) :]
        parts = rest.split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise IdentityError(
                f"{uri!r} does not have Istio's form spiffe://<trust-domain>/ns/<ns>/sa/<sa>"
            )
        return cls(namespace=parts[2], service_account=parts[4], trust_domain=parts[0])

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
