"""The serialized-resource cache: every resource serialized once, its bytes shared by all proxies.

The discovery server asks the :class:`ResourceGenerator` for message objects; this cache turns
each distinct object into :class:`CachedResource` (``Any`` bytes plus a content version) exactly
once. Generators that hand the same object to every proxy (within one push context) therefore
cost one serialization per resource and version, however many proxies receive it; responses are
then assembled by splicing those bytes (see :mod:`istio_sdk.xds.wire`).
"""

from __future__ import annotations

import hashlib

import betterproto2

from istio_sdk.xds import wire
from istio_sdk.xds.types import type_url_of


class CachedResource:
    """One resource, serialized: name, type URL, version and the encoded ``Any``."""

    __slots__ = ("_delta", "any_bytes", "framed", "message", "name", "type_url", "version")

    def __init__(
        self,
        type_url: str,
        name: str,
        any_bytes: bytes,
        version: str,
        message: betterproto2.Message | None = None,
    ) -> None:
        self.type_url = type_url
        self.name = name
        self.any_bytes = any_bytes
        self.framed = wire.resource_field(any_bytes)  # ready to splice into a response
        self.version = version
        self.message = message
        self._delta: bytes | None = None

    @classmethod
    def from_message(cls, name: str, message: betterproto2.Message) -> CachedResource:
        """Serialize ``message`` (the one costly step) and version it by content."""
        type_url = type_url_of(message)
        value = bytes(message)
        version = hashlib.blake2b(value, digest_size=8).hexdigest()
        return cls(type_url, name, wire.encode_any(type_url, value), version, message)

    def delta_bytes(self) -> bytes:
        """This resource as an encoded delta ``Resource`` (built once, on first use)."""
        if self._delta is None:
            self._delta = wire.encode_delta_resource(self.name, self.version, self.any_bytes)
        return self._delta

    def __repr__(self) -> str:
        return f"CachedResource({self.type_url!r}, {self.name!r}, version={self.version!r})"


class ResourceCache:
    """Maps message objects to their :class:`CachedResource`, one serialization per object.

    Entries are keyed by object identity (the entry holds the object, so the identity stays
    valid). :meth:`end_round` drops entries no push used during the last two rounds.
    """

    def __init__(self) -> None:
        self._entries: dict[int, CachedResource] = {}
        self._used: dict[int, int] = {}
        self._round = 0
        self.serializations = 0

    def resolve(self, name: str, message: betterproto2.Message) -> CachedResource:
        """The cached form of ``message`` (named ``name``), serializing it on first sight."""
        key = id(message)
        cached = self._entries.get(key)
        if cached is None or cached.message is not message or cached.name != name:
            cached = CachedResource.from_message(name, message)
            self.serializations += 1
            self._entries[key] = cached
        self._used[key] = self._round
        return cached

    def end_round(self) -> None:
        """Close a push round; forget entries unused in this round and the previous one."""
        cutoff = self._round - 1
        stale = [k for k, r in self._used.items() if r < cutoff]
        for key in stale:
            del self._used[key]
            self._entries.pop(key, None)
        self._round += 1

    def __len__(self) -> int:
        return len(self._entries)
