"""Translation's side of the snapshot cache: generator answers become versioned snapshots.

A :class:`ResourceGenerator` answers "what does this proxy get of this type"; the
:class:`SnapshotWriter` asks it once per proxy scope (proxies that get identical config, see
:func:`scope_of`) and writes the answers, serialized, into a
:class:`~istio_sdk.pilot.cache.SnapshotCache` as a new :class:`~istio_sdk.pilot.cache.Snapshot`.
A message object the previous snapshot (or another scope, in the same round) already serialized
is not serialized again: the writer compares with the entry of the same type and name, which
holds the object, so identity is safe to test. When a type fails to generate, its previous
resources stay in the snapshot (the last good config) and the failure is reported.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from typing import Protocol

import attrs
import betterproto2

from istio_sdk.pilot.cache import CachedResource, Snapshot, SnapshotCache
from istio_sdk.pilot.push_context import ProxyInfo

__all__ = ["GenerationFailure", "ResourceGenerator", "SnapshotWriter", "scope_of"]


class ResourceGenerator(Protocol):
    """What the server asks for resources: the seam to translation.

    ``generate`` returns, for one proxy and type URL, resource name -> message. ``names`` is
    ``None`` for everything the proxy may see, else the names wanted; returning fewer names
    means those do not exist. A generator may also define ``scope_key(proxy)``: proxies with
    equal keys get the same resources and share one snapshot.
    """

    def generate(
        self, proxy: ProxyInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, betterproto2.Message]: ...


def scope_of(generator: object, proxy: ProxyInfo) -> Hashable:
    """The snapshot scope of ``proxy``: the generator's ``scope_key``, else all but its id."""
    key = getattr(generator, "scope_key", None)
    if callable(key):
        scope: Hashable = key(proxy)
        return scope
    return (
        proxy.type.value,
        proxy.ip_addresses,
        proxy.namespace,
        tuple(sorted(proxy.labels.items())),
        proxy.generator,
        proxy.dns_domain,
        proxy.locality,
        proxy.dns_capture,
        proxy.dns_auto_allocate,
    )


@attrs.frozen
class GenerationFailure:
    """Generating ``type_url`` for a scope raised ``error``; its last resources were kept."""

    type_url: str
    error: BaseException


Wanted = Mapping[str, frozenset[str] | None]


class SnapshotWriter:
    """Writes snapshots of a :class:`ResourceGenerator`'s answers into a cache."""

    def __init__(self, generator: ResourceGenerator, cache: SnapshotCache) -> None:
        self.generator = generator
        self.cache = cache
        # (type_url, name) -> resources serialized this round, shared between scopes.
        self._round: dict[tuple[str, str], list[CachedResource]] = {}

    def scope(self, proxy: ProxyInfo) -> Hashable:
        """The scope key of ``proxy``."""
        return scope_of(self.generator, proxy)

    def end_round(self) -> None:
        """Stop sharing this round's serializations between scopes."""
        self._round.clear()

    def write(
        self,
        scope: Hashable,
        proxy: ProxyInfo,
        generation: int,
        wanted: Wanted,
        *,
        types: Collection[str] | None = None,
        changed: Mapping[str, Collection[str]] | None = None,
    ) -> tuple[Snapshot, list[GenerationFailure]]:
        """Regenerate ``scope`` (represented by ``proxy``) and store the new snapshot.

        ``wanted`` maps each type the scope's proxies subscribed to the names they want (``None``:
        all). Types in ``types`` (``None``: all) are regenerated, and so is any type the last
        snapshot does not cover; the others are carried over. ``changed`` (type -> names)
        limits a regeneration to those names when the last snapshot covers the type.
        """
        prev = self.cache.get(scope)
        # Type tables are shared with the previous snapshot until this write changes them.
        resources: dict[str, Mapping[str, CachedResource]] = dict(prev.resources) if prev else {}
        coverage: dict[str, frozenset[str] | None] = dict(prev.coverage) if prev else {}
        failures: list[GenerationFailure] = []
        for url, names in wanted.items():
            covered = prev is not None and prev.covers(url, names)
            regenerate = types is None or url in types
            have = coverage.get(url)
            only = None if changed is None else changed.get(url)
            merge = True
            if covered and not regenerate:
                continue  # unchanged and complete: carried over
            if covered and only is not None:
                lookup: frozenset[str] | None = (
                    frozenset(only) if have is None else frozenset(only) & have
                )
            elif not covered and not regenerate and url in coverage and have is not None:
                assert names is not None  # covered otherwise
                lookup = names - have  # new names only; the others stay as they are
                coverage[url] = have | names
            else:
                lookup, merge = names, False
                coverage[url] = names
            try:
                answer = self.generator.generate(proxy, url, lookup)
            except Exception as exc:  # the generator is user code: keep its last good answer
                failures.append(GenerationFailure(url, exc))
                if prev is not None and url in prev.coverage:
                    coverage[url] = prev.coverage[url]
                else:
                    coverage.pop(url, None)
                continue
            old = resources.get(url, {})
            table: dict[str, CachedResource]
            if merge:
                table = dict(old)
                for name in lookup or ():
                    if name not in answer:
                        table.pop(name, None)
            else:
                table = {}
            for name, message in answer.items():
                table[name] = self._resolve(url, name, message, old.get(name))
            resources[url] = table
        snapshot = Snapshot(str(generation), resources, coverage)
        self.cache.set(scope, snapshot)
        return snapshot, failures

    def ensure(
        self,
        scope: Hashable,
        proxy: ProxyInfo,
        generation: int,
        type_url: str,
        names: frozenset[str] | None,
    ) -> tuple[Snapshot, list[GenerationFailure]]:
        """The snapshot of ``scope``, extended first if it lacks ``names`` of ``type_url``.

        What a new subscription needs: a cache hit costs nothing, a miss looks up only the
        names never looked up before (or the whole type for a wildcard).
        """
        current = self.cache.get(scope)
        if current is not None and current.covers(type_url, names):
            return current, []
        result = self.write(scope, proxy, generation, {type_url: names}, types=())
        self.end_round()
        return result

    def _resolve(
        self, url: str, name: str, message: betterproto2.Message, previous: CachedResource | None
    ) -> CachedResource:
        if previous is not None and previous.message is message:
            return previous
        shared = self._round.setdefault((url, name), [])
        for entry in shared:
            if entry.message is message:
                return entry
        entry = CachedResource.from_message(name, message)
        self.cache.serializations += 1
        shared.append(entry)
        return entry
