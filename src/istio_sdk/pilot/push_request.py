"""Push requests: what changed (types, names) and which proxies must hear about it.

A :class:`PushRequest` is a value: two requests merge into one that covers both (what debouncing
does to a burst of changes). Its proxy selection is data too, never a function: ``None`` (every
proxy), a ``frozenset`` of proxy ids, :class:`AffectedBy` (the proxies a config change affects:
a change set and the push context it applies to) or :class:`AnyOf` of those, which is what
merging builds. So a request, merged or not, compares, prints and can be inspected; anything
else (a lambda, a bare string, a list) is refused with a ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

import attrs

from istio_sdk.pilot.push_context import ChangeSet, ProxyInfo, PushContext

__all__ = ["AffectedBy", "AnyOf", "ProxySelection", "PushRequest"]


@attrs.frozen
class AffectedBy:
    """The proxies ``change`` affects, judged in the push ``context`` it leads to."""

    change: ChangeSet
    context: PushContext = attrs.field(eq=False, repr=False)

    def selects(self, proxy: ProxyInfo) -> bool:
        """Whether ``change`` affects ``proxy``."""
        return self.change.affects(self.context, proxy)


def _selection_parts(value: object) -> tuple[frozenset[str] | AffectedBy, ...]:
    """``value`` as the flat parts of an :class:`AnyOf` (TypeError for anything else)."""
    if isinstance(value, AnyOf):
        return value.selectors
    if isinstance(value, AffectedBy):
        return (value,)
    if isinstance(value, (set, frozenset)):
        bad = [item for item in value if not isinstance(item, str)]
        if bad:
            raise TypeError(f"proxy ids are strings, not {type(bad[0]).__name__}: {bad[0]!r}")
        return (frozenset(value),)
    what = "a function" if callable(value) else type(value).__name__
    raise TypeError(
        "a proxy selection is None (every proxy), a frozenset of proxy ids, AffectedBy or "
        f"AnyOf of those (data, so requests merge and compare), not {what}: {value!r:.100}"
    )


def _flat_parts(value: Iterable[object]) -> tuple[frozenset[str] | AffectedBy, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"AnyOf takes a tuple of selections, not {type(value).__name__}")
    parts: list[frozenset[str] | AffectedBy] = []
    for item in value:
        parts.extend(_selection_parts(item))
    return tuple(parts)


@attrs.frozen
class AnyOf:
    """A proxy selection that matches when any of ``selectors`` does (nested ``AnyOf`` values
    are flattened)."""

    selectors: tuple[frozenset[str] | AffectedBy, ...] = attrs.field(converter=_flat_parts)

    def selects(self, proxy: ProxyInfo) -> bool:
        """Whether any selector selects ``proxy``."""
        return any(_selects(s, proxy) for s in self.selectors)


ProxySelection: TypeAlias = frozenset[str] | AffectedBy | AnyOf
"""Which proxies a request affects (``None`` in a request: every proxy)."""


def _selects(selection: ProxySelection, proxy: ProxyInfo) -> bool:
    if isinstance(selection, frozenset):
        return proxy.id in selection
    return selection.selects(proxy)


def _normalized(parts: Iterable[frozenset[str] | AffectedBy]) -> ProxySelection:
    """The parts as one selection: every id in one set, the changes kept in order."""
    ids: frozenset[str] | None = None
    changes: list[AffectedBy] = []
    for part in parts:
        if isinstance(part, frozenset):
            ids = part if ids is None else ids | part
        else:
            changes.append(part)
    found: list[frozenset[str] | AffectedBy] = [ids] if ids is not None else []
    found.extend(changes)
    if not found:
        return frozenset()  # AnyOf(()) selects nobody
    return found[0] if len(found) == 1 else AnyOf(tuple(found))


def _selection(value: object) -> ProxySelection | None:
    return None if value is None else _normalized(_selection_parts(value))


def _union(a: ProxySelection, b: ProxySelection) -> ProxySelection:
    """One selection covering both."""
    return _normalized((*_selection_parts(a), *_selection_parts(b)))


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
    ``proxies`` selects the affected proxies: ``None`` (all), a set of proxy ids,
    :class:`AffectedBy` or :class:`AnyOf` (see the module docstring; a function is refused).
    """

    types: frozenset[str] | None = attrs.field(default=None, converter=_frozen_types)
    changed: dict[str, frozenset[str]] | None = attrs.field(default=None, converter=_frozen_names)
    proxies: ProxySelection | None = attrs.field(default=None, converter=_selection)
    reason: str = ""

    def selects(self, proxy: ProxyInfo) -> bool:
        """Whether ``proxy`` is among the affected proxies."""
        return self.proxies is None or _selects(self.proxies, proxy)

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
        proxies: ProxySelection | None = None
        if self.proxies is not None and other.proxies is not None:
            proxies = _union(self.proxies, other.proxies)
        reason = "; ".join(r for r in (self.reason, other.reason) if r)
        return PushRequest(types, changed, proxies, reason)

    def _names_complete(self) -> bool:
        # A type changed without names lists everything of it as changed.
        assert self.changed is not None
        return all(url in self.changed for url in self.types or ())
