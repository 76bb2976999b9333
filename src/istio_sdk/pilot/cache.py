"""Pilot's snapshot cache: versioned, serialized resources per proxy scope, read by the server.

Translation writes (see :mod:`istio_sdk.pilot.publisher`); the discovery server only reads. A
:class:`Snapshot` holds, per type URL, every resource a scope of proxies may get as a
:class:`CachedResource` (``Any`` bytes plus a content version, serialized once and shared by
every proxy and scope that gets the same message), and can check its own consistency
(:meth:`Snapshot.problems`). :class:`SnapshotCache` maps a scope key to its latest snapshot.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Hashable, Iterable, Mapping
from types import MappingProxyType

import attrs
import betterproto2

from istio_sdk.pilot.consistency import SnapshotProblem, check_consistency
from istio_sdk.xds import wire
from istio_sdk.xds.types import type_url_of, unpack_bytes

__all__ = ["CachedResource", "Snapshot", "SnapshotCache"]


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

    def decoded(self) -> betterproto2.Message:
        """The message (kept from serialization, else decoded from the bytes)."""
        if self.message is not None:
            return self.message
        from istio_sdk.api.google.protobuf import Any

        packed = Any.parse(self.any_bytes)
        return unpack_bytes(packed.type_url, packed.value)

    def delta_bytes(self) -> bytes:
        """This resource as an encoded delta ``Resource`` (built once, on first use)."""
        if self._delta is None:
            self._delta = wire.encode_delta_resource(self.name, self.version, self.any_bytes)
        return self._delta

    def __repr__(self) -> str:
        return f"CachedResource({self.type_url!r}, {self.name!r}, version={self.version!r})"


_NOT_COVERED = object()


def _frozen_resources(
    resources: Mapping[str, Mapping[str, CachedResource]],
) -> Mapping[str, Mapping[str, CachedResource]]:
    # A table carried over from an earlier snapshot is already a read-only view of a dict no one
    # writes to: share it instead of copying every type of every scope on every write.
    return MappingProxyType(
        {
            k: v if isinstance(v, MappingProxyType) else MappingProxyType(dict(v))
            for k, v in resources.items()
        }
    )


def _frozen_coverage(
    coverage: Mapping[str, frozenset[str] | None],
) -> Mapping[str, frozenset[str] | None]:
    return MappingProxyType(dict(coverage))


@attrs.frozen
class Snapshot:
    """Every resource of one proxy scope at one config generation.

    ``resources`` maps type URL -> name -> :class:`CachedResource`. ``coverage`` says, per type,
    which names translation was asked for (``None``: all of them): a name outside it was never
    looked up, while a looked-up name missing from ``resources`` does not exist.
    """

    version: str
    resources: Mapping[str, Mapping[str, CachedResource]] = attrs.field(converter=_frozen_resources)
    coverage: Mapping[str, frozenset[str] | None] = attrs.field(
        factory=dict, converter=_frozen_coverage
    )

    def covers(self, type_url: str, names: frozenset[str] | None) -> bool:
        """Whether translation was asked for ``names`` of ``type_url`` (``None``: all)."""
        have = self.coverage.get(type_url, _NOT_COVERED)
        if have is _NOT_COVERED:
            return False
        if have is None or have is names:
            return True
        return names is not None and names <= have  # type: ignore[operator]

    def messages(self) -> dict[str, dict[str, betterproto2.Message]]:
        """The resources as messages (type URL -> name -> message)."""
        return {
            url: {n: r.decoded() for n, r in table.items()} for url, table in self.resources.items()
        }

    def problems(self) -> tuple[SnapshotProblem, ...]:
        """Dangling references (EDS clusters without endpoints, listeners without routes)."""
        return check_consistency(self.messages())


class SnapshotCache:
    """Scope key -> latest :class:`Snapshot`; written by translation, read by servers."""

    def __init__(self) -> None:
        self._snapshots: dict[Hashable, Snapshot] = {}
        # Writers run in a translation thread while servers read on their event loop: reads
        # of one key need no lock, anything that walks or deletes takes it.
        self._lock = threading.Lock()
        self.serializations = 0  # resources serialized so far (by the writers of this cache)

    def get(self, scope: Hashable) -> Snapshot | None:
        """The latest snapshot of ``scope``, if any."""
        return self._snapshots.get(scope)

    def set(self, scope: Hashable, snapshot: Snapshot) -> None:
        """Make ``snapshot`` the latest of ``scope``."""
        with self._lock:
            self._snapshots[scope] = snapshot

    def retain(self, scopes: Iterable[Hashable]) -> None:
        """Forget every scope not in ``scopes`` (no proxy of theirs is connected)."""
        keep = set(scopes)
        with self._lock:
            for scope in [s for s in self._snapshots if s not in keep]:
                del self._snapshots[scope]

    def scopes(self) -> list[Hashable]:
        """The scopes with a snapshot."""
        with self._lock:
            return list(self._snapshots)

    def __len__(self) -> int:
        return len(self._snapshots)
