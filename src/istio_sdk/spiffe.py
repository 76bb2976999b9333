"""SPIFFE workload identities as Istio writes them: ``spiffe://TRUST_DOMAIN/ns/NS/sa/SA``.

The one place that spells the URI and the default trust domain. Pilot uses it to name the
identities a client expects of a server (SAN matches, RBAC principals); Citadel uses it to put
identities in certificates and read them back. :func:`spiffe_uri` only formats;
:func:`parse_spiffe_uri` and :class:`SpiffeId` check every part and raise :class:`SpiffeError`
with the reason.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

__all__ = [
    "DEFAULT_TRUST_DOMAIN",
    "SCHEME",
    "SpiffeError",
    "SpiffeId",
    "check_trust_domain",
    "is_spiffe_uri",
    "parse_spiffe_uri",
    "spiffe_uri",
]

DEFAULT_TRUST_DOMAIN: Final = "cluster.local"
SCHEME: Final = "spiffe://"

# A trust domain is a DNS-like name; namespaces and service accounts follow Kubernetes' DNS
# label / subdomain rules, which keeps every part free of '/' and other URI delimiters.
_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?")
_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
_SHOWN = 80  # how much of a rejected value an error message repeats


class SpiffeError(ValueError):
    """A SPIFFE URI, trust domain, namespace or service account that is not well formed."""


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def spiffe_uri(trust_domain: str, namespace: str, service_account: str) -> str:
    """``spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`` (no checks: see SpiffeId)."""
    return f"{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}"


def is_spiffe_uri(value: str) -> bool:
    """Whether ``value`` is in the ``spiffe://`` scheme (its form is not checked)."""
    return value.startswith(SCHEME)


def check_trust_domain(value: str) -> str:
    """``value`` if it is a valid trust domain name; raises :class:`SpiffeError` otherwise."""
    if not _TRUST_DOMAIN_RE.fullmatch(value):
        raise SpiffeError(f"trust domain {_shown(value)} is not a valid trust domain name")
    return value


def _check_trust_domain(_inst: object, _attr: object, value: str) -> None:
    check_trust_domain(value)


def _check_name(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not _NAME_RE.fullmatch(value):
        raise SpiffeError(
            f"{attr.name} {_shown(value)} must be a lowercase DNS name (letters, digits, '-', '.')"
        )


@attrs.frozen(order=True)
class SpiffeId:
    """A checked Istio workload identity: service account, namespace and trust domain."""

    namespace: str = attrs.field(validator=_check_name)
    service_account: str = attrs.field(validator=_check_name)
    trust_domain: str = attrs.field(default=DEFAULT_TRUST_DOMAIN, validator=_check_trust_domain)

    @property
    def uri(self) -> str:
        """The ``spiffe://`` URI."""
        return spiffe_uri(self.trust_domain, self.namespace, self.service_account)

    def __str__(self) -> str:
        return self.uri


def parse_spiffe_uri(uri: str) -> SpiffeId:
    """Parse ``spiffe://TRUST_DOMAIN/ns/NS/sa/SA``; raises :class:`SpiffeError` otherwise."""
    if not is_spiffe_uri(uri):
        raise SpiffeError(f"{_shown(uri)} is not a SPIFFE URI (expected 'spiffe://' prefix)")
    parts = uri[len(SCHEME) :].split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
        raise SpiffeError(
            f"{_shown(uri)} does not have Istio's form spiffe://<trust-domain>/ns/<ns>/sa/<sa>"
        )
    return SpiffeId(namespace=parts[2], service_account=parts[4], trust_domain=parts[0])
