"""The cache key of a Mixer verdict: which attributes it depended on, and their values.

Mixer answers each Check with the attributes its decision read (``ReferencedAttributes``): an
EXACT match for every attribute (or string-map key) it found, an ABSENCE match for every one it
looked for in vain. Istio 1.3's proxy (src/istio/mixerclient/referenced.cc) turns that into a
*shape* (sorted ABSENCE keys, sorted EXACT keys, each a ``(name, map_key)`` pair) and keys the
cached verdict by the EXACT keys' values in the request. A later request reuses the verdict when
it fits the shape (every ABSENCE key absent, every EXACT key present) and carries the same
EXACT values. This module is that rule, with no I/O and no clock:

- a map key is decoded only when the request carries that attribute as a string map;
- a REGEX match, or an index that names no word, makes the verdict uncacheable (``None``);
- the signature holds the values themselves (and each value's type, so ``1``, ``1.0`` and
  ``True`` differ as they do on the wire), not a hash of them: two requests share a cache
  entry only when their EXACT values are equal.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import attrs

from istio_sdk.api.istio.mixer.v1 import ReferencedAttributes, ReferencedAttributesCondition
from istio_sdk.mixer.dictionary import GLOBAL_DICTIONARY

__all__ = ["Referenced", "Signature"]

Signature = tuple[Hashable, ...]
"""A cache key: the EXACT keys' values in a request, plus an extra key (a quota's name)."""

_ABSENCE = ReferencedAttributesCondition.ABSENCE
_EXACT = ReferencedAttributesCondition.EXACT


def _word(index: int, words: Sequence[str]) -> str | None:
    if index >= 0:
        return GLOBAL_DICTIONARY[index] if index < len(GLOBAL_DICTIONARY) else None
    slot = -index - 1
    return words[slot] if slot < len(words) else None


@attrs.frozen
class Referenced:
    """One shape: the sorted ``(name, map_key)`` pairs a verdict requires absent and present.

    ``map_key`` is ``""`` for a key that is not a string-map lookup. Shapes are hashable; equal
    shapes are one shape (the proxy keeps one per distinct shape hash).
    """

    absence: tuple[tuple[str, str], ...]
    exact: tuple[tuple[str, str], ...]

    @classmethod
    def from_response(
        cls, request: Mapping[str, object], referenced: ReferencedAttributes | None
    ) -> Referenced | None:
        """The shape of a verdict for ``request``; ``None`` when it must not be cached."""
        absence: list[tuple[str, str]] = []
        exact: list[tuple[str, str]] = []
        if referenced is None:
            return cls((), ())
        words = referenced.words
        for match in referenced.attribute_matches:
            name = _word(match.name, words)
            if name is None:
                return None
            map_key = ""
            if isinstance(request.get(name), Mapping):
                decoded = _word(match.map_key, words)
                if decoded is None:
                    return None
                map_key = decoded
            if match.condition == _ABSENCE:
                absence.append((name, map_key))
            elif match.condition == _EXACT:
                exact.append((name, map_key))
            elif match.condition == ReferencedAttributesCondition.REGEX:
                return None  # the proxy does not cache REGEX conditions either
        return cls(tuple(sorted(set(absence))), tuple(sorted(set(exact))))

    def signature(self, request: Mapping[str, Any], extra: str = "") -> Signature | None:
        """The cache key of ``request`` under this shape, or ``None`` when it does not fit."""
        get = request.get
        for name, map_key in self.absence:
            value = get(name)
            if value is None:
                continue
            # a present non-map attribute breaks its ABSENCE condition
            if not isinstance(value, Mapping) or map_key in value:
                return None
        key: list[Hashable] = []
        for name, map_key in self.exact:
            value = get(name)
            if value is None:
                return None
            if isinstance(value, Mapping):
                item = value.get(map_key)
                if item is None:
                    return None
                key.append((name, map_key, item))
            else:
                # the type keeps 1, 1.0 and True apart (they travel in different maps)
                key.append((name, value.__class__, value))
        key.append(extra)
        return tuple(key)
