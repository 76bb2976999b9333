"""Push requests: what changed (types, names) and which proxies must hear about it.

A :class:`PushRequest` is a value: two requests merge into one that covers both (what debouncing
does to a burst of changes), and merging proxy selections builds an :class:`AnyOf` value instead
of a closure, so a merged request still compares and prints as data. :class:`AffectedBy` is the
selection of a config change as data (a change set and the push context it applies to), for
translation to hand over instead of a lambda.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import attrs

from istio_sdk.pilot.push_context import ChangeSet, ProxyInfo, PushContext

__all__ = ["AffectedBy", "AnyOf", "ProxySelector", "PushRequest"]

ProxySelector = Callable[[ProxyInfo], bool]
"""Selects the proxies a change affects (for example ``ChangeSet.affects`` bound to a context)."""


@attrs.frozen
class AnyOf:
    """A proxy selection that matches when any of ``selectors`` does."""

    selectors: tuple[ProxySelector, ...]

    def __call__(self, proxy: ProxyInfo) -> bool:
        return any(s(proxy) for s in self.selectors)

    def __or__(self, other: ProxySelector) -> AnyOf:
        mine = self.selectors
        theirs = other.selectors if isinstance(other, AnyOf) else (other,)
        return AnyOf((*mine, *theirs))


@attrs.frozen
class AffectedBy:
    """The proxies ``change`` affects, judged in the push ``context`` it leads to."""

    change: ChangeSet
    context: PushContext = attrs.field(eq=False, repr=False)

    def __call__(self, proxy: ProxyInfo) -> bool:
        return self.change.affects(self.context, proxy)


def _frozen_types(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


def _frozen_names(value: Mapping[str, Iterable[str]] | None) -> dict[str, frozenset[str]] | None:
    if value is None:
        return None
    return {k: frozenset(v) for k, v in value.items()}


@attrs.frozen
class PushRequest:
    """A reason to push: which types, which resource names, which proxies.

    ``types`` ``None`` means every type. ``changed`` maps a type URL to the names that changed
    (``None``: unknown, treat all as changed); a proxy watching none of them is not pushed.
    ``proxies`` selects the affected proxies (``None``: all).
    """

    types: frozenset[str] | None = attrs.field(default=None, converter=_frozen_types)
    changed: dict[str, frozenset[str]] | None = attrs.field(default=None, converter=_frozen_names)
    proxies: ProxySelector | None = attrs.field(default=None, eq=False)
    reason: str = ""

    def selects(self, proxy: ProxyInfo) -> bool:
        """Whether ``proxy`` is among the affected proxies."""
        return self.proxies is None or self.proxies(proxy)

    def merge(self, other: PushRequest) -> PushRequest:
        """One request covering both."""
        types = None if self.types is None or other.types is None else self.types | other.types
        changed: dict[str, frozenset[str]] | None = None
        if (
            self.changed is not None
            and other.changed is not None
            and self._names_complete()
            and other._names_complete()
        ):
            changed = dict(self.changed)
            for url, names in other.changed.items():
                changed[url] = changed.get(url, frozenset()) | names
        proxies: ProxySelector | None = None
        if self.proxies is not None and other.proxies is not None:
            mine = self.proxies if isinstance(self.proxies, AnyOf) else AnyOf((self.proxies,))
            proxies = mine | other.proxies
        reason = "; ".join(r for r in (self.reason, other.reason) if r)
        return PushRequest(types, changed, proxies, reason)

    def _names_complete(self) -> bool:
        # A type changed without names lists everything of it as changed.
        assert self.changed is not None
        return all(url in self.changed for url in self.types or ())
