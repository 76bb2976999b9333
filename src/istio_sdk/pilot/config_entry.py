"""Config resources as translation reads them: :class:`ConfigEntry` (kind, name, namespace,
spec and a content digest) keyed by :class:`ConfigKey`.

Anything with ``.kind``, ``.metadata.name``, ``.metadata.namespace`` and ``.spec``
(:class:`ConfigLike`, such as ``istio_sdk.config.Resource``) normalises into an entry; the
digest lets change computation compare two snapshots without comparing specs field by field.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import attrs
import betterproto2

__all__ = ["TRANSLATED_KINDS", "ConfigEntry", "ConfigKey", "ConfigLike"]

_KIND_ALIASES = {
    "virtualservice": "VirtualService",
    "destinationrule": "DestinationRule",
    "gateway": "Gateway",
    "sidecar": "Sidecar",
    "serviceentry": "ServiceEntry",
    "workloadentry": "WorkloadEntry",
    "peerauthentication": "PeerAuthentication",
    "authorizationpolicy": "AuthorizationPolicy",
}
TRANSLATED_KINDS = frozenset(_KIND_ALIASES.values())
"""The config kinds translation reads; changes to other kinds push nothing."""


class _MetaLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> str | None: ...


class ConfigLike(Protocol):
    """What the push context needs from a config resource (``istio_sdk.config.Resource`` fits)."""

    @property
    def kind(self) -> str: ...

    @property
    def metadata(self) -> _MetaLike: ...

    @property
    def spec(self) -> Any: ...


@attrs.frozen(order=True)
class ConfigKey:
    """Identifies one config resource: ``(kind, namespace, name)``."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@attrs.frozen
class ConfigEntry:
    """A config resource reduced to what translation reads."""

    kind: str
    name: str
    namespace: str
    spec: betterproto2.Message = attrs.field(eq=False)
    digest: bytes = attrs.field(default=b"", eq=True)

    @property
    def key(self) -> ConfigKey:
        """The entry's :class:`ConfigKey`."""
        return ConfigKey(self.kind, self.namespace, self.name)

    @classmethod
    def of(cls, resource: ConfigLike | ConfigEntry) -> ConfigEntry:
        """Normalise a resource (or pass an entry through), computing its content digest."""
        if isinstance(resource, ConfigEntry):
            if resource.digest:
                return resource
            kind, name, namespace, spec = (
                resource.kind,
                resource.name,
                resource.namespace,
                resource.spec,
            )
        else:
            kind = resource.kind
            name = resource.metadata.name
            namespace = resource.metadata.namespace or "default"
            spec = resource.spec
        kind = _KIND_ALIASES.get(kind.lower(), kind)
        digest = hashlib.sha256(bytes(spec)).digest()[:16]
        return cls(kind=kind, name=name, namespace=namespace, spec=spec, digest=digest)
